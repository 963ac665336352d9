# Configuration and constants: the config is validated against the schema, made absolute where a preset moves
# to its own workdir, and read into the constants and wildcard constraints every rule file uses.
# Run planning is in planning.smk, result paths in paths.smk, targets in targets.smk, config checks in checks.smk.

import re
import sys
from pathlib import Path

from snakemake.utils import validate

# The workflow reads the package's shared names from this checkout's src/, the code its jobs run (see the
# Snakefile's shell prefix); the modules imported here are plain Python, without numpy, OpenCV or torch.
if str(Path(workflow.basedir) / "src") not in sys.path:
    sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from safefakes.anonymize import GAN_METHODS as GAN_NAMES  # every GAN the package trains (GAN_METHODS below: the configured ones)
from safefakes.data.wider import WIDER_TRAIN_IMAGES
from safefakes.detect.hparams import TrainConfig, iterations_for_epochs
from safefakes.evaluate import SCENARIOS


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
    external = (config.get("gans", {}).get("fig7") or {}).get("external") or {}
    for label, path in external.items():
        external[label] = str(Path(path).resolve())


# A preset may keep its results apart (config/real_val.yaml: runs/real_val/results/...).
if config.get("workdir"):
    _absolute_config_paths()

    workdir: config["workdir"]


METHODS = list(config["anonymize"]["methods"])
DETECTORS = list(config["detectors"])
SOURCE = config["dataset"]["source"]
#: Keys of a `detectors` entry that steer the workflow; the others are hyper-parameter sections.
DETECTOR_PLAN_KEYS = ("iterations", "epochs", "methods")


def detector_entry(detector):
    """The config entry of one detector (an empty mapping for `null`)."""
    return config["detectors"][detector] or {}


def detector_training_images():
    """Images of the detectors' training split, which `epochs` count: WIDER FACE's, or the synthetic set's."""
    return config["dataset"]["synthetic"]["train_images"] if SOURCE == "synthetic" else WIDER_TRAIN_IMAGES


def detector_batch_size(detector):
    """The detector's training batch: its `train.batch_size` override, else the paper's (every detector's is the
    shared TrainConfig default; tests/detect/test_detect_faster_rcnn.py checks that they agree)."""
    return (detector_entry(detector).get("train") or {}).get("batch_size", TrainConfig().batch_size)


def detector_iterations(detector):
    """The detector's Fig. 6 iteration points, sorted: its own `iterations`, or its `epochs` in iterations (over
    detector_training_images() at its batch size, counted as training counts them, so an epoch-based learning-rate
    schedule decays on epoch boundaries), else `training.iterations`."""
    entry = detector_entry(detector)
    if "epochs" in entry:
        images, batch_size = detector_training_images(), detector_batch_size(detector)
        return sorted({iterations_for_epochs(epochs, images, batch_size) for epochs in entry["epochs"]})
    return sorted(entry.get("iterations", config["training"]["iterations"]))


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


def external_dataset_name(gan, label):
    """The anonymized dataset made by an externally supplied checkpoint labelled ``label`` in Fig. 7:
    ``GAN-external-SLUG`` (``FDF*`` -> ``deepprivacy-external-fdf_star``)."""
    slug = re.sub(r"[^a-z0-9]+", "_", label.lower().replace("*", "_star")).strip("_")
    if not slug:
        raise ValueError(f"config: gans.fig7.external label {label!r} needs a letter or digit")
    return f"{gan}-external-{slug}"


def _external_gan_datasets():
    """Fig. 7's externally supplied checkpoints (gans.fig7.external: label -> file): dataset name -> (gan, file, label).
    A configured file that is missing stops the DAG build here: the workflow does not make it."""
    fig7 = GANS.get("fig7") or {}
    datasets = {}
    for label, path in (fig7.get("external") or {}).items():
        name = external_dataset_name(fig7["gan"], label)
        if name in datasets:
            raise ValueError(f"config: gans.fig7.external labels {datasets[name][2]!r} and {label!r} give the same dataset name {name}")
        if label in fig7["train_sets"] or label == "original":
            raise ValueError(f"config: gans.fig7.external label {label!r} is already a Fig. 7 bar (a training set or original)")
        generator_file = Path(path).resolve()
        if not generator_file.is_file():
            raise ValueError(
                f"config: gans.fig7.external.{label}: checkpoint {path} not found ({generator_file}); put the {fig7['gan']} generator "
                f"checkpoint there (a `safefakes train-gan` iter_N.pt) or remove the entry"
            )
        datasets[name] = (fig7["gan"], str(generator_file), label)
    return datasets


#: Anonymized datasets made by externally supplied generator checkpoints (Fig. 7's FDF* bar): name -> (gan, file, label).
GAN_EXTERNAL = _external_gan_datasets()
#: Every anonymized training set a detector may be trained on.
DATASETS = METHODS + sorted(GAN_VARIANTS) + sorted(GAN_EXTERNAL)
FIGURE_DETECTORS = GANS.get("figure_detectors", [PRIVACY_DETECTOR] if PRIVACY_DETECTOR else [])

DETECTABILITY_DETECTORS = config.get("detectability", {}).get("detectors", [])
#: Off-the-shelf detectors (weights inside pip packages) scored on every method's anonymized validation split.
PRETRAINED_DETECTORS = config.get("detectability", {}).get("pretrained", [])
for _detector in [*([PRIVACY_DETECTOR] if PRIVACY_DETECTOR else []), *DETECTABILITY_DETECTORS, *GANS.get("figure_detectors", [])]:
    if _detector not in DETECTORS:
        raise ValueError(f"config: {_detector} is named in privacy, detectability or gans.figure_detectors but not in detectors")
    if detector_methods(_detector) != METHODS:
        raise ValueError(f"config: detectors.{_detector}.methods must list every method: Table II, the detectability "
                         "and the GAN figures read all of them")


# One environment for every rule, used with `--sdm conda` (path relative to the rule files).
CONDA_ENV = "../../envs/safefakes.yaml"


wildcard_constraints:
    method="|".join(re.escape(name) for name in DATASETS),
    gan="|".join(GAN_NAMES),
    train_set=r"[a-z][a-z0-9_]*",
    detector="|".join(DETECTORS) or "(?!)",  # no detector: the wildcard matches nothing
    iterations=r"\d+",
    strength=r"default|\d+(\.\d+)?",
    scenario="|".join(SCENARIOS),
    pretrained="centerface|mtcnn|dlib_hog|dlib_cnn",
