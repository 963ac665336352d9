# GAN anonymizers: their training sets, training runs (one checkpoint file per iteration point), and the
# GAN figures (Fig. 1 examples, Fig. 7 training-set size, Fig. 9 anonymizer iterations, landmark coverage).


rule gan_synthetic_set:
    # A synthetic WIDER FACE made only for training anonymizers (its own seed, so other scenes and
    # faces than the detector's data: Safe Fakes trains anonymizers and detectors on different sets).
    output:
        directory(PATHS["gan_synthetic"]),
    params:
        images=lambda wildcards: GANS["synthetic_sets"][wildcards.synthetic_set]["images"],
        image_width=lambda wildcards: GANS["synthetic_sets"][wildcards.synthetic_set]["image_width"],
        seed=lambda wildcards: GANS["synthetic_sets"][wildcards.synthetic_set]["seed"],
    conda:
        CONDA_ENV
    log:
        "results/logs/gan_synthetic/{synthetic_set}.log",
    benchmark:
        "results/benchmarks/gan_synthetic/{synthetic_set}.tsv"
    wildcard_constraints:
        synthetic_set=r"[a-z][a-z0-9_]*",
    priority: 90
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "python -m safefakes synth --out {output} --images {params.images} --val-images 1"
        " --image-width {params.image_width} --seed {params.seed} --workers {threads} 2> {log}"


rule train_gan:
    # One job per iteration point; the jobs of a run follow each other, each resuming from the state the
    # previous one left in results/gan_state/ (bit-identical to one uninterrupted run).
    input:
        train_set=gan_train_set_path,
        previous=previous_gan_checkpoint,
    output:
        PATHS["gan_checkpoint"],
    params:
        hparams=gan_hparams,
        train_set_cuts=gan_train_set_args,
        checkpoints=subpath(output[0], parent=True),
        state_dir=PATHS["gan_state"],
        seed=GANS.get("seed", 0),
        device=GANS.get("device", "auto"),
    conda:
        CONDA_ENV
    log:
        "results/logs/train_gan/{gan}/{train_set}/iter_{iterations}.log",
    benchmark:
        "results/benchmarks/train_gan/{gan}/{train_set}/iter_{iterations}.tsv"
    priority: 50
    threads: 2
    resources:
        mem_mb=grows_with_attempt(8000),
        runtime=grows_with_attempt(2880),
        gpu=1,
    shell:
        "OMP_NUM_THREADS={threads} python -m safefakes train-gan --gan {wildcards.gan} --train-set {input.train_set} {params.train_set_cuts}"
        " --iterations {wildcards.iterations} --checkpoints {params.checkpoints} --state-dir {params.state_dir}"
        " --hparams {params.hparams} --seed {params.seed} --device {params.device} 2> {log}"


rule fig1:
    input:
        original=original_root(),
        anonymized=[anonymized_images(method) for method in ANONYMIZED_METHODS],
    output:
        report(PATHS["fig1"], caption="../report/fig1.rst", category="Fig. 1: examples"),
    params:
        # The untouched images come from --original; every other method from its anonymized copy.
        results=" ".join(f"--result {shlex.quote(f'{method}={anonymized_images(method)}')}" for method in ANONYMIZED_METHODS),
        split=IMAGE_SPLIT,
    conda:
        CONDA_ENV
    log:
        "results/logs/figures/fig1.log",
    benchmark:
        "results/benchmarks/figures/fig1.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python -m safefakes plot-fig1 --original {input.original} --split {params.split} {params.results} --out-png {output} 2> {log}"


rule keypoint_coverage:
    input:
        expand(PATHS["anonymized"], method=GAN_METHODS),
    output:
        png=report(PATHS["coverage_png"], caption="../report/coverage.rst", category="Fig. 1: examples"),
        csv=PATHS["coverage_csv"],
    params:
        manifests=" ".join(f"--manifest {shlex.quote(f'{method}=results/anonymized/{method}/manifest.json')}" for method in GAN_METHODS),
    conda:
        CONDA_ENV
    log:
        "results/logs/figures/keypoint_coverage.log",
    benchmark:
        "results/benchmarks/figures/keypoint_coverage.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m safefakes plot-keypoint-coverage {params.manifests} --out-png {output.png} --out-csv {output.csv} 2> {log}"


rule fig7:
    input:
        unpack(fig7_inputs),
        anonymized=fig7_anonymized_inputs,
    output:
        png=report(PATHS["fig7_png"], caption="../report/fig7.rst", category="Fig. 7: anonymizer training set"),
        csv=PATHS["fig7_csv"],
    params:
        results=fig7_result_args,
        anonymized=fig7_anonymized_args,
    conda:
        CONDA_ENV
    log:
        "results/logs/figures/fig7_{detector}.log",
    benchmark:
        "results/benchmarks/figures/fig7_{detector}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m safefakes plot-fig7 --detector {wildcards.detector} {params.results} {params.anonymized}"
        " --out-png {output.png} --out-csv {output.csv} 2> {log}"


rule fig9:
    input:
        unpack(fig9_inputs),
        references=lambda wildcards: [evaluation_json(wildcards.detector, "original", gan_figure_iteration(wildcards.detector))] if "original" in METHODS else [],
    output:
        png=report(PATHS["fig9_png"], caption="../report/fig9.rst", category="Fig. 9: anonymizer iterations"),
        csv=PATHS["fig9_csv"],
    params:
        results=lambda wildcards, input: " ".join(
            f"--result {shlex.quote(f'{key}={path}')}" for key, path in input.items() if key != "references"
        ),
        references=fig9_reference_args,
    conda:
        CONDA_ENV
    log:
        "results/logs/figures/fig9_{detector}.log",
    benchmark:
        "results/benchmarks/figures/fig9_{detector}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m safefakes plot-fig9 --detector {wildcards.detector} {params.results} {params.references}"
        " --out-png {output.png} --out-csv {output.csv} 2> {log}"
