"""How stable the main detector's Fig. 4 is: the same demo, the detector trained with several seeds.

Usage (after ``./run.sh demo``, whose ``results/`` is seed 0 of ``training.seed``)::

    python benchmarks/seed_stability.py --seeds 0 1 2 [--detector dsfd] [--cores 2] [--work benchmarks/seeds]

For every other seed it makes ``WORK/seed_N/``, links the demo's data, GAN checkpoints and anonymized sets
into it (the seed changes only the detector's initialisation, sampling and augmentation), runs Snakemake
there for ``results/figures/fig4_DETECTOR.csv`` with ``training.seed`` set, and prints a Markdown table of
each method's mAP and easy/medium/hard AP: mean and standard deviation over the seeds, and every seed's
value. It also says which orderings of the methods' mAP hold at every seed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: Demo outputs that do not depend on the detector seed, shared with every seed's folder.
SHARED_RESULTS = ("data", "gans", "anonymized")


def run_seed(seed: int, detector: str, cores: int, work: Path) -> Path:
    """The Fig. 4 table of one detector seed (seed 0 is the demo's own ``results/``)."""
    config = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text())
    if seed == config["training"]["seed"]:
        return PROJECT_ROOT / "results" / "figures" / f"fig4_{detector}.csv"
    folder = work / f"seed_{seed}"
    (folder / "results").mkdir(parents=True, exist_ok=True)
    for name in SHARED_RESULTS:
        link = folder / "results" / name
        if not link.exists():
            link.symlink_to(PROJECT_ROOT / "results" / name, target_is_directory=True)
    config["training"]["seed"] = seed
    config_path = folder / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    target = f"results/figures/fig4_{detector}.csv"
    command = [
        sys.executable,
        "-m",
        "snakemake",
        target,
        "--snakefile",
        str(PROJECT_ROOT / "Snakefile"),
        "--directory",
        str(folder),
        "--configfile",
        str(config_path),
        "--cores",
        str(cores),
        "--rerun-triggers",
        "mtime",
    ]
    subprocess.run(command, check=True, env={**os.environ, "SAFEFAKES_NO_PROGRESS": "1"})
    return folder / target


def orderings(table: pd.DataFrame) -> list[str]:
    """'A > B' for every pair of methods whose mAP order is the same at every seed."""
    wide = table.pivot(index="seed", columns="method", values="mAP")
    held = []
    for first, second in itertools.permutations(wide.columns, 2):
        if (wide[first] > wide[second]).all():
            held.append(f"{first} > {second}")
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--detector", default=None, help="default: the demo's main detector, config.yaml's privacy.detector")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "benchmarks" / "seeds")
    args = parser.parse_args()
    if args.detector is None:
        args.detector = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text())["privacy"]["detector"]
    tables = []
    for seed in args.seeds:
        table = pd.read_csv(run_seed(seed, args.detector, args.cores, args.work))
        tables.append(table.assign(seed=seed))
    table = pd.concat(tables)
    columns = ["mAP", "easy", "medium", "hard"]
    summary = table.groupby("method", sort=False)[columns].agg(["mean", "std"])
    print(f"| method | {' | '.join(f'{c} mean ± std' for c in columns)} | mAP per seed ({', '.join(map(str, args.seeds))}) |")
    print("|---|" + "---|" * (len(columns) + 1))
    for method, row in summary.iterrows():
        per_seed = ", ".join(f"{v * 100:.1f}" for v in table[table["method"] == method].sort_values("seed")["mAP"])
        cells = " | ".join(f"{row[(c, 'mean')] * 100:.1f} ± {row[(c, 'std')] * 100:.1f}" for c in columns)
        print(f"| {method} | {cells} | {per_seed} |")
    print("\nOrderings of mAP that hold at every seed:")
    for line in orderings(table):
        print(f"- {line}")


if __name__ == "__main__":
    main()
