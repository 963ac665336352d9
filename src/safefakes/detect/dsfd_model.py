"""The DSFD network (Li et al., CVPR 2019), VGG-16 variant: backbone, Feature Enhance Module, dual-shot heads.

Levels (stride): conv3_3 (4), conv4_3 (8), conv5_3 (16), conv_fc7 (32), conv6_2 (64), conv7_2 (128).
The first shot predicts from the original features with anchors half the size of the second shot's,
which predicts from the FEM-enhanced features (Progressive Anchor Loss); inference uses the second shot.
``model.batch_norm`` swaps the paper's VGG-16 for VGG-16-BN (a BatchNorm after every backbone conv), which
trains from random values where the plain network barely moves (the CPU demo uses it; README, "Main detector").
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import make_layers
from torchvision.ops import batched_nms

from safefakes.common.config import build_config
from safefakes.common.errors import SafefakesError
from safefakes.common.weights import NO_PRETRAINED, Initialisation, resolve_pretrained
from safefakes.detect.dsfd_anchors import decode_boxes, pyramid_anchors
from safefakes.detect.dsfd_loss import FACE, shot_loss

LOGGER = logging.getLogger(__name__)

#: ImageNet statistics of torchvision's VGG-16 weights (RGB in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: VGG-16 conv channels up to conv5_3 (torchvision "D" layout, so ImageNet weights load by index).
VGG16_LAYOUT: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
#: Positions in VGG16_LAYOUT of conv3_3, conv4_3 and conv5_3, whose ReLU outputs DSFD detects on.
VGG_DETECTION_CONVS = (8, 12, 16)
FC_CHANNELS = 1024  # fc6/fc7 as convolutions (SSD's reduced fc layers)
FC6_DILATION = 3  # fc6 is a 3x3 conv with dilation 3 (SSD / DSFD.pytorch)
EXTRA_CHANNELS = ((256, 512), (128, 256))  # conv6_1 -> conv6_2, conv7_1 -> conv7_2 (1x1 squeeze, 3x3 stride 2)
FEM_DILATION = 3  # every FEM branch conv is 3x3 with dilation 3 (DSFD Fig. 2)
NUM_CLASSES = 2  # background, face
BACKBONE_POOLING_STRIDE = 32  # five 2x2 max-pools before fc6; extra layers round their sizes up
BACKGROUND_FILL = 0.0  # padding value after normalization, i.e. the mean colour
#: ``model.pretrained`` values: torchvision's ImageNet VGG-16 (weight ``vgg16`` of ``safefakes fetch-weights``) or random values.
PRETRAINED_CHOICES = ("imagenet", NO_PRETRAINED)
IMAGENET_WEIGHT_KEY = "vgg16"
IMAGENET_BN_WEIGHT_KEY = "vgg16_bn"  # the backbone with model.batch_norm


@dataclass(frozen=True)
class DSFDModelConfig:
    """Hyper-parameters of the DSFD network, anchors, loss and post-processing (the ``model`` section)."""

    width_scale: float = 1.0  # channel multiplier; 1.0 is the paper's VGG-16
    batch_norm: bool = False  # False: the paper's VGG-16; True: VGG-16-BN (BatchNorm after every backbone conv, torchvision's vgg16_bn)
    pretrained: str = "imagenet"  # the paper's ImageNet VGG-16 (required to be there), or "none": random values
    strides: tuple[int, ...] = (4, 8, 16, 32, 64, 128)  # DSFD Table 1
    anchor_sizes: tuple[float, ...] = (16, 32, 64, 128, 256, 512)  # second shot, DSFD Table 1
    first_shot_anchor_ratio: float = 0.5  # PAL: first-shot anchors are half the second's (DSFD Sec. 3.2)
    anchor_aspect_ratio: float = 1.5  # anchor height/width 1.5:1 from face statistics (DSFD Sec. 3.3, official config)
    clip_anchors: bool = True  # official widerface_640 config 'clip': True
    l2norm_scales: tuple[float, ...] = (10.0, 8.0, 5.0)  # L2Norm init of conv3_3/4_3/5_3 (official 'l2norm_scale')
    positive_iou: float = 0.4  # IAM matching threshold (DSFD Sec. 3.3, official 'overlap_thresh')
    negative_ratio: float = 3.0  # hard negative mining neg:pos (official 'negpos_ratio')
    variances: tuple[float, float] = (0.1, 0.2)  # SSD box-encoding variances (official 'variance')
    first_shot_loss_weight: float = 1.0  # PAL: L = L_second + lambda * L_first, lambda = 1 (DSFD.pytorch train.py)
    pad_divisor: int = 32  # inputs are padded to a multiple of the backbone's pooling stride (conv_fc7)
    test_max_side: int | None = None  # None: detect at the original resolution (single scale)
    score_threshold: float = 0.01  # official 'conf_thresh'
    nms_iou: float = 0.3  # official 'nms_thresh' / DSFD Sec. 4.1
    pre_nms_top_k: int = 5000  # top-5000 before NMS (DSFD Sec. 4.1)
    max_detections: int = 750  # top-750 after NMS (DSFD Sec. 4.1)

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> DSFDModelConfig:
        """Build from a plain mapping (e.g. the config.yaml section); unknown keys are an error."""
        return build_config(cls, values, "DSFD model")

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-friendly mapping of every field."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def validate(self) -> None:
        """Raise :class:`SafefakesError` on inconsistent settings."""
        if len(self.strides) != 6 or len(self.anchor_sizes) != 6:
            raise SafefakesError("DSFD has six detection levels: 'strides' and 'anchor_sizes' need six values")
        if len(self.l2norm_scales) != 3:
            raise SafefakesError("'l2norm_scales' needs three values (conv3_3, conv4_3, conv5_3)")
        if self.width_scale <= 0:
            raise SafefakesError("'width_scale' must be positive")
        if self.pretrained not in PRETRAINED_CHOICES:
            raise SafefakesError(f"DSFD model.pretrained must be one of {', '.join(PRETRAINED_CHOICES)}, got {self.pretrained!r}")
        if self.pretrained != NO_PRETRAINED and self.width_scale != 1.0:
            raise SafefakesError(
                f"DSFD model.pretrained '{self.pretrained}' needs width_scale 1.0 (the ImageNet VGG-16's channels), got {self.width_scale}; "
                "set pretrained: none to train a narrower network from random values"
            )
        if self.pad_divisor <= 0 or self.pad_divisor % BACKBONE_POOLING_STRIDE != 0:
            raise SafefakesError(f"'pad_divisor' must be a positive multiple of {BACKBONE_POOLING_STRIDE}")

    @property
    def first_shot_anchor_sizes(self) -> tuple[float, ...]:
        """Anchor sizes of the first shot (original features)."""
        return tuple(size * self.first_shot_anchor_ratio for size in self.anchor_sizes)


def scaled(channels: int, width_scale: float) -> int:
    """``channels`` times ``width_scale``, at least 3 (the FEM splits its input into three branches)."""
    return max(3, int(round(channels * width_scale)))


class L2Norm(nn.Module):
    """Channel-wise L2 normalization with a learned per-channel scale (ParseNet / SSD)."""

    def __init__(self, channels: int, initial_scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(initial_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize each location's feature vector to unit length, then scale."""
        return F.normalize(x, p=2.0, dim=1, eps=1e-10) * self.weight.view(1, -1, 1, 1)


def dilated_branch(in_channels: int, out_channels: int, depth: int) -> nn.Sequential:
    """``depth`` 3x3 dilated convolutions with ReLUs between them (no ReLU at the end)."""
    layers: list[nn.Module] = []
    channels = in_channels
    for index in range(depth):
        layers.append(nn.Conv2d(channels, out_channels, 3, padding=FEM_DILATION, dilation=FEM_DILATION))
        if index < depth - 1:
            layers.append(nn.ReLU(inplace=True))
        channels = out_channels
    return nn.Sequential(*layers)


class FeatureEnhanceBranches(nn.Module):
    """The dilated part of DSFD's FEM: three branches of 1, 2 and 3 dilated convs, concatenated.

    The output has as many channels as the input.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        third = channels // 3
        self.branches = nn.ModuleList(
            [dilated_branch(channels, third, 1), dilated_branch(channels, third, 2), dilated_branch(channels, channels - 2 * third, 3)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the branches along channels and apply a ReLU."""
        return F.relu(torch.cat([branch(x) for branch in self.branches], dim=1))


class FeatureEnhanceModule(nn.Module):
    """DSFD's FEM over all six levels.

    Top-down, each level's 1x1-projected original feature is multiplied element-wise with the
    bilinearly upsampled (1x1-projected) product of the level above; each product then passes
    through :class:`FeatureEnhanceBranches`. Output channels equal input channels per level.
    """

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        top = channels[-1]
        self.top_projection = nn.Conv2d(top, top, 1)
        # For level i (below the top): project the product of level i+1 to level i's channels.
        self.topdown = nn.ModuleList([nn.Conv2d(channels[i + 1], channels[i], 1) for i in range(len(channels) - 1)])
        self.lateral = nn.ModuleList([nn.Conv2d(channels[i], channels[i], 1) for i in range(len(channels) - 1)])
        self.enhance = nn.ModuleList([FeatureEnhanceBranches(c) for c in channels])

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Enhanced features, one per input level, same shapes as the inputs."""
        products: list[torch.Tensor] = [F.relu(self.top_projection(features[-1]))]
        for level in range(len(features) - 2, -1, -1):
            current = features[level]
            higher = F.relu(self.topdown[level](products[0]))
            higher = F.interpolate(higher, size=current.shape[-2:], mode="bilinear", align_corners=False)
            products.insert(0, F.relu(higher * self.lateral[level](current)))
        return [enhance(product) for enhance, product in zip(self.enhance, products, strict=True)]


class ShotHeads(nn.Module):
    """Per-level 3x3 conv heads of one shot: ``NUM_CLASSES`` logits and 4 offsets per anchor (1 anchor per location)."""

    def __init__(self, channels: Sequence[int], anchors_per_location: int = 1) -> None:
        super().__init__()
        self.anchors_per_location = anchors_per_location
        self.classification = nn.ModuleList([nn.Conv2d(c, NUM_CLASSES * anchors_per_location, 3, padding=1) for c in channels])
        self.regression = nn.ModuleList([nn.Conv2d(c, 4 * anchors_per_location, 3, padding=1) for c in channels])

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[B, A, 2]`` and offsets ``[B, A, 4]`` with anchors ordered level, row, column."""
        batch = features[0].shape[0]
        logits = [cls(x).permute(0, 2, 3, 1).reshape(batch, -1, NUM_CLASSES) for cls, x in zip(self.classification, features, strict=True)]
        offsets = [reg(x).permute(0, 2, 3, 1).reshape(batch, -1, 4) for reg, x in zip(self.regression, features, strict=True)]
        return torch.cat(logits, dim=1), torch.cat(offsets, dim=1)


def vgg_layout(width_scale: float) -> list[int | str]:
    """The VGG-16 conv layout with every channel count scaled."""
    return [v if v == "M" else scaled(int(v), width_scale) for v in VGG16_LAYOUT]


def vgg_stage_ends(features: nn.Sequential) -> tuple[int, ...]:
    """Indices into the VGG feature stack just after the ReLUs that follow conv3_3, conv4_3 and conv5_3."""
    detection_convs = {sum(entry != "M" for entry in VGG16_LAYOUT[: position + 1]) for position in VGG_DETECTION_CONVS}
    ends: list[int] = []
    convs = 0
    for index, layer in enumerate(features):
        if isinstance(layer, nn.Conv2d):
            convs += 1
        elif isinstance(layer, nn.ReLU) and convs in detection_convs:
            ends.append(index + 1)  # each conv is followed by one ReLU (after its BatchNorm, if any)
    return tuple(ends)


class DSFDBackbone(nn.Module):
    """VGG-16 to conv5_3, fc6/fc7 as convolutions (stride 32), and the extra layers conv6_2, conv7_2."""

    def __init__(self, width_scale: float, l2norm_scales: Sequence[float], batch_norm: bool = False) -> None:
        super().__init__()
        # indices match torchvision's vgg16().features (vgg16_bn().features with batch_norm)
        self.features = make_layers(vgg_layout(width_scale), batch_norm=batch_norm)
        self.stage_ends = vgg_stage_ends(self.features)
        c3, c4, c5 = scaled(256, width_scale), scaled(512, width_scale), scaled(512, width_scale)
        fc = scaled(FC_CHANNELS, width_scale)
        self.pool5 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.fc6 = nn.Conv2d(c5, fc, 3, padding=FC6_DILATION, dilation=FC6_DILATION)
        self.fc7 = nn.Conv2d(fc, fc, 1)
        extras: list[nn.Module] = []
        in_channels = fc
        for squeeze, out in EXTRA_CHANNELS:
            squeeze_c, out_c = scaled(squeeze, width_scale), scaled(out, width_scale)
            extras.append(
                nn.Sequential(
                    nn.Conv2d(in_channels, squeeze_c, 1),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(squeeze_c, out_c, 3, stride=2, padding=1),
                    nn.ReLU(inplace=True),
                )
            )
            in_channels = out_c
        self.extras = nn.ModuleList(extras)
        self.l2norms = nn.ModuleList([L2Norm(c, s) for c, s in zip((c3, c4, c5), l2norm_scales, strict=True)])
        self.out_channels = (c3, c4, c5, fc, scaled(EXTRA_CHANNELS[0][1], width_scale), scaled(EXTRA_CHANNELS[1][1], width_scale))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The six original feature maps (conv3_3, conv4_3, conv5_3 L2-normalized)."""
        outputs: list[torch.Tensor] = []
        start = 0
        for end, norm in zip(self.stage_ends, self.l2norms, strict=True):
            x = self.features[start:end](x)
            outputs.append(norm(x))
            start = end
        x = F.relu(self.fc7(F.relu(self.fc6(self.pool5(x)))))
        outputs.append(x)
        for extra in self.extras:
            x = extra(x)
            outputs.append(x)
        return outputs


def reduce_fc_weights(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fc6/fc7 of torchvision's VGG-16 subsampled to DSFD's 1024-channel conv fc6 (3x3, dilation 3) and fc7 (1x1).

    SSD's "reduced fc" recipe: keep every 4th output unit and every 3rd position of fc6's 7x7 kernel.
    """
    unit_step = 4096 // FC_CHANNELS
    fc6 = state["classifier.0.weight"].reshape(4096, 512, 7, 7)[::unit_step, :, ::FC6_DILATION, ::FC6_DILATION]
    fc7 = state["classifier.3.weight"][::unit_step, ::unit_step].reshape(FC_CHANNELS, FC_CHANNELS, 1, 1)
    return {
        "fc6.weight": fc6.contiguous(),
        "fc6.bias": state["classifier.0.bias"][::unit_step].contiguous(),
        "fc7.weight": fc7.contiguous(),
        "fc7.bias": state["classifier.3.bias"][::unit_step].contiguous(),
    }


def load_imagenet_backbone(backbone: DSFDBackbone, pretrained: str, batch_norm: bool = False) -> Initialisation:
    """Load torchvision's ImageNet VGG-16 or VGG-16-BN (conv layers, and fc6/fc7 reduced) as ``pretrained`` asks; what the backbone started from.

    Never downloads: a missing or corrupt file is a :class:`SafefakesError` naming it and the command that fetches it.
    """
    if pretrained == NO_PRETRAINED:
        LOGGER.info("DSFD backbone: random initialization (model.pretrained: none)")
        return Initialisation()
    path, initialisation = resolve_pretrained(IMAGENET_BN_WEIGHT_KEY if batch_norm else IMAGENET_WEIGHT_KEY, pretrained, "dsfd")
    state = torch.load(path, map_location="cpu", weights_only=True)
    features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    backbone.features.load_state_dict(features)
    backbone.load_state_dict(reduce_fc_weights(state), strict=False)
    LOGGER.info("DSFD backbone: ImageNet VGG-16%s weights loaded from %s", "-BN" if batch_norm else "", path)
    return initialisation


def initialize(module: nn.Module, *, kaiming: bool) -> None:
    """Kaiming-normal (backbone, as torchvision's VGG) or Xavier-uniform (DSFD's new layers) convs, zero biases."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            if kaiming:
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)


class DSFD(nn.Module):
    """Dual Shot Face Detector following the torchvision detection contract (see ``detect/registry.py``).

    ``load_pretrained=False`` builds the network without its initial weights, for a checkpoint's to replace
    (``initialisation`` is then ``None``).
    """

    def __init__(self, config: DSFDModelConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        self.config = config
        self.backbone = DSFDBackbone(config.width_scale, config.l2norm_scales, config.batch_norm)
        channels = self.backbone.out_channels
        self.fem = FeatureEnhanceModule(channels)
        self.first_shot = ShotHeads(channels)
        self.second_shot = ShotHeads(channels)
        initialize(self.backbone, kaiming=True)
        for part in (self.fem, self.first_shot, self.second_shot):
            initialize(part, kaiming=False)
        self.initialisation: Initialisation | None = load_imagenet_backbone(self.backbone, config.pretrained, config.batch_norm) if load_pretrained else None
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)

    # ----- input handling -------------------------------------------------------------------------
    def batch_images(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Normalize each ``[3, H, W]`` image in ``[0, 1]`` and pad them bottom/right into one batch."""
        if len(images) == 0:
            raise SafefakesError("DSFD needs at least one image")
        divisor = self.config.pad_divisor
        height = max(img.shape[-2] for img in images)
        width = max(img.shape[-1] for img in images)
        height, width = math.ceil(height / divisor) * divisor, math.ceil(width / divisor) * divisor
        batch = torch.full((len(images), 3, height, width), BACKGROUND_FILL, dtype=torch.float32, device=self.pixel_mean.device)
        for index, img in enumerate(images):
            if img.dim() != 3 or img.shape[0] != 3:
                raise SafefakesError(f"DSFD expects [3, H, W] images, got shape {tuple(img.shape)}")
            batch[index, :, : img.shape[-2], : img.shape[-1]] = (img.to(batch) - self.pixel_mean) / self.pixel_std
        return batch

    def anchors_for(self, feature_sizes: Sequence[tuple[int, int]], image_size: tuple[int, int], first_shot: bool) -> torch.Tensor:
        """Anchors ``[A, 4]`` of one shot for the given feature-map sizes and padded input size."""
        sizes = self.config.first_shot_anchor_sizes if first_shot else self.config.anchor_sizes
        clip_to = image_size if self.config.clip_anchors else None
        anchors = pyramid_anchors(feature_sizes, self.config.strides, sizes, self.config.anchor_aspect_ratio, clip_to)
        return anchors.to(self.pixel_mean.device)

    def shots(self, batch: torch.Tensor) -> dict[str, Any]:
        """Raw outputs of both shots plus the feature-map sizes."""
        original = self.backbone(batch)
        enhanced = self.fem(original)
        first_logits, first_offsets = self.first_shot(original)
        second_logits, second_offsets = self.second_shot(enhanced)
        return {
            "original": original,
            "enhanced": enhanced,
            "feature_sizes": [tuple(f.shape[-2:]) for f in original],
            "first": (first_logits, first_offsets),
            "second": (second_logits, second_offsets),
        }

    # ----- training -------------------------------------------------------------------------------
    def compute_losses(self, images: Sequence[torch.Tensor], targets: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Progressive Anchor Loss: both shots' classification and regression terms (first shot weighted)."""
        if len(targets) != len(images):
            raise SafefakesError("DSFD training needs one target per image")
        batch = self.batch_images(images)
        out = self.shots(batch)
        image_size = tuple(batch.shape[-2:])
        faces = [t["boxes"].to(batch).reshape(-1, 4) for t in targets]
        losses: dict[str, torch.Tensor] = {}
        for name, first_shot in (("first_shot", True), ("second_shot", False)):
            logits, offsets = out["first" if first_shot else "second"]
            anchors = self.anchors_for(out["feature_sizes"], image_size, first_shot)
            loss = shot_loss(logits, offsets, anchors, faces, self.config.positive_iou, self.config.negative_ratio, self.config.variances)
            weight = self.config.first_shot_loss_weight if first_shot else 1.0
            losses[f"loss_{name}_classification"] = weight * loss.classification
            losses[f"loss_{name}_regression"] = weight * loss.regression
        return losses

    # ----- inference ------------------------------------------------------------------------------
    def test_scale(self, height: int, width: int) -> float:
        """Factor images are resized by before detection (<= 1, only when ``test_max_side`` is set)."""
        limit = self.config.test_max_side
        return 1.0 if limit is None or max(height, width) <= limit else limit / max(height, width)

    @torch.no_grad()
    def detect(self, images: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Second-shot detections per image: decode, score threshold, top-k, NMS, top-k, in input pixels."""
        scales = [self.test_scale(img.shape[-2], img.shape[-1]) for img in images]
        resized = [img if s == 1.0 else resize_image(img, s) for img, s in zip(images, scales, strict=True)]
        batch = self.batch_images(resized)
        out = self.shots(batch)
        logits, offsets = out["second"]
        anchors = self.anchors_for(out["feature_sizes"], tuple(batch.shape[-2:]), first_shot=False)
        scores = logits.softmax(dim=-1)[..., FACE]
        results = []
        for index, (img, scale) in enumerate(zip(images, scales, strict=True)):
            results.append(self.postprocess(scores[index], offsets[index], anchors, scale, (img.shape[-2], img.shape[-1])))
        return results

    def postprocess(
        self, scores: torch.Tensor, offsets: torch.Tensor, anchors: torch.Tensor, scale: float, image_size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """One image's detections from per-anchor face scores and offsets."""
        cfg = self.config
        keep = scores >= cfg.score_threshold
        scores, offsets, anchors = scores[keep], offsets[keep], anchors[keep]
        if scores.numel() > cfg.pre_nms_top_k:
            scores, order = scores.topk(cfg.pre_nms_top_k)
            offsets, anchors = offsets[order], anchors[order]
        boxes = decode_boxes(offsets, anchors, cfg.variances) / scale
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, image_size[1])
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, image_size[0])
        labels = torch.ones_like(scores, dtype=torch.int64)
        kept = batched_nms(boxes, scores, labels, cfg.nms_iou)[: cfg.max_detections]
        return {"boxes": boxes[kept], "scores": scores[kept], "labels": labels[kept]}

    def forward(
        self, images: Sequence[torch.Tensor], targets: Sequence[Mapping[str, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Training: a dict of loss tensors (needs ``targets``). Evaluation: one detection dict per image."""
        if self.training:
            if targets is None:
                raise SafefakesError("DSFD in training mode needs targets")
            return self.compute_losses(images, targets)
        return self.detect(images)


def resize_image(image: torch.Tensor, factor: float) -> torch.Tensor:
    """A ``[3, H, W]`` image resized bilinearly by ``factor``."""
    return F.interpolate(image[None], scale_factor=factor, mode="bilinear", align_corners=False, recompute_scale_factor=True)[0]


def apply_predict_hparams(model: DSFD, predict: Mapping[str, Any]) -> DSFD:
    """Override the model's post-processing settings with those keys of a ``predict`` section it knows."""
    postprocess_keys = ("score_threshold", "nms_iou", "pre_nms_top_k", "max_detections", "test_max_side")
    updated = model.config.to_dict() | {k: predict[k] for k in postprocess_keys if k in predict}
    model.config = DSFDModelConfig.from_dict(updated)
    return model
