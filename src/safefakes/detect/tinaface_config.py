"""TinaFace hyper-parameters as frozen dataclasses, each buildable from a plain (JSON) mapping.

Every default is the value of the configuration Safe Fakes ran: the official TinaFace code
(Media-Smart/vedadet, ``configs/trainval/tinaface/tinaface.py`` of April 2021, identical to the later
``tinaface_r50_fpn_gn_dcn.py``), which the Safe Fakes supplement (Sec. B) used unchanged except for
the number of iterations. "TinaFace" below means Zhu et al., 2020, arXiv:2011.13183; "vedadet" the
official configuration file.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from safefakes.common.config import build_config
from safefakes.common.weights import NO_PRETRAINED

#: ``model.pretrained`` values: torchvision's ImageNet ResNet-50 (vedadet ``torchvision://resnet50``) or random values.
PRETRAINED_CHOICES = ("imagenet", NO_PRETRAINED)
#: The stage depths and stem width of ResNet-50, the only backbone the ImageNet file fits.
RESNET50_DEPTHS = (3, 4, 6, 3)
RESNET50_BASE_CHANNELS = 64


def plain_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as JSON-ready plain data (tuples become lists, nested configs become dicts)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {field.name: plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [plain(item) for item in value]
        return value

    return plain(config)


def scaled_channels(channels: int, width_scale: float, multiple: int = 8) -> int:
    """``channels * width_scale`` rounded to a multiple of ``multiple`` (at least ``multiple``); exact at scale 1."""
    return max(multiple, int(round(channels * width_scale / multiple)) * multiple)


#: Fewest channels per GroupNorm group, so that even a 1x1 feature map (P7 of a small input) can be normalized.
MIN_CHANNELS_PER_GROUP = 2


def group_count(channels: int, max_groups: int) -> int:
    """GroupNorm groups for ``channels``: ``max_groups`` (paper: 32) when that leaves >= 2 channels per group and
    divides them, else the largest such divisor (only narrow ``width_scale`` variants get fewer groups)."""
    return max(1, math.gcd(channels // MIN_CHANNELS_PER_GROUP, max_groups))


@dataclasses.dataclass(frozen=True)
class TinaFaceInferenceConfig:
    """Test-time resize and post-processing inside the model (``model.inference``; the shared ``predict``
    section's ``score_threshold``, ``nms_iou`` and ``max_detections`` override theirs)."""

    test_short_side_max: int | None = 1100  # vedadet val img_scale (1100, 1650), keep ratio: short side <= 1100
    test_long_side_max: int | None = 1650  # ... and long side <= 1650 (may upscale); None = keep the input size
    score_threshold: float = 0.01  # vedadet val_engine test_cfg score_thr (the WIDER evaluation setting)
    nms_iou: float = 0.45  # vedadet test_cfg nms iou_thr
    max_detections: int | None = None  # vedadet val max_per_img=-1: keep all; an int caps detections per image
    pre_nms_top_k: int | None = None  # vedadet val nms_pre=-1: all anchors; an int keeps the top-k per level
    # vedadet IoUBBoxAnchorConverter alpha: score = cls^(2a) * iou^(2(1-a)), the square of the IoU-aware
    # score cls^a * iou^(1-a) of TinaFace Sec. 3.3 (same ranking, so the same AP; thresholds apply to the square)
    score_alpha: float = 0.4
    min_box_height: float = 9.0  # vedadet IoUBBoxAnchorConverter height_th: drop boxes < 9 px high (input pixels)
    min_box_scale: float = 1.0  # vedadet converter filter_boxes: sqrt(w*h) >= 1 (network-input pixels)
    max_box_scale: float = 10000.0  # vedadet converter filter_boxes upper bound

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_alpha <= 1.0:
            raise ValueError("score_alpha must lie in [0, 1]")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ValueError("nms_iou must lie in (0, 1]")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> TinaFaceInferenceConfig:
        """Build from a mapping of these settings (unknown keys are errors)."""
        return build_config(cls, values, "TinaFace model.inference")


@dataclasses.dataclass(frozen=True)
class TinaFaceModelConfig:
    """Architecture, anchors, label assignment and losses (the ``model`` section)."""

    # --- size knobs (1.0 / paper values; the CPU demo shrinks them without changing the code path) ---
    width_scale: float = 1.0  # channel multiplier for backbone, FPN, Inception and head; 1.0 = ResNet-50 + 256-ch FPN
    # --- backbone: ResNet-50 (TinaFace Sec. 3.1; vedadet backbone depth=50) ---
    backbone_depths: tuple[int, ...] = (3, 4, 6, 3)  # ResNet-50 bottleneck counts per stage
    backbone_base_channels: int = 64  # ResNet stem / first-stage width
    norm: str = "group"  # vedadet norm_cfg GN (the "R50-FPN-GN-DCN" model); "batch" = the R50-FPN-BN variant
    group_norm_groups: int = 32  # vedadet GN num_groups=32
    deformable_stages: tuple[bool, ...] = (False, False, True, True)  # vedadet stage_with_dcn: DCN in res4, res5
    pretrained: str = "imagenet"  # torchvision ImageNet ResNet-50 (vedadet weights=torchvision://resnet50), required; "none": random
    # --- neck: FPN P2..P7 + Inception (TinaFace Sec. 3.1, 3.2) ---
    fpn_channels: int = 256  # vedadet FPN out_channels
    strides: tuple[int, ...] = (4, 8, 16, 32, 64, 128)  # vedadet strides: P2..P7
    # --- head (RetinaNet head with GN + IoU-aware branch; TinaFace Sec. 3.3) ---
    head_stacked_convs: int = 4  # vedadet IoUAwareRetinaHead stacked_convs
    prior_probability: float = 0.01  # RetinaNet classification bias prior (vedadet head init bias_init_with_prob(0.01))
    # --- anchors (vedadet BBoxBaseAnchor) ---
    anchor_octave_base_scale: float = 2 ** (4 / 3)  # vedadet octave_base_scale; smallest anchor ~10 px at stride 4
    anchor_scales_per_octave: int = 3  # vedadet scales_per_octave
    anchor_ratios: tuple[float, ...] = (1.3,)  # vedadet ratios (height / width)
    anchor_center_offset: float = 0.0  # vedadet/mmdet v2 default: anchor centre at the cell's top-left corner
    # --- box coder (vedadet DeltaXYWHBBoxCoder) ---
    box_coder_stds: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)  # vedadet target_stds
    box_coder_max_log_ratio: float = abs(math.log(16 / 1000))  # mmdet decode clamp of dw, dh (wh_ratio_clip=16/1000)
    # --- label assignment (vedadet MaxIoUAssigner) ---
    positive_iou: float = 0.35  # vedadet pos_iou_thr
    negative_iou: float = 0.35  # vedadet neg_iou_thr (equal: no ignored anchors)
    min_positive_iou: float = 0.35  # vedadet min_pos_iou: a face's best anchors are positive if IoU >= this
    # --- losses (TinaFace Sec. 3.3, 3.4; vedadet criterion) ---
    focal_alpha: float = 0.25  # vedadet FocalLoss alpha
    focal_gamma: float = 2.0  # vedadet FocalLoss gamma
    classification_loss_weight: float = 1.0  # vedadet loss_cls loss_weight
    box_loss_weight: float = 2.0  # vedadet DIoULoss loss_weight (on decoded boxes, reg_decoded_bbox=True)
    iou_loss_weight: float = 1.0  # vedadet loss_iou (sigmoid cross-entropy) loss_weight
    # --- input normalization (vedadet img_norm_cfg, RGB, 0..255 scale) ---
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)  # vedadet mean
    pixel_std: tuple[float, float, float] = (1.0, 1.0, 1.0)  # vedadet std (mean subtraction only)
    size_divisor: int = 32  # vedadet Pad size_divisor
    # --- inference (evaluation mode) ---
    inference: TinaFaceInferenceConfig = dataclasses.field(default_factory=lambda: TinaFaceInferenceConfig())

    def __post_init__(self) -> None:
        if self.width_scale <= 0:
            raise ValueError("width_scale must be positive")
        if self.norm not in ("group", "batch"):
            raise ValueError(f"norm must be 'group' or 'batch', not {self.norm!r}")
        if len(self.deformable_stages) != len(self.backbone_depths):
            raise ValueError("deformable_stages needs one flag per backbone stage")
        if len(self.strides) != len(self.backbone_depths) + 2:
            raise ValueError("strides must list the backbone levels C2..C5 plus the two extra levels P6, P7")
        if self.negative_iou > self.positive_iou:
            raise ValueError("negative_iou must not exceed positive_iou")
        if self.pretrained not in PRETRAINED_CHOICES:
            raise ValueError(f"pretrained must be one of {', '.join(PRETRAINED_CHOICES)}, not {self.pretrained!r}")
        resnet50 = (
            math.isclose(self.width_scale, 1.0) and tuple(self.backbone_depths) == RESNET50_DEPTHS and self.backbone_base_channels == RESNET50_BASE_CHANNELS
        )
        if self.pretrained != NO_PRETRAINED and not resnet50:
            raise ValueError(
                f"pretrained '{self.pretrained}' needs ResNet-50's shape (width_scale 1.0, backbone_depths {list(RESNET50_DEPTHS)}, "
                f"backbone_base_channels {RESNET50_BASE_CHANNELS}); set pretrained: none to train another shape from random values"
            )

    @property
    def anchors_per_location(self) -> int:
        """Anchors at every feature-map position: scales per octave x aspect ratios."""
        return self.anchor_scales_per_octave * len(self.anchor_ratios)

    @property
    def neck_channels(self) -> int:
        """FPN / Inception / head channel count after ``width_scale``."""
        return scaled_channels(self.fpn_channels, self.width_scale)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> TinaFaceModelConfig:
        """Build from the ``model`` mapping of the config (unknown keys are errors)."""
        return build_config(cls, values, "TinaFace model")


@dataclasses.dataclass(frozen=True)
class TinaFaceAugmentConfig:
    """Training augmentation (the ``augment`` section): vedadet's training pipeline, in its order."""

    crop_choices: tuple[float, ...] = (0.3, 0.45, 0.6, 0.8, 1.0)  # vedadet RandomSquareCrop crop_choice (x short side)
    crop_attempts: int = 250  # vedadet RandomSquareCrop: tries to find a crop holding a face centre
    photometric_probability: float = 0.5  # vedadet PhotoMetricDistortion p
    brightness_delta: float = 32.0  # vedadet PhotoMetricDistortion brightness_delta
    contrast_range: tuple[float, float] = (0.5, 1.5)  # vedadet contrast_range
    saturation_range: tuple[float, float] = (0.5, 1.5)  # vedadet saturation_range
    hue_delta: float = 18.0  # vedadet hue_delta (degrees)
    flip_probability: float = 0.5  # vedadet RandomFlip flip_ratio
    output_size: int = 640  # vedadet Resize img_scale (640, 640), keep_ratio=False
    min_face_size: float = 1.0  # vedadet WIDERFaceDataset min_size: faces narrower/shorter than this are dropped

    def __post_init__(self) -> None:
        if not self.crop_choices or not all(0.0 < c <= 1.0 for c in self.crop_choices):
            raise ValueError("crop_choices must be fractions in (0, 1]")
        if self.output_size < 1:
            raise ValueError("output_size must be positive")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> TinaFaceAugmentConfig:
        """Build from the ``augment`` mapping (unknown keys are errors)."""
        return build_config(cls, values, "TinaFace augment")
