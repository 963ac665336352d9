"""What each GAN anonymizer plugs into the shared training loop and the shared dataset anonymizer.

A :class:`GanRecipe` holds everything model-specific: its hyper-parameters (whose ``train`` section
extends :class:`GanTrainConfig`), what its training crops must carry, how it builds its training state
(networks, optimizers, AMP scalers), one training step, and at inference how it draws its random inputs
and generates faces from prepared crops. The loop
(:mod:`.training`) and the anonymizer (:mod:`.anonymizer`) are the same for every GAN, so resume,
checkpoints, batching, keypoint fallbacks, paste-back and the privacy property are written once.

Recipes are registered by name in :data:`GAN_RECIPES` as ``module:attribute`` and imported on use.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import nn

from safefakes.anonymize import GAN_METHODS
from safefakes.anonymize.base import MethodConfig, convert_parameter, require
from safefakes.anonymize.gan.crops import FaceCrop
from safefakes.anonymize.gan.cropsets import CropSelection, CropSet
from safefakes.common.config import build_config
from safefakes.common.errors import SafefakesError

#: Which landmarks a GAN is conditioned on: DeepPrivacy's 7 sparse keypoints or dlib's 68 landmarks.
LandmarkKind = Literal["keypoints7", "landmarks68"]
#: What the anonymizer does with a face whose landmarks were not found: generate without them
#: (DeepPrivacy, Sun2018) or black the box out (CIAGAN) — Safe Fakes Sec. III-C.
MissingLandmarks = Literal["generate", "blackout"]


@dataclass(frozen=True)
class GanTrainConfig(MethodConfig):
    """The training fields every GAN shares, read by the shared loop (:mod:`.training`) and crop loading.

    Each GAN's train config subclasses this, sets its own ``batch_size`` default and adds its
    optimizer fields. Hyper-parameters are stored in checkpoints by field name, so names must not change.
    """

    batch_size: int  # crops per iteration (each GAN sets its paper value)
    context_factor: float = 2.0  # crop side / face box side (our choice; FDF crops show about this much context)
    min_face_size: float = 24.0  # synthetic crop set: smallest face (sqrt area, px) used for training
    horizontal_flip: bool = True  # flip half of the batch (landmarks mirrored left/right)
    amp: bool = True  # float16 autocast and gradient scaling on CUDA (ignored on CPU)
    log_every: int = 10  # iterations between loss-log rows
    state_every: int = 200  # iterations between resumable state files (and at every checkpoint)

    def validate(self) -> None:
        """Positive batch size and intervals, a context at least the face box (subclasses extend)."""
        require(self.batch_size >= 1, "batch_size must be >= 1")
        require(self.context_factor >= 1, "context_factor must be >= 1")
        require(self.min_face_size >= 0, "min_face_size must be >= 0")
        require(self.log_every >= 1 and self.state_every >= 1, "log_every and state_every must be >= 1")


@dataclass(frozen=True)
class GrowthPhase:
    """Where progressive growing stands at one iteration: the training ``resolution`` and the fade-in
    ``alpha`` of its newest level (1.0 once faded in, and always for GANs that do not grow)."""

    resolution: int
    alpha: float


class GanHparams(Protocol):
    """Resolved hyper-parameters of one GAN: ``model.resolution`` and the ``train`` fields the loop reads."""

    model: Any
    train: GanTrainConfig

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping of every resolved value (stored in checkpoints)."""
        ...


class SectionedHparams:
    """Base of a GAN's hyper-parameters: a frozen dataclass whose fields (``model``, ``train``, ``loss``)
    are :class:`~safefakes.anonymize.base.MethodConfig` sections, read from and written to one mapping."""

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> Any:
        """Build every section from ``values`` (the config.yaml section passed as JSON; a section left out keeps its
        defaults); unknown sections and keys are an error."""
        return build_config(cls, values, "hparams", convert_value=convert_parameter)

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping of every resolved value (stored in checkpoints)."""
        return {field.name: getattr(self, field.name).to_dict() for field in dataclasses.fields(self)}  # type: ignore[arg-type]


class GanTrainingState(Protocol):
    """What a recipe's :meth:`~GanRecipe.build_training_state` returns: a dataclass whose every field has
    ``state_dict``/``load_state_dict`` (networks, optimizers, AMP scalers; the state file stores them by
    field name), among them the ``generator`` network that checkpoints save."""

    @property
    def generator(self) -> nn.Module:
        """The generator network."""
        ...


class GanRecipe(Protocol):
    """The model-specific parts of a GAN anonymizer (see the module docstring).

    ``hparams.train`` is a :class:`GanTrainConfig` (the fields the shared loop reads).
    """

    name: str
    #: What every training crop must carry (crops without any of it are left out): names from
    #: :data:`~safefakes.anonymize.gan.cropsets.REQUIREMENTS`.
    requirements: tuple[str, ...]
    landmark_kind: LandmarkKind
    missing_landmarks: MissingLandmarks

    def parse_hparams(self, values: Mapping[str, Any] | None) -> GanHparams:
        """Hyper-parameters from a config mapping, paper values as defaults; unknown keys are an error."""
        ...

    def generator_config(self, hparams: GanHparams, crops: CropSet) -> dict[str, Any]:
        """What the generator's shape depends on beyond ``hparams`` (e.g. CIAGAN's number of identities)."""
        ...

    def build_generator(self, hparams: GanHparams, generator_config: Mapping[str, Any]) -> nn.Module:
        """A fresh generator."""
        ...

    def build_training_state(self, hparams: GanHparams, generator_config: Mapping[str, Any], device: torch.device, use_amp: bool) -> GanTrainingState:
        """Fresh networks (seeded by the caller), their optimizers and AMP scalers."""
        ...

    def growth_phase(self, hparams: GanHparams, iteration: int) -> GrowthPhase:
        """The resolution and fade-in of the 1-based ``iteration`` (progressive growing; constant otherwise)."""
        ...

    def train_step(
        self,
        training_state: Any,
        crops: CropSet,
        batch: CropSelection,
        phase: GrowthPhase,
        hparams: GanHparams,
        generator_config: Mapping[str, Any],
        rng: torch.Generator,
        device: torch.device,
        use_amp: bool,
    ) -> dict[str, float]:
        """One optimization step on ``batch``; everything random is drawn from ``rng``. Returns the logged losses."""
        ...

    def sample_face_inputs(self, hparams: GanHparams, generator_config: Mapping[str, Any], resolution: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The random inputs of one face at inference (latent noise, an identity, ...), drawn from its image's ``rng``."""
        ...

    def generate(
        self,
        generator: nn.Module,
        hparams: GanHparams,
        generator_config: Mapping[str, Any],
        crops: Sequence[FaceCrop],
        inputs: Sequence[Mapping[str, np.ndarray]],
        alpha: float,
        device: torch.device,
        use_amp: bool,
    ) -> np.ndarray:
        """Faces for a chunk of prepared crops (box blocked; keypoints in crop units or None): ``(B, r, r, 3)`` uint8 BGR."""
        ...


#: GAN name -> ``module:attribute`` of its recipe (each GAN's ``<name>_training`` module).
GAN_RECIPES: dict[str, str] = {name: f"safefakes.anonymize.gan.{name}_training:RECIPE" for name in GAN_METHODS}


def get_recipe(name: str) -> GanRecipe:
    """The recipe registered under ``name``."""
    try:
        module_name, attribute = GAN_RECIPES[name].split(":")
    except KeyError:
        raise SafefakesError(f"unknown GAN {name!r}; expected one of {', '.join(GAN_RECIPES)}") from None
    return getattr(importlib.import_module(module_name), attribute)


def bgr_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """``(B, r, r, 3)`` uint8 BGR -> ``(B, 3, r, r)`` float RGB in [-1, 1]."""
    rgb = np.ascontiguousarray(pixels[..., ::-1]).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(rgb).permute(0, 3, 1, 2).contiguous()


def rgb_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """``(B, r, r, 3)`` uint8 RGB -> ``(B, 3, r, r)`` float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def tensor_to_bgr(images: torch.Tensor) -> np.ndarray:
    """``(B, 3, r, r)`` RGB in [-1, 1] -> ``(B, r, r, 3)`` uint8 BGR."""
    array = images.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return np.ascontiguousarray(array[..., ::-1])


def crop_box_masks(boxes: Sequence[Sequence[int]] | np.ndarray, full_resolution: int, resolution: int) -> torch.Tensor:
    """``(B, 1, r, r)`` masks: 0 inside each box ``x0 y0 x1 y1`` (crop pixels at ``full_resolution``, scaled to
    ``resolution`` and grown to whole pixels), 1 elsewhere (the known pixels)."""
    scale = resolution / full_resolution
    mask = torch.ones(len(boxes), 1, resolution, resolution)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        c0, r0 = int(np.floor(x0 * scale)), int(np.floor(y0 * scale))
        c1, r1 = max(int(np.ceil(x1 * scale)), c0 + 1), max(int(np.ceil(y1 * scale)), r0 + 1)
        mask[i, :, r0:r1, c0:c1] = 0
    return mask


def crop_points(crops: Sequence[FaceCrop], count: int) -> torch.Tensor:
    """``(B, count, 3)`` keypoints of prepared crops in crop units (all absent where a crop has none)."""
    points = np.stack([crop.keypoints if crop.keypoints is not None else np.zeros((count, 3)) for crop in crops]).astype(np.float32)
    return torch.from_numpy(points)
