"""Sub-commands that draw the privacy side: ``plot-table2`` (Table II as an image, metric-vs-mAP scatter),
``plot-det`` (DET curves) and ``plot-frontier`` (privacy-utility frontier). The numbers come from the
evaluate stage; these commands only draw them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from safefakes.common.errors import SafefakesError
from safefakes.evaluate.privacy_cli import SCENARIOS, add_table2_inputs

if TYPE_CHECKING:
    import pandas as pd


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``plot-table2``, ``plot-det`` and ``plot-frontier``."""
    _register_plot_table2(subparsers)
    _register_plot_det(subparsers)
    _register_plot_frontier(subparsers)


def _register_plot_table2(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plot-table2", help="Table II as an image and metric-vs-mAP scatter plots")
    add_table2_inputs(parser)
    parser.add_argument("--out-png", required=True, type=Path, help="the table rendered as an image")
    parser.add_argument("--scatter-png", type=Path, help="metric vs mAP scatter plots")
    parser.set_defaults(func=_run_plot_table2)


def _run_plot_table2(args: argparse.Namespace) -> int:
    from safefakes.evaluate.privacy_cli import table2_tables
    from safefakes.plots.privacy import plot_metric_scatter, render_correlation_table

    table, correlations = table2_tables(args)
    render_correlation_table(correlations, args.out_png)
    if args.scatter_png:
        plot_metric_scatter(table, args.scatter_png, correlations)
    return 0


def _register_plot_det(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plot-det", help="DET curves of one scenario from re-identification score files")
    parser.add_argument("--scores", nargs="+", required=True, type=Path, help="score CSVs written by 'safefakes reid'")
    parser.add_argument("--scenario", default="naive", choices=SCENARIOS)
    parser.add_argument("--out", required=True, type=Path, help="PNG, e.g. det_naive.png")
    parser.set_defaults(func=_run_plot_det)


def _run_plot_det(args: argparse.Namespace) -> int:
    import numpy as np

    from safefakes.evaluate import reid
    from safefakes.plots.privacy import plot_det_curves

    curves = []
    for path in args.scores:
        rows = [row for row in reid.read_csv_rows(path) if row["scenario"] == args.scenario]
        if not rows:
            raise SafefakesError(f"{path}: no scores for scenario {args.scenario}")
        label = rows[0]["method"] + (f" {rows[0]['strength']}" if rows[0]["strength"] else "")
        distances = np.array([float(row["distance"]) for row in rows])
        mated = np.array([row["mated"] == "1" for row in rows])
        curves.append((label, distances[mated], distances[~mated]))
    plot_det_curves(curves, args.out, title=f"DET, {args.scenario} recognition")
    return 0


def _register_plot_frontier(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plot-frontier", help="privacy-utility frontier: detector mAP vs re-identification EER")
    parser.add_argument("--reid", required=True, type=Path, help="the gathered re-identification table (reid.csv)")
    parser.add_argument("--ap", nargs="+", required=True, type=Path, help="AP JSON files {easy, medium, hard}")
    parser.add_argument("--labels", nargs="+", required=True, help="METHOD@STRENGTH (or METHOD) per AP file, same order")
    parser.add_argument("--scenario", default="naive", choices=SCENARIOS)
    parser.add_argument("--out", required=True, type=Path)
    parser.set_defaults(func=_run_plot_frontier)


def frontier_points(reid_rows: list[dict[str, str]], ap_by_label: dict[str, float], scenario: str) -> pd.DataFrame:
    """Join re-identification rows of ``scenario`` with mAP by ``method@strength`` (or ``method``) label."""
    points = []
    for row in reid_rows:
        if row["scenario"] != scenario:
            continue
        label = f"{row['method']}@{row['strength']}" if row["strength"] else row["method"]
        if label in ap_by_label:
            points.append({"label": label, "map": ap_by_label[label], "eer": float(row["eer"]), "fmr": float(row["fmr"]), "fnmr": float(row["fnmr"])})
    if not points:
        raise SafefakesError(f"no (method, strength) has both an AP file and {scenario} re-identification results; labels: {', '.join(ap_by_label)}")
    import pandas as pd

    return pd.DataFrame(points)


def _normalize_label(label: str) -> str:
    method, _, strength = label.partition("@")
    if not strength:
        return method
    try:
        value = float(strength)
    except ValueError:
        raise SafefakesError(f"label {label!r}: strength must be a number") from None
    return f"{method}@{int(value) if value.is_integer() else value!r}"


def _run_plot_frontier(args: argparse.Namespace) -> int:
    import pandas as pd

    from safefakes.evaluate import correlation, reid
    from safefakes.plots.figures import not_learned_warning
    from safefakes.plots.privacy import plot_frontier

    if len(args.ap) != len(args.labels):
        raise SafefakesError(f"need one label per AP file: {len(args.ap)} files, {len(args.labels)} labels")
    results = {_normalize_label(label): correlation.read_json(path) for label, path in zip(args.labels, args.ap)}
    ap_by_label = {label: correlation.mean_ap(values) for label, values in results.items()}
    warning = not_learned_warning(pd.DataFrame([{"method": label, "easy": float(values["easy"])} for label, values in results.items()]))
    plot_frontier(frontier_points(reid.read_csv_rows(args.reid), ap_by_label, args.scenario), args.out, args.scenario, warning)
    return 0
