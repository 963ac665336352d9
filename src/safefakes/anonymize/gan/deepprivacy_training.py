"""DeepPrivacy's recipe: hyper-parameters, progressive schedule, batches, WGAN-GP step and inference.

The progressive schedule, the batch, flips, latent noise and gradient-penalty mixing of an iteration
are functions of ``(seed, iteration)`` (drawn by the shared loop in :mod:`.training`), so a run
resumes exactly from its state file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from safefakes.anonymize.base import require
from safefakes.anonymize.gan.crops import FaceCrop
from safefakes.anonymize.gan.cropsets import CropSelection, CropSet
from safefakes.anonymize.gan.deepprivacy import (
    DeepPrivacyDiscriminator,
    DeepPrivacyGenerator,
    DeepPrivacyModelConfig,
    WganGpConfig,
    discriminator_loss,
    generator_loss,
)
from safefakes.anonymize.gan.recipe import (
    GanTrainConfig,
    GrowthPhase,
    SectionedHparams,
    bgr_to_tensor,
    crop_box_masks,
    crop_points,
    rgb_to_tensor,
    tensor_to_bgr,
)
from safefakes.common import optim
from safefakes.common.errors import SafefakesError

# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeepPrivacyTrainConfig(GanTrainConfig):
    """Training hyper-parameters (paper values as defaults; the shared fields are :class:`GanTrainConfig`'s,
    flips swap the keypoints left/right)."""

    batch_size: int = 128  # Safe Fakes Sec. III-A1: DeepPrivacy with batch size 128 ...
    learning_rate: float = 1.5e-3  # ... and learning rate 1.5e-3 (both networks)
    adam_beta1: float = 0.0  # DeepPrivacy / progressive GAN: Adam(0, 0.99)
    adam_beta2: float = 0.99
    transition_images: int = 1_200_000  # DeepPrivacy: images shown while fading in a new resolution
    stabilization_images: int = 1_200_000  # DeepPrivacy: images shown at each resolution once faded in

    def validate(self) -> None:
        """The shared checks, a positive learning rate and phase lengths."""
        super().validate()
        require(self.learning_rate > 0, "learning_rate must be > 0")
        require(self.transition_images >= 0 and self.stabilization_images >= 1, "phase lengths must be positive")

    def iterations(self, images: int) -> int:
        """Iterations needed to show ``images`` images (at least one when ``images`` > 0)."""
        return math.ceil(images / self.batch_size) if images > 0 else 0


@dataclass(frozen=True)
class DeepPrivacyHparams(SectionedHparams):
    """All hyper-parameters of one training run: ``{"model": {...}, "train": {...}, "loss": {...}}``."""

    model: DeepPrivacyModelConfig
    train: DeepPrivacyTrainConfig
    loss: WganGpConfig


@dataclass(frozen=True)
class ProgressiveSchedule:
    """Resolution and fade-in ``alpha`` at each iteration: stabilize at the start resolution, then per doubling a transition and a stabilization."""

    resolutions: tuple[int, ...]
    transition_iterations: int
    stabilization_iterations: int

    @classmethod
    def from_hparams(cls, hparams: DeepPrivacyHparams) -> ProgressiveSchedule:
        """The schedule of a run's hyper-parameters."""
        t = hparams.train
        return cls(tuple(hparams.model.resolutions), t.iterations(t.transition_images), t.iterations(t.stabilization_images))

    def at(self, iteration: int) -> GrowthPhase:
        """The growth phase of the 1-based ``iteration``."""
        step = iteration - 1 - self.stabilization_iterations
        if step < 0:
            return GrowthPhase(self.resolutions[0], 1.0)
        doubling_iterations = self.transition_iterations + self.stabilization_iterations
        for resolution in self.resolutions[1:]:
            if step < self.transition_iterations:
                return GrowthPhase(resolution, (step + 1) / self.transition_iterations)
            if step < doubling_iterations:
                return GrowthPhase(resolution, 1.0)
            step -= doubling_iterations
        return GrowthPhase(self.resolutions[-1], 1.0)


@dataclass
class TrainBatch:
    """One batch at the current resolution: real images and conditions in [-1, 1], the known-pixel mask, keypoints."""

    real: torch.Tensor
    condition: torch.Tensor
    mask: torch.Tensor
    keypoints: torch.Tensor


def blocked_condition(real: torch.Tensor, mask: torch.Tensor, blocking: str, rng: torch.Generator) -> torch.Tensor:
    """The real image with the box replaced by black (-1) or by uniform noise drawn from ``rng``."""
    fill = torch.rand(real.shape, generator=rng) * 2 - 1 if blocking == "noise" else torch.full_like(real, -1.0)
    return real * mask + fill.to(real.device) * (1 - mask)


def make_batch(selection: CropSelection, full_resolution: int, phase: GrowthPhase, blocking: str, rng: torch.Generator, device: torch.device) -> TrainBatch:
    """Scale the selected crops to the phase's resolution (progressive fade of the real images) and block the boxes."""
    resolution, alpha = phase.resolution, phase.alpha
    real = rgb_to_tensor(selection.images)
    if resolution != full_resolution:
        real = F.avg_pool2d(real, full_resolution // resolution)
    if alpha < 1.0:
        real = alpha * real + (1 - alpha) * F.interpolate(F.avg_pool2d(real, 2), scale_factor=2, mode="nearest")
    mask = crop_box_masks(selection.boxes, full_resolution, resolution)
    condition = blocked_condition(real, mask, blocking, rng)
    return TrainBatch(real.to(device), condition.to(device), mask.to(device), torch.from_numpy(selection.keypoints).to(device))


@dataclass
class DeepPrivacyTrainingState:
    """The mutable parts of a run that a state file captures: networks, optimizers and AMP scalers."""

    generator: DeepPrivacyGenerator
    discriminator: DeepPrivacyDiscriminator
    g_optimizer: torch.optim.Optimizer
    d_optimizer: torch.optim.Optimizer
    g_scaler: torch.amp.GradScaler
    d_scaler: torch.amp.GradScaler


def build_training_state(hparams: DeepPrivacyHparams, device: torch.device, use_amp: bool) -> DeepPrivacyTrainingState:
    """Fresh networks (seeded by the caller) and their Adam optimizers."""
    generator = DeepPrivacyGenerator(hparams.model).to(device)
    discriminator = DeepPrivacyDiscriminator(hparams.model).to(device)
    t = hparams.train
    adam = lambda module: optim.adam(module.parameters(), lr=t.learning_rate, betas=(t.adam_beta1, t.adam_beta2))  # noqa: E731
    return DeepPrivacyTrainingState(
        generator,
        discriminator,
        adam(generator),
        adam(discriminator),
        torch.amp.GradScaler(device.type, enabled=use_amp),
        torch.amp.GradScaler(device.type, enabled=use_amp),
    )


def train_step(
    state: DeepPrivacyTrainingState, batch: TrainBatch, hparams: DeepPrivacyHparams, alpha: float, rng: torch.Generator, use_amp: bool
) -> dict[str, float]:
    """One critic step and one generator step on ``batch`` (latent noise and penalty mixing drawn from ``rng``); returns the logged losses."""
    device = batch.real.device
    size = batch.real.shape[0]
    z = torch.randn(state.generator.latent_shape(size), generator=rng).to(device)
    mix = torch.rand(size, 1, 1, 1, generator=rng).to(device)
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
        fake = state.generator(batch.condition, batch.mask, batch.keypoints, z, alpha)
        d_loss, terms = discriminator_loss(state.discriminator, batch.real, fake, batch.condition, batch.keypoints, alpha, mix, hparams.loss)
    if not torch.isfinite(d_loss):
        raise SafefakesError(f"training diverged: discriminator loss {terms}")
    state.d_optimizer.zero_grad(set_to_none=True)
    state.d_scaler.scale(d_loss).backward()
    state.d_scaler.step(state.d_optimizer)
    state.d_scaler.update()
    state.discriminator.requires_grad_(False)
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
        g_loss = generator_loss(state.discriminator, fake, batch.condition, batch.keypoints, alpha)
    state.g_optimizer.zero_grad(set_to_none=True)
    state.g_scaler.scale(g_loss).backward()
    state.g_scaler.step(state.g_optimizer)
    state.g_scaler.update()
    state.discriminator.requires_grad_(True)
    terms["g_loss"] = float(g_loss.detach())
    return terms


class DeepPrivacyRecipe:
    """DeepPrivacy in the shared loop and anonymizer (:class:`~safefakes.anonymize.gan.recipe.GanRecipe`)."""

    name = "deepprivacy"
    requirements = ("keypoints7",)  # faces with at least one keypoint
    landmark_kind = "keypoints7"
    missing_landmarks = "generate"  # Safe Fakes Sec. III-C: run without keypoints when none are found

    def parse_hparams(self, values: Mapping[str, Any] | None) -> DeepPrivacyHparams:
        """:class:`DeepPrivacyHparams` from a mapping."""
        return DeepPrivacyHparams.from_dict(values)

    def generator_config(self, hparams: DeepPrivacyHparams, crops: CropSet) -> dict[str, Any]:
        """Nothing beyond the hyper-parameters."""
        return {}

    def build_generator(self, hparams: DeepPrivacyHparams, generator_config: Mapping[str, Any]) -> DeepPrivacyGenerator:
        """A fresh U-Net generator."""
        return DeepPrivacyGenerator(hparams.model)

    def build_training_state(
        self, hparams: DeepPrivacyHparams, generator_config: Mapping[str, Any], device: torch.device, use_amp: bool
    ) -> DeepPrivacyTrainingState:
        """Networks, Adam optimizers and AMP scalers."""
        return build_training_state(hparams, device, use_amp)

    def growth_phase(self, hparams: DeepPrivacyHparams, iteration: int) -> GrowthPhase:
        """The progressive-growing resolution and fade-in of ``iteration``."""
        return ProgressiveSchedule.from_hparams(hparams).at(iteration)

    def train_step(
        self,
        training_state: DeepPrivacyTrainingState,
        crops: CropSet,
        batch: CropSelection,
        phase: GrowthPhase,
        hparams: DeepPrivacyHparams,
        generator_config: Mapping[str, Any],
        rng: torch.Generator,
        device: torch.device,
        use_amp: bool,
    ) -> dict[str, float]:
        """One WGAN-GP critic step and one generator step."""
        tensors = make_batch(batch, crops.resolution, phase, hparams.model.input_blocking, rng, device)
        return train_step(training_state, tensors, hparams, phase.alpha, rng, use_amp)

    def sample_face_inputs(
        self, hparams: DeepPrivacyHparams, generator_config: Mapping[str, Any], resolution: int, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """Latent noise maps (and the noise fill when the input blocking is noise)."""
        s = hparams.model.start_resolution
        inputs = {"latent": rng.standard_normal((hparams.model.latent_channels, s, s)).astype(np.float32)}
        if hparams.model.input_blocking == "noise":
            inputs["fill"] = rng.uniform(-1, 1, (3, resolution, resolution)).astype(np.float32)
        return inputs

    def generate(
        self,
        generator: DeepPrivacyGenerator,
        hparams: DeepPrivacyHparams,
        generator_config: Mapping[str, Any],
        crops: Sequence[FaceCrop],
        inputs: Sequence[Mapping[str, np.ndarray]],
        alpha: float,
        device: torch.device,
        use_amp: bool,
    ) -> np.ndarray:
        """Generate a face into each crop's blocked box."""
        resolution = crops[0].pixels.shape[0]
        condition = bgr_to_tensor(np.stack([crop.pixels for crop in crops]))
        mask = crop_box_masks([crop.box for crop in crops], resolution, resolution)
        fill = torch.stack([torch.from_numpy(i["fill"]) if "fill" in i else torch.full((3, resolution, resolution), -1.0) for i in inputs])
        condition = condition * mask + fill * (1 - mask)
        z = torch.from_numpy(np.stack([i["latent"] for i in inputs]))
        keypoints = crop_points(crops, hparams.model.num_keypoints)
        with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            out = generator(condition.to(device), mask.to(device), keypoints.to(device), z.to(device), alpha)
        return tensor_to_bgr(out)


RECIPE = DeepPrivacyRecipe()
