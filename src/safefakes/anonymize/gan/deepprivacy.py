"""DeepPrivacy (Hukkelås et al., ISVC 2019): a conditional GAN that paints a new face into a blocked box.

Generator: a U-Net. Its input is the context crop with the face box blocked (black, or noise) plus
a mask channel saying which pixels are known; the encoder halves the resolution down to
``start_resolution`` (8x8), where latent noise maps are joined; the decoder doubles it back, and after
each upsampling concatenates the pose (one one-hot map per keypoint at that resolution) and the
encoder's skip features of the same resolution. Every 3x3 convolution is followed by LeakyReLU(0.2)
and pixel normalization; weights use the equalized learning rate of progressive GANs. The output is
composited: generated pixels inside the box, the condition outside (the discriminator judges the
face in its real context).

Discriminator: the image and its condition (6 channels) at the current resolution, the pose
concatenated to the features at every resolution (after ``from_rgb`` and after each downsampling),
minibatch standard deviation, then a dense score. ``deep`` adds a convolution and a residual
shortcut to each block; ``wide`` multiplies the widths by sqrt(2) (the paper's two variants).

Both grow progressively from ``start_resolution`` to ``resolution``: all layers exist from the start
(so the optimizer state never changes shape), and the forward pass uses those of the current
resolution, fading the newest in with ``alpha``. Losses: WGAN-GP with the epsilon (drift) penalty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from safefakes.anonymize.base import MethodConfig, require
from safefakes.common.errors import SafefakesError

InputBlocking = Literal["black", "noise"]


@dataclass(frozen=True)
class DeepPrivacyModelConfig(MethodConfig):
    """Architecture of the DeepPrivacy generator and discriminator (paper values as defaults)."""

    resolution: int = 128  # Safe Fakes Table I / Sec. III-A1: 128x128 faces for every GAN
    start_resolution: int = 8  # DeepPrivacy Sec. 3: progressive growing from 8x8
    max_channels: int = 256  # DeepPrivacy v1 code: 256 filters at the low resolutions
    full_width_until: int = 32  # widths halve with each doubling above this resolution ...
    min_channels: int = 16  # ... down to this many
    num_keypoints: int = 7  # DeepPrivacy: nose, eyes, ears, shoulders (first 7 COCO keypoints)
    latent_channels: int = 32  # latent noise maps joined at the bottleneck
    input_blocking: InputBlocking = "black"  # Safe Fakes Sec. III-A1: black-out input blocking for all GANs
    leaky_slope: float = 0.2  # DeepPrivacy Sec. 3: LeakyReLU(0.2)
    pixel_norm: bool = True  # DeepPrivacy Sec. 3: pixel normalization after each convolution (generator)
    equalized_lr: bool = True  # progressive GAN weight scaling, used by DeepPrivacy
    minibatch_std: bool = True  # progressive GAN minibatch standard deviation in the discriminator
    discriminator_deep: bool = False  # DeepPrivacy's "deep" discriminator: residual blocks, one more conv each
    discriminator_wide: bool = False  # DeepPrivacy's "wide" discriminator: sqrt(2) more filters

    def validate(self) -> None:
        """Resolutions must be powers of two with start <= final; widths positive."""
        for name in ("resolution", "start_resolution", "full_width_until"):
            value = getattr(self, name)
            require(value >= 4 and value & (value - 1) == 0, f"{name} must be a power of two >= 4, got {value}")
        require(self.start_resolution <= self.resolution, "start_resolution must not exceed resolution")
        require(self.max_channels >= self.min_channels >= 1, "need max_channels >= min_channels >= 1")
        require(self.num_keypoints >= 0 and self.latent_channels >= 0, "num_keypoints and latent_channels must be >= 0")
        require(0 <= self.leaky_slope < 1, "leaky_slope must be in [0, 1)")

    @property
    def resolutions(self) -> list[int]:
        """Every resolution of the growth, from ``start_resolution`` to ``resolution``."""
        steps = int(math.log2(self.resolution // self.start_resolution))
        return [self.start_resolution * 2**i for i in range(steps + 1)]

    def channels(self, resolution: int, wide: bool = False) -> int:
        """Feature channels at ``resolution`` (times sqrt(2), rounded, when ``wide``)."""
        halvings = max(0, int(math.log2(resolution / self.full_width_until)))
        base = max(self.min_channels, self.max_channels >> halvings)
        return int(round(base * math.sqrt(2))) if wide else base

    @classmethod
    def from_any(cls, values: Mapping[str, Any] | None) -> DeepPrivacyModelConfig:
        """Build from a plain mapping (the config.yaml section passed as JSON)."""
        return cls.from_dict(values)


# --------------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------------


class ScaledConv2d(nn.Conv2d):
    """A convolution with the equalized learning rate (weights ~ N(0, 1), scaled by He's constant at run time)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0, gain: float = math.sqrt(2), equalized: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=padding)
        self.equalized = equalized
        fan_in = in_channels * kernel_size * kernel_size
        self.scale = gain / math.sqrt(fan_in) if equalized else 1.0
        if equalized:
            nn.init.normal_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve with the scaled weights."""
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class PixelNorm(nn.Module):
    """Normalize each pixel's feature vector to unit average square (progressive GAN)."""

    EPSILON = 1e-8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Divide by the root mean square over channels."""
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.EPSILON)


def conv_act(config: DeepPrivacyModelConfig, in_channels: int, out_channels: int, normalize: bool) -> nn.Sequential:
    """3x3 convolution, LeakyReLU and (in the generator) pixel normalization."""
    layers: list[nn.Module] = [
        ScaledConv2d(in_channels, out_channels, 3, padding=1, equalized=config.equalized_lr),
        nn.LeakyReLU(config.leaky_slope),
    ]
    if normalize and config.pixel_norm:
        layers.append(PixelNorm())
    return nn.Sequential(*layers)


def pose_maps(keypoints: torch.Tensor | None, resolution: int, num_keypoints: int, batch: int, device: torch.device) -> torch.Tensor:
    """One-hot keypoint maps ``(B, K, r, r)``: a 1 at each visible keypoint's pixel, zeros for missing ones.

    ``keypoints`` is ``(B, K, 3)`` of ``[u, v, visible]`` in [0, 1] crop units, or None (no pose).
    """
    maps = torch.zeros(batch, num_keypoints, resolution, resolution, device=device)
    if keypoints is None or num_keypoints == 0:
        return maps
    columns = (keypoints[..., 0] * resolution).long().clamp(0, resolution - 1)
    rows = (keypoints[..., 1] * resolution).long().clamp(0, resolution - 1)
    visible = keypoints[..., 2] > 0
    batch_index, point_index = torch.nonzero(visible, as_tuple=True)
    maps[batch_index, point_index, rows[visible], columns[visible]] = 1.0
    return maps


def downsample(x: torch.Tensor) -> torch.Tensor:
    """Halve the resolution by 2x2 averaging."""
    return F.avg_pool2d(x, 2)


def upsample(x: torch.Tensor) -> torch.Tensor:
    """Double the resolution by nearest-neighbour repetition."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


# --------------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------------

#: Added under the square root of the minibatch variance (a zero variance would give NaN gradients).
MINIBATCH_STD_EPSILON = 1e-8
#: Generator input channels: the blocked condition image (3) and the known-pixel mask (1).
GENERATOR_INPUT_CHANNELS = 4
#: Discriminator input channels: the image and its condition (DeepPrivacy: conditioned on the background).
DISCRIMINATOR_INPUT_CHANNELS = 6


class DeepPrivacyGenerator(nn.Module):
    """The U-Net generator with skip connections and pose after each upsampling (see the module docstring)."""

    def __init__(self, config: DeepPrivacyModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        k = config.num_keypoints
        self.from_rgb = nn.ModuleDict({str(r): ScaledConv2d(GENERATOR_INPUT_CHANNELS, c(r), 1, equalized=config.equalized_lr) for r in config.resolutions})
        self.encoders = nn.ModuleDict(
            {
                str(r): nn.ModuleDict({"conv1": conv_act(config, c(r), c(r), True), "conv2": conv_act(config, c(r), c(r // 2), True)})
                for r in config.resolutions[1:]
            }
        )
        s = config.start_resolution
        self.bottleneck = nn.Sequential(
            conv_act(config, c(s) + config.latent_channels + k, c(s), True),
            conv_act(config, c(s), c(s), True),
        )
        self.decoders = nn.ModuleDict(
            {str(r): nn.Sequential(conv_act(config, c(r // 2) + k + c(r), c(r), True), conv_act(config, c(r), c(r), True)) for r in config.resolutions[1:]}
        )
        self.to_rgb = nn.ModuleDict({str(r): ScaledConv2d(c(r), 3, 1, gain=1.0, equalized=config.equalized_lr) for r in config.resolutions})

    def latent_shape(self, batch: int) -> tuple[int, int, int, int]:
        """Shape of the latent noise ``z`` for a batch."""
        s = self.config.start_resolution
        return (batch, self.config.latent_channels, s, s)

    def forward(self, condition: torch.Tensor, mask: torch.Tensor, keypoints: torch.Tensor | None, z: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        """Generate at the input's resolution; returns generated pixels inside the box, ``condition`` outside.

        ``condition``: ``(B, 3, r, r)`` in [-1, 1] with the box blocked; ``mask``: ``(B, 1, r, r)``, 1 where
        pixels are known (outside the box); ``keypoints``: ``(B, K, 3)`` crop units or None; ``z``: latent noise.
        """
        resolution = condition.shape[-1]
        levels = [r for r in self.config.resolutions if r <= resolution]
        if levels[-1] != resolution:
            raise SafefakesError(f"generator input must be one of {self.config.resolutions} px, got {resolution}")
        batch, device = condition.shape[0], condition.device
        pose = {r: pose_maps(keypoints, r, self.config.num_keypoints, batch, device) for r in levels}
        x_in = torch.cat([condition, mask], dim=1)
        x = self.from_rgb[str(resolution)](x_in)
        skips: dict[int, torch.Tensor] = {}
        for r in reversed(levels[1:]):
            block = self.encoders[str(r)]
            x = block["conv1"](x)
            skips[r] = x
            x = downsample(block["conv2"](x))
            if r == resolution and alpha < 1.0:
                x = alpha * x + (1 - alpha) * self.from_rgb[str(r // 2)](downsample(x_in))
        x = self.bottleneck(torch.cat([x, z, pose[levels[0]]], dim=1))
        previous = x
        for r in levels[1:]:
            previous = x
            x = self.decoders[str(r)](torch.cat([upsample(x), pose[r], skips[r]], dim=1))
        image = self.to_rgb[str(resolution)](x)
        if alpha < 1.0 and len(levels) > 1:
            image = alpha * image + (1 - alpha) * upsample(self.to_rgb[str(levels[-2])](previous))
        return image * (1 - mask) + condition * mask


# --------------------------------------------------------------------------------------------------
# Discriminator
# --------------------------------------------------------------------------------------------------


class DiscriminatorBlock(nn.Module):
    """Convolutions then 2x downsampling; ``deep``: one more convolution and a residual 1x1 shortcut."""

    def __init__(self, config: DeepPrivacyModelConfig, in_channels: int, out_channels: int, deep: bool) -> None:
        super().__init__()
        layers = [conv_act(config, in_channels, in_channels, False)]
        if deep:
            layers.append(conv_act(config, in_channels, in_channels, False))
        layers.append(conv_act(config, in_channels, out_channels, False))
        self.main = nn.Sequential(*layers)
        self.shortcut = ScaledConv2d(in_channels, out_channels, 1, gain=1.0, equalized=config.equalized_lr) if deep else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features at half the resolution."""
        out = downsample(self.main(x))
        if self.shortcut is not None:
            out = (out + downsample(self.shortcut(x))) / math.sqrt(2)
        return out


class DeepPrivacyDiscriminator(nn.Module):
    """The background-conditioned discriminator (see the module docstring)."""

    def __init__(self, config: DeepPrivacyModelConfig) -> None:
        super().__init__()
        self.config = config
        wide = config.discriminator_wide
        c = lambda r: config.channels(r, wide)  # noqa: E731 - width at a resolution
        k = config.num_keypoints
        self.from_rgb = nn.ModuleDict({str(r): ScaledConv2d(DISCRIMINATOR_INPUT_CHANNELS, c(r), 1, equalized=config.equalized_lr) for r in config.resolutions})
        self.blocks = nn.ModuleDict({str(r): DiscriminatorBlock(config, c(r) + k, c(r // 2), config.discriminator_deep) for r in config.resolutions[1:]})
        s = config.start_resolution
        extra = 1 if config.minibatch_std else 0
        self.final_conv = conv_act(config, c(s) + k + extra, c(s), False)
        self.final_dense = ScaledConv2d(c(s), c(s), s, equalized=config.equalized_lr)  # s x s kernel: one value per channel
        self.final_act = nn.LeakyReLU(config.leaky_slope)
        self.score = nn.Linear(c(s), 1)

    @property
    def input_channels(self) -> int:
        """Image plus condition channels the discriminator reads (6)."""
        return DISCRIMINATOR_INPUT_CHANNELS

    def forward(self, image: torch.Tensor, condition: torch.Tensor, keypoints: torch.Tensor | None, alpha: float = 1.0) -> torch.Tensor:
        """One realness score per sample, ``(B,)``."""
        resolution = image.shape[-1]
        levels = [r for r in self.config.resolutions if r <= resolution]
        batch, device = image.shape[0], image.device
        k = self.config.num_keypoints
        x_in = torch.cat([image, condition], dim=1)
        x = self.from_rgb[str(resolution)](x_in)
        for r in reversed(levels[1:]):
            x = self.blocks[str(r)](torch.cat([x, pose_maps(keypoints, r, k, batch, device)], dim=1))
            if r == resolution and alpha < 1.0:
                x = alpha * x + (1 - alpha) * self.from_rgb[str(r // 2)](downsample(x_in))
        x = torch.cat([x, pose_maps(keypoints, levels[0], k, batch, device)], dim=1)
        if self.config.minibatch_std:
            deviation = torch.sqrt(x.float().var(dim=0, unbiased=False) + MINIBATCH_STD_EPSILON).mean().to(x.dtype)
            x = torch.cat([x, deviation.expand(batch, 1, *x.shape[2:])], dim=1)
        x = self.final_act(self.final_dense(self.final_conv(x))).flatten(1)
        return self.score(x).squeeze(1)


# --------------------------------------------------------------------------------------------------
# WGAN-GP losses
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WganGpConfig(MethodConfig):
    """WGAN-GP loss weights (DeepPrivacy Sec. 3 follows progressive GAN)."""

    gradient_penalty_weight: float = 10.0  # lambda of WGAN-GP (Gulrajani et al.), used by DeepPrivacy
    epsilon_penalty_weight: float = 0.001  # drift penalty on D(real)^2 (Karras et al.), used by DeepPrivacy

    def validate(self) -> None:
        """Weights are non-negative."""
        require(self.gradient_penalty_weight >= 0 and self.epsilon_penalty_weight >= 0, "loss weights must be >= 0")


def gradient_penalty(
    discriminator: DeepPrivacyDiscriminator,
    real: torch.Tensor,
    fake: torch.Tensor,
    condition: torch.Tensor,
    keypoints: torch.Tensor | None,
    alpha: float,
    mix: torch.Tensor,
) -> torch.Tensor:
    """Mean of (||grad D(x_hat)|| - 1)^2 at ``x_hat = mix * real + (1 - mix) * fake`` (computed in float32)."""
    with torch.autocast(device_type=real.device.type, enabled=False):
        interpolated = (mix * real.float() + (1 - mix) * fake.float()).requires_grad_(True)
        scores = discriminator(interpolated, condition.float(), keypoints, alpha)
        (gradient,) = torch.autograd.grad(scores.sum(), interpolated, create_graph=True)
        return (gradient.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


def discriminator_loss(
    discriminator: DeepPrivacyDiscriminator,
    real: torch.Tensor,
    fake: torch.Tensor,
    condition: torch.Tensor,
    keypoints: torch.Tensor | None,
    alpha: float,
    mix: torch.Tensor,
    weights: WganGpConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """WGAN-GP critic loss ``D(fake) - D(real) + lambda * GP + epsilon * D(real)^2``; also returns the logged terms.

    ``wasserstein`` in the log is the critic's estimate ``D(real) - D(fake)``.
    """
    real_scores = discriminator(real, condition, keypoints, alpha).float()
    fake_scores = discriminator(fake.detach(), condition, keypoints, alpha).float()
    penalty = gradient_penalty(discriminator, real, fake.detach(), condition, keypoints, alpha, mix)
    drift = real_scores.pow(2).mean()
    wasserstein = real_scores.mean() - fake_scores.mean()
    loss = -wasserstein + weights.gradient_penalty_weight * penalty + weights.epsilon_penalty_weight * drift
    terms = {
        "d_loss": float(loss.detach()),
        "wasserstein": float(wasserstein.detach()),
        "gradient_penalty": float(penalty.detach()),
        "epsilon_penalty": float(drift.detach()),
    }
    return loss, terms


def generator_loss(
    discriminator: DeepPrivacyDiscriminator, fake: torch.Tensor, condition: torch.Tensor, keypoints: torch.Tensor | None, alpha: float
) -> torch.Tensor:
    """The generator's WGAN loss ``-D(fake)``."""
    return -discriminator(fake, condition, keypoints, alpha).float().mean()
