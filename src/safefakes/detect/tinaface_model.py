"""The TinaFace detector (Zhu et al., 2020): ResNet-50 + FPN (P2..P7) + Inception + a shared RetinaNet head
with GroupNorm and an IoU-aware branch; focal, DIoU and IoU losses; IoU-aware scoring and NMS at inference.

Follows the model contract of :mod:`safefakes.detect.registry` (torchvision style): ``model(images, targets)``
returns losses in training mode and ``model(images)`` returns detections in evaluation mode.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import distance_box_iou_loss, nms, sigmoid_focal_loss

from safefakes.common.errors import SafefakesError
from safefakes.common.weights import Initialisation
from safefakes.detect.tinaface_anchors import IGNORED, AnchorGrid, aligned_iou, assign_anchors, decode_boxes
from safefakes.detect.tinaface_backbone import NormFactory, ResNetBackbone, initialise_backbone, make_norm_factory
from safefakes.detect.tinaface_config import TinaFaceInferenceConfig, TinaFaceModelConfig, plain_dict
from safefakes.detect.tinaface_neck import FeaturePyramid, Inception, conv_norm

#: Standard deviation of the normal initialization of the head's convolutions (RetinaNet / vedadet head init).
HEAD_INIT_STD = 0.01
#: The input scale the model receives (``[0, 1]``) versus the one the normalization constants use (``0..255``).
PIXEL_RANGE = 255.0


@dataclass
class HeadOutputs:
    """Raw head outputs flattened over levels and positions: ``[N, A_total]``, ``[N, A_total, 4]``, ``[N, A_total]``."""

    class_logits: torch.Tensor
    box_deltas: torch.Tensor
    iou_logits: torch.Tensor
    level_sizes: list[int]


class IoUAwareHead(nn.Module):
    """RetinaNet head shared by all levels: a classification tower and a regression tower of
    conv-norm-ReLU blocks; the IoU-aware branch (one logit per anchor) sits on the regression tower."""

    def __init__(self, channels: int, anchors_per_location: int, config: TinaFaceModelConfig, norm: NormFactory) -> None:
        super().__init__()
        self.anchors_per_location = anchors_per_location
        self.class_tower = nn.Sequential(*(conv_norm(channels, channels, 3, norm, relu=True) for _ in range(config.head_stacked_convs)))
        self.box_tower = nn.Sequential(*(conv_norm(channels, channels, 3, norm, relu=True) for _ in range(config.head_stacked_convs)))
        self.class_logits = nn.Conv2d(channels, anchors_per_location, 3, padding=1)
        self.box_deltas = nn.Conv2d(channels, anchors_per_location * 4, 3, padding=1)
        self.iou_logits = nn.Conv2d(channels, anchors_per_location, 3, padding=1)
        self._init_weights(config.prior_probability)

    def _init_weights(self, prior_probability: float) -> None:
        """Normal(0, 0.01) towers, classification bias at the prior, zero box and IoU outputs (vedadet init)."""
        for tower in (self.class_tower, self.box_tower):
            for module in tower.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.normal_(module.weight, std=HEAD_INIT_STD)
        nn.init.normal_(self.class_logits.weight, std=HEAD_INIT_STD)
        nn.init.constant_(self.class_logits.bias, -math.log((1 - prior_probability) / prior_probability))
        for layer in (self.box_deltas, self.iou_logits):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward_level(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-anchor outputs of one level, flattened to ``[N, H*W*A]``, ``[N, H*W*A, 4]``, ``[N, H*W*A]``."""
        batch = features.shape[0]
        class_features = self.class_tower(features)
        box_features = self.box_tower(features)

        def flatten(output: torch.Tensor, values: int) -> torch.Tensor:
            return output.permute(0, 2, 3, 1).reshape(batch, -1, values)

        return (
            flatten(self.class_logits(class_features), 1)[..., 0],
            flatten(self.box_deltas(box_features), 4),
            flatten(self.iou_logits(box_features), 1)[..., 0],
        )

    def forward(self, levels: list[torch.Tensor]) -> HeadOutputs:
        """Outputs of every level, concatenated finest level first."""
        per_level = [self.forward_level(features) for features in levels]
        return HeadOutputs(
            class_logits=torch.cat([out[0] for out in per_level], dim=1),
            box_deltas=torch.cat([out[1] for out in per_level], dim=1),
            iou_logits=torch.cat([out[2] for out in per_level], dim=1),
            level_sizes=[out[0].shape[1] for out in per_level],
        )


@dataclass
class PreparedBatch:
    """A normalized, padded image batch and, per image, the scale applied and the resized size ``(h, w)``."""

    images: torch.Tensor
    scales: list[tuple[float, float]]
    sizes: list[tuple[int, int]]


def keep_ratio_test_scale(height: int, width: int, inference: TinaFaceInferenceConfig) -> float:
    """mmcv's keep-ratio rescale factor: the largest scale with short side <= short max and long side <= long max."""
    factors = []
    if inference.test_short_side_max is not None:
        factors.append(inference.test_short_side_max / min(height, width))
    if inference.test_long_side_max is not None:
        factors.append(inference.test_long_side_max / max(height, width))
    return min(factors) if factors else 1.0


class TinaFace(nn.Module):
    """TinaFace: see the module docstring. ``initialisation`` records what the backbone started from (``None`` when
    built with ``load_pretrained=False``, for a checkpoint's weights to replace)."""

    def __init__(self, config: TinaFaceModelConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        self.config = config
        norm = make_norm_factory(config)
        self.backbone = ResNetBackbone(config)
        self.initialisation: Initialisation | None = initialise_backbone(self.backbone, config) if load_pretrained else None
        channels = config.neck_channels
        self.fpn = FeaturePyramid(self.backbone.out_channels, channels, norm, extra_levels=len(config.strides) - len(config.backbone_depths))
        self.inception = Inception(channels, norm)
        self.head = IoUAwareHead(channels, config.anchors_per_location, config, norm)
        self.anchor_grid = AnchorGrid(config)
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(3, 1, 1), persistent=False)

    @property
    def inference(self) -> TinaFaceInferenceConfig:
        """The test-time resize and post-processing settings in use."""
        return self.config.inference

    def configure_inference(self, **changes: Any) -> None:
        """Change test-time settings, e.g. ``configure_inference(score_threshold=0.05)`` (names of
        :class:`TinaFaceInferenceConfig`)."""
        merged = plain_dict(self.config.inference) | changes
        self.config = dataclasses.replace(self.config, inference=TinaFaceInferenceConfig.from_dict(merged))

    # ----------------------------------------------------------------- input
    def prepare(self, images: list[torch.Tensor], resize: bool) -> PreparedBatch:
        """Optionally rescale each ``[3, H, W]`` image in ``[0, 1]`` to the test scale, normalize, pad to the stride."""
        prepared, scales, sizes = [], [], []
        for image in images:
            if image.dim() != 3 or image.shape[0] != 3:
                raise SafefakesError(f"TinaFace expects [3, H, W] images, got shape {tuple(image.shape)}")
            height, width = image.shape[-2:]
            if resize:
                factor = keep_ratio_test_scale(height, width, self.inference)
                new_h, new_w = int(height * factor + 0.5), int(width * factor + 0.5)
                if (new_h, new_w) != (height, width):
                    image = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
                scales.append((new_w / width, new_h / height))
            else:
                scales.append((1.0, 1.0))
            sizes.append(tuple(image.shape[-2:]))
            prepared.append((image * PIXEL_RANGE - self.pixel_mean) / self.pixel_std)
        divisor = self.config.size_divisor
        pad_h = math.ceil(max(h for h, _ in sizes) / divisor) * divisor
        pad_w = math.ceil(max(w for _, w in sizes) / divisor) * divisor
        batch = prepared[0].new_zeros((len(prepared), 3, pad_h, pad_w))
        for index, image in enumerate(prepared):
            batch[index, :, : image.shape[1], : image.shape[2]] = image
        return PreparedBatch(batch, scales, sizes)

    def head_outputs(self, batch: torch.Tensor) -> tuple[HeadOutputs, torch.Tensor]:
        """Run backbone, FPN, Inception and head; return the outputs and the ``[A_total, 4]`` anchors."""
        levels = self.inception(self.fpn(self.backbone(batch)))
        outputs = self.head(levels)
        anchors = self.anchor_grid.per_level([tuple(level.shape[-2:]) for level in levels], batch.device)
        return outputs, torch.cat(anchors)

    def forward(
        self, images: list[torch.Tensor], targets: list[Mapping[str, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Training: the loss dict (needs ``targets``). Evaluation: one detection dict per image."""
        if self.training:
            if targets is None or len(targets) != len(images):
                raise SafefakesError("TinaFace in training mode needs one target dict per image")
            prepared = self.prepare(images, resize=False)
            outputs, anchors = self.head_outputs(prepared.images)
            return self.losses(outputs, anchors, [target["boxes"].to(anchors) for target in targets])
        prepared = self.prepare(images, resize=True)
        outputs, anchors = self.head_outputs(prepared.images)
        return [self.postprocess(outputs, anchors, prepared, index) for index in range(len(images))]

    # ----------------------------------------------------------------- training
    def losses(self, outputs: HeadOutputs, anchors: torch.Tensor, faces: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Focal classification, DIoU box and IoU-prediction losses, each normalized by the positive-anchor count."""
        config = self.config
        faces = [image_faces.reshape(-1, 4) for image_faces in faces]
        assignments = torch.stack([assign_anchors(anchors, image_faces, config) for image_faces in faces])
        positive = assignments >= 0
        # vedadet: every image counts at least one positive in the normalizer
        normalizer = float(sum(max(int(count), 1) for count in positive.sum(dim=1)))
        valid = assignments != IGNORED
        class_loss = sigmoid_focal_loss(
            outputs.class_logits[valid],
            positive[valid].to(outputs.class_logits.dtype),
            alpha=config.focal_alpha,
            gamma=config.focal_gamma,
            reduction="sum",
        )
        image_index, anchor_index = positive.nonzero(as_tuple=True)
        if image_index.numel():
            face_offsets = torch.tensor([0] + [len(f) for f in faces[:-1]], device=anchors.device).cumsum(0)
            matched_faces = torch.cat(faces)[assignments[image_index, anchor_index] + face_offsets[image_index]]
            predicted = decode_boxes(anchors[anchor_index], outputs.box_deltas[image_index, anchor_index], config)
            box_loss = distance_box_iou_loss(predicted, matched_faces, reduction="sum")
            iou_target = aligned_iou(predicted.detach(), matched_faces)
            iou_loss = F.binary_cross_entropy_with_logits(outputs.iou_logits[image_index, anchor_index], iou_target, reduction="sum")
        else:
            box_loss = outputs.box_deltas.sum() * 0.0
            iou_loss = outputs.iou_logits.sum() * 0.0
        return {
            "loss_classifier": class_loss * config.classification_loss_weight / normalizer,
            "loss_box_diou": box_loss * config.box_loss_weight / normalizer,
            "loss_iou": iou_loss * config.iou_loss_weight / normalizer,
        }

    # ----------------------------------------------------------------- inference
    def postprocess(self, outputs: HeadOutputs, anchors: torch.Tensor, prepared: PreparedBatch, index: int) -> dict[str, torch.Tensor]:
        """Detections of image ``index`` in its input pixels: IoU-aware scores, decoding, filters, NMS."""
        inference = self.inference
        alpha = inference.score_alpha
        scores = outputs.class_logits[index].sigmoid().pow(2 * alpha) * outputs.iou_logits[index].sigmoid().pow(2 * (1 - alpha))
        deltas = outputs.box_deltas[index]
        if inference.pre_nms_top_k is not None:
            keep = []
            offset = 0
            for size in outputs.level_sizes:
                level_scores = scores[offset : offset + size]
                top = level_scores.topk(min(inference.pre_nms_top_k, size)).indices + offset
                keep.append(top)
                offset += size
            keep_index = torch.cat(keep)
            scores, deltas, anchors = scores[keep_index], deltas[keep_index], anchors[keep_index]
        boxes = decode_boxes(anchors, deltas, self.config, image_size=prepared.sizes[index])
        box_scale = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=0).sqrt()
        keep_mask = (box_scale >= inference.min_box_scale) & (box_scale <= inference.max_box_scale)
        scale_x, scale_y = prepared.scales[index]
        boxes = boxes / boxes.new_tensor([scale_x, scale_y, scale_x, scale_y])
        keep_mask &= (boxes[:, 3] - boxes[:, 1]) >= inference.min_box_height
        keep_mask &= scores > inference.score_threshold
        boxes, scores = boxes[keep_mask], scores[keep_mask]
        kept = nms(boxes, scores, inference.nms_iou)
        if inference.max_detections is not None:
            kept = kept[: inference.max_detections]
        return {
            "boxes": boxes[kept].detach(),
            "scores": scores[kept].detach(),
            "labels": torch.ones(kept.numel(), dtype=torch.int64, device=boxes.device),
        }
