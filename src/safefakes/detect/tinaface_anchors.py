"""TinaFace anchors, box decoding and anchor-to-face assignment (vedadet's anchor meshgrid, delta coder and
max-IoU assigner)."""

from __future__ import annotations

import torch
from torchvision.ops import box_iou

from safefakes.detect.tinaface_config import TinaFaceModelConfig

#: Faces compared with all anchors at once in :func:`assign_anchors` (bounds memory on crowded images).
ASSIGN_FACE_CHUNK = 128

#: Assignment codes for anchors that match no face.
NEGATIVE = -1
IGNORED = -2


def base_anchors(stride: int, config: TinaFaceModelConfig) -> torch.Tensor:
    """The ``[A, 4]`` anchors of one location at ``stride``, relative to the location (``x1 y1 x2 y2``).

    Sizes are ``stride * octave_base_scale * 2**(i / scales_per_octave)`` and each ratio is ``height / width``;
    the order is ratio-major, scale-minor (mmdet's ``scale_major``).
    """
    scales = config.anchor_octave_base_scale * 2.0 ** (torch.arange(config.anchor_scales_per_octave, dtype=torch.float64) / config.anchor_scales_per_octave)
    ratios = torch.tensor(config.anchor_ratios, dtype=torch.float64)
    height_factors = ratios.sqrt()
    widths = (stride * scales[None, :] / height_factors[:, None]).reshape(-1)
    heights = (stride * scales[None, :] * height_factors[:, None]).reshape(-1)
    centre = config.anchor_center_offset * stride
    anchors = torch.stack([centre - widths / 2, centre - heights / 2, centre + widths / 2, centre + heights / 2], dim=1)
    return anchors.float()


def grid_anchors(stride: int, height: int, width: int, config: TinaFaceModelConfig) -> torch.Tensor:
    """All ``[height * width * A, 4]`` anchors of a feature map, ordered row, column, anchor (the head's order)."""
    shift_y, shift_x = torch.meshgrid(torch.arange(height, dtype=torch.float32) * stride, torch.arange(width, dtype=torch.float32) * stride, indexing="ij")
    shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1).reshape(-1, 1, 4)
    return (shifts + base_anchors(stride, config)[None]).reshape(-1, 4)


class AnchorGrid:
    """Anchors of every pyramid level for a feature-map layout; only the latest layout is kept, so memory
    stays flat when every test image has its own size (training batches all share one layout)."""

    def __init__(self, config: TinaFaceModelConfig) -> None:
        self.config = config
        self._key: tuple[tuple[tuple[int, int], ...], torch.device] | None = None
        self._anchors: list[torch.Tensor] = []

    def per_level(self, feature_sizes: list[tuple[int, int]], device: torch.device) -> list[torch.Tensor]:
        """One ``[H * W * A, 4]`` anchor tensor per level for the given ``(H, W)`` feature sizes."""
        key = (tuple(feature_sizes), device)
        if key != self._key:
            self._anchors = [grid_anchors(stride, h, w, self.config).to(device) for stride, (h, w) in zip(self.config.strides, feature_sizes)]
            self._key = key
        return self._anchors


def decode_boxes(anchors: torch.Tensor, deltas: torch.Tensor, config: TinaFaceModelConfig, image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Boxes ``x1 y1 x2 y2`` from anchors and predicted ``(dx, dy, dw, dh)`` deltas (mmdet ``DeltaXYWHBBoxCoder``).

    Deltas are scaled by the coder's standard deviations, ``dw, dh`` clamped, and the boxes clipped to
    ``image_size = (height, width)`` when given.
    """
    stds = deltas.new_tensor(config.box_coder_stds)
    scaled = deltas * stds
    dx, dy = scaled[..., 0], scaled[..., 1]
    limit = config.box_coder_max_log_ratio
    dw, dh = scaled[..., 2].clamp(-limit, limit), scaled[..., 3].clamp(-limit, limit)
    anchor_w = anchors[..., 2] - anchors[..., 0]
    anchor_h = anchors[..., 3] - anchors[..., 1]
    centre_x = (anchors[..., 0] + anchors[..., 2]) / 2 + anchor_w * dx
    centre_y = (anchors[..., 1] + anchors[..., 3]) / 2 + anchor_h * dy
    half_w, half_h = anchor_w * dw.exp() / 2, anchor_h * dh.exp() / 2
    boxes = torch.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], dim=-1)
    if image_size is not None:
        height, width = image_size
        xs, ys = boxes[..., 0::2].clamp(0, width), boxes[..., 1::2].clamp(0, height)
        boxes = torch.stack([xs[..., 0], ys[..., 0], xs[..., 1], ys[..., 1]], dim=-1)
    return boxes


def aligned_iou(boxes: torch.Tensor, others: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """IoU of each box in ``boxes`` with the box at the same row of ``others`` (both ``[N, 4]``)."""
    top_left = torch.maximum(boxes[:, :2], others[:, :2])
    bottom_right = torch.minimum(boxes[:, 2:], others[:, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=1)
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=1)
    other_area = (others[:, 2:] - others[:, :2]).clamp(min=0).prod(dim=1)
    return intersection / (area + other_area - intersection).clamp(min=eps)


def assign_anchors(anchors: torch.Tensor, faces: torch.Tensor, config: TinaFaceModelConfig) -> torch.Tensor:
    """Match anchors to faces with vedadet's max-IoU rule; returns ``[A]`` face indices, :data:`NEGATIVE` or :data:`IGNORED`.

    An anchor whose best IoU is ``>= positive_iou`` takes that face; below ``negative_iou`` it is negative,
    in between ignored. Then every face whose best IoU is ``>= min_positive_iou`` also takes all anchors
    reaching exactly that best IoU (later faces win ties), so faces between the thresholds still get anchors.
    """
    num_anchors = anchors.shape[0]
    assigned = torch.full((num_anchors,), IGNORED, dtype=torch.long, device=anchors.device)
    if faces.numel() == 0:
        assigned.fill_(NEGATIVE)
        return assigned
    best_iou = torch.full((num_anchors,), -1.0, device=anchors.device)
    best_face = torch.zeros(num_anchors, dtype=torch.long, device=anchors.device)
    face_best_iou = []
    for start in range(0, faces.shape[0], ASSIGN_FACE_CHUNK):
        iou = box_iou(faces[start : start + ASSIGN_FACE_CHUNK], anchors)
        chunk_best, chunk_face = iou.max(dim=0)
        better = chunk_best > best_iou
        best_iou = torch.where(better, chunk_best, best_iou)
        best_face = torch.where(better, chunk_face + start, best_face)
        face_best_iou.append(iou.max(dim=1).values)
    assigned[best_iou < config.negative_iou] = NEGATIVE
    positive = best_iou >= config.positive_iou
    assigned[positive] = best_face[positive]
    face_best = torch.cat(face_best_iou)
    for start in range(0, faces.shape[0], ASSIGN_FACE_CHUNK):
        chunk_best = face_best[start : start + ASSIGN_FACE_CHUNK]
        iou = box_iou(faces[start : start + ASSIGN_FACE_CHUNK], anchors)
        matches = (iou == chunk_best[:, None]) & (chunk_best[:, None] >= config.min_positive_iou)
        face_ids = torch.arange(start, start + chunk_best.shape[0], device=anchors.device)[:, None]
        last_match = torch.where(matches, face_ids, torch.full_like(face_ids, -1)).max(dim=0).values
        assigned = torch.where(last_match >= 0, last_match, assigned)
    return assigned
