"""Sun2018's recipe: hyper-parameters, batches, the two-stage training step and inference.

Each iteration updates both stages once on the same batch: Stage I (landmark generation) regresses
the real landmarks from the blocked crop; Stage II (inpainting) takes one discriminator step and one
generator step, conditioned on the real landmarks' heatmaps (the stages are trained independently,
as in the paper; at inference Stage I fills in the landmarks dlib did not find). Nothing in a step is
random (black-out blocking, no noise input), so a run resumes exactly from its state file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from safefakes.anonymize.base import require
from safefakes.anonymize.gan.crops import FaceCrop
from safefakes.anonymize.gan.cropsets import CropSelection, CropSet
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
from safefakes.anonymize.gan.sun2018 import (
    Sun2018Discriminator,
    Sun2018Generator,
    Sun2018LossConfig,
    Sun2018ModelConfig,
    discriminator_loss,
    generator_loss,
    landmark_error,
    landmark_loss,
)
from safefakes.common import optim
from safefakes.common.errors import SafefakesError

#: Pixel value of the blacked-out box in [-1, 1] images (Safe Fakes Sec. III-A1: black-out input blocking).
BLACK = -1.0


@dataclass(frozen=True)
class Sun2018TrainConfig(GanTrainConfig):
    """Training hyper-parameters (paper values as defaults; the shared fields are :class:`GanTrainConfig`'s)."""

    batch_size: int = 64  # Safe Fakes Sec. III-A1: Sun2018 with batch size 64 ...
    generator_learning_rate: float = 5e-4  # ... a learning rate of 5e-4 for the generator ...
    discriminator_learning_rate: float = 2e-5  # ... and 2e-5 for the discriminator
    landmark_learning_rate: float = 5e-4  # Stage I: the generator's rate (our choice; Safe Fakes gives none)
    adam_beta1: float = 0.5  # DCGAN / pix2pix Adam(0.5, 0.999), used by Sun2018's GAN family
    adam_beta2: float = 0.999

    def validate(self) -> None:
        """The shared checks, positive learning rates and Adam betas in [0, 1)."""
        super().validate()
        rates = (self.generator_learning_rate, self.discriminator_learning_rate, self.landmark_learning_rate)
        require(min(rates) > 0, "learning rates must be > 0")
        require(0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1, "Adam betas must be in [0, 1)")


@dataclass(frozen=True)
class Sun2018Hparams(SectionedHparams):
    """All hyper-parameters of one training run: ``{"model": {...}, "train": {...}, "loss": {...}}``."""

    model: Sun2018ModelConfig
    train: Sun2018TrainConfig
    loss: Sun2018LossConfig


@dataclass
class TrainBatch:
    """One batch: real crops and blocked conditions in [-1, 1], the known-pixel mask, the 68 landmarks ``(B, 68, 3)``."""

    real: torch.Tensor
    condition: torch.Tensor
    mask: torch.Tensor
    landmarks: torch.Tensor


def make_batch(selection: CropSelection, resolution: int, device: torch.device) -> TrainBatch:
    """Tensors of the selected crops with every face box blacked out."""
    real = rgb_to_tensor(selection.images)
    mask = crop_box_masks(selection.boxes, resolution, resolution)
    condition = real * mask + BLACK * (1 - mask)
    return TrainBatch(real.to(device), condition.to(device), mask.to(device), torch.from_numpy(selection.landmarks).float().to(device))


@dataclass
class Sun2018TrainingState:
    """The mutable parts of a run that a state file captures: networks (``generator`` holds both stages),
    optimizers and AMP scalers."""

    generator: Sun2018Generator
    discriminator: Sun2018Discriminator
    landmark_optimizer: torch.optim.Optimizer
    g_optimizer: torch.optim.Optimizer
    d_optimizer: torch.optim.Optimizer
    landmark_scaler: torch.amp.GradScaler
    g_scaler: torch.amp.GradScaler
    d_scaler: torch.amp.GradScaler


def build_training_state(hparams: Sun2018Hparams, device: torch.device, use_amp: bool) -> Sun2018TrainingState:
    """Fresh networks (seeded by the caller), one Adam optimizer per stage and the discriminator's, AMP scalers."""
    generator = Sun2018Generator(hparams.model).to(device)
    discriminator = Sun2018Discriminator(hparams.model).to(device)
    t = hparams.train
    betas = (t.adam_beta1, t.adam_beta2)
    scaler = lambda: torch.amp.GradScaler(device.type, enabled=use_amp)  # noqa: E731
    return Sun2018TrainingState(
        generator,
        discriminator,
        optim.adam(generator.landmark_generator.parameters(), lr=t.landmark_learning_rate, betas=betas),
        optim.adam(generator.inpainter.parameters(), lr=t.generator_learning_rate, betas=betas),
        optim.adam(discriminator.parameters(), lr=t.discriminator_learning_rate, betas=betas),
        scaler(),
        scaler(),
        scaler(),
    )


def _step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, what: str) -> None:
    """One scaled optimizer step on ``loss`` (refuses a non-finite loss)."""
    if not torch.isfinite(loss):
        raise SafefakesError(f"training diverged: {what} loss is {float(loss)}")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def train_step(state: Sun2018TrainingState, batch: TrainBatch, hparams: Sun2018Hparams, use_amp: bool) -> dict[str, float]:
    """One Stage I step, one discriminator step and one Stage II generator step; returns the logged losses."""
    device_type = batch.real.device.type
    weights = hparams.loss
    generator = state.generator
    with torch.autocast(device_type=device_type, dtype=torch.float16, enabled=use_amp):
        predicted = generator.landmark_generator(batch.condition, batch.mask)
        stage1 = weights.landmark_weight * landmark_loss(predicted, batch.landmarks)
    _step(stage1, state.landmark_optimizer, state.landmark_scaler, "landmark")
    terms = {"landmark_loss": float(stage1.detach()), "landmark_error": float(landmark_error(predicted.detach(), batch.landmarks))}

    heatmaps = generator.heatmaps(batch.landmarks)
    with torch.autocast(device_type=device_type, dtype=torch.float16, enabled=use_amp):
        raw, fake = generator.inpainter(batch.condition, batch.mask, heatmaps)
        real_logits = state.discriminator(batch.real, batch.mask, heatmaps)
        fake_logits = state.discriminator(fake.detach(), batch.mask, heatmaps)
        d_loss = discriminator_loss(real_logits, fake_logits)
    _step(d_loss, state.d_optimizer, state.d_scaler, "discriminator")
    terms.update({"d_loss": float(d_loss.detach()), "d_real": float(real_logits.detach().float().mean()), "d_fake": float(fake_logits.detach().float().mean())})

    state.discriminator.requires_grad_(False)
    with torch.autocast(device_type=device_type, dtype=torch.float16, enabled=use_amp):
        g_loss, g_terms = generator_loss(state.discriminator(fake, batch.mask, heatmaps), raw, batch.real, weights)
    _step(g_loss, state.g_optimizer, state.g_scaler, "generator")
    state.discriminator.requires_grad_(True)
    terms.update(g_terms)
    return terms


class Sun2018Recipe:
    """Sun2018 in the shared loop and anonymizer (:class:`~safefakes.anonymize.gan.recipe.GanRecipe`)."""

    name = "sun2018"
    requirements = ("landmarks68",)  # Safe Fakes Sec. III-B: only faces with dlib landmarks train Sun2018
    landmark_kind = "landmarks68"
    missing_landmarks = "generate"  # Safe Fakes Sec. III-C: faces without landmarks are still generated

    def parse_hparams(self, values: Mapping[str, Any] | None) -> Sun2018Hparams:
        """:class:`Sun2018Hparams` from a mapping."""
        return Sun2018Hparams.from_dict(values)

    def generator_config(self, hparams: Sun2018Hparams, crops: CropSet) -> dict[str, Any]:
        """Nothing beyond the hyper-parameters."""
        return {}

    def build_generator(self, hparams: Sun2018Hparams, generator_config: Mapping[str, Any]) -> Sun2018Generator:
        """Both stages, freshly initialised."""
        return Sun2018Generator(hparams.model)

    def build_training_state(self, hparams: Sun2018Hparams, generator_config: Mapping[str, Any], device: torch.device, use_amp: bool) -> Sun2018TrainingState:
        """Networks, Adam optimizers and AMP scalers."""
        return build_training_state(hparams, device, use_amp)

    def growth_phase(self, hparams: Sun2018Hparams, iteration: int) -> GrowthPhase:
        """Always the model resolution (no progressive growing)."""
        return GrowthPhase(hparams.model.resolution, 1.0)

    def train_step(
        self,
        training_state: Sun2018TrainingState,
        crops: CropSet,
        batch: CropSelection,
        phase: GrowthPhase,
        hparams: Sun2018Hparams,
        generator_config: Mapping[str, Any],
        rng: torch.Generator,
        device: torch.device,
        use_amp: bool,
    ) -> dict[str, float]:
        """Both stages once on ``batch`` (nothing random to draw from ``rng``)."""
        return train_step(training_state, make_batch(batch, crops.resolution, device), hparams, use_amp)

    def sample_face_inputs(
        self, hparams: Sun2018Hparams, generator_config: Mapping[str, Any], resolution: int, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """Nothing: Sun2018's generator is deterministic given the blocked crop and the landmarks."""
        return {}

    def generate(
        self,
        generator: Sun2018Generator,
        hparams: Sun2018Hparams,
        generator_config: Mapping[str, Any],
        crops: Sequence[FaceCrop],
        inputs: Sequence[Mapping[str, np.ndarray]],
        alpha: float,
        device: torch.device,
        use_amp: bool,
    ) -> np.ndarray:
        """Paint a head into each crop's box from its landmarks, or from Stage I's when the crop has none."""
        resolution = crops[0].pixels.shape[0]
        mask = crop_box_masks([crop.box for crop in crops], resolution, resolution)
        condition = bgr_to_tensor(np.stack([crop.pixels for crop in crops])) * mask + BLACK * (1 - mask)
        landmarks = crop_points(crops, hparams.model.num_landmarks)
        with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            out = generator(condition.to(device), mask.to(device), landmarks.to(device))
        return tensor_to_bgr(out)


RECIPE = Sun2018Recipe()
