# Figures of the paper, one file target each: `snakemake results/figures/fig4_dsfd.png` builds only what it needs.


rule fig4:
    input:
        unpack(fig4_inputs),
    output:
        png=report("results/figures/fig4_{detector}.png", caption="../report/fig4.rst", category="Fig. 4: AP per method"),
        csv="results/figures/fig4_{detector}.csv",
    params:
        results=result_args,
        iterations=FINAL_ITERATION,
    conda:
        CONDA_ENV
    log:
        "results/logs/figures/fig4_{detector}.log",
    benchmark:
        "results/benchmarks/figures/fig4_{detector}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m safefakes plot-fig4 --detector {wildcards.detector} --iterations {params.iterations} {params.results}"
        " --out-png {output.png} --out-csv {output.csv} 2> {log}"


rule fig6:
    input:
        unpack(fig6_inputs),
    output:
        png=report("results/figures/fig6_{detector}.png", caption="../report/fig6.rst", category="Fig. 6: training length"),
        csv="results/figures/fig6_{detector}.csv",
    params:
        results=result_args,
    conda:
        CONDA_ENV
    log:
        "results/logs/figures/fig6_{detector}.log",
    benchmark:
        "results/benchmarks/figures/fig6_{detector}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m safefakes plot-fig6 --detector {wildcards.detector} {params.results}"
        " --out-png {output.png} --out-csv {output.csv} 2> {log}"
