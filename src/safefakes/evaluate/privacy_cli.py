"""Sub-commands of the privacy evaluation: image metrics, Table II, re-identification, DET and frontier
plots, and fetching optional weights.

Designed for Snakemake: ``reid`` runs one (method, strength) job; ``reid-gather`` joins the jobs'
summaries into one table; ``plot-det`` draws one scenario's DET curves from the jobs' score files.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from safefakes.common.config import parse_json_argument
from safefakes.common.io import atomic_write_json
from safefakes.common.weights import WEIGHT_FILES, fetch_weights
from safefakes.evaluate import DEFAULT_SAMPLE_SEED, NO_ANONYMIZATION, SCENARIOS

# Heavy modules (numpy, pandas, scipy, dlib, torch) are imported inside the handlers so that every
# `safefakes` command starts fast.
METRIC_NAMES = ("l1", "l2", "ssim", "fid_face", "lpips", "fid")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the privacy-evaluation sub-commands to the top-level parser."""
    _register_metrics(subparsers)
    _register_table2(subparsers)
    _register_reid(subparsers)
    _register_reid_gather(subparsers)
    _register_fetch_weights(subparsers)


def _comma_list(text: str | None) -> list[str] | None:
    return [item.strip() for item in text.split(",") if item.strip()] if text else None


# --- metrics ------------------------------------------------------------------------------------


def _register_metrics(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("metrics", help="image metrics between original and anonymized faces (Table II inputs)")
    parser.add_argument("--original", required=True, type=Path, help="original WIDER-layout root")
    parser.add_argument("--anonymized", required=True, type=Path, help="anonymized WIDER-layout root (same annotations)")
    parser.add_argument("--split", default="train", choices=("train", "val"))
    parser.add_argument("--out", required=True, type=Path, help="output JSON")
    parser.add_argument("--metrics", help=f"comma list from {','.join(METRIC_NAMES)}; default: all, missing weights recorded as null")
    parser.add_argument("--max-faces", type=int, help="measure this many faces, drawn at random from the split's usable faces (a quick estimate)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SAMPLE_SEED, help="seed of the --max-faces draw (same seed, same faces)")
    parser.add_argument("--weights-dir", type=Path, help="folder holding LPIPS/FID weight files")
    parser.add_argument("--config-json", metavar="JSON", help="MetricsConfig settings as a JSON object, inline or a JSON/YAML file")
    parser.set_defaults(func=_run_metrics)


def _run_metrics(args: argparse.Namespace) -> int:
    from safefakes.evaluate.image_metrics import MetricsConfig, compute_image_metrics

    result = compute_image_metrics(
        args.original,
        args.anonymized,
        args.split,
        _comma_list(args.metrics),
        MetricsConfig.from_dict(parse_json_argument(args.config_json, "--config-json")),
        args.max_faces,
        args.weights_dir,
        args.seed,
    )
    atomic_write_json(args.out, _json_safe(result))
    return 0


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


# --- table2 -------------------------------------------------------------------------------------


def _register_table2(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("table2", help="Pearson correlation of each metric with detector mAP (Table II)")
    add_table2_inputs(parser)
    parser.add_argument("--out-csv", required=True, type=Path, help="r, n, 95%% CI, warnings per metric and group")
    parser.add_argument("--out-points", type=Path, help="the points: per dataset its group, mAP iteration, mAP and metrics (CSV)")
    parser.set_defaults(func=_run_table2)


def add_table2_inputs(parser: argparse.ArgumentParser) -> None:
    """The inputs of Table II (shared by ``table2`` and ``plot-table2``)."""
    parser.add_argument("--metrics", nargs="+", required=True, type=Path, help="one metrics JSON per method")
    parser.add_argument("--ap", nargs="+", required=True, type=Path, help="one AP JSON {easy, medium, hard} per method, same order")
    parser.add_argument("--methods", nargs="+", required=True, help="anonymized dataset names, same order")
    parser.add_argument(
        "--gan-methods", nargs="*", default=[], help="which datasets a GAN made; of the rest the paper's conventional methods are Conventional, others Other"
    )
    parser.add_argument(
        "--ap-iterations", nargs="*", type=int, default=[], help="detector iteration of the AP files: one for all, or one per dataset (mixed is refused)"
    )


def table2_tables(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-method table (metrics and mAP) and Table II's correlations from ``table2``'s arguments."""
    from safefakes.evaluate import correlation

    table = correlation.build_method_table(
        args.methods, [correlation.read_json(p) for p in args.metrics], [correlation.read_json(p) for p in args.ap], args.gan_methods, args.ap_iterations
    )
    return table, correlation.correlation_table(table)


def _run_table2(args: argparse.Namespace) -> int:
    from safefakes.evaluate import correlation

    table, correlations = table2_tables(args)
    correlation.write_correlation_csv(args.out_csv, correlations)
    if args.out_points:
        correlation.write_points_csv(args.out_points, table)
    return 0


# --- reid ---------------------------------------------------------------------------------------


def _register_reid(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("reid", help="re-identification test of one method at one strength (naive/reverse/parrot)")
    parser.add_argument("--identities", required=True, type=Path, help="identity folder (identities.csv, CelebA, LFW-style) or a synthetic WIDER root")
    parser.add_argument("--split", default="train", choices=("train", "val"), help="split of a synthetic WIDER root")
    parser.add_argument("--method", required=True, help=f"anonymizer name, or '{NO_ANONYMIZATION}' for originals against originals")
    parser.add_argument("--strength", type=float, help="the method's strength k (blur/noise/pixelate as in Heimes)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="method parameter; repeatable")
    parser.add_argument("--checkpoint", type=Path, metavar="FILE", help="generator checkpoint of a GAN method")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma list of naive,reverse,parrot")
    parser.add_argument("--threshold", type=float, help="distance threshold for FMR/FNMR (default 0.6)")
    parser.add_argument("--config-json", metavar="JSON", help="ReidConfig settings as a JSON object, inline or a JSON/YAML file")
    parser.add_argument("--out-csv", required=True, type=Path, help="summary: one row per scenario")
    parser.add_argument("--out-scores", required=True, type=Path, help="every comparison's distance (CSV)")
    parser.add_argument("--out-acquisition", type=Path, help="per photo: was a face found on the original / anonymized image")
    parser.set_defaults(func=_run_reid)


def _run_reid(args: argparse.Namespace) -> int:
    from safefakes.evaluate import reid

    values = parse_json_argument(args.config_json, "--config-json")
    values["scenarios"] = _comma_list(args.scenarios) or list(reid.SCENARIOS)
    if args.threshold is not None:
        values["threshold"] = args.threshold
    from safefakes.anonymize.base import parse_param_assignments

    params = parse_param_assignments(args.param)
    if args.checkpoint is not None:
        params["checkpoint"] = str(args.checkpoint)
    result = reid.run_reid(args.identities, args.method, args.strength, reid.ReidConfig.from_dict(values), args.split, params=params)
    reid.write_scores_csv(args.out_scores, result)
    if args.out_acquisition:
        reid.write_acquisition_csv(args.out_acquisition, result)
    reid.write_summary_csv(args.out_csv, result.summary_rows())
    return 0


def _register_reid_gather(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("reid-gather", help="join per-job re-identification summaries into one table")
    parser.add_argument("--inputs", nargs="+", required=True, type=Path, help="summary CSVs written by 'safefakes reid'")
    parser.add_argument("--out", required=True, type=Path, help="e.g. results/tables/reid.csv")
    parser.set_defaults(func=_run_reid_gather)


def _run_reid_gather(args: argparse.Namespace) -> int:
    from safefakes.evaluate import reid

    reid.write_summary_csv(args.out, reid.gather_summaries(args.inputs))
    return 0


def _register_fetch_weights(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fetch-weights", help="download and verify LPIPS/FID, detector backbone (ImageNet/COCO) and Keypoint R-CNN weights (on a machine with internet)"
    )
    parser.add_argument("--out", required=True, type=Path, help="folder to put the files in (then copy to the torch hub cache or set SAFEFAKES_WEIGHTS_DIR)")
    parser.add_argument("--only", help=f"comma list from {','.join(WEIGHT_FILES)}")
    parser.set_defaults(func=_run_fetch_weights)


def _run_fetch_weights(args: argparse.Namespace) -> int:
    for path in fetch_weights(args.out, _comma_list(args.only)):
        print(path)
    return 0
