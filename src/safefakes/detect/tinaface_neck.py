"""TinaFace's neck: a six-level feature pyramid (P2..P7) followed by the shared Inception module.

FPN as in vedadet's TinaFace configuration: 1x1 lateral and 3x3 output convolutions, each followed by
the normalization and no activation; bilinear top-down upsampling; P6 and P7 from two extra stride-2 3x3
convolutions, the first on C5 ("on_input") and the second on P6.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import Conv2dNormActivation

from safefakes.detect.tinaface_backbone import NormFactory


def conv_norm(in_channels: int, out_channels: int, kernel_size: int, norm: NormFactory, *, stride: int = 1, relu: bool = False) -> Conv2dNormActivation:
    """Convolution (no bias) + normalization, optionally followed by ReLU."""
    return Conv2dNormActivation(
        in_channels,
        out_channels,
        kernel_size=kernel_size,
        stride=stride,
        norm_layer=norm,
        activation_layer=nn.ReLU if relu else None,
    )


def xavier_init_convs(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every convolution (the FPN / Inception initialization)."""
    for child in module.modules():
        if isinstance(child, nn.Conv2d):
            nn.init.xavier_uniform_(child.weight)
            if child.bias is not None:
                nn.init.zeros_(child.bias)


class FeaturePyramid(nn.Module):
    """FPN over C2..C5 plus two extra levels: returns P2..P7 with ``out_channels`` channels each."""

    def __init__(self, in_channels: list[int], out_channels: int, norm: NormFactory, extra_levels: int = 2) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(conv_norm(c, out_channels, 1, norm) for c in in_channels)
        self.output = nn.ModuleList(conv_norm(out_channels, out_channels, 3, norm) for _ in in_channels)
        extra_inputs = [in_channels[-1]] + [out_channels] * (extra_levels - 1)
        self.extra = nn.ModuleList(conv_norm(c, out_channels, 3, norm, stride=2) for c in extra_inputs)
        xavier_init_convs(self)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Pyramid levels, finest first."""
        laterals = [conv(feature) for conv, feature in zip(self.lateral, features)]
        for level in range(len(laterals) - 1, 0, -1):
            upsampled = F.interpolate(laterals[level], size=laterals[level - 1].shape[-2:], mode="bilinear", align_corners=False)
            laterals[level - 1] = laterals[level - 1] + upsampled
        outputs = [conv(lateral) for conv, lateral in zip(self.output, laterals)]
        extra_input = features[-1]
        for conv in self.extra:
            extra_input = conv(extra_input)
            outputs.append(extra_input)
        return outputs


class Inception(nn.Module):
    """TinaFace's Inception module (Sec. 3.2), shared by all levels.

    Three branches of stacked 3x3 convolutions with receptive fields 3, 5 and 7 and ``C/2``, ``C/4``,
    ``C/4`` channels (the 5 and 7 branches share their first convolution), concatenated back to ``C``
    channels and passed through ReLU.
    """

    def __init__(self, channels: int, norm: NormFactory) -> None:
        super().__init__()
        if channels % 4:
            raise ValueError(f"Inception needs a channel count divisible by 4, got {channels}")
        half, quarter = channels // 2, channels // 4
        self.branch3 = conv_norm(channels, half, 3, norm)
        self.shared5_7 = conv_norm(channels, quarter, 3, norm, relu=True)
        self.branch5 = conv_norm(quarter, quarter, 3, norm)
        self.branch7_middle = conv_norm(quarter, quarter, 3, norm, relu=True)
        self.branch7 = conv_norm(quarter, quarter, 3, norm)
        xavier_init_convs(self)

    def forward_level(self, features: torch.Tensor) -> torch.Tensor:
        """Apply the module to one pyramid level."""
        shared = self.shared5_7(features)
        branches = [self.branch3(features), self.branch5(shared), self.branch7(self.branch7_middle(shared))]
        return F.relu(torch.cat(branches, dim=1))

    def forward(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Apply the shared module to every pyramid level."""
        return [self.forward_level(features) for features in levels]
