"""Figures of the privacy evaluation: Table II as an image, metric-vs-mAP scatter plots, DET curves
(Heimes, Figs. 10-13) and the privacy-utility frontier (detector mAP vs re-identification EER)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import norm  # noqa: E402

from safefakes.evaluate.correlation import (  # noqa: E402
    GROUP_COLUMN,
    GROUPS,
    ITERATION_COLUMN,
    MAP_COLUMN,
    MIN_RELIABLE_POINTS,
    format_correlation,
    map_iteration,
    metric_columns,
)
from safefakes.evaluate.reid import det_curve, equal_error_rate  # noqa: E402
from safefakes.plots.figures import annotate_points, save_figure  # noqa: E402

#: DET axes are clipped to these error rates so 0 and 1 stay on the normal-deviate scale.
DET_RATE_LIMITS = (1e-3, 0.999)
DET_TICKS = (0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99)
#: Mark and fill colour of a Table II cell whose r rests on fewer than MIN_RELIABLE_POINTS points.
FEW_POINTS_MARK = "*"
FEW_POINTS_COLOUR = "#fde0b2"
#: Marker of each point group in the Table II scatter plots.
GROUP_MARKERS = {"GAN": "o", "Conventional": "s", "Other": "^"}


def correlation_cell(row: pd.Series) -> str:
    """One Table II cell: r, its 95% interval and n, marked when r rests on too few points."""
    text = format_correlation(row["r"])
    if math.isfinite(row["ci_low"]):
        text += f" [{format_correlation(row['ci_low'])}, {format_correlation(row['ci_high'])}]"
    return f"{text}\nn={row['n']}{FEW_POINTS_MARK if row['warning'] else ''}"


def render_correlation_table(correlations: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Table II as an image: Pearson r with mAP, its 95% Fisher-z interval and n per metric and group;
    cells with fewer than MIN_RELIABLE_POINTS points are marked and shaded, with a footnote."""
    groups = [group for group in GROUPS if group in set(correlations["group"])]
    metrics = list(dict.fromkeys(correlations["metric"]))
    by_cell = correlations.set_index(["metric", "group"])
    cells = [[correlation_cell(by_cell.loc[(metric, group)]) for group in groups] for metric in metrics]
    colours = [[FEW_POINTS_COLOUR if by_cell.loc[(metric, group), "warning"] else "white" for group in groups] for metric in metrics]
    figure, axes = plt.subplots(figsize=(2.4 * len(groups) + 1.2, 0.5 * (len(cells) + 2)))
    axes.axis("off")
    table = axes.table(cellText=cells, cellColours=colours, rowLabels=[m.upper() for m in metrics], colLabels=groups, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1.0, 2.4)
    iterations = correlations[ITERATION_COLUMN].dropna()
    at_iteration = f", detector iteration {int(iterations.iloc[0])}" if len(iterations) else ""
    axes.set_title(f"Correlation with detector mAP (Pearson r [95% CI]{at_iteration})")
    footnotes = ["CI: Fisher z, n/a for n <= 3. All = GAN + the paper's conventional methods."]
    if correlations["warning"].astype(bool).any():
        footnotes.insert(0, f"{FEW_POINTS_MARK} WARNING: fewer than {MIN_RELIABLE_POINTS} points, r is unreliable (|r| near 1 comes easily by chance).")
    figure.text(0.5, 0.02, "\n".join(footnotes), ha="center", va="bottom", fontsize=8, color="firebrick" if len(footnotes) > 1 else "black")
    save_figure(figure, path)


def _panel_title(metric: str, correlations: pd.DataFrame | None) -> str:
    """A scatter panel's title: the metric and, when given, r and n per group, warnings marked."""
    if correlations is None:
        return metric
    rows = correlations[correlations["metric"] == metric]
    parts = [f"{row.group} {format_correlation(row.r)} (n={row.n}{FEW_POINTS_MARK if row.warning else ''})" for row in rows.itertuples()]
    return metric + "\n" + ", ".join(parts)


def plot_metric_scatter(table: pd.DataFrame, path: str | os.PathLike[str], correlations: pd.DataFrame | None = None) -> None:
    """One panel per metric: metric value vs mAP, the point groups marked apart; with ``correlations``
    each panel's title gives r and n per group, and r over too few points is flagged."""
    metrics = metric_columns(table)
    columns = min(3, max(1, len(metrics)))
    rows = max(1, math.ceil(len(metrics) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.8 * rows), squeeze=False)
    legend_axis = None
    for axis, metric in zip(axes.flat, metrics):
        if not np.isfinite(table[metric].to_numpy(dtype=float)).any():
            axis.set_axis_off()
            axis.set_title(metric, fontsize=7)
            note = f"{metric}: no values\n(not computed: the reason is under\n'unavailable' in each metrics JSON)"
            axis.text(0.5, 0.5, note, ha="center", va="center", fontsize=9, color="0.4", transform=axis.transAxes)
            continue
        legend_axis = legend_axis or axis
        for group, marker in GROUP_MARKERS.items():
            mask = table[GROUP_COLUMN] == group
            if mask.any():
                axis.scatter(table.loc[mask, metric], table.loc[mask, MAP_COLUMN], marker=marker, label=group)
        annotate_points(axis, table[metric], table[MAP_COLUMN], [str(method) for method in table.index])
        axis.set_xlabel(metric)
        axis.set_ylabel("mAP")
        axis.set_title(_panel_title(metric, correlations), fontsize=7)
    for axis in list(axes.flat)[len(metrics) :]:
        axis.axis("off")
    if legend_axis is not None:
        legend_axis.legend(fontsize=8)
    iteration = map_iteration(table)
    warning = correlations is not None and correlations["warning"].astype(bool).any()
    notes = [f"mAP at detector iteration {iteration}" if iteration is not None else ""]
    notes.append(f"{FEW_POINTS_MARK} WARNING: fewer than {MIN_RELIABLE_POINTS} points, r unreliable" if warning else "")
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    figure.text(0.5, 0.005, "; ".join(note for note in notes if note), ha="center", va="bottom", fontsize=8, color="firebrick" if warning else "black")
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


def plot_frontier(points: pd.DataFrame, path: str | os.PathLike[str], scenario: str, warning: str | None = None) -> None:
    """Detector mAP vs re-identification EER (Pareto front marked) and vs FMR/FNMR at the threshold.

    ``points`` has columns ``label``, ``map``, ``eer``, ``fmr``, ``fnmr``; ``warning`` (e.g. a detector that has
    not learned) is written in red above the panels.
    """
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    front = pareto_front(points["map"].to_numpy(), points["eer"].to_numpy())
    left.scatter(points["map"], points["eer"], color="tab:blue", label="method@strength")
    ordered = points[front].sort_values("map")
    left.plot(ordered["map"], ordered["eer"], color="tab:red", marker="o", fillstyle="none", markersize=11, label="Pareto front")
    right.scatter(points["map"], points["fmr"], marker="o", label="FMR at threshold")
    right.scatter(points["map"], points["fnmr"], marker="s", label="FNMR at threshold")
    for axis, column in ((left, "eer"), (right, "fmr")):
        annotate_points(axis, points["map"], points[column], points["label"].astype(str).tolist())
    left.set_ylabel(f"re-identification EER ({scenario}; higher = more private)")
    right.set_ylabel(f"error rate at threshold ({scenario})")
    for axis in (left, right):
        axis.set_xlabel("detector mAP (higher = more useful)")
        axis.grid(True, color="0.9")
        axis.legend(fontsize=8)
    figure.tight_layout()
    if warning is not None:
        figure.text(0.5, 1.0, warning, color="red", ha="center", va="bottom", fontsize=9, fontweight="bold")
    save_figure(figure, path)
