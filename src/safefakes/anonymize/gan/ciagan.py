"""CIAGAN (Maximov et al., CVPR 2020): an identity-conditioned GAN that paints a face into a landmark mask.

Input representation (released preprocessing of dvl-tum/ciagan):

* **Landmark image** — one channel at the model resolution with 1-pixel lines through a subset of dlib's 68
  iBUG-300W landmarks: the jaw line (points 0-16), the nose bridge (27-30) and the closed inner lip
  contour (60-67), :data:`LANDMARK_SEGMENTS`. That is 29 points (:data:`LANDMARK_IMAGE_INDICES`); Safe
  Fakes Table I counts CIAGAN's keypoints as 27, while the released code draws these 29, which we follow.
  A segment is drawn only when both of its points are visible.
* **Mask** — the face region to generate (1 inside, 0 outside). The original fills the polygon of the
  jaw line closed at eyebrow height; we take the convex hull of the visible jaw and eyebrow points
  (0-26, :data:`MASK_HULL_INDICES`), which spans the same region. **Deviation:** our mask is the
  *union* of that hull and the face box. The original keeps the face's own pixels outside the hull
  (forehead, hair, ears inside the box); the shared anonymizer blacks out the whole box before any
  crop is taken (the privacy property of this project), so training must see the same kind of input.
* **Masked crop** — the context crop with the mask painted black (-1 in [-1, 1] units).

Generator: an encoder-decoder shaped like a U-Net but *without* skip connections (Safe Fakes Sec.
III-A1: skips would leak the source identity past the identity input). Residual down-blocks with
instance normalization halve the resolution to ``bottleneck_resolution`` (4x4); the one-hot identity
goes through a dense network, is reshaped to a small feature map, widened by convolutions and
concatenated to the bottleneck features, fused by a convolution; residual blocks follow, then residual
up-blocks double the resolution back and a convolution gives RGB (tanh: our images are in [-1, 1]).
The output is composited: generated pixels inside the mask, the input outside. Convolutions use
reflection padding and spectral normalization, as in the released code.

Discriminators: the image discriminator judges the crop together with its landmark image (the
original concatenates them) with residual down-blocks and two dense layers; the identity
discriminator is an identity classifier over the training identities. **Deviation:** the released
code uses a siamese ResNet with a contrastive loss pulling the generated face towards a real face of
the chosen identity; we use a classifier trained on real crops with cross-entropy, and push the
generator to make its output classified as the chosen identity (the same goal with no pair sampler).

Losses: least-squares GAN (the released default ``lsgan``) plus the identity term, summed with weight
1 as in the released code. The original uses no reconstruction or perceptual loss, so none is used
here (and no pretrained network is needed offline).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from safefakes.anonymize.base import MethodConfig, require
from safefakes.anonymize.gan.recipe import crop_box_masks
from safefakes.common.errors import SafefakesError

NUM_LANDMARKS = 68
#: Polylines of the landmark image (dlib 68-point indices): jaw, nose bridge, closed inner lips (released preprocessing).
LANDMARK_SEGMENTS: tuple[tuple[int, ...], ...] = (
    tuple(range(0, 17)),  # jaw line 0-16
    tuple(range(27, 31)),  # nose bridge 27-30
    (*range(60, 68), 60),  # inner lip contour 60-67, closed
)
#: The landmarks the landmark image shows.
LANDMARK_IMAGE_INDICES: tuple[int, ...] = tuple(sorted({i for segment in LANDMARK_SEGMENTS for i in segment}))
#: The landmarks whose convex hull is the face mask: jaw 0-16 and eyebrows 17-26 (jaw closed at brow height in the original).
MASK_HULL_INDICES: tuple[int, ...] = tuple(range(0, 27))
#: Value of masked (blacked-out) pixels in [-1, 1] image units.
BLACK = -1.0
#: Generator input: landmark image (1) and masked crop (3). Image discriminator input: image (3) and landmark image (1).
GENERATOR_INPUT_CHANNELS = 4
DISCRIMINATOR_INPUT_CHANNELS = 4


@dataclass(frozen=True)
class CiaganModelConfig(MethodConfig):
    """Architecture of the CIAGAN networks (released-code values as defaults; widths shrink for demos and tests)."""

    resolution: int = 128  # Safe Fakes Table I / Sec. III-A1: 128x128 faces for every GAN (CIAGAN's own size too)
    bottleneck_resolution: int = 4  # released generator/discriminator: down to 4x4
    generator_base_channels: int = 32  # released generator: 32, 64, 128, 256, 256 encoder widths at 128 px ...
    generator_max_channels: int = 256  # ... doubling per level up to 256; the decoder mirrors them, ending at 16
    bottleneck_blocks: int = 4  # released generator: 4 residual blocks at the bottleneck
    identity_dense_layers: int = 7  # released generator: 7 dense layers encode the one-hot identity
    identity_hidden_features: int = 256  # released generator: width of those dense layers (the last ones 512)
    identity_map_channels: int = 32  # released generator: the dense output is reshaped to 32 x 4 x 4
    discriminator_base_channels: int = 64  # released discriminator: 64, 128, 256, 512, 512 at 128 px ...
    discriminator_max_channels: int = 512  # ... capped at 512
    discriminator_dense_features: int = 1024  # released discriminator: dense 8192 -> 1024 -> 1
    identity_base_channels: int = 64  # identity classifier widths (released siamese ResNet: 64 to 512)
    identity_max_channels: int = 512
    spectral_norm: bool = True  # released code: spectral normalization on every residual-block convolution
    leaky_slope: float = 0.2  # released code: LeakyReLU(0.2) in the dense layers
    landmark_line_width: int = 1  # released preprocessing: 1-pixel landmark lines

    def validate(self) -> None:
        """Power-of-two resolutions with the bottleneck below the resolution; positive widths."""
        for name in ("resolution", "bottleneck_resolution"):
            value = getattr(self, name)
            require(value >= 2 and value & (value - 1) == 0, f"{name} must be a power of two >= 2, got {value}")
        require(self.bottleneck_resolution < self.resolution, "bottleneck_resolution must be below resolution")
        for name in (
            "generator_base_channels",
            "generator_max_channels",
            "identity_hidden_features",
            "identity_map_channels",
            "discriminator_base_channels",
            "discriminator_max_channels",
            "discriminator_dense_features",
            "identity_base_channels",
            "identity_max_channels",
            "landmark_line_width",
        ):
            require(getattr(self, name) >= 1, f"{name} must be >= 1")
        require(self.bottleneck_blocks >= 0, "bottleneck_blocks must be >= 0")
        require(self.identity_dense_layers >= 1, "identity_dense_layers must be >= 1")
        require(0 <= self.leaky_slope < 1, "leaky_slope must be in [0, 1)")

    @property
    def levels(self) -> int:
        """Number of 2x down-(and up-)samplings between the resolution and the bottleneck."""
        return int(math.log2(self.resolution // self.bottleneck_resolution))


def level_widths(base: int, maximum: int, levels: int) -> list[int]:
    """Widths after each down-block: ``base`` doubling per level, capped at ``maximum``."""
    return [min(base * 2**i, maximum) for i in range(levels)]


# --------------------------------------------------------------------------------------------------
# Input representation
# --------------------------------------------------------------------------------------------------


def _pixel_points(landmarks: np.ndarray, resolution: int) -> np.ndarray:
    """``[u, v]`` crop units -> integer pixel coordinates at ``resolution``."""
    return np.clip(np.floor(landmarks[:, :2] * resolution), 0, resolution - 1).astype(np.int32)


def landmark_image(landmarks: np.ndarray | None, resolution: int, line_width: int = 1) -> np.ndarray:
    """``(r, r)`` float32: 1 on the lines of :data:`LANDMARK_SEGMENTS` between visible landmarks, 0 elsewhere.

    ``landmarks``: ``(68, 3)`` ``[u, v, visible]`` in [0, 1] crop units, or None (an empty image).
    """
    canvas = np.zeros((resolution, resolution), dtype=np.uint8)
    if landmarks is None:
        return canvas.astype(np.float32)
    points = _pixel_points(landmarks, resolution)
    visible = landmarks[:, 2] > 0
    for segment in LANDMARK_SEGMENTS:
        for start, end in zip(segment[:-1], segment[1:]):
            if visible[start] and visible[end]:
                cv2.line(canvas, tuple(int(c) for c in points[start]), tuple(int(c) for c in points[end]), 1, line_width)
    return canvas.astype(np.float32)


def hull_mask(landmarks: np.ndarray | None, resolution: int) -> np.ndarray:
    """``(r, r)`` float32: 1 inside the convex hull of the visible :data:`MASK_HULL_INDICES` points (empty with fewer than 3)."""
    canvas = np.zeros((resolution, resolution), dtype=np.uint8)
    if landmarks is None:
        return canvas.astype(np.float32)
    chosen = landmarks[list(MASK_HULL_INDICES)]
    chosen = chosen[chosen[:, 2] > 0]
    if len(chosen) >= 3:
        cv2.fillConvexPoly(canvas, cv2.convexHull(_pixel_points(chosen, resolution)), 1)
    return canvas.astype(np.float32)


def condition_maps(
    landmarks: Sequence[np.ndarray | None],
    boxes: Sequence[Sequence[int]] | np.ndarray,
    full_resolution: int,
    resolution: int,
    line_width: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Landmark images and masks ``(B, 1, r, r)`` of a batch: the mask is the landmark hull united with the face box.

    ``boxes`` are ``x0 y0 x1 y1`` in crop pixels at ``full_resolution``; landmarks in crop units (None: none known).
    """
    if len(landmarks) != len(boxes):
        raise SafefakesError(f"{len(landmarks)} landmark sets for {len(boxes)} boxes")
    lines = np.stack([landmark_image(points, resolution, line_width) for points in landmarks])[:, None]
    hulls = torch.from_numpy(np.stack([hull_mask(points, resolution) for points in landmarks])[:, None])
    box = 1 - crop_box_masks(boxes, full_resolution, resolution)  # crop_box_masks is 0 inside the box
    return torch.from_numpy(lines), torch.maximum(hulls, box)


def mask_image(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``image`` with the mask painted black."""
    return image * (1 - mask) + BLACK * mask


# --------------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------------


class ConvLayer(nn.Sequential):
    """Reflection padding and a convolution, spectrally normalized when asked."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, normalized: bool) -> None:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size)
        super().__init__(nn.ReflectionPad2d(kernel_size // 2), spectral_norm(conv) if normalized else conv)


class ResidualDown(nn.Module):
    """Pre-activation residual block halving the resolution: ReLU-conv-ReLU-conv-avgpool plus a pooled 1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int, normalized: bool) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, out_channels, 3, normalized)
        self.conv2 = ConvLayer(out_channels, out_channels, 3, normalized)
        self.shortcut = ConvLayer(in_channels, out_channels, 1, normalized)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features at half the resolution."""
        out = F.avg_pool2d(self.conv2(F.relu(self.conv1(F.relu(x)))), 2)
        return out + F.avg_pool2d(self.shortcut(x), 2)


class ResidualUp(nn.Module):
    """Residual block doubling the resolution: IN-ReLU-upsample-conv-IN-ReLU-conv plus an upsampled 1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int, normalized: bool) -> None:
        super().__init__()
        self.norm1 = nn.InstanceNorm2d(in_channels, affine=True)
        self.conv1 = ConvLayer(in_channels, out_channels, 3, normalized)
        self.norm2 = nn.InstanceNorm2d(out_channels, affine=True)
        self.conv2 = ConvLayer(out_channels, out_channels, 3, normalized)
        self.shortcut = ConvLayer(in_channels, out_channels, 1, normalized)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features at twice the resolution."""
        out = self.conv1(F.interpolate(F.relu(self.norm1(x)), scale_factor=2, mode="nearest"))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class ResidualBlock(nn.Module):
    """Same-resolution residual block: conv-IN-ReLU-conv-IN plus the input."""

    def __init__(self, channels: int, normalized: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvLayer(channels, channels, 3, normalized),
            nn.InstanceNorm2d(channels, affine=True),
            nn.ReLU(),
            ConvLayer(channels, channels, 3, normalized),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` plus the residual."""
        return x + self.body(x)


def down_stack(in_channels: int, widths: Sequence[int], normalized: bool, instance_norm: bool) -> nn.Sequential:
    """Residual down-blocks to ``widths`` (each followed by instance normalization when asked)."""
    layers: list[nn.Module] = []
    for width in widths:
        layers.append(ResidualDown(in_channels, width, normalized))
        if instance_norm:
            layers.append(nn.InstanceNorm2d(width, affine=True))
        in_channels = width
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------------


class IdentityEmbedding(nn.Module):
    """One-hot identity -> dense layers -> a ``identity_map_channels x b x b`` map -> convolutions to the bottleneck width."""

    def __init__(self, config: CiaganModelConfig, num_identities: int, bottleneck_channels: int) -> None:
        super().__init__()
        b = config.bottleneck_resolution
        hidden = config.identity_hidden_features
        sizes = [num_identities] + [hidden] * (config.identity_dense_layers - 1) + [config.identity_map_channels * b * b]
        dense: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            dense += [nn.Linear(fan_in, fan_out), nn.LeakyReLU(config.leaky_slope)]
        self.dense = nn.Sequential(*dense)
        widen: list[nn.Module] = []
        channels = config.identity_map_channels
        while True:  # double the channels up to the bottleneck width (at least one convolution)
            target = min(channels * 2, bottleneck_channels) if channels < bottleneck_channels else bottleneck_channels
            widen += [ConvLayer(channels, target, 3, config.spectral_norm), nn.LeakyReLU(config.leaky_slope), nn.InstanceNorm2d(target, affine=True)]
            channels = target
            if channels == bottleneck_channels:
                break
        self.widen = nn.Sequential(*widen)
        self.map_shape = (config.identity_map_channels, b, b)

    def forward(self, one_hot: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` one-hot -> ``(B, bottleneck_channels, b, b)``."""
        return self.widen(self.dense(one_hot).view(one_hot.shape[0], *self.map_shape))


class CiaganGenerator(nn.Module):
    """Encoder-decoder without skip connections, identity injected at the bottleneck (see the module docstring)."""

    def __init__(self, config: CiaganModelConfig, num_identities: int) -> None:
        super().__init__()
        if num_identities < 1:
            raise SafefakesError(f"CIAGAN needs at least one training identity, got {num_identities}")
        self.config = config
        self.num_identities = num_identities
        sn = config.spectral_norm
        widths = level_widths(config.generator_base_channels, config.generator_max_channels, config.levels)
        bottleneck = widths[-1]
        self.encoder = down_stack(GENERATOR_INPUT_CHANNELS, widths, sn, instance_norm=True)
        self.identity = IdentityEmbedding(config, num_identities, bottleneck)
        self.fuse = nn.Sequential(ConvLayer(2 * bottleneck, bottleneck, 3, sn), nn.InstanceNorm2d(bottleneck, affine=True))
        self.residual = nn.Sequential(*[ResidualBlock(bottleneck, sn) for _ in range(config.bottleneck_blocks)])
        decoder_widths = [*widths[:-1][::-1], max(1, config.generator_base_channels // 2)]
        decoder: list[nn.Module] = []
        channels = bottleneck
        for width in decoder_widths:
            decoder += [ResidualUp(channels, width, sn), nn.InstanceNorm2d(width, affine=True)]
            channels = width
        self.decoder = nn.Sequential(*decoder)
        self.to_rgb = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, image: torch.Tensor, landmarks: torch.Tensor, mask: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        """A face of ``identity`` painted into ``mask``; ``image`` outside it.

        ``image``: ``(B, 3, r, r)`` in [-1, 1] (its masked pixels are never read); ``landmarks``, ``mask``:
        ``(B, 1, r, r)`` (mask 1 = generate); ``identity``: ``(B, num_identities)`` one-hot.
        """
        if image.shape[-1] != self.config.resolution:
            raise SafefakesError(f"CIAGAN generator input must be {self.config.resolution} px, got {image.shape[-1]}")
        masked = mask_image(image, mask)
        features = self.encoder(torch.cat([landmarks, masked], dim=1))
        features = self.fuse(torch.cat([features, self.identity(identity)], dim=1))
        generated = torch.tanh(self.to_rgb(self.decoder(self.residual(features))))
        return generated * mask + masked * (1 - mask)


class CiaganDiscriminator(nn.Module):
    """Real/fake judge of a crop together with its landmark image: residual down-blocks and two dense layers."""

    def __init__(self, config: CiaganModelConfig) -> None:
        super().__init__()
        widths = level_widths(config.discriminator_base_channels, config.discriminator_max_channels, config.levels)
        self.features = down_stack(DISCRIMINATOR_INPUT_CHANNELS, widths, config.spectral_norm, instance_norm=False)
        b = config.bottleneck_resolution
        self.dense = nn.Sequential(
            nn.Flatten(),
            nn.Linear(widths[-1] * b * b, config.discriminator_dense_features),
            nn.LeakyReLU(config.leaky_slope),
            nn.Linear(config.discriminator_dense_features, 1),
        )

    def forward(self, image: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """One realness score per sample, ``(B,)``."""
        return self.dense(self.features(torch.cat([image, landmarks], dim=1))).squeeze(1)


class IdentityDiscriminator(nn.Module):
    """Identity classifier over the training identities: residual down-blocks, global average pooling, a dense layer."""

    def __init__(self, config: CiaganModelConfig, num_identities: int) -> None:
        super().__init__()
        widths = level_widths(config.identity_base_channels, config.identity_max_channels, config.levels)
        self.features = down_stack(3, widths, config.spectral_norm, instance_norm=False)
        self.classify = nn.Linear(widths[-1], num_identities)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Identity logits ``(B, num_identities)``."""
        return self.classify(F.relu(self.features(image)).mean(dim=(2, 3)))


# --------------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CiaganLossConfig(MethodConfig):
    """Loss weights (released code: generator loss = LSGAN term + identity term, both weight 1)."""

    adversarial_weight: float = 1.0  # released code: LSGAN generator term, weight 1
    identity_weight: float = 1.0  # released code: identity (siamese) term added with weight 1

    def validate(self) -> None:
        """Weights are non-negative."""
        require(self.adversarial_weight >= 0 and self.identity_weight >= 0, "loss weights must be >= 0")


def least_squares(scores: torch.Tensor, target: float) -> torch.Tensor:
    """LSGAN term: mean squared distance of the scores to ``target`` (1 real, 0 fake), in float32."""
    scores = scores.float()
    return F.mse_loss(scores, torch.full_like(scores, target))


def discriminator_loss(
    discriminator: CiaganDiscriminator, real: torch.Tensor, fake: torch.Tensor, landmarks: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """LSGAN loss of the image discriminator (real -> 1, generated -> 0, summed as in the released code) and its logged terms."""
    real_loss = least_squares(discriminator(real, landmarks), 1.0)
    fake_loss = least_squares(discriminator(fake.detach(), landmarks), 0.0)
    loss = real_loss + fake_loss
    return loss, {"d_loss": float(loss.detach()), "d_real": float(real_loss.detach()), "d_fake": float(fake_loss.detach())}


def identity_loss(identity_discriminator: IdentityDiscriminator, real: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of the identity classifier on real crops, and its logged loss and accuracy."""
    logits = identity_discriminator(real).float()
    loss = F.cross_entropy(logits, classes)
    accuracy = (logits.argmax(dim=1) == classes).float().mean()
    return loss, {"id_loss": float(loss.detach()), "id_accuracy": float(accuracy)}


def generator_loss(
    discriminator: CiaganDiscriminator,
    identity_discriminator: IdentityDiscriminator,
    fake: torch.Tensor,
    landmarks: torch.Tensor,
    target: torch.Tensor,
    weights: CiaganLossConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """LSGAN generator term (generated -> 1) plus cross-entropy of the identity classifier towards ``target``."""
    adversarial = least_squares(discriminator(fake, landmarks), 1.0)
    identity = F.cross_entropy(identity_discriminator(fake).float(), target)
    loss = weights.adversarial_weight * adversarial + weights.identity_weight * identity
    return loss, {"g_loss": float(loss.detach()), "g_adversarial": float(adversarial.detach()), "g_identity": float(identity.detach())}
