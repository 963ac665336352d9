"""Sub-commands of the plots stage: the paper's detector figures and GAN figures."""

from __future__ import annotations

import argparse


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detector", required=True, help="detector name shown in the title (dsfd, tinaface, faster_rcnn)")
    parser.add_argument("--result", action="append", required=True, metavar="METHOD[@ITER]=JSON", help="an evaluation JSON; repeat")
    parser.add_argument("--out-png", required=True, help="figure to write")
    parser.add_argument("--out-csv", required=True, help="the table behind the figure")


def _fig4(args: argparse.Namespace) -> int:
    from safefakes.plots.figures import parse_result_arguments, plot_fig4, results_table

    table = results_table(parse_result_arguments(args.result, default_iterations=args.iterations))
    plot_fig4(table, args.detector, args.out_png, args.out_csv)
    return 0


def _fig6(args: argparse.Namespace) -> int:
    from safefakes.plots.figures import parse_result_arguments, plot_fig6, results_table

    table = results_table(parse_result_arguments(args.result))
    plot_fig6(table, args.detector, args.out_png, args.out_csv)
    return 0


def _detectability(args: argparse.Namespace) -> int:
    from safefakes.plots.figures import parse_result_arguments, plot_detectability, results_table

    table = results_table(parse_result_arguments(args.result, default_iterations=args.iterations))
    plot_detectability(table, args.detector, args.out_png, args.out_csv)
    return 0


def _detectability_pretrained(args: argparse.Namespace) -> int:
    from safefakes.common.errors import SafefakesError
    from safefakes.plots.figures import plot_detectability_pretrained, results_table
    from safefakes.plots.gan_figures import parse_key_values

    grouped: dict[str, dict[tuple[str, int], str]] = {}
    for key, path in parse_key_values(args.result, "--result", "DETECTOR/METHOD", "JSON"):
        detector, _, method = key.partition("/")
        if not detector or not method:
            raise SafefakesError(f"--result {key!r}: expected DETECTOR/METHOD=JSON")
        grouped.setdefault(detector, {})[(method, 0)] = path
    plot_detectability_pretrained({detector: results_table(results) for detector, results in grouped.items()}, args.out_png, args.out_csv)
    return 0


def _face_sizes(args: argparse.Namespace) -> int:
    from safefakes.plots.face_sizes import plot_face_sizes
    from safefakes.plots.gan_figures import parse_key_values

    sources = dict(parse_key_values(args.ground_truth, "--ground-truth", "LABEL", "GT_DIR"))
    table = plot_face_sizes(sources, args.out_png, args.out_csv)
    print(table[["dataset", "difficulty", "faces", "median_px", "median_ratio_to_wider"]].to_string(index=False))
    return 0


def _paper_checks(args: argparse.Namespace) -> int:
    from safefakes.plots.paper_checks import write_paper_checks

    table = write_paper_checks(args.fig4, args.fig6, args.detectability, args.out_csv, args.out_md, args.detector)
    print(table.to_string(index=False))
    return 0


def _pr_curves(args: argparse.Namespace) -> int:
    import pandas as pd

    from safefakes.plots.gan_figures import parse_key_values
    from safefakes.plots.pr_curves import plot_pr_curves

    curves = {label: pd.read_csv(path) for label, path in parse_key_values(args.curves, "--curves", "LABEL", "CSV")}
    plot_pr_curves(curves, args.out, title="WIDER FACE validation")
    return 0


def _fig1(args: argparse.Namespace) -> int:
    from safefakes.common.errors import SafefakesError
    from safefakes.plots.gan_figures import Fig1Config, fig1_panels, parse_key_values, plot_fig1

    if args.faces < 0:
        raise SafefakesError(f"--faces must be >= 0, got {args.faces}")
    config = Fig1Config(faces=args.faces)
    results = parse_key_values(args.result, "--result", "METHOD", "ANON_ROOT")
    image, faces, panels = fig1_panels(args.original, results, args.split, args.image, config)
    plot_fig1(image, faces, panels, args.out_png, config)
    print(f"fig1: {image} ({len(panels)} panels, {len(faces)} zoomed faces) -> {args.out_png}")
    return 0


def _fig7(args: argparse.Namespace) -> int:
    from safefakes.plots.gan_figures import parse_key_values, plot_fig7, training_set_table

    results = parse_key_values(args.result, "--result", "LABEL", "EVAL_JSON")
    anonymized = parse_key_values(args.anonymized or [], "--anonymized", "LABEL", "ANON_DIR")
    plot_fig7(training_set_table(results, anonymized), args.detector, args.out_png, args.out_csv)
    return 0


def _fig9(args: argparse.Namespace) -> int:
    from safefakes.plots.gan_figures import iterations_table, parse_count, parse_key_values, plot_fig9, reference_table

    results = [(parse_count(count), path) for count, path in parse_key_values(args.result, "--result", "ITERATIONS", "EVAL_JSON")]
    references = reference_table(parse_key_values(args.reference or [], "--reference", "LABEL", "EVAL_JSON"))
    plot_fig9(iterations_table(results), references, args.detector, args.out_png, args.out_csv)
    return 0


def _keypoint_coverage(args: argparse.Namespace) -> int:
    from safefakes.plots.gan_figures import coverage_table, parse_key_values, plot_keypoint_coverage

    table = coverage_table(parse_key_values(args.manifest, "--manifest", "METHOD", "MANIFEST_JSON"))
    plot_keypoint_coverage(table, args.out_png, args.out_csv)
    return 0


def _register_gan_figures(subparsers: argparse._SubParsersAction) -> None:
    """Add ``plot-fig1``, ``plot-fig7``, ``plot-fig9`` and ``plot-keypoint-coverage``."""
    fig1 = subparsers.add_parser("plot-fig1", help="Fig. 1 / suppl. Fig. 10: one training image as every method anonymized it")
    fig1.add_argument("--original", required=True, help="the original WIDER-layout root")
    fig1.add_argument("--result", action="append", required=True, metavar="METHOD=ANON_ROOT", help="an anonymized WIDER-layout root; repeat")
    fig1.add_argument("--split", default="train", help="split the image comes from (default train)")
    fig1.add_argument("--image", default=None, help="image name as in bbx_gt (default: the one with most faces of >= 40 px)")
    fig1.add_argument("--faces", type=int, default=3, help="zoomed crops of the image's largest faces (default 3)")
    fig1.add_argument("--out-png", required=True, help="figure to write")
    fig1.set_defaults(func=_fig1)
    fig7 = subparsers.add_parser("plot-fig7", help="Fig. 7: detector AP against the anonymizer's training set")
    fig7.add_argument("--detector", required=True, help="detector name shown in the title (dsfd, tinaface, faster_rcnn)")
    fig7.add_argument("--result", action="append", required=True, metavar="LABEL=EVAL_JSON", help="an evaluation JSON; repeat, in bar order")
    fig7.add_argument(
        "--anonymized",
        action="append",
        metavar="LABEL=ANON_DIR",
        help="a label's anonymized training set: its manifest.json gives the faces the GAN trained on; repeat",
    )
    fig7.add_argument("--out-png", required=True, help="figure to write")
    fig7.add_argument("--out-csv", required=True, help="the table behind the figure")
    fig7.set_defaults(func=_fig7)
    fig9 = subparsers.add_parser("plot-fig9", help="Fig. 9: detector AP against the anonymizer's training iterations")
    fig9.add_argument("--detector", required=True, help="detector name shown in the title (dsfd, tinaface, faster_rcnn)")
    fig9.add_argument("--result", action="append", required=True, metavar="ITERATIONS=EVAL_JSON", help="iterations (800k, 4M, 40M) and evaluation JSON; repeat")
    fig9.add_argument("--reference", action="append", metavar="LABEL=EVAL_JSON", help="a reference run drawn as dashed lines; repeat")
    fig9.add_argument("--out-png", required=True, help="figure to write")
    fig9.add_argument("--out-csv", required=True, help="the table behind the figure")
    fig9.set_defaults(func=_fig9)
    coverage = subparsers.add_parser("plot-keypoint-coverage", help="share of faces per size bin by landmark source, per GAN method")
    coverage.add_argument("--manifest", action="append", required=True, metavar="METHOD=MANIFEST_JSON", help="a GAN anonymization manifest; repeat")
    coverage.add_argument("--out-png", required=True, help="figure to write")
    coverage.add_argument("--out-csv", required=True, help="the table behind the figure")
    coverage.set_defaults(func=_keypoint_coverage)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``plot-fig4``, ``plot-fig6``, ``plot-detectability``, ``plot-face-sizes``, ``plot-pr``, ``paper-checks`` and the GAN
    figures (``plot-fig1``, ``plot-fig7``, ``plot-fig9``, ``plot-keypoint-coverage``)."""
    fig4 = subparsers.add_parser("plot-fig4", help="Fig. 4: AP per difficulty for each anonymization method")
    _add_common(fig4)
    fig4.add_argument("--iterations", type=int, default=None, help="training iterations of METHOD=JSON entries")
    fig4.set_defaults(func=_fig4)
    fig6 = subparsers.add_parser("plot-fig6", help="Fig. 6: AP against detector training iterations")
    _add_common(fig6)
    fig6.set_defaults(func=_fig6)
    detectability = subparsers.add_parser(
        "plot-detectability", help="a detector trained on original data, AP on the validation set as each method anonymized it"
    )
    _add_common(detectability)
    detectability.add_argument("--iterations", type=int, default=None, help="training iterations of the detector")
    detectability.set_defaults(func=_detectability)
    pretrained = subparsers.add_parser(
        "plot-detectability-pretrained", help="off-the-shelf detectors' AP on the validation images as each method anonymized them"
    )
    pretrained.add_argument("--result", action="append", required=True, metavar="DETECTOR/METHOD=JSON", help="an evaluation JSON; repeat")
    pretrained.add_argument("--out-png", required=True, help="figure to write")
    pretrained.add_argument("--out-csv", required=True, help="the table behind the figure")
    pretrained.set_defaults(func=_detectability_pretrained)
    face_sizes = subparsers.add_parser("plot-face-sizes", help="supplement Fig. 1: face size per difficulty, medians written on it")
    face_sizes.add_argument(
        "--ground-truth",
        action="append",
        required=True,
        metavar="LABEL=GT_DIR",
        help="a folder with wider_face_val.mat and wider_{easy,medium,hard}_val.mat; repeat",
    )
    face_sizes.add_argument("--out-png", required=True, help="figure to write")
    face_sizes.add_argument("--out-csv", required=True, help="the table behind the figure")
    face_sizes.set_defaults(func=_face_sizes)
    pr = subparsers.add_parser("plot-pr", help="PR curves per setting from the CSVs 'safefakes evaluate --curves' writes")
    pr.add_argument("--curves", action="append", required=True, metavar="LABEL=CSV", help="a PR-curve CSV and its legend label; repeat to compare")
    pr.add_argument("--out", required=True, help="figure to write")
    pr.set_defaults(func=_pr_curves)
    checks = subparsers.add_parser("paper-checks", help="the paper's findings checked on a run's Fig. 4, Fig. 6 and detectability tables")
    checks.add_argument("--detector", required=True, help="the detector the tables belong to")
    checks.add_argument("--fig4", required=True, help="fig4_{detector}.csv")
    checks.add_argument("--fig6", required=True, help="fig6_{detector}.csv")
    checks.add_argument("--detectability", default=None, help="detectability_{detector}.csv (optional)")
    checks.add_argument("--out-csv", required=True, help="the findings table")
    checks.add_argument("--out-md", required=True, help="the same table in Markdown")
    checks.set_defaults(func=_paper_checks)
    _register_gan_figures(subparsers)
