# Anonymize every face of the training split with one method.


rule anonymize_train:
    input:
        root=original_root(),
    output:
        directory("results/anonymized/{method}"),
    params:
        method_args=method_param_args,
        seed=config["anonymize"]["seed"],
    conda:
        CONDA_ENV
    log:
        "results/logs/anonymize/{method}.log",
    benchmark:
        "results/benchmarks/anonymize/{method}.tsv"
    threads: config["anonymize"]["workers"]
    resources:
        mem_mb=grows_with_attempt(2000),
        runtime=grows_with_attempt(120),
    shell:
        "python -m safefakes anonymize --method {wildcards.method} {params.method_args}"
        " --wider-root {input.root} --split train --out {output}"
        " --workers {threads} --seed {params.seed} 2> {log}"
