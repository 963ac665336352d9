# The original dataset: the embedded synthetic WIDER FACE, or the real one (downloaded or already unpacked).


if SOURCE == "synthetic":

    rule synth_dataset:
        output:
            directory(PATHS["synthetic"]),
        params:
            images=config["dataset"]["synthetic"]["train_images"] + config["dataset"]["synthetic"]["val_images"],
            val_images=config["dataset"]["synthetic"]["val_images"],
            image_width=config["dataset"]["synthetic"]["image_width"],
            crop="--crop-full-scene" if config["dataset"]["synthetic"].get("crop_full_scene") else "",
            seed=config["dataset"]["synthetic"]["seed"],
        conda:
            CONDA_ENV
        log:
            "results/logs/synth_dataset.log",
        benchmark:
            "results/benchmarks/synth_dataset.tsv"
        priority: 100

        threads: 2
        resources:
            mem_mb=2000,
            runtime=30,
        shell:
            "python -m safefakes synth --out {output} --images {params.images} --val-images {params.val_images}"
            " --image-width {params.image_width} {params.crop} --seed {params.seed} --workers {threads} 2> {log}"


if SOURCE == "wider":

    localrules:
        download_wider,

    rule download_wider:
        # A local rule: login nodes have internet, compute nodes often do not. Skipped when the
        # configured root already holds an unpacked copy.
        output:
            directory(config["dataset"]["wider"]["root"]),
        params:
            archives=wider_archive_args(),
        conda:
            CONDA_ENV
        log:
            "results/logs/download_wider.log",
        benchmark:
            "results/benchmarks/download_wider.tsv"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=240,
        shell:
            "python -m safefakes fetch-wider --out {output} {params.archives} 2> {log}"
