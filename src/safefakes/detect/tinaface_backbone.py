"""TinaFace's backbone: a ResNet-50 built from torchvision's bottleneck blocks, with a width multiplier,
GroupNorm or BatchNorm, deformable 3x3 convolutions in chosen stages, and optional ImageNet weights.

At ``width_scale=1.0`` the module's parameter names and shapes equal ``torchvision.models.resnet50``'s,
so torchvision's ImageNet checkpoint loads into it (as vedadet loads ``torchvision://resnet50``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck
from torchvision.ops import deform_conv2d

from safefakes.common.errors import SafefakesError
from safefakes.common.weights import NO_PRETRAINED, Initialisation, resolve_pretrained
from safefakes.detect.tinaface_config import TinaFaceModelConfig, group_count, scaled_channels

LOGGER = logging.getLogger(__name__)

NormFactory = Callable[[int], nn.Module]

#: Offsets a deformable 3x3 convolution predicts per position: (dy, dx) for each of the 9 kernel taps.
DEFORMABLE_OFFSET_CHANNELS = 2 * 3 * 3

#: torchvision's ImageNet ResNet-50 (IMAGENET1K_V1, what vedadet's ``torchvision://resnet50`` names), weight ``resnet50``
#: of ``safefakes fetch-weights``.
IMAGENET_WEIGHT_KEY = "resnet50"


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


def load_imagenet_weights(backbone: ResNetBackbone, checkpoint: Path) -> list[str]:
    """Copy every checkpoint tensor whose name and shape match into ``backbone``; returns the backbone parameters it
    left unfilled (the deformable convolutions' offset predictors are new layers, not counted).

    BatchNorm running statistics are skipped when the backbone has no such buffers (GroupNorm), and the
    classifier ``fc`` is not part of the backbone, as in vedadet's non-strict loading.
    """
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    own = backbone.state_dict()
    matched = {name: tensor for name, tensor in state.items() if name in own and own[name].shape == tensor.shape}
    backbone.load_state_dict(matched, strict=False)
    offset_parameters = {
        f"{name}.offset.{kind}" for name, module in backbone.named_modules() if isinstance(module, DeformableConv3x3) for kind in ("weight", "bias")
    }
    return [name for name, _ in backbone.named_parameters() if name not in matched and name not in offset_parameters]


def initialise_backbone(backbone: ResNetBackbone, config: TinaFaceModelConfig) -> Initialisation:
    """Load the ImageNet ResNet-50 that ``config.pretrained`` asks for (never downloaded); what the backbone started from.

    A missing or corrupt file is a :class:`SafefakesError` naming it and the command that fetches it; so is a
    file that leaves part of the backbone unfilled.
    """
    if config.pretrained == NO_PRETRAINED:
        LOGGER.info("TinaFace backbone: random initialization (model.pretrained: none)")
        return Initialisation()
    path, initialisation = resolve_pretrained(IMAGENET_WEIGHT_KEY, config.pretrained, "tinaface")
    unfilled = load_imagenet_weights(backbone, path)
    if unfilled:
        raise SafefakesError(f"tinaface: {path} leaves {len(unfilled)} backbone tensors unfilled (first: {unfilled[0]}); is it torchvision's ResNet-50?")
    LOGGER.info("TinaFace backbone: ImageNet ResNet-50 weights loaded from %s", path)
    return initialisation
