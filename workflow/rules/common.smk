# Shared helpers: config validation, dataset locations, wildcard constraints, targets.
# Paths are built with pathlib / Snakemake patterns, never by string concatenation.

import json
import shlex
from pathlib import Path

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

METHODS = list(config["anonymize"]["methods"])
DETECTORS = list(config["detectors"])
ITERATIONS = sorted(config["training"]["iterations"])
FINAL_ITERATION = ITERATIONS[-1]
SOURCE = config["dataset"]["source"]


#: Methods that replace faces with a generator, told apart in Table II.
GAN_METHODS = [method for method in METHODS if method in ("deepprivacy", "ciagan", "sun2018")]
#: Table II correlates over the anonymized datasets, not the untouched one.
ANONYMIZED_METHODS = [method for method in METHODS if method != "original"]
PRIVACY_DETECTOR = config["privacy"]["detector"]
SCENARIOS = ("naive", "reverse", "parrot")


wildcard_constraints:
    method="|".join(METHODS),
    detector="|".join(DETECTORS),
    iterations=r"\d+",
    strength=r"default|\d+(\.\d+)?",
    scenario="|".join(SCENARIOS),


def original_root():
    """The untouched dataset in the official WIDER FACE layout (synthetic or real)."""
    if SOURCE == "synthetic":
        return "results/data/synthetic"
    return config["dataset"]["wider"]["root"]


def ground_truth_dir():
    """The folder with wider_face_val.mat and wider_{easy,medium,hard}_val.mat."""
    if SOURCE == "synthetic":
        return str(Path(original_root()) / "ground_truth")
    return config["dataset"]["wider"]["ground_truth"]


def wider_archive_args():
    """`--archive/--checksum/--member` arguments of `safefakes fetch-wider` from the config."""
    args = []
    for name, spec in config["dataset"]["wider"].get("archives", {}).items():
        args += ["--archive", f"{name}={spec['url']}"]
        if spec.get("checksum"):
            args += ["--checksum", f"{name}={spec['checksum']}"]
        args += [item for member in spec.get("members", []) for item in ("--member", f"{name}={member}")]
    return " ".join(shlex.quote(arg) for arg in args)


def method_param_args(wildcards):
    """`--param KEY=VALUE` arguments of one anonymization method, shell-quoted."""
    params = config["anonymize"]["methods"][wildcards.method] or {}
    return " ".join(f"--param {shlex.quote(f'{key}={value}')}" for key, value in sorted(params.items()))


def detector_hparams(wildcards):
    """The detector's hyper-parameter overrides (merged onto its paper values), as quoted JSON."""
    return shlex.quote(json.dumps(config["detectors"][wildcards.detector] or {}, sort_keys=True))


def evaluation_json(detector, method, iterations):
    """Where the APs of one trained detector land."""
    return f"results/eval/{detector}/{method}/iter_{iterations}.json"


def identities_root():
    """The identity set of the re-identification test."""
    identities = config["privacy"]["reid"]["identities"]
    return "results/data/identities" if identities == "synthetic" else identities


def reid_runs():
    """(summary, scores) files of every re-identification job: each method at its default, plus the sweeps."""
    runs = [(method, "default") for method in METHODS]
    for method, strengths in config["privacy"]["reid"]["sweeps"].items():
        if method in METHODS:
            runs += [(method, f"{strength:g}") for strength in strengths]
    return [(f"results/reid/{method}/{strength}.csv", f"results/reid/{method}/{strength}_scores.csv") for method, strength in runs]


REID_RUNS = reid_runs()


def strength_arg(wildcards):
    """`--strength K`, or nothing for the method's default parameters."""
    return "" if wildcards.strength == "default" else f"--strength {wildcards.strength}"


def metric_selection_args():
    """`--metrics` for a subset; the full set is the default, where absent weights become null, not errors."""
    names = config["privacy"]["metrics"]["names"]
    if set(names) == {"l1", "l2", "ssim", "fid_face", "lpips", "fid"}:
        return ""
    return "--metrics " + ",".join(names)


def frontier_ap_inputs(wildcards):
    """Final-iteration APs of every method, in METHODS order (the frontier's labels)."""
    return [evaluation_json(wildcards.detector, method, FINAL_ITERATION) for method in METHODS]


def all_targets():
    """Every figure and table of the configured study."""
    targets = []
    for detector in DETECTORS:
        targets += [
            f"results/figures/fig4_{detector}.png",
            f"results/figures/fig4_{detector}.csv",
            f"results/figures/fig6_{detector}.png",
            f"results/figures/fig6_{detector}.csv",
            f"results/figures/privacy_utility_{detector}.png",
        ]
    targets += [f"results/figures/det_{scenario}.png" for scenario in SCENARIOS]
    targets += [
        "results/tables/reid.csv",
        "results/tables/table2_metric_correlation.csv",
        "results/tables/table2_metric_correlation.png",
        "results/figures/table2_scatter.png",
    ]
    return targets


def grows_with_attempt(base):
    """A resource callable that grows linearly with the retry attempt (for --retries)."""

    def resource(wildcards, attempt):
        return base * attempt

    return resource


def fig4_inputs(wildcards):
    """APs of every method at the final training iteration."""
    return {method: evaluation_json(wildcards.detector, method, FINAL_ITERATION) for method in METHODS}


def fig6_inputs(wildcards):
    """APs of every method at every training iteration point."""
    return {
        f"{method}@{iterations}": evaluation_json(wildcards.detector, method, iterations)
        for method in METHODS
        for iterations in ITERATIONS
    }


def result_args(wildcards, input):
    """`--result KEY=PATH` arguments from the rule's named inputs."""
    return " ".join(f"--result {shlex.quote(f'{key}={path}')}" for key, path in input.items())


# One environment for every rule, used with `--sdm conda` (path relative to the rule files).
CONDA_ENV = "../../envs/safefakes.yaml"
