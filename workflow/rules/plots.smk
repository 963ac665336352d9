# Figures of the paper, one file target each: `snakemake results/figures/fig4_dsfd.png` builds only what it needs.


rule fig4:
    input:
        unpack(fig4_inputs),
    output:
        png=report(PATHS["fig4_png"], caption="../report/fig4.rst", category="Fig. 4: AP per method"),
        csv=PATHS["fig4_csv"],
    params:
        results=result_args,
        iterations=lambda wildcards: final_iteration(wildcards.detector),
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
        png=report(PATHS["fig6_png"], caption="../report/fig6.rst", category="Fig. 6: training length"),
        csv=PATHS["fig6_csv"],
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


rule detectability_figure:
    input:
        unpack(detectability_inputs),
    output:
        png=report(PATHS["detectability_png"], caption="../report/detectability.rst", category="Detectability"),
        csv=PATHS["detectability_csv"],
    params:
        results=result_args,
        iterations=lambda wildcards: final_iteration(wildcards.detector),
    conda:
        CONDA_ENV
    log:
        "results/logs/figures/detectability_{detector}.log",
    benchmark:
        "results/benchmarks/figures/detectability_{detector}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m safefakes plot-detectability --detector {wildcards.detector} --iterations {params.iterations} {params.results}"
        " --out-png {output.png} --out-csv {output.csv} 2> {log}"


rule face_sizes:
    # Supplement Fig. 1: face size per difficulty of the validation ground truth (the evidence that the
    # absolute-pixel parameters act on faces of WIDER's scale).
    input:
        root=original_root(),
        reference=config["dataset"].get("reference_ground_truth", []),
    output:
        png=report(PATHS["face_sizes_png"], caption="../report/face_sizes.rst", category="Data"),
        csv=PATHS["face_sizes_csv"],
    params:
        sources=lambda wildcards: face_size_sources(),
    conda:
        CONDA_ENV
    log:
        "results/logs/figures/face_sizes.log",
    benchmark:
        "results/benchmarks/figures/face_sizes.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m safefakes plot-face-sizes {params.sources} --out-png {output.png} --out-csv {output.csv} > {log} 2>&1"


rule paper_checks:
    # The paper's findings checked on the privacy detector's own tables (the demo's main detector).
    input:
        fig4=PATHS["fig4_csv"],
        fig6=PATHS["fig6_csv"],
        detectability=lambda wildcards: (
            [PATHS["detectability_csv"].format(detector=wildcards.detector)] if wildcards.detector in DETECTABILITY_DETECTORS else []
        ),
    output:
        csv=PATHS["paper_checks_csv"],
        md=PATHS["paper_checks_md"],
    params:
        detectability=lambda wildcards, input: f"--detectability {input.detectability[0]}" if input.detectability else "",
    conda:
        CONDA_ENV
    log:
        "results/logs/tables/paper_checks_{detector}.log",
    benchmark:
        "results/benchmarks/tables/paper_checks_{detector}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m safefakes paper-checks --detector {wildcards.detector} --fig4 {input.fig4} --fig6 {input.fig6} {params.detectability}"
        " --out-csv {output.csv} --out-md {output.md} > {log} 2>&1"


rule detectability_pretrained:
    input:
        unpack(pretrained_detectability_inputs),
    output:
        png=report(PATHS["detectability_pretrained_png"], caption="../report/detectability.rst", category="Detectability"),
        csv=PATHS["detectability_pretrained_csv"],
    params:
        results=result_args,
    conda:
        CONDA_ENV
    log:
        "results/logs/figures/detectability_pretrained.log",
    benchmark:
        "results/benchmarks/figures/detectability_pretrained.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m safefakes plot-detectability-pretrained {params.results} --out-png {output.png} --out-csv {output.csv} 2> {log}"
