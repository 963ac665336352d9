"""TinaFace's backbone: a ResNet-50 built from torchvision's bottleneck blocks, with a width multiplier,
GroupNorm or BatchNorm, deformable 3x3 convolutions in chosen stages, and optional ImageNet weights.

At ``width_scale=1.0`` the module's parameter names and shapes equal ``torchvision.models.resnet50``'s,
so torchvision's ImageNet checkpoint loads into it (as vedadet loads ``torchvision://resnet50``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet50_Weights
from torchvision.models.resnet import Bottleneck
from torchvision.ops import deform_conv2d

from safefakes.detect.tinaface_config import TinaFaceModelConfig, group_count, scaled_channels

LOGGER = logging.getLogger(__name__)

NormFactory = Callable[[int], nn.Module]

#: Offsets a deformable 3x3 convolution predicts per position: (dy, dx) for each of the 9 kernel taps.
DEFORMABLE_OFFSET_CHANNELS = 2 * 3 * 3

#: torchvision's ImageNet ResNet-50 checkpoints, most preferred first (V1 is what ``torchvision://resnet50`` names).
IMAGENET_CHECKPOINT_URLS = (ResNet50_Weights.IMAGENET1K_V1.url, ResNet50_Weights.IMAGENET1K_V2.url)


def make_norm_factory(config: TinaFaceModelConfig) -> NormFactory:
    """A ``channels -> norm layer`` function for the configured normalization (GroupNorm or BatchNorm)."""
    if config.norm == "group":
        return lambda channels: nn.GroupNorm(group_count(channels, config.group_norm_groups), channels)
    return nn.BatchNorm2d


class DeformableConv3x3(nn.Module):
    """A 3x3 deformable convolution (DCN v1, Dai et al. 2017) whose offsets come from a zero-initialized 3x3 conv.

    Its ``weight`` has the shape of the plain 3x3 convolution it replaces, so ImageNet weights load into it.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.offset = nn.Conv2d(in_channels, DEFORMABLE_OFFSET_CHANNELS, 3, stride=stride, padding=1)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Sample the input at learned offsets around each 3x3 tap."""
        return deform_conv2d(features, self.offset(features), self.weight, stride=self.stride, padding=1)


def _bottleneck_stage(in_channels: int, planes: int, blocks: int, stride: int, norm: NormFactory, deformable: bool) -> tuple[nn.Sequential, int]:
    """One ResNet stage of torchvision ``Bottleneck`` blocks (stride on the 3x3 conv); returns it and its output width."""
    out_channels = planes * Bottleneck.expansion
    layers = []
    for index in range(blocks):
        block_stride = stride if index == 0 else 1
        downsample = None
        if index == 0 and (block_stride != 1 or in_channels != out_channels):
            downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=block_stride, bias=False), norm(out_channels))
        block = Bottleneck(in_channels, planes, stride=block_stride, downsample=downsample, norm_layer=norm)
        if deformable:
            block.conv2 = DeformableConv3x3(planes, planes, stride=block_stride)
        layers.append(block)
        in_channels = out_channels
    return nn.Sequential(*layers), out_channels


class ResNetBackbone(nn.Module):
    """ResNet (bottleneck) returning the feature maps C2..C5 (strides 4, 8, 16, 32)."""

    def __init__(self, config: TinaFaceModelConfig) -> None:
        super().__init__()
        norm = make_norm_factory(config)
        stem_channels = scaled_channels(config.backbone_base_channels, config.width_scale)
        self.conv1 = nn.Conv2d(3, stem_channels, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = stem_channels
        self.out_channels: list[int] = []
        for index, (depth, deformable) in enumerate(zip(config.backbone_depths, config.deformable_stages)):
            planes = scaled_channels(config.backbone_base_channels * 2**index, config.width_scale)
            stage, in_channels = _bottleneck_stage(in_channels, planes, depth, 1 if index == 0 else 2, norm, deformable)
            self.add_module(f"layer{index + 1}", stage)
            self.out_channels.append(in_channels)
        self.num_stages = len(config.backbone_depths)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's ResNet initialization: He-normal convs, unit-scale norms (offset convs stay zero)."""
        offset_convs = {id(m.offset) for m in self.modules() if isinstance(m, DeformableConv3x3)}
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and id(module) not in offset_convs:
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps C2..C5 of a normalized image batch."""
        features = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        outputs = []
        for index in range(self.num_stages):
            features = getattr(self, f"layer{index + 1}")(features)
            outputs.append(features)
        return outputs


def find_cached_imagenet_checkpoint(hub_dir: str | Path | None = None) -> Path | None:
    """The torchvision ImageNet ResNet-50 checkpoint in the torch hub cache, or ``None`` (never downloads)."""
    checkpoints = Path(hub_dir if hub_dir is not None else torch.hub.get_dir()) / "checkpoints"
    for url in IMAGENET_CHECKPOINT_URLS:
        candidate = checkpoints / url.rsplit("/", 1)[-1]
        if candidate.is_file():
            return candidate
    return None


def load_imagenet_weights(backbone: ResNetBackbone, checkpoint: Path) -> int:
    """Copy every checkpoint tensor whose name and shape match into ``backbone``; returns how many were copied.

    BatchNorm running statistics are skipped when the backbone has no such buffers (GroupNorm), and the
    classifier ``fc`` is not part of the backbone, as in vedadet's non-strict loading.
    """
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    own = backbone.state_dict()
    matched = {name: tensor for name, tensor in state.items() if name in own and own[name].shape == tensor.shape}
    backbone.load_state_dict(matched, strict=False)
    return len(matched)


def maybe_load_imagenet_weights(backbone: ResNetBackbone, config: TinaFaceModelConfig) -> Path | None:
    """Load cached ImageNet weights when asked for and usable; log what happened; return the file used or ``None``."""
    if not config.pretrained_backbone:
        LOGGER.info("TinaFace backbone: ImageNet weights not requested; training from scratch")
        return None
    if not math.isclose(config.width_scale, 1.0) or tuple(config.backbone_depths) != (3, 4, 6, 3):
        LOGGER.info("TinaFace backbone: ImageNet weights not used (width_scale %s is not ResNet-50's)", config.width_scale)
        return None
    checkpoint = find_cached_imagenet_checkpoint()
    if checkpoint is None:
        LOGGER.warning(
            "TinaFace backbone: no torchvision ResNet-50 ImageNet checkpoint in %s/checkpoints; training from scratch (place %s there to use it)",
            torch.hub.get_dir(),
            IMAGENET_CHECKPOINT_URLS[0].rsplit("/", 1)[-1],
        )
        return None
    copied = load_imagenet_weights(backbone, checkpoint)
    LOGGER.info("TinaFace backbone: loaded %d ImageNet tensors from %s", copied, checkpoint)
    return checkpoint
