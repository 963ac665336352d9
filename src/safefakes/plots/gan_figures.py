"""The paper's GAN figures and a landmark-coverage figure.

* Fig. 1 (and supplementary Fig. 10): one training image as every method anonymized it, with zoomed
  crops of its largest faces so the generated faces can be seen.
* Fig. 7: detector AP per difficulty against the anonymizer's training set (PIPA 38k, FDF 100k, ...); each bar's
  training-face count is the one its GAN trained on, read from its anonymized training set's manifest
  (``method_record.generator.train_crops``).
* Fig. 9: detector AP per difficulty against the anonymizer's training iterations.
* Landmark coverage: per GAN method and face-size bin, where each face's landmarks came from (the
  dataset, Keypoint R-CNN, MTCNN, dlib, none, blacked out instead), read from the anonymization manifests'
  ``counts.face_details`` (keys ``kp=<source>,size=<bin>[,fallback=blackout]``).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from safefakes.anonymize.base import SKIP_BELOW_MIN_SIZE  # noqa: E402
from safefakes.anonymize.dataset import MANIFEST_NAME  # noqa: E402
from safefakes.anonymize.gan.crops import context_square, extract_square  # noqa: E402
from safefakes.anonymize.gan.keypoints import SIZE_BIN_EDGES, size_bin  # noqa: E402
from safefakes.anonymize.gan.keypoints import parse_face_detail as parse_landmark_detail  # noqa: E402
from safefakes.common.errors import SafefakesError  # noqa: E402
from safefakes.common.weights import require_one_initialisation  # noqa: E402
from safefakes.data.wider import (  # noqa: E402
    DIFFICULTIES,  # noqa: E402
    FaceBox,
    ImageAnnotation,
    WiderLayout,
    load_split,
)
from safefakes.plots.figures import DETECTOR_LABELS, METHOD_LABELS, method_order, read_ap_file, read_initialisation, save_figure, save_table  # noqa: E402

#: Bar / line colours of the three WIDER FACE difficulties and their mean.
AP_COLORS = {"easy": "#4c72b0", "medium": "#dd8452", "hard": "#55a868", "mAP": "#8172b3"}
AP_COLUMNS = DIFFICULTIES + ("mAP",)
#: Fig. 9 uses a logarithmic x axis when the largest iteration count is more than this many times the smallest
#: (the paper's points, 800k to 40M iterations, are on a log scale: Safe Fakes Sec. IV-C).
LOG_AXIS_RATIO = 10.0
#: Line styles of the reference runs in Fig. 9, one per reference, repeating.
REFERENCE_LINESTYLES = ("--", ":", "-.")
#: Multipliers of the count suffixes accepted in KEY=VALUE counts ("38k", "1.47M", "4M").
COUNT_SUFFIXES = {"": 1, "k": 1_000, "m": 1_000_000}


@dataclass(frozen=True)
class Fig1Config:
    """Layout of Fig. 1: which faces get a zoomed crop and how much context they show."""

    min_face_px: float = 40.0  # default image: the one with most faces at least this size (sqrt of box area)
    faces: int = 3  # zoomed crops per method: the image's largest faces
    crop_context: float = 1.6  # crop side / face box side, so the generated face's blending is visible
    column_inches: float = 2.4  # width of one method's column
    crop_row_inches: float = 1.8  # height of one row of zoomed crops


#: Landmark sources of the coverage figure, bottom to top of each stacked bar: the dataset's, each detector's
#: (the anonymizer's ``kp=`` names), none found, blacked out for want of landmarks, and faces too small to anonymize.
COVERAGE_SOURCES = ("dataset", "rcnn", "mtcnn", "dlib", "none", "blackout", "skipped_small")
COVERAGE_LABELS = {
    "dataset": "dataset landmarks",
    "rcnn": "Keypoint R-CNN (7 keypoints)",
    "mtcnn": "MTCNN (eyes, nose)",
    "dlib": "dlib (68 landmarks)",
    "none": "generated without landmarks",
    "blackout": "blacked out (no landmarks)",
    "skipped_small": "left as is (below min size)",
}
COVERAGE_COLORS = {
    "dataset": "#55a868",
    "rcnn": "#4c72b0",
    "mtcnn": "#8172b3",
    "dlib": "#64b5cd",
    "none": "#dd8452",
    "blackout": "#333333",
    "skipped_small": "#bbbbbb",
}


# --------------------------------------------------------------------------------------------------
# Command-line values
# --------------------------------------------------------------------------------------------------


def parse_key_values(entries: Sequence[str], option: str, key_name: str = "KEY", value_name: str = "VALUE") -> list[tuple[str, str]]:
    """``KEY=VALUE`` entries as ordered pairs; malformed entries and repeated keys are errors."""
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for entry in entries:
        key, separator, value = entry.partition("=")
        key, value = key.strip(), value.strip()
        if not separator or not key or not value:
            raise SafefakesError(f"{option} {entry!r}: expected {key_name}={value_name}")
        if key in seen:
            raise SafefakesError(f"{option} {entry!r}: {key_name} {key!r} given twice")
        seen.add(key)
        pairs.append((key, value))
    return pairs


def parse_count(text: str) -> int:
    """A whole count, optionally with a k or M suffix: ``60000``, ``38k``, ``1.47M``, ``40M``."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmM]?)", text.strip().replace(",", "").replace("_", ""))
    if not match:
        raise SafefakesError(f"{text!r} is not a count (use a whole number, optionally with k or M: 38k, 4M)")
    value = float(match.group(1)) * COUNT_SUFFIXES[match.group(2).lower()]
    if value != round(value) or value <= 0:
        raise SafefakesError(f"{text!r} is not a positive whole count")
    return int(round(value))


def format_count(count: int) -> str:
    """A count the way the paper writes it: 38k, 100k, 1.47M, 40M."""
    for suffix, scale in (("M", 1_000_000), ("k", 1_000)):
        if count >= scale:
            return f"{count / scale:.3g}{suffix}"
    return str(count)


def _ap_row(path: str | os.PathLike[str]) -> dict[str, float | str]:
    aps = read_ap_file(path)
    return {"initialisation": read_initialisation(path), **aps, "mAP": sum(aps.values()) / len(aps)}  # mAP last, as in Fig. 4's CSV


# --------------------------------------------------------------------------------------------------
# Fig. 1: one image as every method anonymized it
# --------------------------------------------------------------------------------------------------


def choose_example_image(annotations: Sequence[ImageAnnotation], min_face_px: float, available: Sequence[str] | None = None) -> str:
    """The image with the most faces of at least ``min_face_px``; ties go to more faces, then the first name.

    ``available`` limits the choice (e.g. to images every anonymized root contains).
    """
    allowed = set(available) if available is not None else None
    candidates = [a for a in annotations if allowed is None or a.name in allowed]
    if not candidates:
        raise SafefakesError("no image is present in the original root and in every anonymized root")
    best = min(candidates, key=lambda a: (-sum(face.size >= min_face_px for face in a.faces), -len(a.faces), a.name))
    return best.name


def largest_faces(faces: Sequence[FaceBox], count: int) -> list[FaceBox]:
    """The ``count`` largest faces (sqrt of box area), largest first; ties keep annotation order."""
    order = sorted(range(len(faces)), key=lambda index: (-faces[index].size, index))
    return [faces[index] for index in order[:count] if faces[index].size > 0]


def _read_rgb(path: Path, label: str) -> np.ndarray:
    if not path.is_file():
        raise SafefakesError(f"{label}: image not found: {path}")
    pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if pixels is None:
        raise SafefakesError(f"{label}: cannot decode image {path}")
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def fig1_panels(
    original_root: str | os.PathLike[str], results: Sequence[tuple[str, str]], split: str, image: str | None, config: Fig1Config
) -> tuple[str, list[FaceBox], list[tuple[str, np.ndarray]]]:
    """Load the example image from the original root and every anonymized root.

    Returns the image name, its faces to zoom into, and ``(method, RGB pixels)`` with the original
    first and the methods in the paper's order.
    """
    if any(method == "original" for method, _ in results):
        raise SafefakesError("give the original data with --original, not as --result original=...")
    annotations, _ = load_split(original_root, split)
    by_name = {a.name: a for a in annotations}
    roots = [("original", Path(original_root))] + [(method, Path(root)) for method, root in results]
    for method, root in roots[1:]:
        if not WiderLayout(root).images_dir(split).is_dir():
            raise SafefakesError(f"{method}: {root} has no {WiderLayout(root).images_dir(split).relative_to(root)} folder")
    if image is None:
        available = [a.name for a in annotations if all(WiderLayout(root).image_path(split, a.name).is_file() for _, root in roots)]
        image = choose_example_image(annotations, config.min_face_px, available)
    elif image not in by_name:
        raise SafefakesError(f"image {image!r} is not in {WiderLayout(Path(original_root)).annotation_file(split)}")
    order = {method: rank for rank, method in enumerate(method_order([method for method, _ in roots]))}
    panels = [(method, _read_rgb(WiderLayout(root).image_path(split, image), method)) for method, root in sorted(roots, key=lambda item: order[item[0]])]
    shape = panels[0][1].shape
    for method, pixels in panels[1:]:
        if pixels.shape != shape:
            raise SafefakesError(f"{method}: {image} is {pixels.shape[1]}x{pixels.shape[0]} px, the original is {shape[1]}x{shape[0]}")
    return image, largest_faces(by_name[image].faces, config.faces), panels


def plot_fig1(
    image: str, faces: Sequence[FaceBox], panels: Sequence[tuple[str, np.ndarray]], out_png: str | os.PathLike[str], config: Fig1Config = Fig1Config()
) -> None:
    """Fig. 1: one column per method, the full image on top and zoomed crops of ``faces`` below."""
    height, width = panels[0][1].shape[:2]
    image_row_inches = config.column_inches * height / width
    figure, axes = plt.subplots(
        1 + len(faces),
        len(panels),
        squeeze=False,
        figsize=(config.column_inches * len(panels), image_row_inches + config.crop_row_inches * len(faces)),
        gridspec_kw={"height_ratios": [image_row_inches] + [config.crop_row_inches] * len(faces)},
    )
    for column, (method, pixels) in enumerate(panels):
        axes[0, column].imshow(pixels)
        axes[0, column].set_title(METHOD_LABELS.get(method, method), fontsize=9)
        for row, face in enumerate(faces, start=1):
            axes[row, column].imshow(extract_square(pixels, context_square(face, config.crop_context)))
    for row, face in enumerate(faces, start=1):
        axes[row, 0].set_ylabel(f"face {row}\n{face.size:.0f} px", fontsize=8)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    axes[0, 0].set_ylabel(Path(image).name, fontsize=7)
    figure.tight_layout(pad=0.3, h_pad=0.2, w_pad=0.2)
    save_figure(figure, out_png)


# --------------------------------------------------------------------------------------------------
# Fig. 7: AP against the anonymizer's training set
# --------------------------------------------------------------------------------------------------


def training_set_table(results: Sequence[tuple[str, str]], anonymized: Sequence[tuple[str, str]] = ()) -> pd.DataFrame:
    """One row per label of ``results`` (label, evaluation JSON; in the given order): the faces its anonymizer trained
    on, the three APs and their mean. The training faces come from the label's anonymized training set in ``anonymized``
    (label, anonymized root: :func:`generator_training_faces`); empty for a label without one or whose manifest records
    none (the original data; data anonymized before GAN checkpoints recorded their training crops)."""
    labels = [label for label, _ in results]
    unknown = sorted({label for label, _ in anonymized} - set(labels))
    if unknown:
        raise SafefakesError(f"--anonymized given for {', '.join(unknown)}, which has no --result")
    if not results:
        raise SafefakesError("no evaluation results given")
    faces = {label: generator_training_faces(root, label) for label, root in anonymized}
    rows = [{"label": label, "training_faces": faces.get(label), **_ap_row(path)} for label, path in results]
    require_one_initialisation({row["label"]: row["initialisation"] for row in rows})
    table = pd.DataFrame(rows, columns=["label", "training_faces", "initialisation", *AP_COLUMNS])
    table["training_faces"] = table["training_faces"].astype("Int64")
    return table


def plot_fig7(table: pd.DataFrame, detector: str, out_png: str | os.PathLike[str], out_csv: str | os.PathLike[str]) -> None:
    """Fig. 7: grouped bars (easy, medium, hard, mean AP) per anonymizer training set, in the table's order."""
    save_table(table, out_csv)
    count = len(table)
    figure, axis = plt.subplots(figsize=(max(5.0, 1.3 * count + 2), 4.2))
    width = 0.8 / len(AP_COLUMNS)
    for offset, column in enumerate(AP_COLUMNS):
        positions = [index + (offset - (len(AP_COLUMNS) - 1) / 2) * width for index in range(count)]
        label = "mean" if column == "mAP" else column.capitalize()
        bars = axis.bar(positions, table[column] * 100, width=width, label=label, color=AP_COLORS[column])
        axis.bar_label(bars, fmt="%.1f", fontsize=6, padding=1)
    ticks = [label if pd.isna(faces) else f"{label}\n({format_count(int(faces))} faces)" for label, faces in zip(table["label"], table["training_faces"])]
    axis.set_xticks(range(count))
    axis.set_xticklabels(ticks, fontsize=8)
    axis.set_ylabel("AP on the original validation set (%)")
    axis.set_xlabel("anonymizer training data")
    axis.set_ylim(0, 118)
    axis.set_title(f"{DETECTOR_LABELS.get(detector, detector)} trained on data anonymized by GANs trained on different data")
    axis.legend(loc="upper right", fontsize=8, ncols=4)
    axis.grid(axis="y", alpha=0.3)
    save_figure(figure, out_png)


# --------------------------------------------------------------------------------------------------
# Fig. 9: AP against the anonymizer's training iterations
# --------------------------------------------------------------------------------------------------


def iterations_table(results: Sequence[tuple[int, str]]) -> pd.DataFrame:
    """One row per anonymizer iteration count (ascending): the three APs and their mean."""
    if not results:
        raise SafefakesError("no evaluation results given")
    counts = [iterations for iterations, _ in results]
    if len(set(counts)) != len(counts):
        raise SafefakesError(f"iteration counts given twice: {sorted({c for c in counts if counts.count(c) > 1})}")
    rows = [{"iterations": int(iterations), **_ap_row(path)} for iterations, path in results]
    return pd.DataFrame(rows, columns=["iterations", "initialisation", *AP_COLUMNS]).sort_values("iterations").reset_index(drop=True)


def reference_table(references: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """One row per reference run (e.g. the detector trained on original data): the three APs and their mean."""
    return pd.DataFrame([{"label": label, **_ap_row(path)} for label, path in references], columns=["label", "initialisation", *AP_COLUMNS])


def use_log_axis(iterations: Sequence[int]) -> bool:
    """Whether the iteration counts span more than :data:`LOG_AXIS_RATIO` (then Fig. 9's x axis is logarithmic)."""
    return max(iterations) > LOG_AXIS_RATIO * min(iterations)


def plot_fig9(table: pd.DataFrame, references: pd.DataFrame, detector: str, out_png: str | os.PathLike[str], out_csv: str | os.PathLike[str]) -> None:
    """Fig. 9: AP per difficulty and mean against anonymizer training iterations; references as dashed lines. Refused
    when the detectors (references included) started differently."""
    starts = {f"{format_count(int(row.iterations))} iterations": row.initialisation for row in table.itertuples(index=False)}
    require_one_initialisation(starts | {f"{row.label} (reference)": row.initialisation for row in references.itertuples(index=False)})
    save_table(table, out_csv)
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for column in AP_COLUMNS:
        label = "mean" if column == "mAP" else column.capitalize()
        axis.plot(table["iterations"], table[column] * 100, "-", marker="o", markersize=4, color=AP_COLORS[column], label=label)
        for index, reference in enumerate(references.itertuples(index=False)):
            style = REFERENCE_LINESTYLES[index % len(REFERENCE_LINESTYLES)]
            axis.axhline(getattr(reference, column) * 100, color=AP_COLORS[column], linestyle=style, linewidth=0.9, alpha=0.8)
    for index, label in enumerate(references["label"]):
        axis.plot([], [], color="grey", linestyle=REFERENCE_LINESTYLES[index % len(REFERENCE_LINESTYLES)], label=f"{label} (reference)")
    if use_log_axis(list(table["iterations"])):
        axis.set_xscale("log")
    axis.set_xticks(list(table["iterations"]), [format_count(int(i)) for i in table["iterations"]])
    axis.minorticks_off()
    axis.set_xlabel("anonymizer training iterations")
    axis.set_ylabel("AP on the original validation set (%)")
    axis.set_title(f"{DETECTOR_LABELS.get(detector, detector)}: AP against anonymizer training length")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="lower right")
    save_figure(figure, out_png)


# --------------------------------------------------------------------------------------------------
# Landmark coverage by face size
# --------------------------------------------------------------------------------------------------


def size_bin_order(edges: Sequence[int] = SIZE_BIN_EDGES) -> list[str]:
    """The labels :func:`size_bin` gives, smallest faces first."""
    return [size_bin(edges[0] - 1, edges)] + [size_bin(edge, edges) for edge in edges]


def parse_face_detail(detail: str) -> tuple[str, str, str]:
    """``kp=<source>,size=<bin>[,fallback=blackout]`` as ``(coverage source, size bin, landmark source name)``: the
    coverage source is the landmark source, or ``blackout`` for a face blacked out instead; unknown sources are an error."""
    parsed = parse_landmark_detail(detail)
    if parsed.counted_source not in COVERAGE_SOURCES:
        raise SafefakesError(f"face detail {detail!r}: unknown landmark source {parsed.source!r}; expected one of {', '.join(COVERAGE_SOURCES[:-1])}")
    return parsed.counted_source, parsed.size_bin, parsed.source


def read_manifest(path: str | os.PathLike[str], label: str) -> dict[str, Any]:
    """One anonymization manifest (the ``manifest.json`` of ``safefakes anonymize``) as a dict. Refused with an error
    naming ``label`` when the file is missing, and naming the file when it is not a JSON object with a ``counts``
    object (or its ``params`` is not an object)."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SafefakesError(f"{label}: manifest not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("counts"), dict) or not isinstance(manifest.get("params") or {}, dict):
        raise SafefakesError(f"{path}: not an anonymization manifest (expected a JSON object with counts)")
    return manifest


def generator_training_faces(anonymized_root: str | os.PathLike[str], label: str) -> int | None:
    """How many faces the GAN that anonymized ``anonymized_root`` trained on: ``method_record.generator.train_crops``
    of its ``manifest.json`` (``safefakes anonymize`` copies it from the generator checkpoint). None when the manifest
    records no count: data anonymized by a checkpoint written before the count was recorded, or by a method without a
    generator. A count that is not a positive whole number is an error naming the file."""
    path = Path(anonymized_root) / MANIFEST_NAME
    record = read_manifest(path, label).get("method_record") or {}
    generator = (record.get("generator") or {}) if isinstance(record, dict) else None
    if not isinstance(generator, dict):
        raise SafefakesError(f"{path}: method_record.generator is not an object")
    count = generator.get("train_crops")
    if count is None:
        return None
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise SafefakesError(f"{path}: method_record.generator.train_crops must be a positive whole number, got {count!r}")
    return count


def _read_manifest(path: str | os.PathLike[str], method: str) -> tuple[dict, dict]:
    """The ``counts`` and ``params`` of one anonymization manifest."""
    manifest = read_manifest(path, method)
    return dict(manifest["counts"]), dict(manifest.get("params") or {})


def coverage_table(manifests: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """Faces per (method, size bin, source) from anonymization manifests, with each one's share of its size bin.

    Faces skipped for being under the method's ``min_face_size`` are counted as ``skipped_small`` in
    the bin holding every size below it (their own bin ``<min`` when it is above the first bin edge).
    Columns: method, size_bin, source, faces, share, kp_sources (the landmark source names behind the row).
    """
    if not manifests:
        raise SafefakesError("no manifests given")
    rows = []
    for method, path in manifests:
        counts, params = _read_manifest(path, method)
        details = counts.get("face_details") or {}
        if not details:
            raise SafefakesError(f"{method}: {path} has no counts.face_details (landmark coverage is recorded by the GAN methods only)")
        faces: dict[tuple[str, str], int] = {}
        names: dict[tuple[str, str], set[str]] = {}
        for detail, count in details.items():
            source, bin_label, name = parse_face_detail(detail)
            faces[(bin_label, source)] = faces.get((bin_label, source), 0) + int(count)
            names.setdefault((bin_label, source), set()).add(name)
        skipped_small = int((counts.get("faces_skipped") or {}).get(SKIP_BELOW_MIN_SIZE, 0))
        bins = size_bin_order()
        if skipped_small:
            min_size = float(params.get("min_face_size", SIZE_BIN_EDGES[0]))
            bin_label = bins[0] if min_size <= SIZE_BIN_EDGES[0] else f"<{min_size:g}"
            if bin_label not in bins:
                bins = [bin_label] + bins
            faces[(bin_label, "skipped_small")] = skipped_small
        bins += sorted({b for b, _ in faces} - set(bins))
        for bin_label in bins:
            total = sum(count for (b, _), count in faces.items() if b == bin_label)
            for source in COVERAGE_SOURCES:
                count = faces.get((bin_label, source), 0)
                if total:
                    rows.append(
                        {
                            "method": method,
                            "size_bin": bin_label,
                            "source": source,
                            "faces": count,
                            "share": count / total,
                            "kp_sources": "+".join(sorted(names.get((bin_label, source), ()))),
                        }
                    )
    return pd.DataFrame(rows, columns=["method", "size_bin", "source", "faces", "share", "kp_sources"])


def plot_keypoint_coverage(table: pd.DataFrame, out_png: str | os.PathLike[str], out_csv: str | os.PathLike[str]) -> None:
    """Stacked bars per size bin, one panel per method: the share of faces by landmark source."""
    save_table(table, out_csv)
    methods = list(dict.fromkeys(table["method"]))
    columns = min(3, len(methods))
    rows = math.ceil(len(methods) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.6 * rows), squeeze=False, sharey=True)
    for axis, method in zip(axes.flat, methods):
        part = table[table["method"] == method]
        bins = list(dict.fromkeys(part["size_bin"]))
        bottom = np.zeros(len(bins))
        for source in COVERAGE_SOURCES:
            shares = part[part["source"] == source].set_index("size_bin")["share"].reindex(bins, fill_value=0.0).to_numpy() * 100
            axis.bar(range(len(bins)), shares, bottom=bottom, color=COVERAGE_COLORS[source], label=COVERAGE_LABELS[source])
            bottom += shares
        totals = part.groupby("size_bin", sort=False)["faces"].sum().reindex(bins)
        for position, total in enumerate(totals):
            axis.annotate(f"n={total}", (position, 100), ha="center", va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
        axis.set_title(METHOD_LABELS.get(method, method), fontsize=9)
        axis.set_xticks(range(len(bins)), bins, fontsize=8)
        axis.set_xlabel("face size (px, sqrt of box area)")
        axis.set_ylim(0, 112)
        axis.grid(axis="y", alpha=0.3)
    for axis in axes[:, 0]:
        axis.set_ylabel("share of faces (%)")
    for axis in list(axes.flat)[len(methods) :]:
        axis.axis("off")
    # One legend entry per source that some face of the figure has (a category per source, empty ones left out).
    present = [source for source in COVERAGE_SOURCES if table.loc[table["source"] == source, "faces"].sum() > 0]
    handles = [plt.Rectangle((0, 0), 1, 1, color=COVERAGE_COLORS[source]) for source in present]
    labels = [COVERAGE_LABELS[source] for source in present]
    figure.legend(handles, labels, loc="lower center", ncols=max(1, len(present)), fontsize=7, bbox_to_anchor=(0.5, -0.02))
    figure.suptitle("Where the GAN methods' face landmarks came from, by face size")
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    save_figure(figure, out_png)
