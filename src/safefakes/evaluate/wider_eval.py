"""The WIDER FACE easy / medium / hard AP, exactly as the official ``eval_tools``, vectorized with numpy.

Protocol (see ``WIDER_EVAL_PROTOCOL.md``): scores of all images are min-max normalized together;
inside each image, detections (descending score) are matched greedily to the single GT box of
highest IoU (``+1`` pixel rule) among *all* its boxes; a match (IoU >= 0.5) on a face the setting
ignores removes the detection from the proposals, the first match on a counted face is a true
positive, later ones are duplicates. Precision and recall are counted at 1000 score thresholds and
AP is the VOC all-point area under the NaN-safe precision envelope.

The sequential per-detection loop of the official code is replaced by an equivalent closed form:
a detection's best GT does not depend on earlier detections, so a detection is a true positive
exactly when it is the first (in rank order) to hit its counted best GT with IoU >= 0.5, and the
prefix counts at a threshold equal the counts over detections whose score passes that threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from safefakes.common.config import build_config
from safefakes.common.errors import SafefakesError
from safefakes.data.ground_truth import GroundTruth
from safefakes.data.predictions import ImagePredictions, Predictions
from safefakes.data.wider import DIFFICULTIES

LOGGER = logging.getLogger(__name__)
#: Upper bound on (detection, GT box) pairs held in memory at once (about 100 MB of float64 work arrays).
MAX_PAIRS_PER_CHUNK = 2_000_000


@dataclass(frozen=True)
class EvaluationConfig:
    """Hyper-parameters of the WIDER FACE protocol (defaults: the official ``eval_tools/evaluation.m``)."""

    #: ``IoU_thresh = 0.5`` in evaluation.m: minimum IoU for a detection to hit a face.
    iou_threshold: float = 0.5
    #: ``thresh_num = 1000`` in evaluation.m: score thresholds 1 - k/1000, k = 1..1000.
    num_thresholds: int = 1000

    def __post_init__(self) -> None:
        iou_threshold, num_thresholds = self.iou_threshold, self.num_thresholds
        if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float)) or not 0.0 < iou_threshold <= 1.0:
            raise SafefakesError(f"iou_threshold must be a number in (0, 1], got {iou_threshold!r}")
        if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, int) or num_thresholds < 1:
            raise SafefakesError(f"num_thresholds must be a positive whole number, got {num_thresholds!r}")
        object.__setattr__(self, "iou_threshold", float(iou_threshold))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> EvaluationConfig:
        """Build from a plain dict (e.g. the config.yaml section); unknown keys are an error."""
        return build_config(cls, values, "evaluation")

    def thresholds(self) -> np.ndarray:
        """The score thresholds in evaluation order: ``1 - k / num_thresholds`` for k = 1..num_thresholds."""
        return 1.0 - np.arange(1, self.num_thresholds + 1) / self.num_thresholds


@dataclass(frozen=True)
class PRCurve:
    """Precision and recall at each threshold (NaN precision where a threshold has no proposal)."""

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    true_positives: np.ndarray
    proposals: np.ndarray


@dataclass(frozen=True)
class EvaluationResult:
    """The three APs, their PR curves, and what was evaluated."""

    ap: dict[str, float]
    curves: dict[str, PRCurve]
    face_counts: dict[str, int]
    num_images: int
    num_predictions: int

    def summary(self) -> dict[str, float | None]:
        """``{"easy": AP, "medium": AP, "hard": AP}``; an undefined AP (no face in a setting) is ``None``."""
        return {setting: (None if np.isnan(self.ap[setting]) else float(self.ap[setting])) for setting in DIFFICULTIES}

    def curves_frame(self) -> pd.DataFrame:
        """The PR curves as one table with columns ``setting, threshold, precision, recall``."""
        return pd.concat(
            [
                pd.DataFrame(
                    {
                        "setting": setting,
                        "threshold": self.curves[setting].thresholds,
                        "precision": self.curves[setting].precision,
                        "recall": self.curves[setting].recall,
                    }
                )
                for setting in DIFFICULTIES
            ],
            ignore_index=True,
        )


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point AP (``VOCap.m``): sentinels, right-to-left max envelope skipping NaN, area.

    ``np.fmax`` ignores NaN like MATLAB's ``max``, so thresholds without proposals do not poison the AP.
    """
    mrec = np.concatenate(([0.0], np.asarray(recall, dtype=np.float64), [1.0]))
    mpre = np.concatenate(([0.0], np.asarray(precision, dtype=np.float64), [0.0]))
    envelope = np.fmax.accumulate(mpre[::-1])[::-1]
    changes = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[changes] - mrec[changes - 1]) * envelope[changes]))


def normalize_scores(scores: np.ndarray) -> np.ndarray:
    """Global min-max normalization to [0, 1] with the true min and max (``norm_score.m``).

    When every score is equal the official code divides 0 by 0 (NaN, so AP 0); here every detection
    then gets score 1, i.e. it passes every threshold, and a warning says so.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores.copy()
    low, high = scores.min(), scores.max()
    if high == low:
        LOGGER.warning("all %d detection scores are equal (%g): every detection counts at every threshold", scores.size, low)
        return np.ones_like(scores)
    return (scores - low) / (high - low)


def pairwise_iou_plus_one(pred_corners: np.ndarray, gt_corners: np.ndarray) -> np.ndarray:
    """IoU of matching rows of two ``(k, 4)`` corner arrays ``x1 y1 x2 y2`` with the "+1 pixel" rule.

    Areas are ``(x2 - x1 + 1) * (y2 - y1 + 1)`` and the overlap is 0 unless both intersection sides
    are positive (``boxoverlap.m``); the operation order is that of the official code.
    """
    inter_w = np.minimum(pred_corners[:, 2], gt_corners[:, 2]) - np.maximum(pred_corners[:, 0], gt_corners[:, 0]) + 1
    inter_h = np.minimum(pred_corners[:, 3], gt_corners[:, 3]) - np.maximum(pred_corners[:, 1], gt_corners[:, 1]) + 1
    pred_area = (pred_corners[:, 2] - pred_corners[:, 0] + 1) * (pred_corners[:, 3] - pred_corners[:, 1] + 1)
    gt_area = (gt_corners[:, 2] - gt_corners[:, 0] + 1) * (gt_corners[:, 3] - gt_corners[:, 1] + 1)
    intersection = inter_w * inter_h
    overlapping = (inter_w > 0) & (inter_h > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(overlapping, intersection / (pred_area + gt_area - intersection), 0.0)
    return np.nan_to_num(iou, nan=0.0, posinf=0.0, neginf=0.0)


def xywh_to_corners(boxes: np.ndarray) -> np.ndarray:
    """``x y w h`` -> ``x1 y1 x2 y2`` with ``x2 = x + w`` (the evaluation's convention, no -1)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


@dataclass(frozen=True)
class _Detections:
    """The detections of all evaluated images, concatenated image by image, descending score inside an image."""

    corners: np.ndarray  # (P, 4) x1 y1 x2 y2
    scores: np.ndarray  # (P,) normalized
    image: np.ndarray  # (P,) index into ground_truth.images


def _gather_detections(ground_truth: GroundTruth, predictions: Predictions) -> tuple[_Detections, int]:
    """Normalize all scores together, then keep the detections of images that have GT boxes, sorted.

    The official code skips images without GT boxes or without detections; their counted faces still
    add to recall's denominator. Returns the detections and how many there were before skipping.
    """
    empty = ImagePredictions.empty()
    per_image = [predictions.get(image.key, empty) for image in ground_truth.images]
    sizes = np.array([len(p) for p in per_image], dtype=np.int64)
    if sizes.sum() == 0:
        return _Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)), 0
    raw_scores = np.concatenate([p.scores for p in per_image]).astype(np.float64)
    boxes = np.concatenate([p.boxes for p in per_image]).astype(np.float64)
    image = np.repeat(np.arange(len(per_image), dtype=np.int64), sizes)
    if not (np.isfinite(raw_scores).all() and np.isfinite(boxes).all()):
        bad = ground_truth.images[int(image[~(np.isfinite(raw_scores) & np.isfinite(boxes).all(axis=1))][0])]
        raise SafefakesError(f"predictions of {bad.event}/{bad.stem} hold non-finite boxes or scores")
    normalized = normalize_scores(raw_scores)
    # read_pred.m sorts each image's raw scores, highest first (a stable sort); lexsort is stable too.
    order = np.lexsort((-raw_scores, image))
    has_gt = np.diff(ground_truth.stacked.offsets) > 0
    order = order[has_gt[image[order]]]
    return _Detections(xywh_to_corners(boxes[order]), normalized[order], image[order]), int(raw_scores.size)


def _candidate_ranges(
    detections: _Detections, gt_corners: np.ndarray, gt_offsets: np.ndarray, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each detection, a run of GT rows (in (image, x1) order) holding every GT box it can reach IoU >= threshold.

    Since 2-D IoU <= the IoU of the x-intervals, IoU >= t needs ``-W (1 - t) / t <= x1_gt - x1_det <= W (1 - t)``
    with ``W = x2 - x1 + 1`` the detection's width; a one-pixel margin absorbs rounding.
    Returns ``gt_order`` (GT rows sorted by image, then x1) and each detection's ``[low, high)`` slice of it.
    """
    gt_image = np.repeat(np.arange(gt_offsets.size - 1, dtype=np.int64), np.diff(gt_offsets))
    x_low = min(gt_corners[:, 0].min(), detections.corners[:, 0].min())
    x_high = max(gt_corners[:, 0].max(), detections.corners[:, 0].max())
    span = (x_high - x_low) + 4.0  # every image's keys live in [image * span, image * span + span - 4]
    gt_order = np.lexsort((gt_corners[:, 0], gt_image))
    gt_keys = gt_image[gt_order] * span + (gt_corners[gt_order, 0] - x_low)
    width = np.maximum(detections.corners[:, 2] - detections.corners[:, 0] + 1, 0.0)
    base = detections.image * span
    relative_x = detections.corners[:, 0] - x_low
    low_keys = np.maximum(base + relative_x - width * (1 - iou_threshold) / iou_threshold - 1.0, base - 1.0)
    high_keys = np.minimum(base + relative_x + width * (1 - iou_threshold) + 1.0, base + span - 2.0)
    low = np.searchsorted(gt_keys, low_keys, side="left")
    high = np.maximum(np.searchsorted(gt_keys, high_keys, side="right"), low)
    return gt_order, low, high


def _chunks(pairs_per_detection: np.ndarray) -> list[tuple[int, int]]:
    """Split detections into contiguous runs holding at most :data:`MAX_PAIRS_PER_CHUNK` pairs each."""
    ends = np.cumsum(pairs_per_detection)
    bounds, start = [], 0
    while start < pairs_per_detection.size:
        budget = (ends[start - 1] if start else 0) + MAX_PAIRS_PER_CHUNK
        stop = max(int(np.searchsorted(ends, budget, side="right")), start + 1)
        bounds.append((start, stop))
        start = stop
    return bounds


def best_gt_hits(detections: _Detections, ground_truth: GroundTruth, iou_threshold: float) -> np.ndarray:
    """For each detection, the global GT row of highest IoU if that IoU >= ``iou_threshold``, else -1.

    Ties go to the first GT row of the image, as MATLAB's ``max`` and numpy's ``argmax`` do. Only
    pairs that can reach the threshold are computed (see :func:`_candidate_ranges`).
    """
    best = np.full(detections.scores.size, -1, dtype=np.int64)
    stacked = ground_truth.stacked
    if best.size == 0:
        return best
    gt_corners = xywh_to_corners(stacked.boxes)
    gt_order, low, high = _candidate_ranges(detections, gt_corners, stacked.offsets, iou_threshold)
    lengths_all = high - low
    for start, stop in _chunks(lengths_all):
        lengths = lengths_all[start:stop]
        pair_detection = np.repeat(np.arange(start, stop), lengths)
        run_start = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        within = np.arange(int(lengths.sum())) - np.repeat(run_start, lengths)
        pair_gt = gt_order[np.repeat(low[start:stop], lengths) + within]
        iou = pairwise_iou_plus_one(detections.corners[pair_detection], gt_corners[pair_gt])
        reaching = iou >= iou_threshold
        pair_detection, pair_gt, iou = pair_detection[reaching], pair_gt[reaching], iou[reaching]
        # Per detection: highest IoU first, then the lowest GT row; keep the first of each detection.
        order = np.lexsort((pair_gt, -iou, pair_detection))
        first = np.concatenate(([True], pair_detection[order][1:] != pair_detection[order][:-1])) if order.size else order.astype(bool)
        best[pair_detection[order][first]] = pair_gt[order][first]
    return best


def _threshold_counts(passed_from: np.ndarray, selected: np.ndarray, num_thresholds: int) -> np.ndarray:
    """At each threshold, how many selected detections pass it (``passed_from`` = first threshold passed)."""
    histogram = np.bincount(passed_from[selected], minlength=num_thresholds + 1)
    return np.cumsum(histogram[:num_thresholds])


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


def evaluate(ground_truth: GroundTruth, predictions: Predictions, config: EvaluationConfig | None = None) -> EvaluationResult:
    """Easy / medium / hard AP and PR curves of ``predictions`` on the images of ``ground_truth``.

    Only images in ``ground_truth`` are evaluated (a subset GT evaluates that subset); an image
    without predictions has no detections.
    """
    config = config or EvaluationConfig()
    detections, num_predictions = _gather_detections(ground_truth, predictions)
    thresholds = config.thresholds()
    best_gt = best_gt_hits(detections, ground_truth, config.iou_threshold)
    hit = best_gt >= 0
    hit_rows = np.flatnonzero(hit)
    # Detections are in rank order inside each image and GT rows are global, so the first detection
    # hitting a GT row is the one the official sequential loop marks as recalled.
    first_hit = np.zeros(hit.size, dtype=bool)
    _, first_positions = np.unique(best_gt[hit_rows], return_index=True)
    first_hit[hit_rows[first_positions]] = True
    # Thresholds descend, so a detection passes every threshold from index `passed_from` on.
    passed = np.searchsorted(thresholds[::-1], detections.scores, side="right")
    passed_from = config.num_thresholds - passed
    face_counts = ground_truth.face_counts()
    curves: dict[str, PRCurve] = {}
    aps: dict[str, float] = {}
    for setting in DIFFICULTIES:
        counted = np.zeros(hit.size, dtype=bool)
        counted[hit_rows] = ground_truth.stacked.counted[setting][best_gt[hit_rows]]
        is_proposal = ~(hit & ~counted)
        is_true_positive = hit & counted & first_hit
        proposals = _threshold_counts(passed_from, is_proposal, config.num_thresholds)
        true_positives = _threshold_counts(passed_from, is_true_positive, config.num_thresholds)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = true_positives / proposals
            recall = true_positives / face_counts[setting] if face_counts[setting] else np.full(thresholds.size, np.nan)
        curves[setting] = PRCurve(thresholds, precision, recall, true_positives, proposals)
        if face_counts[setting] == 0:
            LOGGER.warning("no face counts in the %s setting of these images: its AP is undefined", setting)
            aps[setting] = float("nan")
        else:
            aps[setting] = voc_ap(recall, precision)
    return EvaluationResult(ap=aps, curves=curves, face_counts=face_counts, num_images=len(ground_truth), num_predictions=num_predictions)
