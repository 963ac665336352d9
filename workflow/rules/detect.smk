# Train each detector on each anonymized training set, predict on the untouched validation set, evaluate.


rule train_detector:
    # One run writes every iteration point of Fig. 6; the resumable state lives outside the outputs
    # (results/train_state), so a preempted or killed job continues where it stopped.
    input:
        data="results/anonymized/{method}",
    output:
        expand("results/models/{{detector}}/{{method}}/iter_{iterations}.pt", iterations=ITERATIONS),
    params:
        hparams=detector_hparams,
        iterations=" ".join(str(i) for i in ITERATIONS),
        checkpoints=subpath(output[0], parent=True),
        state_dir="results/train_state/{detector}/{method}",
        seed=config["training"]["seed"],
        device=config["training"]["device"],
    conda:
        CONDA_ENV
    log:
        "results/logs/train/{detector}/{method}.log",
    benchmark:
        "results/benchmarks/train/{detector}/{method}.tsv"
    threads: 2
    resources:
        mem_mb=grows_with_attempt(8000),
        runtime=grows_with_attempt(1440),
        gpu=1,
    shell:
        "OMP_NUM_THREADS={threads} python -m safefakes train --detector {wildcards.detector} --wider-root {input.data} --split train"
        " --hparams {params.hparams} --iterations {params.iterations} --checkpoints {params.checkpoints}"
        " --state-dir {params.state_dir} --seed {params.seed} --device {params.device} 2> {log}"


rule predict_val:
    input:
        checkpoint="results/models/{detector}/{method}/iter_{iterations}.pt",
        root=original_root(),
    output:
        directory("results/predictions/{detector}/{method}/iter_{iterations}"),
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
        predictions="results/predictions/{detector}/{method}/iter_{iterations}",
        # The ground truth lies inside the dataset folder for synthetic data: depend on the folder.
        root=original_root(),
    output:
        ap="results/eval/{detector}/{method}/iter_{iterations}.json",
        curves="results/eval/{detector}/{method}/iter_{iterations}_pr.csv",
        plot="results/eval/{detector}/{method}/iter_{iterations}_pr.png",
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
        " --out {output.ap} --curves {output.curves} --plot {output.plot} > {log} 2>&1"
