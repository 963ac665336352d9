"""Precision-recall curves of the WIDER FACE evaluation: one panel per setting, one curve per method."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from safefakes.common.errors import SafefakesError
from safefakes.data.wider import DIFFICULTIES

#: The evaluation settings, one panel each, in the paper's order.
#: Columns of a PR-curve table (what ``safefakes evaluate --curves`` writes).
CURVE_COLUMNS = ("setting", "threshold", "precision", "recall")
#: Figure size in inches (three panels side by side).
FIGURE_SIZE = (13.5, 4.5)


def curve_ap(frame: pd.DataFrame, setting: str) -> float:
    """The VOC all-point AP of one setting's rows of a PR-curve table (NaN precision skipped, as in MATLAB)."""
    from safefakes.evaluate.wider_eval import voc_ap

    rows = frame[frame["setting"] == setting]
    if rows.empty or rows["recall"].isna().all():
        return float("nan")
    return voc_ap(rows["recall"].to_numpy(dtype=np.float64), rows["precision"].to_numpy(dtype=np.float64))


def read_curves_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a PR-curve table written by ``safefakes evaluate --curves``."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise SafefakesError(f"PR-curve file not found: {path}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise SafefakesError(f"{path}: not a PR-curve CSV ({error})") from None
    missing = [column for column in CURVE_COLUMNS if column not in frame.columns]
    if missing:
        raise SafefakesError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def plot_pr_curves(
    curves: Mapping[str, pd.DataFrame],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    settings: Sequence[str] = DIFFICULTIES,
) -> None:
    """Draw the PR curves of each method (label -> PR-curve table) in one panel per setting; write a PNG atomically.

    The legend gives each method's AP in that setting; curves are drawn in the order given.
    """
    if not curves:
        raise SafefakesError("nothing to plot: no PR curves given")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from safefakes.plots.figures import save_figure

    figure, axes = plt.subplots(1, len(settings), figsize=FIGURE_SIZE, sharey=True, squeeze=False)
    for axis, setting in zip(axes[0], settings):
        for label, frame in curves.items():
            rows = frame[frame["setting"] == setting]
            ap = curve_ap(frame, setting)
            ap_text = "n/a" if np.isnan(ap) else f"{ap:.4f}"
            defined = rows["precision"].notna()
            axis.plot(rows["recall"][defined], rows["precision"][defined], linewidth=1.5, label=f"{label} (AP {ap_text})")
        axis.set_title(setting.capitalize())
        axis.set_xlabel("Recall")
        axis.set_xlim(0.0, 1.0)
        axis.set_ylim(0.0, 1.0)
        axis.grid(True, alpha=0.3)
        axis.legend(loc="lower left", fontsize="small")
    axes[0][0].set_ylabel("Precision")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path)
