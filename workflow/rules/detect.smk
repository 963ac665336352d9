# Train each detector on each anonymized training set, predict on the untouched validation set, evaluate.


rule train_detector:
    # One job per iteration point; the jobs of a run follow each other, each continuing from the state the
    # previous one left in results/train_state (so Fig. 6's points cost one run, and a preempted or killed
    # job continues where it stopped).
    input:
        data=PATHS["anonymized"],
        previous=previous_detector_checkpoint,
    output:
        PATHS["detector_checkpoint"],
    params:
        hparams=detector_hparams,
        run_length=detector_run_length,
        checkpoints=subpath(output[0], parent=True),
        state_dir=PATHS["train_state"],
        seed=config["training"]["seed"],
        device=config["training"]["device"],
    conda:
        CONDA_ENV
    log:
        "results/logs/train/{detector}/{method}/iter_{iterations}.log",
    benchmark:
        "results/benchmarks/train/{detector}/{method}/iter_{iterations}.tsv"
    priority: 30
    threads: 2
    resources:
        mem_mb=grows_with_attempt(8000),
        runtime=grows_with_attempt(1440),
        gpu=1,
    shell:
        "OMP_NUM_THREADS={threads} python -m safefakes train --detector {wildcards.detector} --wider-root {input.data} --split train"
        " --hparams {params.hparams} --iterations {wildcards.iterations} --run-length {params.run_length}"
        " --checkpoints {params.checkpoints} --state-dir {params.state_dir} --seed {params.seed} --device {params.device} 2> {log}"


rule predict_val:
    input:
        checkpoint=rules.train_detector.output[0],
        root=original_root(),
    output:
        directory(PATHS["predictions"]),
    params:
        hparams=detector_hparams,
        device=config["training"]["device"],
    conda:
        CONDA_ENV
    log:
        "results/logs/predict/{detector}/{method}/iter_{iterations}.log",
    benchmark:
        "results/benchmarks/predict/{detector}/{method}/iter_{iterations}.tsv"
    threads: 2
    resources:
        mem_mb=grows_with_attempt(8000),
        runtime=grows_with_attempt(240),
        gpu=1,
    shell:
        "OMP_NUM_THREADS={threads} python -m safefakes predict --checkpoint {input.checkpoint} --wider-root {input.root} --split val"
        " --hparams {params.hparams} --out {output} --device {params.device} 2> {log}"


rule evaluate_val:
    input:
        predictions=PATHS["predictions"],
        # The ground truth lies inside the dataset folder for synthetic data: depend on the folder.
        root=original_root(),
    output:
        ap=PATHS["evaluation"],
        curves=PATHS["pr_curves"],
        plot=PATHS["pr_plot"],
    params:
        ground_truth=ground_truth_dir(),
    conda:
        CONDA_ENV
    log:
        "results/logs/evaluate/{detector}/{method}/iter_{iterations}.log",
    benchmark:
        "results/benchmarks/evaluate/{detector}/{method}/iter_{iterations}.tsv"
    threads: 1
    resources:
        mem_mb=grows_with_attempt(2000),
        runtime=grows_with_attempt(30),
    shell:
        "python -m safefakes evaluate --pred {input.predictions} --gt {params.ground_truth}"
        " --out {output.ap} --curves {output.curves} > {log} 2>&1"
        " && python -m safefakes plot-pr --curves {wildcards.method}={output.curves} --out {output.plot} 2>> {log}"


rule anonymize_val:
    # The validation split as each method leaves it, for the detectability figure (DeepPrivacy's Table 1).
    input:
        root=original_root(),
        checkpoint=anonymize_checkpoint_input,
    output:
        directory(PATHS["anonymized_val"]),
    params:
        method=lambda wildcards: dataset_method(wildcards.method),
        method_args=method_param_args,
        seed=config["anonymize"]["seed"],
    conda:
        CONDA_ENV
    log:
        "results/logs/anonymize_val/{method}.log",
    benchmark:
        "results/benchmarks/anonymize_val/{method}.tsv"
    priority: 20
    threads: config["anonymize"]["workers"]
    resources:
        mem_mb=grows_with_attempt(2000),
        runtime=grows_with_attempt(60),
        gpu=lambda wildcards: 1 if dataset_checkpoint(wildcards.method) else 0,
    shell:
        "python -m safefakes anonymize --method {params.method} {params.method_args}"
        " --wider-root {input.root} --split val --out {output}"
        " --workers {threads} --seed {params.seed} 2> {log}"


rule detectability:
    # The detector trained on original data, run on one method's anonymized validation split and scored
    # against the untouched ground truth (prediction and evaluation in one job: one start-up).
    input:
        checkpoint=lambda wildcards: detector_checkpoint(wildcards.detector, "original", final_iteration(wildcards.detector)),
        root=PATHS["anonymized_val"],
        truth=original_root(),
    output:
        ap=PATHS["detectability"],
        predictions=temp(directory(PATHS["detectability_predictions"])),
    params:
        hparams=detector_hparams,
        ground_truth=ground_truth_dir(),
        device=config["training"]["device"],
    conda:
        CONDA_ENV
    log:
        "results/logs/detectability/{detector}/{method}.log",
    benchmark:
        "results/benchmarks/detectability/{detector}/{method}.tsv"
    threads: 2
    resources:
        mem_mb=grows_with_attempt(8000),
        runtime=grows_with_attempt(240),
        gpu=1,
    shell:
        "(OMP_NUM_THREADS={threads} python -m safefakes predict --checkpoint {input.checkpoint} --wider-root {input.root} --split val"
        " --hparams {params.hparams} --out {output.predictions} --device {params.device}"
        " && python -m safefakes evaluate --pred {output.predictions} --gt {params.ground_truth} --out {output.ap}) > {log} 2>&1"


rule detect_pretrained_val:
    # An off-the-shelf detector (no training) on one method's anonymized validation split, scored against the
    # untouched ground truth (prediction and evaluation in one job).
    input:
        root=lambda wildcards: anonymized_val_root(wildcards.method),
        truth=original_root(),
    output:
        ap=PATHS["pretrained_detectability"],
        predictions=temp(directory(PATHS["pretrained_predictions"])),
    params:
        ground_truth=ground_truth_dir(),
    conda:
        CONDA_ENV
    log:
        "results/logs/detect_pretrained/{pretrained}/{method}.log",
    benchmark:
        "results/benchmarks/detect_pretrained/{pretrained}/{method}.tsv"
    threads: 1
    resources:
        mem_mb=grows_with_attempt(4000),
        runtime=grows_with_attempt(120),
    shell:
        "(OMP_NUM_THREADS={threads} python -m safefakes detect-pretrained --detector {wildcards.pretrained} --wider-root {input.root}"
        " --split val --out {output.predictions}"
        " && python -m safefakes evaluate --pred {output.predictions} --gt {params.ground_truth} --images-of {input.root} --out {output.ap})"
        " > {log} 2>&1"
