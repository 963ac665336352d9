# Shared helpers: config validation, constants, wildcard constraints, run planning, input functions, targets
# (result paths are named in paths.smk).
# Paths are built with pathlib / Snakemake patterns, never by string concatenation.

import json
import re
import shlex
import sys
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")


def _absolute_config_paths():
    """Paths in the config are relative to where snakemake starts: make them absolute before `workdir` moves there."""
    wider = config["dataset"].get("wider", {})
    for key in ("root", "ground_truth"):
        if wider.get(key):
            wider[key] = str(Path(wider[key]).resolve())
    if config["dataset"].get("reference_ground_truth"):
        config["dataset"]["reference_ground_truth"] = str(Path(config["dataset"]["reference_ground_truth"]).resolve())
    reid = config["privacy"]["reid"]
    if reid["identities"] != "synthetic":
        reid["identities"] = str(Path(reid["identities"]).resolve())
    for spec in config.get("gans", {}).get("train_sets", {}).values():
        if "path" in spec:
            spec["path"] = str(Path(spec["path"]).resolve())


# A preset may keep its results apart (config/real_val.yaml: runs/real_val/results/...).
if config.get("workdir"):
    _absolute_config_paths()

    workdir: config["workdir"]


METHODS = list(config["anonymize"]["methods"])
DETECTORS = list(config["detectors"])
SOURCE = config["dataset"]["source"]
#: Keys of a `detectors` entry that steer the workflow; the others are hyper-parameter sections.
DETECTOR_PLAN_KEYS = ("iterations", "methods")


def detector_entry(detector):
    """The config entry of one detector (an empty mapping for `null`)."""
    return config["detectors"][detector] or {}


def detector_iterations(detector):
    """The detector's Fig. 6 iteration points (its own `iterations`, else `training.iterations`), sorted."""
    return sorted(detector_entry(detector).get("iterations", config["training"]["iterations"]))


def final_iteration(detector):
    """The iteration point Fig. 4 reads: the detector's last one."""
    return detector_iterations(detector)[-1]


def detector_methods(detector):
    """The methods a detector is trained on: its own `methods` (a subset of anonymize.methods), else all."""
    methods = detector_entry(detector).get("methods", METHODS)
    unknown = [method for method in methods if method not in METHODS]
    if unknown:
        raise ValueError(f"config: detectors.{detector}.methods names {', '.join(unknown)}, not in anonymize.methods")
    return [method for method in METHODS if method in methods]


#: GAN anonymizers this workflow trains (their training rules are in gans.smk).
GAN_NAMES = ("deepprivacy", "ciagan", "sun2018")
#: Methods that replace faces with a generator, told apart in Table II.
GAN_METHODS = [method for method in METHODS if method in GAN_NAMES]
GANS = config.get("gans", {})
#: Table II correlates over the anonymized datasets, not the untouched one.
ANONYMIZED_METHODS = [method for method in METHODS if method != "original"]
#: The detector whose mAP Table II, the frontier and the findings table read (None: no detector is trained).
PRIVACY_DETECTOR = config["privacy"].get("detector")
if PRIVACY_DETECTOR is None and DETECTORS:
    raise ValueError("config: privacy.detector is required when detectors are trained")
if PRIVACY_DETECTOR is not None and PRIVACY_DETECTOR not in DETECTORS:
    raise ValueError(f"config: privacy.detector {PRIVACY_DETECTOR} is not in detectors")
#: The split whose anonymized images the image metrics and Fig. 1 read.
IMAGE_SPLIT = config["privacy"]["metrics"].get("split", "train")
SCENARIOS = ("naive", "reverse", "parrot")


def _gan_runs():
    """GAN training runs and the checkpoints each must write: {(gan, train_set): sorted iteration points}."""
    runs = {}
    for gan in GAN_METHODS:
        model = GANS.get("models", {}).get(gan)
        if model is None:
            raise ValueError(f"config: anonymize.methods has {gan} but gans.models.{gan} is missing (its training set and iterations)")
        runs.setdefault((gan, model["train_set"]), set()).add(model["iterations"])
    fig7 = GANS.get("fig7")
    if fig7:
        for train_set in fig7["train_sets"]:
            runs.setdefault((fig7["gan"], train_set), set()).add(fig7["iterations"])
    fig9 = GANS.get("fig9")
    if fig9:
        runs.setdefault((fig9["gan"], fig9["train_set"]), set()).update(fig9["iterations"])
    for gan, train_set in runs:
        if train_set not in GANS.get("train_sets", {}):
            raise ValueError(f"config: GAN training set {train_set!r} (used by {gan}) is not in gans.train_sets")
    return {run: sorted(points) for run, points in runs.items()}


GAN_RUNS = _gan_runs()


def gan_dataset_name(gan, train_set, iterations):
    """The anonymized dataset made by one GAN checkpoint: the GAN's own name for its main checkpoint
    (Fig. 4), ``GAN-TRAINSET-ITERATIONS`` for the Fig. 7 / Fig. 9 variants."""
    model = GANS.get("models", {}).get(gan, {})
    if gan in METHODS and model.get("train_set") == train_set and model.get("iterations") == iterations:
        return gan
    return f"{gan}-{train_set}-{iterations}"


def _gan_variants():
    """Anonymized datasets of the Fig. 7 / Fig. 9 checkpoints that are not a Fig. 4 method: name -> (gan, train_set, iterations)."""
    variants = {}
    for (gan, train_set), points in GAN_RUNS.items():
        for iterations in points:
            name = gan_dataset_name(gan, train_set, iterations)
            if name not in METHODS:
                variants[name] = (gan, train_set, iterations)
    return variants


GAN_VARIANTS = _gan_variants()
#: Every anonymized training set a detector may be trained on.
DATASETS = METHODS + sorted(GAN_VARIANTS)
FIGURE_DETECTORS = GANS.get("figure_detectors", [PRIVACY_DETECTOR] if PRIVACY_DETECTOR else [])


wildcard_constraints:
    method="|".join(re.escape(name) for name in DATASETS),
    gan="|".join(GAN_NAMES),
    train_set=r"[a-z][a-z0-9_]*",
    detector="|".join(DETECTORS) or "(?!)",  # no detector: the wildcard matches nothing
    iterations=r"\d+",
    strength=r"default|\d+(\.\d+)?",
    scenario="|".join(SCENARIOS),
    pretrained="centerface|mtcnn|dlib_hog|dlib_cnn",






def wider_archive_args():
    """`--archive/--checksum/--member` arguments of `safefakes fetch-wider` from the config."""
    args = []
    for name, spec in config["dataset"]["wider"].get("archives", {}).items():
        args += ["--archive", f"{name}={spec['url']}"]
        if spec.get("checksum"):
            args += ["--checksum", f"{name}={spec['checksum']}"]
        args += [item for member in spec.get("members", []) for item in ("--member", f"{name}={member}")]
    return " ".join(shlex.quote(arg) for arg in args)


def dataset_method(name):
    """The anonymization method that makes the dataset ``name`` (a GAN variant is made by its GAN)."""
    return GAN_VARIANTS[name][0] if name in GAN_VARIANTS else name


def dataset_checkpoint(name):
    """The generator checkpoint that makes the dataset ``name``, or None for a conventional method."""
    if name in GAN_VARIANTS:
        gan, train_set, iterations = GAN_VARIANTS[name]
        return gan_checkpoint_path(gan, train_set, iterations)
    if name in GAN_METHODS:
        model = GANS["models"][name]
        return gan_checkpoint_path(name, model["train_set"], model["iterations"])
    return None




def method_params(name):
    """Parameters of the method that makes the dataset ``name`` (anonymize.methods, else the GAN's `params`)."""
    method = dataset_method(name)
    params = config["anonymize"]["methods"].get(method)
    if params is None and method in GAN_NAMES:
        params = GANS.get("models", {}).get(method, {}).get("params")
    return params or {}


def method_param_assignments(name):
    """The `KEY=VALUE` strings the jobs of dataset ``name`` pass as `--param` (checked by check_job_parameters)."""
    return [f"{key}={value}" for key, value in sorted(method_params(name).items())]


def method_param_args(wildcards):
    """`--param KEY=VALUE` arguments of one anonymization method (and `--checkpoint` for a GAN), shell-quoted."""
    args = [f"--param {shlex.quote(assignment)}" for assignment in method_param_assignments(wildcards.method)]
    generator_checkpoint = dataset_checkpoint(wildcards.method)
    if generator_checkpoint is not None:
        args.append(f"--checkpoint {shlex.quote(generator_checkpoint)}")
    return " ".join(args)


def anonymize_checkpoint_input(wildcards):
    """The generator checkpoint a GAN dataset needs (none for conventional methods)."""
    generator_checkpoint = dataset_checkpoint(wildcards.method)
    return [] if generator_checkpoint is None else [generator_checkpoint]


def detector_hparams_json(detector):
    """The detector's hyper-parameter overrides (its entry less the plan keys), as the JSON `--hparams` gets."""
    sections = {key: value for key, value in detector_entry(detector).items() if key not in DETECTOR_PLAN_KEYS}
    return json.dumps(sections, sort_keys=True)


def detector_hparams(wildcards):
    """The detector's hyper-parameter overrides (merged onto its paper values), as quoted JSON."""
    return shlex.quote(detector_hparams_json(wildcards.detector))




def previous_detector_checkpoint(wildcards):
    """The same run's previous iteration point: its job leaves the resumable state this one continues from."""
    earlier = [n for n in detector_iterations(wildcards.detector) if n < int(wildcards.iterations)]
    return [detector_checkpoint(wildcards.detector, wildcards.method, earlier[-1])] if earlier else []


def detector_run_length(wildcards):
    """The length of the whole training run the checkpoint belongs to (its schedule and identity)."""
    points = detector_iterations(wildcards.detector)
    return max(points) if int(wildcards.iterations) in points else int(wildcards.iterations)






def reid_runs():
    """(summary, scores) files of every re-identification job: each method at its default, plus the sweeps."""
    runs = [(method, "default") for method in METHODS]
    for method, strengths in config["privacy"]["reid"]["sweeps"].items():
        if method in METHODS:
            runs += [(method, f"{strength:g}") for strength in strengths]
    return [
        (PATHS["reid_summary"].format(method=method, strength=strength), PATHS["reid_scores"].format(method=method, strength=strength))
        for method, strength in runs
    ]


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
    """Final-iteration APs of every method the detector is trained on, in METHODS order (the frontier's labels)."""
    return [evaluation_json(wildcards.detector, method, final_iteration(wildcards.detector)) for method in detector_methods(wildcards.detector)]


def all_targets():
    """Every figure and table of the configured study."""
    per_detector = ["fig4_png", "fig4_csv", "fig6_png", "fig6_csv", "frontier"]
    targets = [PATHS[name].format(detector=detector) for detector in DETECTORS for name in per_detector]
    targets += [PATHS[name].format(detector=detector) for detector in DETECTABILITY_DETECTORS for name in ("detectability_png", "detectability_csv")]
    if PRETRAINED_DETECTORS:
        targets += [PATHS["detectability_pretrained_png"], PATHS["detectability_pretrained_csv"]]
    if "original" in METHODS and PRIVACY_DETECTOR:
        targets += [PATHS[name].format(detector=PRIVACY_DETECTOR) for name in ("paper_checks_csv", "paper_checks_md")]
    if SOURCE == "synthetic" or config["dataset"].get("wider", {}).get("ground_truth"):
        targets += [PATHS["face_sizes_png"], PATHS["face_sizes_csv"]]
    targets += [PATHS["det_curve"].format(scenario=scenario) for scenario in SCENARIOS]
    targets.append(PATHS["fig1"])
    if GAN_METHODS:
        targets += [PATHS["coverage_png"], PATHS["coverage_csv"]]
    for figure in ("fig7", "fig9"):
        if GANS.get(figure):
            targets += [PATHS[f"{figure}_{ext}"].format(detector=detector) for detector in FIGURE_DETECTORS for ext in ("png", "csv")]
    targets.append(PATHS["reid_table"])
    if PRIVACY_DETECTOR:
        targets += [PATHS[name] for name in ("table2_csv", "table2_png", "table2_scatter")]
    else:
        targets += [PATHS["metrics"].format(method=method) for method in ANONYMIZED_METHODS]
    return targets


def grows_with_attempt(base):
    """A resource callable that grows linearly with the retry attempt (for --retries)."""

    def resource(wildcards, attempt):
        return base * attempt

    return resource


def fig4_inputs(wildcards):
    """APs of every method the detector is trained on, at its final training iteration."""
    final = final_iteration(wildcards.detector)
    return {method: evaluation_json(wildcards.detector, method, final) for method in detector_methods(wildcards.detector)}


def fig6_inputs(wildcards):
    """APs of every method the detector is trained on, at every training iteration point."""
    return {
        f"{method}@{iterations}": evaluation_json(wildcards.detector, method, iterations)
        for method in detector_methods(wildcards.detector)
        for iterations in detector_iterations(wildcards.detector)
    }


DETECTABILITY_DETECTORS = config.get("detectability", {}).get("detectors", [])
#: Off-the-shelf detectors (weights inside pip packages) scored on every method's anonymized validation split.
PRETRAINED_DETECTORS = config.get("detectability", {}).get("pretrained", [])
for _detector in [*([PRIVACY_DETECTOR] if PRIVACY_DETECTOR else []), *DETECTABILITY_DETECTORS, *GANS.get("figure_detectors", [])]:
    if _detector not in DETECTORS:
        raise ValueError(f"config: {_detector} is named in privacy, detectability or gans.figure_detectors but not in detectors")
    if detector_methods(_detector) != METHODS:
        raise ValueError(f"config: detectors.{_detector}.methods must list every method: Table II, the detectability "
                         "and the GAN figures read all of them")






def face_size_sources():
    """`--ground-truth LABEL=DIR` of the validation ground truth in use (the synthetic one, or real WIDER's),
    plus `dataset.reference_ground_truth` (e.g. the official WIDER val .mat folder) when the config names one."""
    label = "synthetic val" if SOURCE == "synthetic" else "WIDER val"
    sources = [f"{label}={ground_truth_dir()}"]
    reference = config["dataset"].get("reference_ground_truth")
    if reference:
        sources.append(f"reference={reference}")
    return " ".join(f"--ground-truth {shlex.quote(source)}" for source in sources)


def detectability_inputs(wildcards):
    """Per method, the original-trained detector's APs on that method's anonymized validation split."""
    inputs = {}
    for method in METHODS:
        inputs[method] = evaluation_json(wildcards.detector, "original", final_iteration(wildcards.detector)) if method == "original" \
            else detectability_json(wildcards.detector, method)
    return inputs


def pretrained_detectability_inputs(wildcards):
    """Per off-the-shelf detector and method, its APs on that method's anonymized validation split."""
    return {
        f"{pretrained}/{method}": PATHS["pretrained_detectability"].format(pretrained=pretrained, method=method)
        for pretrained in PRETRAINED_DETECTORS
        for method in METHODS
    }


def anonymized_images(method):
    """The anonymized copy of IMAGE_SPLIT that the image metrics and Fig. 1 read."""
    return PATHS["anonymized" if IMAGE_SPLIT == "train" else "anonymized_val"].format(method=method)


def result_args(wildcards, input):
    """`--result KEY=PATH` arguments from the rule's named inputs."""
    return " ".join(f"--result {shlex.quote(f'{key}={path}')}" for key, path in input.items())


# One environment for every rule, used with `--sdm conda` (path relative to the rule files).
CONDA_ENV = "../../envs/safefakes.yaml"


# GAN training sets, runs and figures (rules in gans.smk).




def gan_max_faces_arg(wildcards):
    """`--max-faces N` when the training set is cut (Fig. 7), else nothing."""
    max_faces = GANS["train_sets"][wildcards.train_set].get("max_faces")
    return "" if max_faces is None else f"--max-faces {max_faces}"


def previous_gan_checkpoint(wildcards):
    """The same run's previous iteration point: its job leaves the resumable state this one continues from."""
    points = GAN_RUNS[(wildcards.gan, wildcards.train_set)]
    earlier = [n for n in points if n < int(wildcards.iterations)]
    return [gan_checkpoint_path(wildcards.gan, wildcards.train_set, earlier[-1])] if earlier else []


def gan_hparams_overrides(gan):
    """The GAN's hyper-parameter overrides from `gans.models` (merged onto its paper values by `safefakes train-gan`)."""
    return GANS["models"].get(gan, {}).get("hparams", {})


def gan_hparams(wildcards):
    """The GAN's hyper-parameter overrides (merged onto its paper values), as quoted JSON."""
    return shlex.quote(json.dumps(gan_hparams_overrides(wildcards.gan), sort_keys=True))


def gan_figure_iteration(detector):
    """The detector iteration point Figs. 7 and 9 compare at: `gans.detector_iteration`, else the final one."""
    point = GANS.get("detector_iteration", final_iteration(detector))
    if point not in detector_iterations(detector):
        raise ValueError(f"config: gans.detector_iteration {point} is not an iteration point of {detector} ({detector_iterations(detector)})")
    return point


def fig7_inputs(wildcards):
    """Fig. 7: APs after training on data anonymized by the GAN trained on each training set, plus original data."""
    fig7 = GANS["fig7"]
    final = gan_figure_iteration(wildcards.detector)
    inputs = {"original": evaluation_json(wildcards.detector, "original", final)} if "original" in METHODS else {}
    for train_set in fig7["train_sets"]:
        name = gan_dataset_name(fig7["gan"], train_set, fig7["iterations"])
        inputs[train_set] = evaluation_json(wildcards.detector, name, final)
    return inputs


def fig7_face_args(wildcards):
    """`--faces LABEL=N` for the training sets cut to a size."""
    sets = GANS["train_sets"]
    return " ".join(
        f"--faces {name}={sets[name]['max_faces']}" for name in GANS["fig7"]["train_sets"] if sets[name].get("max_faces") is not None
    )


def fig9_inputs(wildcards):
    """Fig. 9: APs after training on data anonymized by the GAN's checkpoint at each iteration point."""
    fig9 = GANS["fig9"]
    return {
        str(n): evaluation_json(wildcards.detector, gan_dataset_name(fig9["gan"], fig9["train_set"], n), gan_figure_iteration(wildcards.detector))
        for n in fig9["iterations"]
    }


def fig9_reference_args(wildcards):
    """`--reference original=...` when the original data is part of the study."""
    if "original" not in METHODS:
        return ""
    return f"--reference original={shlex.quote(evaluation_json(wildcards.detector, 'original', gan_figure_iteration(wildcards.detector)))}"


# Job parameters are checked while the DAG is built, by the code of the commands the jobs run, so a typo in
# config.yaml stops `snakemake -n` instead of a job queued on a cluster.


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
    source = str(Path(workflow.basedir) / "src")
    if source not in sys.path:
        sys.path.insert(0, source)  # the jobs run this checkout's src/ (see the Snakefile's shell prefix)
    try:
        problems = job_parameter_problems()
    except ImportError as error:
        logger.warning(f"config: job parameters are not checked before the jobs run (safefakes does not import here: {error})")
        return
    if problems:
        lines = "\n".join(f"  {location}: {message}" for location, message in problems.items())
        raise ValueError(f"config: the jobs would refuse these parameters:\n{lines}")


check_job_parameters()
