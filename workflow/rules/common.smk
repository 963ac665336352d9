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


wildcard_constraints:
    method="|".join(METHODS),
    detector="|".join(DETECTORS),
    iterations=r"\d+",


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


def all_targets():
    """Every figure and table of the configured study."""
    targets = []
    for detector in DETECTORS:
        targets += [
            f"results/figures/fig4_{detector}.png",
            f"results/figures/fig4_{detector}.csv",
            f"results/figures/fig6_{detector}.png",
            f"results/figures/fig6_{detector}.csv",
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
