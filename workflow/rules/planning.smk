# Run planning: which jobs a config asks for and the input functions and arguments of the rules.
# Paths are built with pathlib / Snakemake patterns (paths.smk), never by string concatenation.

import json
import shlex

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
    """The anonymization method that makes the dataset ``name`` (a GAN variant, or an external checkpoint's dataset, is made by its GAN)."""
    if name in GAN_EXTERNAL:
        return GAN_EXTERNAL[name][0]
    return GAN_VARIANTS[name][0] if name in GAN_VARIANTS else name


def dataset_checkpoint(name):
    """The generator checkpoint that makes the dataset ``name``, or None for a conventional method."""
    if name in GAN_EXTERNAL:
        return GAN_EXTERNAL[name][1]
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


# GAN training sets, runs and figures (rules in gans.smk).


#: gans.train_sets keys that cut a training set -> the `safefakes train-gan` option that does it.
GAN_TRAIN_SET_CUTS = {
    "max_faces": "--max-faces",
    "min_faces_per_identity": "--min-faces-per-identity",
    "max_identities": "--max-identities",
    "keypoints7": "--keypoints7",  # not a cut: where PIPA / identity-set crops get DeepPrivacy's 7 keypoints (rcnn, dlib, rcnn_or_dlib)
}


def gan_train_set_args(wildcards):
    """`--max-faces N` when the training set is cut (Fig. 7), and the identity selection of an identity set
    (`--min-faces-per-identity N --max-identities N`: CIAGAN's CelebA subset), else nothing."""
    spec = GANS["train_sets"][wildcards.train_set]
    return " ".join(f"{option} {spec[key]}" for key, option in GAN_TRAIN_SET_CUTS.items() if spec.get(key) is not None)


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


def fig7_external_key(name):
    """The rule input name of an external checkpoint's dataset (a Python name; its bar label is in GAN_EXTERNAL)."""
    return name.replace("-", "_")


def fig7_bars():
    """Fig. 7's bars, in order: rule input name -> (bar label, dataset the detector trained on). The original data,
    the GAN trained on each training set, then each externally supplied checkpoint (gans.fig7.external, e.g. FDF*:
    the released 40M-image model) under its configured label."""
    fig7 = GANS["fig7"]
    bars = {"original": ("original", "original")} if "original" in METHODS else {}
    for train_set in fig7["train_sets"]:
        bars[train_set] = (train_set, gan_dataset_name(fig7["gan"], train_set, fig7["iterations"]))
    for name, (_, _, label) in GAN_EXTERNAL.items():
        bars[fig7_external_key(name)] = (label, name)
    return bars


def fig7_gan_bars():
    """Fig. 7's bars of GAN-anonymized data (all but the original's): (bar label, anonymized training set root)."""
    return [(label, anonymized_train_root(dataset)) for key, (label, dataset) in fig7_bars().items() if key != "original"]


def fig7_inputs(wildcards):
    """Fig. 7: the APs of each bar (fig7_bars), by input name."""
    final = gan_figure_iteration(wildcards.detector)
    return {key: evaluation_json(wildcards.detector, dataset, final) for key, (_, dataset) in fig7_bars().items()}


def fig7_anonymized_inputs(wildcards):
    """Fig. 7: each GAN bar's anonymized training set (its manifest.json gives the faces the generator trained on)."""
    return [root for _, root in fig7_gan_bars()]


def fig7_result_args(wildcards, input):
    """`--result LABEL=PATH` of each bar's APs, in bar order: an external checkpoint's bar carries its configured label."""
    return " ".join(f"--result {shlex.quote(f'{label}={input[key]}')}" for key, (label, _) in fig7_bars().items())


def fig7_anonymized_args(wildcards):
    """`--anonymized LABEL=DIR` of each GAN bar: the anonymized training set whose manifest gives its training faces."""
    return " ".join(f"--anonymized {shlex.quote(f'{label}={root}')}" for label, root in fig7_gan_bars())


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


def table2_plan():
    """The anonymized datasets Table II correlates and the one detector iteration their mAPs come from.

    The points are the Fig. 4 methods plus the GAN checkpoints of Figs. 7 and 9 (GAN_VARIANTS, and Fig. 7's
    externally supplied ones, GAN_EXTERNAL), when the
    privacy detector is one of gans.figure_detectors (otherwise the variants have no mAP of that detector,
    and training it on them only for Table II is left out). The variants are evaluated at
    gan_figure_iteration (gans.detector_iteration), and the Fig. 4 methods have that iteration point too,
    so every point is read there: mAPs of different training lengths are never mixed in one correlation.
    Without variants the points are read at the detector's final iteration, Fig. 4's.
    """
    variants = sorted(GAN_VARIANTS) + sorted(GAN_EXTERNAL) if PRIVACY_DETECTOR in FIGURE_DETECTORS else []
    iteration = gan_figure_iteration(PRIVACY_DETECTOR) if variants else final_iteration(PRIVACY_DETECTOR)
    return ANONYMIZED_METHODS + variants, iteration
