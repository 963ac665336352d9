"""Correlation of image metrics with detector mAP over anonymized datasets (Safe Fakes, Table II).

A point is one anonymized dataset of the run (a Fig. 4 method, or a GAN checkpoint of Figs. 7 and 9 such
as ``deepprivacy-synth_quarter-400``): its image metrics against the mAP (mean of the easy, medium and
hard AP) of the detector trained on it. For every metric the Pearson r with mAP is computed per column
of :data:`GROUPS`:

* ``GAN``: the datasets a GAN made (the Fig. 4 GANs and their Fig. 7 / Fig. 9 checkpoints);
* ``Conventional``: the paper's conventional methods only (:data:`PAPER_CONVENTIONAL_METHODS`);
* ``All``: GAN and Conventional together, the paper's "All" column;
* ``Other``: every other method of the run (noise, eyes, heavyblur, ...), reported on its own and never
  mixed into the three published columns; the column is left out when the run has no such method.

Each r comes with its number of points n and a 95 % confidence interval from Fisher's z transformation,
``tanh(arctanh(r) -+ z_0.975 / sqrt(n - 3))`` (scipy's ``pearsonr(...).confidence_interval``). The
interval is undefined for n <= 3 (NaN, the reason in ``note``), and r over fewer than
:data:`MIN_RELIABLE_POINTS` points carries a warning: with three or four points |r| near 1 comes easily
by chance. r over fewer than :data:`MIN_POINTS` points, or over a constant column, is NaN ("n/a").
All points of one table come from one detector iteration (``map_iteration``): correlating mAPs of
different training lengths would measure the training length as much as the anonymizer.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats

from safefakes.common.errors import SafefakesError
from safefakes.common.io import atomic_write_text
from safefakes.common.weights import recorded_initialisation, require_one_initialisation
from safefakes.data.wider import DIFFICULTIES

#: Table II's columns, in order (``Other`` is not in the paper).
GROUPS = ("All", "GAN", "Conventional", "Other")
#: The point groups each column correlates over.
GROUP_MEMBERS = {"All": ("GAN", "Conventional"), "GAN": ("GAN",), "Conventional": ("Conventional",), "Other": ("Other",)}
#: The paper's conventional anonymizers (Safe Fakes, Sec. III-C): face blur, full-image blur, pixelation, black-out.
PAPER_CONVENTIONAL_METHODS = ("blur", "fullblur", "pixelate", "blackout")
#: Below three points a Pearson correlation is always +-1 (two points) or undefined: report n/a.
MIN_POINTS = 3
#: Below five points r is reported with a warning (|r| near 1 is likely by chance).
MIN_RELIABLE_POINTS = 5
#: Fisher's z has the standard error 1 / sqrt(n - 3): its interval needs four points or more.
FISHER_MIN_POINTS = 4
CONFIDENCE_LEVEL = 0.95
MAP_COLUMN = "map"
GROUP_COLUMN = "group"
ITERATION_COLUMN = "map_iteration"
#: Columns of the point table that are not image metrics.
POINT_COLUMNS = (MAP_COLUMN, GROUP_COLUMN, ITERATION_COLUMN)
#: Columns of the Table II CSV: one row per (metric, group).
CORRELATION_COLUMNS = ("metric", "group", "r", "n", "ci_low", "ci_high", ITERATION_COLUMN, "warning", "note", "datasets")


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


def dataset_group(name: str, gan_methods: Collection[str]) -> str:
    """The point group of one anonymized dataset: ``GAN`` if a GAN made it, ``Conventional`` for the paper's
    conventional methods, else ``Other``."""
    if name in gan_methods:
        return "GAN"
    return "Conventional" if name in PAPER_CONVENTIONAL_METHODS else "Other"


def _per_method(iterations: Sequence[int] | None, count: int) -> list[int | None]:
    """Detector iterations of the AP files: none given (unknown), one for all, or one per method."""
    if not iterations:
        return [None] * count
    if len(iterations) == 1:
        return list(iterations) * count
    if len(iterations) != count:
        raise SafefakesError(f"need one AP iteration for all methods or one per method: got {len(iterations)} for {count} methods")
    return list(iterations)


def build_method_table(
    methods: Sequence[str],
    metric_results: Sequence[dict],
    ap_results: Sequence[dict],
    gan_methods: Collection[str] = (),
    ap_iterations: Sequence[int] | None = None,
) -> pd.DataFrame:
    """One row per anonymized dataset: every metric, ``map``, its group (:func:`dataset_group`) and the detector
    iteration its mAP comes from; AP results whose detectors started differently are refused."""
    if not (len(methods) == len(metric_results) == len(ap_results)):
        raise SafefakesError(
            f"need one metrics file and one AP file per method: got {len(methods)} methods, {len(metric_results)} metrics files, {len(ap_results)} AP files"
        )
    if len(set(methods)) != len(methods):
        raise SafefakesError("method names must be unique")
    unknown = sorted(set(gan_methods) - set(methods))
    if unknown:
        raise SafefakesError(f"--gan-methods names unknown method(s): {', '.join(unknown)}")
    iterations = _per_method(ap_iterations, len(methods))
    require_one_initialisation({name: recorded_initialisation(ap) for name, ap in zip(methods, ap_results)})
    rows = []
    for name, metrics, ap in zip(methods, metric_results, ap_results):
        rows.append({"method": name, **metric_values(metrics), MAP_COLUMN: mean_ap(ap), GROUP_COLUMN: dataset_group(name, gan_methods)})
    table = pd.DataFrame(rows).set_index("method")
    table[ITERATION_COLUMN] = pd.array(iterations, dtype="Int64")
    return table


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The image-metric columns of a point table."""
    return [column for column in table.columns if column not in POINT_COLUMNS]


@dataclass(frozen=True)
class Correlation:
    """Pearson r over one group's points, with their number, the Fisher-z confidence interval and why a value is n/a."""

    r: float
    n: int
    ci_low: float = math.nan
    ci_high: float = math.nan
    note: str = ""

    @property
    def warning(self) -> str:
        """A warning when r is reported over fewer than :data:`MIN_RELIABLE_POINTS` points, else empty."""
        if math.isfinite(self.r) and self.n < MIN_RELIABLE_POINTS:
            return f"only {self.n} points (< {MIN_RELIABLE_POINTS}): r is unreliable"
        return ""


def pearson_with_ci(x: Sequence[float], y: Sequence[float], min_points: int = MIN_POINTS, confidence: float = CONFIDENCE_LEVEL) -> Correlation:
    """Pearson r over the pairs where both values are finite, with n and Fisher's z confidence interval.

    r is NaN below ``min_points`` pairs or when either column is constant; the interval is NaN for
    n < :data:`FISHER_MIN_POINTS`. ``note`` gives the reason for each NaN.
    """
    x_values, y_values = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x_values) & np.isfinite(y_values)
    x_values, y_values = x_values[keep], y_values[keep]
    count = int(keep.sum())
    if count < min_points:
        return Correlation(math.nan, count, note=f"r n/a: {count} point(s) with a value, a correlation needs {min_points}")
    if np.ptp(x_values) == 0 or np.ptp(y_values) == 0:
        return Correlation(math.nan, count, note="r n/a: the metric or the mAP is the same for every point")
    result = scipy.stats.pearsonr(x_values, y_values)
    r = float(result.statistic)
    if count < FISHER_MIN_POINTS:
        return Correlation(r, count, note=f"CI n/a: Fisher's z needs n > {FISHER_MIN_POINTS - 1} (standard error 1/sqrt(n-3)), n = {count}")
    interval = result.confidence_interval(confidence_level=confidence)
    return Correlation(r, count, float(interval.low), float(interval.high))


def pearson(x: Sequence[float], y: Sequence[float], min_points: int = MIN_POINTS) -> float:
    """Pearson correlation over the pairs where both values are finite; NaN if too few or constant."""
    return pearson_with_ci(x, y, min_points).r


def table_groups(table: pd.DataFrame) -> list[str]:
    """The columns of :data:`GROUPS` a point table fills: the published three always, ``Other`` when it has such points."""
    return [group for group in GROUPS if group != "Other" or (table[GROUP_COLUMN] == "Other").any()]


def map_iteration(table: pd.DataFrame) -> int | None:
    """The one detector iteration every point's mAP comes from (None when not recorded); mixed iterations are refused."""
    iterations = sorted({int(value) for value in table[ITERATION_COLUMN].dropna()})
    if len(iterations) > 1:
        by_iteration = "; ".join(f"{n}: {', '.join(table.index[table[ITERATION_COLUMN] == n])}" for n in iterations)
        raise SafefakesError(f"Table II correlates mAPs of one detector iteration; these come from several ({by_iteration})")
    return iterations[0] if iterations else None


def correlation_table(table: pd.DataFrame, min_points: int = MIN_POINTS) -> pd.DataFrame:
    """Table II in long form: one row per (metric, group) with r, n, the confidence interval, the detector
    iteration of the mAPs, a warning below :data:`MIN_RELIABLE_POINTS` points, why a value is n/a, and the datasets."""
    iteration = map_iteration(table)
    rows = []
    for metric in metric_columns(table):
        for group in table_groups(table):
            subset = table[table[GROUP_COLUMN].isin(GROUP_MEMBERS[group])]
            result = pearson_with_ci(subset[metric], subset[MAP_COLUMN], min_points)
            measured = subset.index[np.isfinite(subset[metric].to_numpy(dtype=float)) & np.isfinite(subset[MAP_COLUMN].to_numpy(dtype=float))]
            rows.append(
                {
                    "metric": metric,
                    "group": group,
                    "r": result.r,
                    "n": result.n,
                    "ci_low": result.ci_low,
                    "ci_high": result.ci_high,
                    ITERATION_COLUMN: iteration,
                    "warning": result.warning,
                    "note": result.note,
                    "datasets": " ".join(measured),
                }
            )
    frame = pd.DataFrame(rows, columns=list(CORRELATION_COLUMNS))
    frame[ITERATION_COLUMN] = frame[ITERATION_COLUMN].astype("Int64")
    return frame


def format_correlation(value: float) -> str:
    """Three decimals, or ``n/a`` for NaN."""
    return "n/a" if not math.isfinite(value) else f"{value:.3f}"


def write_correlation_csv(path: str | os.PathLike[str], correlations: pd.DataFrame) -> None:
    """Write Table II (:func:`correlation_table`) as CSV, r and its interval to three decimals, NaN as ``n/a``, atomically."""
    formatted = correlations.copy()
    for column in ("r", "ci_low", "ci_high"):
        formatted[column] = [format_correlation(value) for value in correlations[column]]
    atomic_write_text(path, formatted.to_csv(index=False, lineterminator="\n"))


def write_points_csv(path: str | os.PathLike[str], table: pd.DataFrame) -> None:
    """Write the points of Table II (:func:`build_method_table`): per dataset its group, the detector iteration
    its mAP comes from, the mAP and every metric, atomically."""
    ordered = table[[GROUP_COLUMN, ITERATION_COLUMN, MAP_COLUMN, *metric_columns(table)]].rename_axis("dataset")
    atomic_write_text(path, ordered.to_csv(lineterminator="\n"))
