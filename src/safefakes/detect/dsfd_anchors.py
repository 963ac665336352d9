"""DSFD anchors: one box per feature-map location and level, SSD box encoding, and anchor-to-face matching."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision.ops import box_convert, box_iou


def level_anchors(feature_size: tuple[int, int], stride: int, anchor_size: float, aspect_ratio: float) -> torch.Tensor:
    """Anchors ``[h*w, 4]`` (``x1 y1 x2 y2`` pixels) of one level, row-major over the feature map.

    Each location gets one anchor centred on its cell, of area ``anchor_size**2`` and
    ``height / width == aspect_ratio``.
    """
    height, width = feature_size
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) * stride
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    anchor_w = anchor_size / math.sqrt(aspect_ratio)
    anchor_h = anchor_size * math.sqrt(aspect_ratio)
    cxcywh = torch.stack(
        [cx.reshape(-1), cy.reshape(-1), torch.full((height * width,), anchor_w), torch.full((height * width,), anchor_h)],
        dim=1,
    )
    return box_convert(cxcywh, "cxcywh", "xyxy")


def pyramid_anchors(
    feature_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    anchor_sizes: Sequence[float],
    aspect_ratio: float,
    image_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Anchors of all levels concatenated ``[A, 4]`` in the same order as the flattened head outputs.

    With ``image_size`` (``height, width``) the anchors are clipped to the image, as DSFD's ``clip: True``.
    """
    levels = zip(feature_sizes, strides, anchor_sizes, strict=True)
    anchors = torch.cat([level_anchors(size, stride, anchor, aspect_ratio) for size, stride, anchor in levels])
    if image_size is not None:
        anchors[:, 0::2] = anchors[:, 0::2].clamp(0, image_size[1])
        anchors[:, 1::2] = anchors[:, 1::2].clamp(0, image_size[0])
    return anchors


def encode_boxes(boxes: torch.Tensor, anchors: torch.Tensor, variances: tuple[float, float]) -> torch.Tensor:
    """SSD regression targets ``[N, 4]`` of ``boxes`` relative to ``anchors`` (both ``x1 y1 x2 y2``)."""
    box = box_convert(boxes, "xyxy", "cxcywh")
    anchor = box_convert(anchors, "xyxy", "cxcywh")
    center = (box[:, :2] - anchor[:, :2]) / (variances[0] * anchor[:, 2:])
    size = torch.log(box[:, 2:].clamp(min=1e-6) / anchor[:, 2:]) / variances[1]
    return torch.cat([center, size], dim=1)


def decode_boxes(offsets: torch.Tensor, anchors: torch.Tensor, variances: tuple[float, float]) -> torch.Tensor:
    """Inverse of :func:`encode_boxes`: predicted offsets ``[N, 4]`` -> boxes ``x1 y1 x2 y2``."""
    anchor = box_convert(anchors, "xyxy", "cxcywh")
    center = anchor[:, :2] + offsets[:, :2] * variances[0] * anchor[:, 2:]
    size = anchor[:, 2:] * torch.exp(offsets[:, 2:] * variances[1])
    return box_convert(torch.cat([center, size], dim=1), "cxcywh", "xyxy")


def match_anchors(faces: torch.Tensor, anchors: torch.Tensor, positive_iou: float) -> torch.Tensor:
    """Index of the face each anchor regresses to, or ``-1`` for background; shape ``[A]``.

    SSD/DSFD matching: an anchor is positive when its best IoU with any face reaches ``positive_iou``;
    in addition every face claims its best anchor, so no face is left without a positive anchor.
    """
    matched = torch.full((anchors.shape[0],), -1, dtype=torch.long, device=anchors.device)
    if faces.numel() == 0:
        return matched
    iou = box_iou(faces, anchors)  # [F, A]
    best_iou, best_face = iou.max(dim=0)
    positive = best_iou >= positive_iou
    matched[positive] = best_face[positive]
    best_anchor_per_face = iou.argmax(dim=1)
    matched[best_anchor_per_face] = torch.arange(faces.shape[0], device=anchors.device)
    return matched
