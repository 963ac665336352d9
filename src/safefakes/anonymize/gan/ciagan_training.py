"""CIAGAN's recipe: hyper-parameters, batches, the three-network training step and inference.

One iteration (after the released training loop's order): the identity classifier learns the real
crops' identities, the image discriminator learns real vs generated crops (LSGAN), then the generator
is trained to fool it and to make its output classified as a target identity. The released code runs
1 identity, 1 critic and 3 generator updates per loop, each on a fresh batch; the shared loop hands out
one batch per iteration, so one of each runs on it. The target identities of an iteration are drawn
from its torch ``rng``, so a run resumes exactly (:mod:`.training`). Details of the networks, the
input representation and the deviations from the original are in :mod:`.ciagan`.

At inference each face gets a uniformly random training identity (Safe Fakes Sec. III-B: "an identity
choice as an input, which we select at random"); CIAGAN takes no latent noise. Faces without landmarks
never reach the generator: the shared anonymizer blacks their box out (``missing_landmarks``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from safefakes.anonymize.base import require
from safefakes.anonymize.gan.ciagan import (
    CiaganDiscriminator,
    CiaganGenerator,
    CiaganLossConfig,
    CiaganModelConfig,
    IdentityDiscriminator,
    condition_maps,
    discriminator_loss,
    generator_loss,
    identity_loss,
)
from safefakes.anonymize.gan.crops import FaceCrop
from safefakes.anonymize.gan.cropsets import CropSelection, CropSet
from safefakes.anonymize.gan.recipe import GanTrainConfig, GrowthPhase, SectionedHparams, bgr_to_tensor, rgb_to_tensor, tensor_to_bgr
from safefakes.common import optim
from safefakes.common.errors import SafefakesError

# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CiaganTrainConfig(GanTrainConfig):
    """Training hyper-parameters (paper values as defaults; the shared fields are :class:`GanTrainConfig`'s,
    whose flips stand in for the released code's crop jitter)."""

    batch_size: int = 16  # Safe Fakes Sec. III-A1: CIAGAN with batch size 16 ...
    learning_rate: float = 1e-4  # ... and learning rate 1e-4 (CIAGAN's own value; all three networks)
    adam_beta1: float = 0.5  # released CIAGAN code: Adam(0.5, 0.999) for every network
    adam_beta2: float = 0.999

    def validate(self) -> None:
        """The shared checks, a positive learning rate and Adam betas in [0, 1)."""
        super().validate()
        require(self.learning_rate > 0, "learning_rate must be > 0")
        require(0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1, "Adam betas must be in [0, 1)")


@dataclass(frozen=True)
class CiaganHparams(SectionedHparams):
    """All hyper-parameters of one training run: ``{"model": {...}, "train": {...}, "loss": {...}}``."""

    model: CiaganModelConfig
    train: CiaganTrainConfig
    loss: CiaganLossConfig


def num_identities(generator_config: Mapping[str, Any]) -> int:
    """The generator's number of identities (from :meth:`CiaganRecipe.generator_config`)."""
    try:
        count = int(generator_config["num_identities"])
    except (KeyError, TypeError, ValueError):
        raise SafefakesError("CIAGAN generator_config needs num_identities (write checkpoints with generator_config)") from None
    if count < 1:
        raise SafefakesError(f"CIAGAN needs at least one identity, got num_identities={count}")
    return count


# --------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainBatch:
    """One batch: real crops in [-1, 1], landmark images, masks (1 = generate) and identity classes."""

    real: torch.Tensor
    landmarks: torch.Tensor
    mask: torch.Tensor
    classes: torch.Tensor


def identity_class_of(crops: CropSet, identities: np.ndarray) -> np.ndarray:
    """Class indices 0..C-1 (as in :meth:`CropSet.identity_classes`) of original identity labels."""
    known = np.unique(crops.identities[crops.identities >= 0])
    classes = np.searchsorted(known, identities)
    if len(known) == 0 or (classes >= len(known)).any() or not np.array_equal(known[classes], identities):
        raise SafefakesError("CIAGAN training crops must all carry an identity of the crop set")
    return classes.astype(np.int64)


def make_batch(selection: CropSelection, crops: CropSet, line_width: int, device: torch.device) -> TrainBatch:
    """Tensors of the selected crops: images, landmark images and masks at the crop resolution, identity classes."""
    resolution = crops.resolution
    real = rgb_to_tensor(selection.images)
    landmarks, mask = condition_maps(list(selection.landmarks), selection.boxes, resolution, resolution, line_width)
    classes = torch.from_numpy(identity_class_of(crops, selection.identities))
    return TrainBatch(real.to(device), landmarks.to(device), mask.to(device), classes.to(device))


def one_hot(classes: torch.Tensor, count: int) -> torch.Tensor:
    """``(B, count)`` float one-hot rows of ``classes``."""
    return F.one_hot(classes, count).float()


# --------------------------------------------------------------------------------------------------
# Training state and step
# --------------------------------------------------------------------------------------------------


@dataclass
class CiaganTrainingState:
    """The mutable parts of a run that a state file captures: networks, optimizers and AMP scalers."""

    generator: CiaganGenerator
    discriminator: CiaganDiscriminator
    identity_discriminator: IdentityDiscriminator
    g_optimizer: torch.optim.Optimizer
    d_optimizer: torch.optim.Optimizer
    id_optimizer: torch.optim.Optimizer
    g_scaler: torch.amp.GradScaler
    d_scaler: torch.amp.GradScaler
    id_scaler: torch.amp.GradScaler


def build_training_state(hparams: CiaganHparams, identities: int, device: torch.device, use_amp: bool) -> CiaganTrainingState:
    """Fresh networks (seeded by the caller), their Adam optimizers and AMP scalers."""
    generator = CiaganGenerator(hparams.model, identities).to(device)
    discriminator = CiaganDiscriminator(hparams.model).to(device)
    identity_discriminator = IdentityDiscriminator(hparams.model, identities).to(device)
    t = hparams.train
    adam = lambda module: optim.adam(module.parameters(), lr=t.learning_rate, betas=(t.adam_beta1, t.adam_beta2))  # noqa: E731
    scaler = lambda: torch.amp.GradScaler(device.type, enabled=use_amp)  # noqa: E731
    return CiaganTrainingState(
        generator,
        discriminator,
        identity_discriminator,
        adam(generator),
        adam(discriminator),
        adam(identity_discriminator),
        scaler(),
        scaler(),
        scaler(),
    )


def _update(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, name: str, terms: dict[str, float]) -> None:
    """One scaled optimizer step on ``loss`` (refusing a non-finite loss)."""
    if not torch.isfinite(loss):
        raise SafefakesError(f"training diverged: {name} loss {terms}")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def train_step(state: CiaganTrainingState, batch: TrainBatch, hparams: CiaganHparams, identities: int, rng: torch.Generator, use_amp: bool) -> dict[str, float]:
    """Identity-classifier, image-discriminator and generator updates on ``batch`` (target identities drawn
    from ``rng``); returns the logged losses."""
    device = batch.real.device
    autocast = lambda: torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp)  # noqa: E731
    target = torch.randint(0, identities, (batch.real.shape[0],), generator=rng).to(device)
    with autocast():
        id_loss, terms = identity_loss(state.identity_discriminator, batch.real, batch.classes)
    _update(id_loss, state.id_optimizer, state.id_scaler, "identity", terms)
    with autocast():
        fake = state.generator(batch.real, batch.landmarks, batch.mask, one_hot(target, identities))
        d_loss, d_terms = discriminator_loss(state.discriminator, batch.real, fake, batch.landmarks)
    terms.update(d_terms)
    _update(d_loss, state.d_optimizer, state.d_scaler, "discriminator", terms)
    frozen = (state.discriminator, state.identity_discriminator)
    for network in frozen:
        network.requires_grad_(False)
    try:
        with autocast():
            g_loss, g_terms = generator_loss(state.discriminator, state.identity_discriminator, fake, batch.landmarks, target, hparams.loss)
        terms.update(g_terms)
        _update(g_loss, state.g_optimizer, state.g_scaler, "generator", terms)
    finally:
        for network in frozen:
            network.requires_grad_(True)
    return terms


# --------------------------------------------------------------------------------------------------
# Recipe
# --------------------------------------------------------------------------------------------------


class CiaganRecipe:
    """CIAGAN in the shared loop and anonymizer (:class:`~safefakes.anonymize.gan.recipe.GanRecipe`)."""

    name = "ciagan"
    requirements = ("landmarks68", "identity")  # landmarks for the mask and lines, identities for the classifier
    landmark_kind = "landmarks68"
    missing_landmarks = "blackout"  # Safe Fakes Sec. III-C: without landmarks CIAGAN cannot run; the box is blacked out

    def parse_hparams(self, values: Mapping[str, Any] | None) -> CiaganHparams:
        """:class:`CiaganHparams` from a mapping."""
        return CiaganHparams.from_dict(values)

    def generator_config(self, hparams: CiaganHparams, crops: CropSet) -> dict[str, Any]:
        """The number of training identities (the width of the one-hot identity input)."""
        return {"num_identities": crops.identity_classes()[1]}

    def build_generator(self, hparams: CiaganHparams, generator_config: Mapping[str, Any]) -> CiaganGenerator:
        """A fresh identity-conditioned generator."""
        return CiaganGenerator(hparams.model, num_identities(generator_config))

    def build_training_state(self, hparams: CiaganHparams, generator_config: Mapping[str, Any], device: torch.device, use_amp: bool) -> CiaganTrainingState:
        """Generator, both discriminators, their Adam optimizers and AMP scalers."""
        return build_training_state(hparams, num_identities(generator_config), device, use_amp)

    def growth_phase(self, hparams: CiaganHparams, iteration: int) -> GrowthPhase:
        """Always the full resolution (no progressive growing)."""
        return GrowthPhase(hparams.model.resolution, 1.0)

    def train_step(
        self,
        training_state: CiaganTrainingState,
        crops: CropSet,
        batch: CropSelection,
        phase: GrowthPhase,
        hparams: CiaganHparams,
        generator_config: Mapping[str, Any],
        rng: torch.Generator,
        device: torch.device,
        use_amp: bool,
    ) -> dict[str, float]:
        """One update of each network."""
        tensors = make_batch(batch, crops, hparams.model.landmark_line_width, device)
        return train_step(training_state, tensors, hparams, num_identities(generator_config), rng, use_amp)

    def sample_face_inputs(
        self, hparams: CiaganHparams, generator_config: Mapping[str, Any], resolution: int, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """A uniformly random training identity (CIAGAN has no latent noise)."""
        return {"identity": np.asarray(rng.integers(num_identities(generator_config)), dtype=np.int64)}

    def generate(
        self,
        generator: CiaganGenerator,
        hparams: CiaganHparams,
        generator_config: Mapping[str, Any],
        crops: Sequence[FaceCrop],
        inputs: Sequence[Mapping[str, np.ndarray]],
        alpha: float,
        device: torch.device,
        use_amp: bool,
    ) -> np.ndarray:
        """Paint a face of each crop's chosen identity into its landmark-and-box mask."""
        resolution = crops[0].pixels.shape[0]
        image = bgr_to_tensor(np.stack([crop.pixels for crop in crops]))
        landmarks, mask = condition_maps(
            [crop.keypoints for crop in crops], [crop.box for crop in crops], resolution, resolution, hparams.model.landmark_line_width
        )
        identity = one_hot(torch.from_numpy(np.stack([np.asarray(i["identity"], dtype=np.int64) for i in inputs])), num_identities(generator_config))
        with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            out = generator(image.to(device), landmarks.to(device), mask.to(device), identity.to(device))
        return tensor_to_bgr(out)


RECIPE = CiaganRecipe()
