"""The paper's detector figures: Fig. 4 (AP per difficulty per method) and Fig. 6 (AP against training length).

Their tables carry each result's ``initialisation`` (the pretrained file its detector started from, or
``none``, as ``safefakes evaluate`` recorded it), and a figure whose results started differently is refused.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from safefakes.common.errors import SafefakesError
from safefakes.common.io import atomic_write_bytes, atomic_write_text  # noqa: E402
from safefakes.common.weights import recorded_initialisation, require_one_initialisation  # noqa: E402
from safefakes.data.wider import DIFFICULTIES  # noqa: E402

#: Display names of the methods, in the order the figures show them (unknown methods follow, sorted).
METHOD_LABELS = {
    "original": "Original",
    "blur": "Blur 25x25",
    "fullblur": "FullBlur 18x18",
    "pixelate": "Pixelation 10x10",
    "blackout": "Blackout",
    "heavyblur": "HeavyBlur",
    "gaussian9": "Gaussian 9x9",
    "noise": "Noise",
    "eyes": "Eye mask",
    "deepprivacy": "DeepPrivacy",
    "ciagan": "CIAGAN",
    "sun2018": "Sun2018",
}
DETECTOR_LABELS = {"dsfd": "DSFD", "tinaface": "TinaFace", "faster_rcnn": "Faster R-CNN"}

#: Below this easy AP on the untouched data, a detector has not learned to find faces: the differences between
#: methods in its figures are noise, and the figures say so in red instead of passing for a result.
LEARNED_EASY_AP = 0.1

#: Resolution of every PNG the project writes.
FIGURE_DPI = 150
#: Scatter labels: font size (points), the width of a character as a share of it (an estimate for the
#: overlap test), how far a label that would cover another moves per step (points), and at most how many steps.
LABEL_FONT_SIZE = 7
LABEL_WIDTH_PER_CHARACTER = 0.6
LABEL_STEP_POINTS = 8
LABEL_MAX_STEPS = 4


def read_ap_file(path: str | os.PathLike[str]) -> dict[str, float]:
    """Read one evaluation JSON ``{"easy": AP, "medium": AP, "hard": AP}``."""
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
        return {difficulty: float(values[difficulty]) for difficulty in DIFFICULTIES}
    except FileNotFoundError:
        raise SafefakesError(f"evaluation result not found: {path}") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise SafefakesError(f"{path}: expected a JSON object with easy, medium and hard APs") from None


def read_initialisation(path: str | os.PathLike[str]) -> str:
    """The initialisation label an evaluation JSON records (``none`` or ``<file> sha256:<digest>``), else ``unrecorded``."""
    values = json.loads(Path(path).read_text(encoding="utf-8"))
    return recorded_initialisation(values if isinstance(values, dict) else {})


def method_order(methods: Sequence[str]) -> list[str]:
    """Methods in the figures' order: known ones as in :data:`METHOD_LABELS`, then the rest sorted."""
    known = [method for method in METHOD_LABELS if method in methods]
    return known + sorted(set(methods) - set(known))


def results_table(results: Mapping[tuple[str, int], str | os.PathLike[str]]) -> pd.DataFrame:
    """One row per (method, iterations) with the three APs, their mean (mAP) and the detector's initialisation, from
    evaluation files; results whose detectors started differently are refused."""
    rows = []
    for (method, iterations), path in results.items():
        aps = read_ap_file(path)
        # mAP stays the last column: readers of the CSVs take it from there.
        rows.append({"method": method, "iterations": int(iterations), "initialisation": read_initialisation(path), **aps, "mAP": sum(aps.values()) / len(aps)})
    if not rows:
        raise SafefakesError("no evaluation results given")
    require_one_initialisation({f"{row['method']}@{row['iterations']}": row["initialisation"] for row in rows})
    table = pd.DataFrame(rows)
    order = {method: rank for rank, method in enumerate(method_order(list(table["method"].unique())))}
    table = table.sort_values(by=["method", "iterations"], key=lambda column: column.map(order) if column.name == "method" else column)
    return table.reset_index(drop=True)


def not_learned_warning(table: pd.DataFrame) -> str | None:
    """A warning when the 'original' row (the last one, if several iterations) has an easy AP under
    :data:`LEARNED_EASY_AP`: the detector has not learned, so its bars compare noise. ``None`` otherwise."""
    original = table[table["method"] == "original"]
    if original.empty:
        return None
    if "iterations" in original:
        original = original.sort_values("iterations")
    easy = float(original["easy"].iloc[-1])
    if easy >= LEARNED_EASY_AP:
        return None
    return (
        f"NOT A RESULT: on untouched data this detector reaches easy AP {easy * 100:.1f}% (< {LEARNED_EASY_AP * 100:.0f}%):\n"
        "it has not learned to find faces, and the differences\nbetween methods are noise (train it longer)"
    )


def mark_if_not_learned(figure: plt.Figure, table: pd.DataFrame) -> None:
    """Write :func:`not_learned_warning` in red across the top of ``figure``, when there is one."""
    warning = not_learned_warning(table)
    if warning is not None:
        figure.text(0.5, 1.0, warning, color="red", ha="center", va="bottom", fontsize=9, fontweight="bold")


def save_figure(figure: plt.Figure, path: str | os.PathLike[str]) -> None:
    """Write a figure as PNG atomically (no timestamp metadata, so the same data gives the same bytes) and close it.
    Every figure of the project is written here."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def annotate_points(axis: plt.Axes, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str]) -> None:
    """Label each finite scatter point at its upper right; a label whose box would cover an earlier one's (left to
    right) moves down, then up, by :data:`LABEL_STEP_POINTS` until it is clear, so close points stay readable.
    Call it after the points are drawn (it places labels in display space, from the axis' current limits)."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    finite = np.isfinite(x) & np.isfinite(y)
    axis.autoscale_view()  # apply pending autoscaling now, so the data-to-pixel transform is the drawn one
    pixels_per_point = axis.figure.dpi / 72.0
    height = LABEL_FONT_SIZE * pixels_per_point
    placed: list[tuple[float, float, float, float]] = []  # x0, y0, x1, y1 of each label, display pixels

    def clear(box: tuple[float, float, float, float]) -> bool:
        return all(box[2] <= other[0] or other[2] <= box[0] or box[3] <= other[1] or other[3] <= box[1] for other in placed)

    for index in sorted(np.flatnonzero(finite), key=lambda i: (x[i], y[i])):
        text = str(labels[index])
        anchor_x, anchor_y = axis.transData.transform((x[index], y[index]))
        width = LABEL_WIDTH_PER_CHARACTER * LABEL_FONT_SIZE * len(text) * pixels_per_point
        candidates = [3 + sign * step * LABEL_STEP_POINTS for step in range(LABEL_MAX_STEPS + 1) for sign in ((-1, 1) if step else (1,))]
        for offset in candidates:
            left, bottom = anchor_x + 3 * pixels_per_point, anchor_y + offset * pixels_per_point
            box = (left, bottom, left + width, bottom + height)
            if clear(box):
                break
        placed.append(box)
        axis.annotate(text, (x[index], y[index]), fontsize=LABEL_FONT_SIZE, xytext=(3, offset), textcoords="offset points")


def save_table(table: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a table as CSV atomically."""
    atomic_write_text(path, table.to_csv(index=False, float_format="%.6f"))


def ap_bars(table: pd.DataFrame, title: str, ylabel: str, reference_label: str, axis: plt.Axes | None = None) -> plt.Figure:
    """Grouped bars of AP per difficulty for each method, mAP in the labels, the original's mAP dashed (on ``axis``,
    or on a new figure)."""
    methods = list(table["method"])
    if axis is None:
        figure, axis = plt.subplots(figsize=(max(6.0, 1.1 * len(methods) + 2), 4.2))
    else:
        figure = axis.figure
    width = 0.8 / len(DIFFICULTIES)
    colors = {"easy": "#4c72b0", "medium": "#dd8452", "hard": "#55a868"}
    for offset, difficulty in enumerate(DIFFICULTIES):
        positions = [index + (offset - 1) * width for index in range(len(methods))]
        bars = axis.bar(positions, table[difficulty] * 100, width=width, label=difficulty.capitalize(), color=colors[difficulty])
        axis.bar_label(bars, fmt="%.1f", fontsize=6, padding=1)
    axis.set_xticks(range(len(methods)))
    axis.set_xticklabels([f"{METHOD_LABELS.get(m, m)}\nmAP {v * 100:.1f}" for m, v in zip(methods, table["mAP"])], rotation=30, ha="right", fontsize=8)
    axis.set_ylabel(ylabel)
    axis.set_ylim(0, 118)
    axis.set_title(title)
    if "original" in methods:
        original_map = float(table.loc[table["method"] == "original", "mAP"].iloc[0]) * 100
        axis.axhline(original_map, color="grey", linestyle="--", linewidth=0.8, label=reference_label)
    axis.legend(loc="upper right", fontsize=8, ncols=4)
    axis.grid(axis="y", alpha=0.3)
    return figure


def plot_fig4(table: pd.DataFrame, detector: str, out_png: str | os.PathLike[str], out_csv: str | os.PathLike[str]) -> None:
    """Fig. 4: grouped bars of AP per difficulty for each anonymization method, with mAP in the labels."""
    methods = method_order(list(table["method"]))
    table = table.set_index("method").loc[methods].reset_index()
    save_table(table, out_csv)
    iterations = int(table["iterations"].iloc[0])
    title = f"{DETECTOR_LABELS.get(detector, detector)} trained on anonymized data ({iterations} iterations)"
    figure = ap_bars(table, title, "AP on the original validation set (%)", "Original mAP")
    mark_if_not_learned(figure, table)
    save_figure(figure, out_png)


def with_shares_of_original(table: pd.DataFrame) -> pd.DataFrame:
    """The table in the figures' method order, plus each AP (and mAP) as a share of the 'original' row's."""
    methods = method_order(list(table["method"]))
    table = table.set_index("method").loc[methods].reset_index()
    if "original" in methods:
        reference = table.loc[table["method"] == "original"].iloc[0]
        for column in (*DIFFICULTIES, "mAP"):
            table[f"{column}_share_of_original"] = table[column] / reference[column] if reference[column] > 0 else float("nan")
    return table


def plot_detectability(table: pd.DataFrame, detector: str, out_png: str | os.PathLike[str], out_csv: str | os.PathLike[str]) -> None:
    """DeepPrivacy's Table 1 as bars: a detector trained on original data, scored on the validation images as each
    method anonymized them. The CSV adds each AP as a share of the AP on the untouched images."""
    table = with_shares_of_original(table)
    save_table(table, out_csv)
    iterations = int(table["iterations"].iloc[0])
    title = f"Detectability: {DETECTOR_LABELS.get(detector, detector)} trained on original data ({iterations} it.), anonymized val"
    figure = ap_bars(table, title, "AP on the anonymized validation set (%)", "mAP on untouched images")
    mark_if_not_learned(figure, table)
    save_figure(figure, out_png)


def plot_fig6(table: pd.DataFrame, detector: str, out_png: str | os.PathLike[str], out_csv: str | os.PathLike[str]) -> None:
    """Fig. 6 and supplementary Fig. 3: mAP (and AP per difficulty) against detector training iterations."""
    save_table(table, out_csv)
    methods = method_order(list(table["method"].unique()))
    panels = ("mAP",) + DIFFICULTIES
    figure, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.8), sharex=True)
    for axis, column in zip(axes, panels):
        for method in methods:
            rows = table[table["method"] == method].sort_values("iterations")
            style = "--" if method == "original" else "-"
            axis.plot(rows["iterations"], rows[column] * 100, style, marker="o", markersize=3, label=METHOD_LABELS.get(method, method))
        axis.set_title("mean of easy/medium/hard" if column == "mAP" else f"{column.capitalize()} AP")
        axis.set_xlabel("detector training iterations")
        axis.set_ylabel("AP (%)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.suptitle(f"{DETECTOR_LABELS.get(detector, detector)}: AP against detector training length")
    figure.tight_layout()
    mark_if_not_learned(figure, table)
    save_figure(figure, out_png)


def plot_detectability_pretrained(tables: dict[str, pd.DataFrame], out_png: str | os.PathLike[str], out_csv: str | os.PathLike[str]) -> None:
    """Off-the-shelf detectors (one panel each) on the validation images as each method anonymized them; the CSV
    has one row per (detector, method) with each AP as a share of the untouched images'."""
    tables = {detector: with_shares_of_original(table) for detector, table in tables.items()}
    combined = pd.concat([table.drop(columns="iterations").assign(detector=detector) for detector, table in tables.items()], ignore_index=True)
    save_table(combined[["detector", *[c for c in combined.columns if c != "detector"]]], out_csv)
    width = max(6.0, 1.1 * max(len(t) for t in tables.values()) + 2)
    figure, axes = plt.subplots(len(tables), 1, figsize=(width, 4.2 * len(tables)), squeeze=False)
    for axis, (detector, table) in zip(axes[:, 0], tables.items()):
        ap_bars(table, f"{detector} (pretrained, no training) on the anonymized validation images", "AP (%)", "mAP on untouched images", axis)
    figure.tight_layout()
    save_figure(figure, out_png)


def parse_result_arguments(entries: Sequence[str], *, default_iterations: int | None = None) -> dict[tuple[str, int], str]:
    """Parse ``METHOD=PATH`` or ``METHOD@ITERATIONS=PATH`` command-line entries."""
    results: dict[tuple[str, int], str] = {}
    for entry in entries:
        key, separator, path = entry.partition("=")
        method, at, iterations = key.partition("@")
        if not separator or not method or not path:
            raise SafefakesError(f"--result {entry!r}: expected METHOD=PATH or METHOD@ITERATIONS=PATH")
        if at:
            if not iterations.isdigit():
                raise SafefakesError(f"--result {entry!r}: iterations must be a whole number")
            count = int(iterations)
        elif default_iterations is not None:
            count = default_iterations
        else:
            raise SafefakesError(f"--result {entry!r}: give the iterations as METHOD@ITERATIONS=PATH")
        results[(method, count)] = path
    return results
