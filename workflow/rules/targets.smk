# The default targets: every figure and table of the configured study (the Snakefile's first rule asks for them).


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
