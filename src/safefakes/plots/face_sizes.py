"""Face sizes per difficulty (Safe Fakes supplement Fig. 1): the evidence that a data set's faces have WIDER's pixel scale.

Every absolute-pixel parameter of the study (blur 25x25, full-image blur 18x18, pixelation to 10x10, the
GANs' 10-px cut-off) acts on faces as they are in pixels, so a data set whose faces are smaller or larger
than WIDER's ranks the methods for a reason the paper does not study. The figure draws a boxplot of face
size (square root of the box area) per difficulty for each ground truth given, with the medians written on it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from safefakes.common.errors import SafefakesError  # noqa: E402
from safefakes.data.ground_truth import load_ground_truth  # noqa: E402
from safefakes.data.wider import DIFFICULTIES  # noqa: E402
from safefakes.plots.figures import save_figure, save_table  # noqa: E402

#: Median face size (sqrt of box area, px) per difficulty of the official WIDER FACE validation ground
#: truth (``wider_{easy,medium,hard}_val.mat``; Safe Fakes supplement Fig. 1 shows the same boxplot).
WIDER_VAL_MEDIAN_FACE_PX = {"easy": 71.8, "medium": 46.8, "hard": 22.2}


def face_sizes_by_setting(gt_dir: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Face sizes (sqrt of box area, px) of the faces each setting counts, from a ground-truth folder."""
    stacked = load_ground_truth(gt_dir).stacked
    sizes = np.sqrt(np.clip(stacked.boxes[:, 2], 0, None) * np.clip(stacked.boxes[:, 3], 0, None))
    return {setting: sizes[stacked.counted[setting]] for setting in DIFFICULTIES}


def face_size_table(sources: Mapping[str, str | os.PathLike[str]]) -> pd.DataFrame:
    """One row per (data set, difficulty): face count, quartiles and median, and the median's ratio to WIDER val's."""
    if not sources:
        raise SafefakesError("no ground truth given")
    rows = []
    for label, gt_dir in sources.items():
        for setting, sizes in face_sizes_by_setting(gt_dir).items():
            if sizes.size == 0:
                raise SafefakesError(f"{label}: no {setting} faces in {gt_dir}")
            q1, median, q3 = np.percentile(sizes, [25, 50, 75])
            rows.append(
                {
                    "dataset": label,
                    "difficulty": setting,
                    "faces": int(sizes.size),
                    "q1_px": q1,
                    "median_px": median,
                    "q3_px": q3,
                    "wider_val_median_px": WIDER_VAL_MEDIAN_FACE_PX[setting],
                    "median_ratio_to_wider": median / WIDER_VAL_MEDIAN_FACE_PX[setting],
                }
            )
    return pd.DataFrame(rows)


def plot_face_sizes(sources: Mapping[str, str | os.PathLike[str]], out_png: str | os.PathLike[str], out_csv: str | os.PathLike[str]) -> pd.DataFrame:
    """Boxplots of face size per difficulty, one group per data set, medians written on them; returns the table."""
    table = face_size_table(sources)
    save_table(table, out_csv)
    sizes = {label: face_sizes_by_setting(gt_dir) for label, gt_dir in sources.items()}
    figure, axis = plt.subplots(figsize=(2.2 + 2.4 * len(sources), 4.2))
    colours = {"easy": "#4c72b0", "medium": "#dd8452", "hard": "#55a868"}
    positions, data, colour_list = [], [], []
    for group, label in enumerate(sources):
        for offset, setting in enumerate(DIFFICULTIES):
            positions.append(group * (len(DIFFICULTIES) + 1) + offset)
            data.append(sizes[label][setting])
            colour_list.append(colours[setting])
    boxes = axis.boxplot(data, positions=positions, widths=0.7, patch_artist=True, showfliers=False)
    for patch, colour in zip(boxes["boxes"], colour_list):
        patch.set_facecolor(colour)
        patch.set_alpha(0.8)
    for position, values in zip(positions, data):
        median = float(np.median(values))
        axis.annotate(f"{median:.1f}", (position, median), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
    for setting in DIFFICULTIES:
        axis.axhline(WIDER_VAL_MEDIAN_FACE_PX[setting], color=colours[setting], linestyle=":", linewidth=0.8)
    axis.set_xticks([group * (len(DIFFICULTIES) + 1) + 1 for group in range(len(sources))])
    axis.set_xticklabels([f"{label}\n({', '.join(s[0].upper() for s in DIFFICULTIES)})" for label in sources], fontsize=8)
    axis.set_yscale("log")
    axis.set_ylabel("face size, sqrt(box area) (px)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[s], alpha=0.8) for s in DIFFICULTIES]
    axis.legend(handles, [f"{s} (dotted: WIDER val median)" for s in DIFFICULTIES], fontsize=7, loc="upper right")
    axis.set_title("Face size per difficulty (boxes: quartiles, whiskers: 1.5 IQR)")
    axis.grid(axis="y", alpha=0.3, which="both")
    save_figure(figure, out_png)
    return table
