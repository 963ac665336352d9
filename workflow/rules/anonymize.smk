# Anonymize every face of the training split with one method (a GAN method uses its trained checkpoint).


rule anonymize_train:
    input:
        root=original_root(),
        checkpoint=anonymize_checkpoint_input,
    output:
        directory(PATHS["anonymized"]),
    params:
        method=lambda wildcards: dataset_method(wildcards.method),
        method_args=method_param_args,
        seed=config["anonymize"]["seed"],
    conda:
        CONDA_ENV
    log:
        "results/logs/anonymize/{method}.log",
    benchmark:
        "results/benchmarks/anonymize/{method}.tsv"
    priority: 40
    threads: config["anonymize"]["workers"]
    resources:
        mem_mb=grows_with_attempt(2000),
        runtime=grows_with_attempt(120),
        # GAN methods run their generator on a GPU when there is one.
        gpu=lambda wildcards: 1 if dataset_checkpoint(wildcards.method) else 0,
    shell:
        "python -m safefakes anonymize --method {params.method} {params.method_args}"
        " --wider-root {input.root} --split train --out {output}"
        " --workers {threads} --seed {params.seed} 2> {log}"
