"""Figures of the privacy evaluation: Table II as an image, metric-vs-mAP scatter plots, DET curves
(Heimes, Figs. 10-13) and the privacy-utility frontier (detector mAP vs re-identification EER)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import norm  # noqa: E402

from safefakes.common.io import atomic_write_bytes  # noqa: E402
from safefakes.evaluate.correlation import GROUPS, MAP_COLUMN, format_correlation  # noqa: E402
from safefakes.evaluate.reid import det_curve, equal_error_rate  # noqa: E402

#: DET axes are clipped to these error rates so 0 and 1 stay on the normal-deviate scale.
DET_RATE_LIMITS = (1e-3, 0.999)
DET_TICKS = (0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99)
FIGURE_DPI = 120


def save_figure(figure: plt.Figure, path: str | os.PathLike[str]) -> None:
    """Write a figure as PNG atomically, without a timestamp or software tag (same input, same bytes)."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)
    atomic_write_bytes(Path(path), buffer.getvalue())


def render_correlation_table(correlations: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Table II as an image: Pearson correlation with mAP, columns All / GAN / Conventional."""
    cells = [[format_correlation(correlations.loc[metric, group]) for group in GROUPS] for metric in correlations.index]
    figure, axes = plt.subplots(figsize=(5.0, 0.45 * (len(cells) + 2)))
    axes.axis("off")
    table = axes.table(cellText=cells, rowLabels=[m.upper() for m in correlations.index], colLabels=list(GROUPS), loc="center", cellLoc="center")
    table.scale(1.0, 1.3)
    axes.set_title("Correlation with detector mAP (Pearson)")
    save_figure(figure, path)


def plot_metric_scatter(table: pd.DataFrame, gan_methods: Sequence[str], path: str | os.PathLike[str]) -> None:
    """One panel per metric: metric value vs mAP, GAN and conventional methods marked apart."""
    metrics = [column for column in table.columns if column != MAP_COLUMN]
    columns = min(3, max(1, len(metrics)))
    rows = max(1, math.ceil(len(metrics) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.0 * columns, 3.4 * rows), squeeze=False)
    is_gan = table.index.isin(list(gan_methods))
    for axis, metric in zip(axes.flat, metrics):
        for mask, marker, label in ((is_gan, "o", "GAN"), (~is_gan, "s", "conventional")):
            axis.scatter(table.loc[mask, metric], table.loc[mask, MAP_COLUMN], marker=marker, label=label)
        for method, row in table.iterrows():
            if np.isfinite(row[metric]):
                axis.annotate(str(method), (row[metric], row[MAP_COLUMN]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        axis.set_xlabel(metric)
        axis.set_ylabel("mAP")
    for axis in list(axes.flat)[len(metrics) :]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)


def _deviate(rates: np.ndarray) -> np.ndarray:
    return norm.ppf(np.clip(rates, *DET_RATE_LIMITS))


def plot_det_curves(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str | os.PathLike[str], title: str = "DET") -> None:
    """DET curves (FMR vs FNMR on normal-deviate axes) with the EER line; ``curves`` = (label, mated, non-mated)."""
    figure, axis = plt.subplots(figsize=(5.5, 5.5))
    for label, mated, nonmated in curves:
        if len(mated) == 0 or len(nonmated) == 0:
            continue
        _thresholds, fmr, fnmr = det_curve(mated, nonmated)
        eer = equal_error_rate(mated, nonmated)
        axis.plot(_deviate(fmr), _deviate(fnmr), label=f"{label} (EER {100 * eer:.1f}%)")
    limits = _deviate(np.array(DET_RATE_LIMITS))
    axis.plot(limits, limits, color="0.8", linewidth=1, label="EER line")
    ticks = _deviate(np.array(DET_TICKS))
    labels = [f"{100 * t:g}" for t in DET_TICKS]
    axis.set_xticks(ticks, labels)
    axis.set_yticks(ticks, labels)
    axis.set_xlim(*limits)
    axis.set_ylim(*limits)
    axis.set_xlabel("FMR (%)")
    axis.set_ylabel("FNMR (%)")
    axis.set_title(title)
    axis.grid(True, color="0.9")
    axis.legend(fontsize=7, loc="upper right")
    save_figure(figure, path)


def pareto_front(utility: np.ndarray, privacy: np.ndarray) -> np.ndarray:
    """Mask of points no other point beats in both (higher utility and higher privacy, one strictly)."""
    utility, privacy = np.asarray(utility, float), np.asarray(privacy, float)
    front = np.ones(len(utility), dtype=bool)
    for i in range(len(utility)):
        dominated = (utility >= utility[i]) & (privacy >= privacy[i]) & ((utility > utility[i]) | (privacy > privacy[i]))
        front[i] = not dominated.any()
    return front


def plot_frontier(points: pd.DataFrame, path: str | os.PathLike[str], scenario: str) -> None:
    """Detector mAP vs re-identification EER (Pareto front marked) and vs FMR/FNMR at the threshold.

    ``points`` has columns ``label``, ``map``, ``eer``, ``fmr``, ``fnmr``.
    """
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    front = pareto_front(points["map"].to_numpy(), points["eer"].to_numpy())
    left.scatter(points["map"], points["eer"], color="tab:blue", label="method@strength")
    ordered = points[front].sort_values("map")
    left.plot(ordered["map"], ordered["eer"], color="tab:red", marker="o", fillstyle="none", markersize=11, label="Pareto front")
    right.scatter(points["map"], points["fmr"], marker="o", label="FMR at threshold")
    right.scatter(points["map"], points["fnmr"], marker="s", label="FNMR at threshold")
    for _index, row in points.iterrows():
        for axis, column in ((left, "eer"), (right, "fmr")):
            axis.annotate(str(row["label"]), (row["map"], row[column]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    left.set_ylabel(f"re-identification EER ({scenario}; higher = more private)")
    right.set_ylabel(f"error rate at threshold ({scenario})")
    for axis in (left, right):
        axis.set_xlabel("detector mAP (higher = more useful)")
        axis.grid(True, color="0.9")
        axis.legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)
