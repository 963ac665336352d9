# Job parameters are checked while the DAG is built, by the code of the commands the jobs run, so a typo in
# config.yaml stops `snakemake -n` instead of a job queued on a cluster.

import json

from snakemake.logging import logger


def method_params_location(method):
    """Where the config sets the parameters of ``method`` (for error messages)."""
    if config["anonymize"]["methods"].get(method) is None and method in GAN_NAMES:
        return f"gans.models.{method}.params"
    return f"anonymize.methods.{method}"


def job_parameter_problems():
    """What the `anonymize`, `reid`, `train`/`predict` and `train-gan` jobs of this config would refuse:
    {config location: the command's message}, checked with the commands' own code (nothing is built or run)."""
    from safefakes.anonymize.base import method_config, parse_param_assignments
    from safefakes.anonymize.cli import job_params
    from safefakes.common.errors import SafefakesError

    problems = {}
    for name in DATASETS:
        location = method_params_location(dataset_method(name))
        if location in problems:
            continue
        try:
            job_params(dataset_method(name), parse_param_assignments(method_param_assignments(name)), dataset_checkpoint(name))
        except SafefakesError as error:
            problems[location] = str(error)
    for method, strengths in config["privacy"]["reid"]["sweeps"].items():
        if method not in METHODS or method_params_location(method) in problems:
            continue
        # `safefakes reid --param ... --checkpoint ... --strength K` adds the checkpoint and strength to the parameters.
        params = parse_param_assignments(method_param_assignments(method))
        if dataset_checkpoint(method) is not None:
            params["checkpoint"] = str(dataset_checkpoint(method))
        for strength in strengths:
            try:
                method_config(method, {**params, "strength": float(f"{strength:g}")})
            except SafefakesError as error:
                problems[f"privacy.reid.sweeps.{method}"] = f"strength {strength:g}: {error}"
                break
    if DETECTORS:
        from safefakes.common.config import parse_json_argument
        from safefakes.detect.registry import check_hparams

        for detector in DETECTORS:
            try:
                check_hparams(detector, parse_json_argument(detector_hparams_json(detector), "--hparams"))
            except SafefakesError as error:
                problems[f"detectors.{detector}"] = str(error)
    if GAN_RUNS:
        from safefakes.anonymize.gan.recipe import get_recipe

        for gan in sorted({gan for gan, _ in GAN_RUNS}):
            try:
                get_recipe(gan).parse_hparams(json.loads(json.dumps(gan_hparams_overrides(gan))))
            except SafefakesError as error:
                problems[f"gans.models.{gan}.hparams"] = f"{gan}: {error}"
    return problems


def check_job_parameters():
    """Stop the DAG build, naming each config key, when a job would refuse its parameters; warn and go on when
    safefakes does not import in snakemake's own environment (the jobs then check them when they run). A job
    spawned on a cluster node skips it: the main process checked the same config before submitting it."""
    if not getattr(workflow, "is_main_process", True):
        return
    try:
        problems = job_parameter_problems()
    except ImportError as error:
        logger.warning(f"config: job parameters are not checked before the jobs run (safefakes does not import here: {error})")
        return
    if problems:
        lines = "\n".join(f"  {location}: {message}" for location, message in problems.items())
        raise ValueError(f"config: the jobs would refuse these parameters:\n{lines}")


check_job_parameters()
