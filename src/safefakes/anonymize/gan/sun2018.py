"""Sun2018 (Sun, Ma, Oh, Van Gool, Schiele, Fritz, CVPR 2018): head inpainting in two stages.

No public code exists (Safe Fakes Sec. III-A1 re-implemented it too); this follows the paper's design:

* **Stage I, landmark generation** (:class:`LandmarkGenerator`): from the crop with the face box
  blacked out and the known-pixel mask, a convolutional encoder and a small regression head predict
  the 68 dlib landmarks as ``[u, v]`` in [0, 1] crop units. It is trained against the real landmarks
  with an L2 loss on the visible ones (:func:`landmark_loss`). At inference it supplies the landmarks
  of faces for which dlib found none.
* **Stage II, landmark-conditioned inpainting** (:class:`InpaintingGenerator`): a U-Net with skip
  connections (Safe Fakes Sec. III-A1: "Both DeepPrivacy and Sun2018 employ skip connections")
  whose input is the blocked crop, the mask and one Gaussian heatmap per landmark
  (:func:`landmark_heatmaps`). Its output is composited: generated pixels inside the box, the
  blocked crop outside. Trained with an L1 reconstruction loss and a non-saturating adversarial loss
  against :class:`Sun2018Discriminator`, a DCGAN-style discriminator that sees the composited image,
  the mask and (by default) the landmark heatmaps.

:class:`Sun2018Generator` holds both stages; it is what checkpoints store and what the anonymizer
runs. Blocks follow pix2pix / DCGAN conventions (4x4 stride-2 convolutions, batch normalization,
LeakyReLU(0.2) in encoders and the discriminator, ReLU in the decoder, tanh output).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from safefakes.anonymize.base import MethodConfig, require
from safefakes.common.errors import SafefakesError

#: What a face without detected landmarks is generated from: Stage I's landmarks or no landmarks at all.
MissingLandmarkInput = Literal["generated", "empty"]

#: Image channels (RGB) and the known-pixel mask channel.
IMAGE_CHANNELS = 3
MASK_CHANNELS = 1
#: Kernel, stride and padding of every resampling convolution (pix2pix / DCGAN).
RESAMPLE_KERNEL = 4
RESAMPLE_STRIDE = 2
RESAMPLE_PADDING = 1
#: DCGAN weight initialisation: N(0, 0.02) for convolutions, N(1, 0.02) for batch-norm scales.
INIT_STD = 0.02


@dataclass(frozen=True)
class Sun2018ModelConfig(MethodConfig):
    """Architecture of both stages and the discriminator (paper values as defaults)."""

    resolution: int = 128  # Safe Fakes Sec. III-A1: 128x128 (fewer artefacts than Sun2018's own 256x256)
    num_landmarks: int = 68  # Sun2018 / Safe Fakes: dlib's 68 facial landmarks
    base_channels: int = 64  # pix2pix U-Net: 64 filters at the first level, doubled per level ...
    max_channels: int = 512  # ... up to 512
    bottleneck_resolution: int = 4  # encoders halve the crop down to this side
    landmark_hidden: int = 256  # width of Stage I's hidden fully-connected layer (our choice)
    heatmap_sigma: float = 0.02  # std of each landmark's Gaussian heatmap, crop units (about 2.6 px at 128; our choice)
    discriminator_channels: int = 64  # DCGAN discriminator: 64 filters at the first level, doubled per level
    discriminator_landmarks: bool = True  # discriminator also sees the landmark heatmaps (conditional GAN; our choice)
    leaky_slope: float = 0.2  # DCGAN / pix2pix LeakyReLU slope
    # Faces whose landmarks dlib did not find: Stage I's generated landmarks (the paper's two-stage use) or
    # none at all (Safe Fakes Sec. III-C "we run the network without keypoints").
    missing_landmarks: MissingLandmarkInput = "generated"

    def validate(self) -> None:
        """Powers of two with bottleneck < resolution; positive widths."""
        for name in ("resolution", "bottleneck_resolution"):
            value = getattr(self, name)
            require(value >= 1 and value & (value - 1) == 0, f"{name} must be a power of two, got {value}")
        require(self.bottleneck_resolution < self.resolution, "bottleneck_resolution must be below resolution")
        require(self.bottleneck_resolution >= RESAMPLE_KERNEL, f"bottleneck_resolution must be >= {RESAMPLE_KERNEL}")
        require(self.max_channels >= self.base_channels >= 1 and self.discriminator_channels >= 1, "channel widths must be positive")
        require(self.num_landmarks >= 1 and self.landmark_hidden >= 1, "num_landmarks and landmark_hidden must be >= 1")
        require(self.heatmap_sigma > 0, "heatmap_sigma must be > 0")
        require(0 <= self.leaky_slope < 1, "leaky_slope must be in [0, 1)")

    @property
    def depth(self) -> int:
        """Number of 2x downsamplings from ``resolution`` to ``bottleneck_resolution``."""
        return int(math.log2(self.resolution // self.bottleneck_resolution))

    def channels(self, level: int, base: int | None = None) -> int:
        """Features after the ``level``-th downsampling (0-based): ``base * 2**level``, capped at ``max_channels``."""
        return min((base or self.base_channels) << level, self.max_channels)


# --------------------------------------------------------------------------------------------------
# Landmarks
# --------------------------------------------------------------------------------------------------


def landmark_heatmaps(landmarks: torch.Tensor, resolution: int, sigma: float) -> torch.Tensor:
    """``(B, K, r, r)`` maps, one Gaussian (peak 1, std ``sigma`` crop units) per visible landmark, zeros for absent ones.

    ``landmarks`` is ``(B, K, 3)`` of ``[u, v, visible]`` in [0, 1] crop units; pixel centres sit at ``(i + 0.5) / r``.
    """
    centres = (torch.arange(resolution, device=landmarks.device, dtype=torch.float32) + 0.5) / resolution
    u, v = landmarks[..., 0:1].float(), landmarks[..., 1:2].float()
    across = torch.exp(-((centres - u) ** 2) / (2 * sigma**2))  # (B, K, r) along columns
    down = torch.exp(-((centres - v) ** 2) / (2 * sigma**2))  # (B, K, r) along rows
    visible = (landmarks[..., 2] > 0).float()[..., None, None]
    return down[..., :, None] * across[..., None, :] * visible


def landmark_loss(predicted: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """Stage I's L2 loss: mean squared distance (crop units) between predicted ``(B, K, 2)`` and visible real landmarks."""
    visible = (landmarks[..., 2] > 0).float()
    squared = (predicted.float() - landmarks[..., :2].float()).pow(2).sum(dim=-1)
    return (squared * visible).sum() / visible.sum().clamp(min=1.0)


def landmark_error(predicted: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """Mean Euclidean distance (crop units) between predicted and visible real landmarks (for logs and tests)."""
    visible = (landmarks[..., 2] > 0).float()
    distance = (predicted.float() - landmarks[..., :2].float()).norm(dim=-1)
    return (distance * visible).sum() / visible.sum().clamp(min=1.0)


def with_visibility(coordinates: torch.Tensor) -> torch.Tensor:
    """``(B, K, 2)`` predicted coordinates as ``(B, K, 3)`` landmarks, every one visible."""
    return torch.cat([coordinates, torch.ones_like(coordinates[..., :1])], dim=-1)


# --------------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------------


def down_block(in_channels: int, out_channels: int, normalize: bool, leaky_slope: float) -> nn.Sequential:
    """4x4 stride-2 convolution, batch normalization (unless first) and LeakyReLU: halves the side."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, RESAMPLE_KERNEL, RESAMPLE_STRIDE, RESAMPLE_PADDING, bias=not normalize)]
    if normalize:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.LeakyReLU(leaky_slope))
    return nn.Sequential(*layers)


def up_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """4x4 stride-2 transposed convolution, batch normalization and ReLU: doubles the side."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, RESAMPLE_KERNEL, RESAMPLE_STRIDE, RESAMPLE_PADDING, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class Encoder(nn.Module):
    """``depth`` down blocks from the input side to ``bottleneck_resolution``; returns every level's features."""

    def __init__(self, config: Sun2018ModelConfig, in_channels: int, base_channels: int | None = None) -> None:
        super().__init__()
        widths = [config.channels(level, base_channels) for level in range(config.depth)]
        inputs = [in_channels, *widths[:-1]]
        self.blocks = nn.ModuleList(down_block(i, o, level > 0, config.leaky_slope) for level, (i, o) in enumerate(zip(inputs, widths)))
        self.widths = widths

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features after each downsampling, finest first."""
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation of convolutions and batch normalization (applied with ``Module.apply``)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, INIT_STD)
        nn.init.zeros_(module.bias)


def _check_input(config: Sun2018ModelConfig, image: torch.Tensor) -> None:
    if image.shape[-1] != config.resolution or image.shape[-2] != config.resolution:
        raise SafefakesError(f"Sun2018 networks take {config.resolution} px crops, got {tuple(image.shape[-2:])}")


# --------------------------------------------------------------------------------------------------
# Stage I: landmark generation
# --------------------------------------------------------------------------------------------------


class LandmarkGenerator(nn.Module):
    """Stage I: the 68 landmarks ``(B, K, 2)`` in [0, 1] crop units from the blocked crop and its mask."""

    def __init__(self, config: Sun2018ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config, IMAGE_CHANNELS + MASK_CHANNELS)
        flat = self.encoder.widths[-1] * config.bottleneck_resolution**2
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, config.landmark_hidden),
            nn.ReLU(),
            nn.Linear(config.landmark_hidden, 2 * config.num_landmarks),
            nn.Sigmoid(),
        )
        self.apply(init_weights)

    def forward(self, condition: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Predicted ``[u, v]`` of every landmark."""
        _check_input(self.config, condition)
        features = self.encoder(torch.cat([condition, mask], dim=1))[-1]
        return self.head(features).view(condition.shape[0], self.config.num_landmarks, 2)


# --------------------------------------------------------------------------------------------------
# Stage II: landmark-conditioned inpainting
# --------------------------------------------------------------------------------------------------


class InpaintingGenerator(nn.Module):
    """Stage II: a U-Net with skip connections from the blocked crop, mask and landmark heatmaps to a composited crop."""

    def __init__(self, config: Sun2018ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config, IMAGE_CHANNELS + MASK_CHANNELS + config.num_landmarks)
        widths = self.encoder.widths
        # Decoder level i upsamples level i's features (concatenated with the skip of level i, except at
        # the bottleneck) to level i-1's side and width; level 0 ends in RGB.
        self.decoder = nn.ModuleList(up_block(widths[i] * (1 if i == len(widths) - 1 else 2), widths[i - 1]) for i in range(len(widths) - 1, 0, -1))
        self.to_rgb = nn.Sequential(
            nn.ConvTranspose2d(widths[0] * (2 if len(widths) > 1 else 1), IMAGE_CHANNELS, RESAMPLE_KERNEL, RESAMPLE_STRIDE, RESAMPLE_PADDING),
            nn.Tanh(),
        )
        self.apply(init_weights)

    def forward(self, condition: torch.Tensor, mask: torch.Tensor, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(raw, composited)``: the U-Net's image and that image inside the box with ``condition`` outside.

        ``condition`` ``(B, 3, r, r)`` in [-1, 1] with the box blocked; ``mask`` ``(B, 1, r, r)`` 1 at known
        pixels; ``heatmaps`` ``(B, K, r, r)`` from :func:`landmark_heatmaps`.
        """
        _check_input(self.config, condition)
        skips = self.encoder(torch.cat([condition, mask, heatmaps.to(condition.dtype)], dim=1))
        x = skips[-1]
        for block, skip in zip(self.decoder, reversed(skips[:-1])):
            x = torch.cat([block(x), skip], dim=1)
        raw = self.to_rgb(x)
        return raw, raw * (1 - mask) + condition * mask


class Sun2018Generator(nn.Module):
    """Both stages: what checkpoints store and the anonymizer runs."""

    def __init__(self, config: Sun2018ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.landmark_generator = LandmarkGenerator(config)
        self.inpainter = InpaintingGenerator(config)

    def heatmaps(self, landmarks: torch.Tensor) -> torch.Tensor:
        """Landmark heatmaps at the model resolution."""
        return landmark_heatmaps(landmarks, self.config.resolution, self.config.heatmap_sigma)

    def complete_landmarks(self, condition: torch.Tensor, mask: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """``landmarks`` with every face that has no visible landmark given Stage I's (or none, per ``missing_landmarks``)."""
        missing = ~(landmarks[..., 2] > 0).any(dim=1)
        if not missing.any() or self.config.missing_landmarks == "empty":
            return landmarks
        generated = with_visibility(self.landmark_generator(condition[missing], mask[missing]).float())
        completed = landmarks.clone().float()
        completed[missing] = generated
        return completed

    def forward(self, condition: torch.Tensor, mask: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """The composited crop; faces without visible landmarks get Stage I's (see :meth:`complete_landmarks`)."""
        landmarks = self.complete_landmarks(condition, mask, landmarks)
        return self.inpainter(condition, mask, self.heatmaps(landmarks))[1]


# --------------------------------------------------------------------------------------------------
# Discriminator and losses
# --------------------------------------------------------------------------------------------------


class Sun2018Discriminator(nn.Module):
    """DCGAN-style discriminator: one realness logit per crop from the image, the mask and (optionally) the heatmaps."""

    def __init__(self, config: Sun2018ModelConfig) -> None:
        super().__init__()
        self.config = config
        extra = config.num_landmarks if config.discriminator_landmarks else 0
        self.encoder = Encoder(config, IMAGE_CHANNELS + MASK_CHANNELS + extra, config.discriminator_channels)
        self.score = nn.Conv2d(self.encoder.widths[-1], 1, config.bottleneck_resolution)  # one value from the whole bottleneck
        self.apply(init_weights)

    def forward(self, image: torch.Tensor, mask: torch.Tensor, heatmaps: torch.Tensor) -> torch.Tensor:
        """Logits ``(B,)``."""
        _check_input(self.config, image)
        inputs = [image, mask, heatmaps.to(image.dtype)] if self.config.discriminator_landmarks else [image, mask]
        return self.score(self.encoder(torch.cat(inputs, dim=1))[-1]).flatten()


@dataclass(frozen=True)
class Sun2018LossConfig(MethodConfig):
    """Loss weights. The paper trains Stage I with an L2 landmark loss and Stage II with L1 + adversarial terms."""

    landmark_weight: float = 1.0  # Stage I: weight of the L2 landmark loss (its only term)
    reconstruction_weight: float = 10.0  # Stage II: lambda of the L1 term (our choice: the value is not in the text we could read)
    adversarial_weight: float = 1.0  # Stage II: weight of the generator's adversarial term

    def validate(self) -> None:
        """Weights are non-negative."""
        require(min(self.landmark_weight, self.reconstruction_weight, self.adversarial_weight) >= 0, "loss weights must be >= 0")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy: real crops labelled 1, generated ones 0."""
    real = F.binary_cross_entropy_with_logits(real_logits.float(), torch.ones_like(real_logits, dtype=torch.float32))
    fake = F.binary_cross_entropy_with_logits(fake_logits.float(), torch.zeros_like(fake_logits, dtype=torch.float32))
    return real + fake


def generator_loss(fake_logits: torch.Tensor, raw: torch.Tensor, real: torch.Tensor, weights: Sun2018LossConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Non-saturating adversarial term plus the L1 reconstruction of the real crop; also returns the logged terms."""
    adversarial = F.binary_cross_entropy_with_logits(fake_logits.float(), torch.ones_like(fake_logits, dtype=torch.float32))
    reconstruction = (raw.float() - real.float()).abs().mean()
    loss = weights.adversarial_weight * adversarial + weights.reconstruction_weight * reconstruction
    return loss, {"g_loss": float(loss.detach()), "g_adversarial": float(adversarial.detach()), "g_l1": float(reconstruction.detach())}
