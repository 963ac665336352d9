"""DSFD's multi-task loss for one shot: softmax classification with hard negative mining plus smooth-L1 box regression."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from safefakes.detect.dsfd_anchors import encode_boxes, match_anchors

BACKGROUND = 0
FACE = 1


@dataclass(frozen=True)
class ShotLoss:
    """The two terms of one shot's loss, both divided by the number of positive anchors in the batch."""

    classification: torch.Tensor
    regression: torch.Tensor


def match_batch(faces: list[torch.Tensor], anchors: torch.Tensor, positive_iou: float, variances: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Class targets ``[B, A]`` (0 background, 1 face) and regression targets ``[B, A, 4]`` of a batch."""
    labels = []
    offsets = []
    for image_faces in faces:
        matched = match_anchors(image_faces, anchors, positive_iou)
        positive = matched >= 0
        target = torch.zeros_like(anchors)
        if positive.any():
            target[positive] = encode_boxes(image_faces[matched[positive]], anchors[positive], variances)
        labels.append(positive.long() * FACE)
        offsets.append(target)
    return torch.stack(labels), torch.stack(offsets)


def hard_negative_mask(background_loss: torch.Tensor, labels: torch.Tensor, negative_ratio: float) -> torch.Tensor:
    """Per image, the ``negative_ratio * num_positive`` background anchors with the highest loss ``[B, A]``."""
    loss = background_loss.detach().clone()
    loss[labels != BACKGROUND] = -1.0  # positives are never picked as negatives
    num_positive = (labels != BACKGROUND).sum(dim=1, keepdim=True)
    num_negative = (negative_ratio * num_positive).long().clamp(max=labels.shape[1] - 1)
    rank = loss.argsort(dim=1, descending=True).argsort(dim=1)
    return rank < num_negative


def shot_loss(
    class_logits: torch.Tensor,
    box_offsets: torch.Tensor,
    anchors: torch.Tensor,
    faces: list[torch.Tensor],
    positive_iou: float,
    negative_ratio: float,
    variances: tuple[float, float],
) -> ShotLoss:
    """Loss of one shot: ``class_logits [B, A, 2]``, ``box_offsets [B, A, 4]`` against the faces of each image.

    Cross-entropy over positives and mined hard negatives, smooth-L1 over the positives' encoded offsets,
    both summed and divided by the number of positives (at least 1).
    """
    labels, targets = match_batch(faces, anchors, positive_iou, variances)
    labels = labels.to(class_logits.device)
    targets = targets.to(box_offsets.device)
    positive = labels == FACE
    per_anchor_ce = F.cross_entropy(class_logits.reshape(-1, class_logits.shape[-1]), labels.reshape(-1), reduction="none")
    per_anchor_ce = per_anchor_ce.reshape(labels.shape)
    negative = hard_negative_mask(per_anchor_ce, labels, negative_ratio)
    normalizer = positive.sum().clamp(min=1).to(class_logits.dtype)
    classification = per_anchor_ce[positive | negative].sum() / normalizer
    regression = F.smooth_l1_loss(box_offsets[positive], targets[positive], reduction="sum", beta=1.0) / normalizer
    return ShotLoss(classification=classification, regression=regression)
