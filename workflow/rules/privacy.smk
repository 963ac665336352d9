# Privacy side: image metrics against detector mAP (Table II), re-identification (DET, EER), and the
# privacy-utility frontier.


#: Seed of the image metrics' random face sample (privacy.metrics.seed, else anonymize.seed).
METRICS_SEED = config["privacy"]["metrics"].get("seed", config["anonymize"]["seed"])


if PRIVACY_DETECTOR:
    TABLE2_DATASETS, TABLE2_ITERATION = table2_plan()
    #: The Table II points a GAN made (the Fig. 4 GANs and their variants); the rest are grouped by the table2 command.
    TABLE2_GAN_DATASETS = [name for name in TABLE2_DATASETS if dataset_method(name) in GAN_NAMES]


rule image_metrics:
    input:
        original=original_root(),
        anonymized=lambda wildcards: anonymized_images(wildcards.method),
    output:
        PATHS["metrics"],
    params:
        split=IMAGE_SPLIT,
        metrics=metric_selection_args(),
        max_faces=config["privacy"]["metrics"]["max_faces"],
        seed=METRICS_SEED,
    conda:
        CONDA_ENV
    log:
        "results/logs/metrics/{method}.log",
    benchmark:
        "results/benchmarks/metrics/{method}.tsv"
    threads: 1
    resources:
        mem_mb=grows_with_attempt(4000),
        runtime=grows_with_attempt(240),
    shell:
        "OMP_NUM_THREADS={threads} python -m safefakes metrics --original {input.original} --anonymized {input.anonymized} --split {params.split}"
        " --max-faces {params.max_faces} --seed {params.seed} {params.metrics} --out {output} 2> {log}"


if PRIVACY_DETECTOR:
    # Table II correlates the metrics with the privacy detector's mAP: only when a detector is trained.

    rule table2:
        input:
            metrics=expand(PATHS["metrics"], method=TABLE2_DATASETS),
            ap=[evaluation_json(PRIVACY_DETECTOR, name, TABLE2_ITERATION) for name in TABLE2_DATASETS],
        output:
            csv=PATHS["table2_csv"],
            points=PATHS["table2_points"],
            png=report(PATHS["table2_png"], caption="../report/table2.rst", category="Table II: metrics"),
            scatter=report(PATHS["table2_scatter"], caption="../report/table2.rst", category="Table II: metrics"),
        params:
            methods=" ".join(TABLE2_DATASETS),
            gan_methods=" ".join(TABLE2_GAN_DATASETS),
            iteration=TABLE2_ITERATION,
        conda:
            CONDA_ENV
        log:
            "results/logs/tables/table2.log",
        benchmark:
            "results/benchmarks/tables/table2.tsv"
        threads: 1
        resources:
            mem_mb=1000,
            runtime=10,
        shell:
            "python -m safefakes table2 --metrics {input.metrics} --ap {input.ap} --methods {params.methods}"
            " --gan-methods {params.gan_methods} --ap-iterations {params.iteration} --out-csv {output.csv} --out-points {output.points} 2> {log}"
            " && python -m safefakes plot-table2 --metrics {input.metrics} --ap {input.ap} --methods {params.methods}"
            " --gan-methods {params.gan_methods} --ap-iterations {params.iteration} --out-png {output.png} --scatter-png {output.scatter} 2>> {log}"


rule synth_identities:
    output:
        directory(PATHS["identities"]),
    params:
        identities=config["privacy"]["reid"].get("synthetic", {}).get("identities", 12),
        photos=config["privacy"]["reid"].get("synthetic", {}).get("photos", 4),
        seed=config["privacy"]["reid"].get("synthetic", {}).get("seed", 0),
    conda:
        CONDA_ENV
    log:
        "results/logs/synth_identities.log",
    benchmark:
        "results/benchmarks/synth_identities.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m safefakes synth-identities --out {output} --identities {params.identities}"
        " --photos {params.photos} --seed {params.seed} 2> {log}"


rule reid:
    input:
        identities=identities_root(),
        checkpoint=anonymize_checkpoint_input,
    output:
        summary=PATHS["reid_summary"],
        scores=PATHS["reid_scores"],
    params:
        strength=strength_arg,
        method_args=method_param_args,
        threshold=config["privacy"]["reid"]["threshold"],
    conda:
        CONDA_ENV
    log:
        "results/logs/reid/{method}/{strength}.log",
    benchmark:
        "results/benchmarks/reid/{method}/{strength}.tsv"
    threads: 1
    resources:
        mem_mb=grows_with_attempt(2000),
        runtime=grows_with_attempt(60),
    shell:
        "OMP_NUM_THREADS={threads} python -m safefakes reid --identities {input.identities} --method {wildcards.method} {params.method_args} {params.strength}"
        " --threshold {params.threshold} --out-csv {output.summary} --out-scores {output.scores} 2> {log}"


rule reid_table:
    input:
        [summary for summary, _ in REID_RUNS],
    output:
        report(PATHS["reid_table"], caption="../report/reid.rst", category="Re-identification"),
    conda:
        CONDA_ENV
    log:
        "results/logs/tables/reid.log",
    benchmark:
        "results/benchmarks/tables/reid.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m safefakes reid-gather --inputs {input} --out {output} 2> {log}"


rule det_curves:
    input:
        [scores for _, scores in REID_RUNS],
    output:
        report(PATHS["det_curve"], caption="../report/reid.rst", category="Re-identification"),
    conda:
        CONDA_ENV
    log:
        "results/logs/figures/det_{scenario}.log",
    benchmark:
        "results/benchmarks/figures/det_{scenario}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m safefakes plot-det --scores {input} --scenario {wildcards.scenario} --out {output} 2> {log}"


rule privacy_utility:
    input:
        reid=PATHS["reid_table"],
        ap=frontier_ap_inputs,
    output:
        report(PATHS["frontier"], caption="../report/frontier.rst", category="Privacy-utility frontier"),
    params:
        labels=lambda wildcards: " ".join(detector_methods(wildcards.detector)),
    conda:
        CONDA_ENV
    log:
        "results/logs/figures/privacy_utility_{detector}.log",
    benchmark:
        "results/benchmarks/figures/privacy_utility_{detector}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m safefakes plot-frontier --reid {input.reid} --ap {input.ap} --labels {params.labels}"
        " --scenario naive --out {output} 2> {log}"
