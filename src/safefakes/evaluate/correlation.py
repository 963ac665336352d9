"""Correlation of image metrics with detector mAP over anonymization methods (Safe Fakes, Table II).

For every metric, the Pearson correlation with mAP (the mean of the easy, medium and hard AP) is
computed over all methods, over the GAN methods only, and over the conventional ones only.
A correlation over fewer than :data:`MIN_POINTS` methods, or over a constant column, is NaN ("n/a").
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from safefakes.common.errors import SafefakesError
from safefakes.common.io import atomic_write_text
from safefakes.data.wider import DIFFICULTIES

#: Table II's columns, in order.
GROUPS = ("All", "GAN", "Conventional")
#: Below three points a Pearson correlation is always +-1 (two points) or undefined: report n/a.
MIN_POINTS = 3
MAP_COLUMN = "map"


def read_json(path: str | os.PathLike[str]) -> dict:
    """Read a JSON object, with a one-line error naming the file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SafefakesError(f"file not found: {path}") from None
    except json.JSONDecodeError as error:
        raise SafefakesError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise SafefakesError(f"{path}: expected a JSON object")
    return data


def mean_ap(ap: dict) -> float:
    """mAP as the paper reports it: the mean of the easy, medium and hard AP."""
    missing = [name for name in DIFFICULTIES if name not in ap]
    if missing:
        raise SafefakesError(f"AP result lacks {', '.join(missing)} (expected keys easy, medium, hard)")
    return float(np.mean([float(ap[name]) for name in DIFFICULTIES]))


def metric_values(result: dict) -> dict[str, float]:
    """The metric values of a ``safefakes metrics`` JSON (nested ``metrics`` or flat); nulls become NaN."""
    values = result.get("metrics", result)
    return {name: (math.nan if value is None else float(value)) for name, value in values.items() if value is None or isinstance(value, (int, float))}


def build_method_table(methods: Sequence[str], metric_results: Sequence[dict], ap_results: Sequence[dict]) -> pd.DataFrame:
    """One row per method: every metric and ``map``."""
    if not (len(methods) == len(metric_results) == len(ap_results)):
        raise SafefakesError(
            f"need one metrics file and one AP file per method: got {len(methods)} methods, {len(metric_results)} metrics files, {len(ap_results)} AP files"
        )
    if len(set(methods)) != len(methods):
        raise SafefakesError("method names must be unique")
    rows = []
    for name, metrics, ap in zip(methods, metric_results, ap_results):
        rows.append({"method": name, **metric_values(metrics), MAP_COLUMN: mean_ap(ap)})
    return pd.DataFrame(rows).set_index("method")


def pearson(x: Sequence[float], y: Sequence[float], min_points: int = MIN_POINTS) -> float:
    """Pearson correlation over the pairs where both values are finite; NaN if too few or constant."""
    x_values, y_values = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x_values) & np.isfinite(y_values)
    x_values, y_values = x_values[keep], y_values[keep]
    if len(x_values) < min_points or np.ptp(x_values) == 0 or np.ptp(y_values) == 0:
        return math.nan
    x_centered, y_centered = x_values - x_values.mean(), y_values - y_values.mean()
    return float((x_centered @ y_centered) / math.sqrt((x_centered @ x_centered) * (y_centered @ y_centered)))


def correlation_table(table: pd.DataFrame, gan_methods: Sequence[str], min_points: int = MIN_POINTS) -> pd.DataFrame:
    """Table II: rows are metrics, columns All / GAN / Conventional, with point counts."""
    unknown = sorted(set(gan_methods) - set(table.index))
    if unknown:
        raise SafefakesError(f"--gan-methods names unknown method(s): {', '.join(unknown)}")
    is_gan = table.index.isin(list(gan_methods))
    groups = {"All": table, "GAN": table[is_gan], "Conventional": table[~is_gan]}
    rows = []
    for metric in (column for column in table.columns if column != MAP_COLUMN):
        row: dict[str, object] = {"metric": metric}
        for group in GROUPS:
            subset = groups[group]
            row[group] = pearson(subset[metric], subset[MAP_COLUMN], min_points)
            row[f"n_{group}"] = int((np.isfinite(subset[metric]) & np.isfinite(subset[MAP_COLUMN])).sum())
        rows.append(row)
    return pd.DataFrame(rows, columns=["metric", *GROUPS, *(f"n_{g}" for g in GROUPS)]).set_index("metric")


def format_correlation(value: float) -> str:
    """Three decimals, or ``n/a`` for NaN."""
    return "n/a" if not math.isfinite(value) else f"{value:.3f}"


def write_correlation_csv(path: str | os.PathLike[str], correlations: pd.DataFrame) -> None:
    """Write Table II as CSV (NaN written as ``n/a``) atomically."""
    formatted = correlations.copy()
    for group in GROUPS:
        formatted[group] = [format_correlation(v) for v in correlations[group]]
    atomic_write_text(path, formatted.to_csv(lineterminator="\n"))
