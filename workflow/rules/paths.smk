# Where every result lands: each path pattern is named once here, and rules, input functions and targets
# refer to it by name (PATHS["..."], expanded with Snakemake's expand or str.format). Logs and benchmark files
# are named by their own rule.

PATHS = {
    "synthetic": "results/data/synthetic",
    "gan_synthetic": "results/data/gan_synthetic/{synthetic_set}",
    "identities": "results/data/identities",
    "anonymized": "results/anonymized/{method}",
    "anonymized_val": "results/anonymized_val/{method}",
    "gan_checkpoint": "results/gans/{gan}/{train_set}/iter_{iterations}.pt",
    "gan_state": "results/gan_state/{gan}/{train_set}",
    "detector_checkpoint": "results/models/{detector}/{method}/iter_{iterations}.pt",
    "train_state": "results/train_state/{detector}/{method}",
    "predictions": "results/predictions/{detector}/{method}/iter_{iterations}",
    "evaluation": "results/eval/{detector}/{method}/iter_{iterations}.json",
    "pr_curves": "results/eval/{detector}/{method}/iter_{iterations}_pr.csv",
    "pr_plot": "results/eval/{detector}/{method}/iter_{iterations}_pr.png",
    "detectability": "results/detectability/{detector}/{method}.json",
    "detectability_predictions": "results/detectability/{detector}/{method}_predictions",
    "pretrained_detectability": "results/detectability_pretrained/{pretrained}/{method}.json",
    "pretrained_predictions": "results/detectability_pretrained/{pretrained}/{method}_predictions",
    "detectability_pretrained_png": "results/figures/detectability_pretrained.png",
    "detectability_pretrained_csv": "results/figures/detectability_pretrained.csv",
    "metrics": "results/metrics/{method}.json",
    "reid_summary": "results/reid/{method}/{strength}.csv",
    "reid_scores": "results/reid/{method}/{strength}_scores.csv",
    "reid_table": "results/tables/reid.csv",
    "table2_csv": "results/tables/table2_metric_correlation.csv",
    "table2_points": "results/tables/table2_points.csv",
    "table2_png": "results/tables/table2_metric_correlation.png",
    "table2_scatter": "results/figures/table2_scatter.png",
    "paper_checks_csv": "results/tables/paper_checks_{detector}.csv",
    "paper_checks_md": "results/tables/paper_checks_{detector}.md",
    "fig1": "results/figures/fig1_examples.png",
    "fig4_png": "results/figures/fig4_{detector}.png",
    "fig4_csv": "results/figures/fig4_{detector}.csv",
    "fig6_png": "results/figures/fig6_{detector}.png",
    "fig6_csv": "results/figures/fig6_{detector}.csv",
    "fig7_png": "results/figures/fig7_{detector}.png",
    "fig7_csv": "results/figures/fig7_{detector}.csv",
    "fig9_png": "results/figures/fig9_{detector}.png",
    "fig9_csv": "results/figures/fig9_{detector}.csv",
    "detectability_png": "results/figures/detectability_{detector}.png",
    "detectability_csv": "results/figures/detectability_{detector}.csv",
    "face_sizes_png": "results/figures/face_sizes.png",
    "face_sizes_csv": "results/figures/face_sizes.csv",
    "coverage_png": "results/figures/keypoint_coverage.png",
    "coverage_csv": "results/figures/keypoint_coverage.csv",
    "det_curve": "results/figures/det_{scenario}.png",
    "frontier": "results/figures/privacy_utility_{detector}.png",
}


def original_root():
    """The untouched dataset in the official WIDER FACE layout (synthetic or real)."""
    if SOURCE == "synthetic":
        return PATHS["synthetic"]
    return config["dataset"]["wider"]["root"]


def ground_truth_dir():
    """The folder with wider_face_val.mat and wider_{easy,medium,hard}_val.mat."""
    if SOURCE == "synthetic":
        return str(Path(original_root()) / "ground_truth")
    return config["dataset"]["wider"]["ground_truth"]


def gan_checkpoint_path(gan, train_set, iterations):
    """Where one GAN checkpoint lands."""
    return PATHS["gan_checkpoint"].format(gan=gan, train_set=train_set, iterations=iterations)


def detector_checkpoint(detector, method, iterations):
    """Where one detector checkpoint lands."""
    return PATHS["detector_checkpoint"].format(detector=detector, method=method, iterations=iterations)


def evaluation_json(detector, method, iterations):
    """Where the APs of one trained detector land."""
    return PATHS["evaluation"].format(detector=detector, method=method, iterations=iterations)


def detectability_json(detector, method):
    """APs of the detector trained on original data, on the validation split anonymized by ``method``."""
    return PATHS["detectability"].format(detector=detector, method=method)


def anonymized_train_root(method):
    """The training split as ``method`` anonymized it (a GAN's manifest.json records its generator checkpoint)."""
    return PATHS["anonymized"].format(method=method)


def anonymized_val_root(method):
    """The validation split as ``method`` left it (the untouched data for `original`)."""
    return original_root() if method == "original" else PATHS["anonymized_val"].format(method=method)


def identities_root():
    """The identity set of the re-identification test."""
    identities = config["privacy"]["reid"]["identities"]
    return PATHS["identities"] if identities == "synthetic" else identities


def gan_train_set_path(wildcards):
    """The folder a GAN training set reads: a synthetic set made by `gan_synthetic_set`, or a configured path."""
    spec = GANS["train_sets"][wildcards.train_set]
    return PATHS["gan_synthetic"].format(synthetic_set=spec["synthetic"]) if "synthetic" in spec else spec["path"]
