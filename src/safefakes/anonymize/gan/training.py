"""The resumable training loop shared by every GAN anonymizer, and its checkpoints.

Training runs by iterations; what one iteration does is the GAN's recipe (:mod:`.recipe`). The
batch indices, flips and every random draw of an iteration are functions of ``(seed, iteration)``
(:func:`iteration_rngs`), so a run resumes from its state file with no sampler state:
``STATE_DIR/state.pt`` holds the recipe's training state (networks, optimizer states, AMP scalers) and RNG states.
Checkpoints ``CHECKPOINTS/iter_{N}.pt`` are written at every requested N (one run serves several
iteration points of Fig. 9); the losses go to ``CHECKPOINTS/train_log.csv``. A killed run restarted
with the same arguments ends, on CPU, with weights bit-identical to an uninterrupted one.

The training set is a folder (:func:`~safefakes.anonymize.gan.cropsets.load_crop_set`), optionally cut
to ``max_faces`` crops (Fig. 7's training-set sizes); every checkpoint stores how many crops the run trained on
(``train_crops``: Fig. 7's training-face count, read back from the anonymized data's manifest). Where its crops'
7 keypoints come from (``keypoints7`` for PIPA and identity sets; the dataset's own for synthetic and FDF sets) is
logged per source and stored in every checkpoint (``train_keypoint_sources``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from safefakes.anonymize.gan.crop_readers import IdentitySelection
from safefakes.anonymize.gan.cropsets import CROP_KEYPOINTS_DLIB, DEFAULT_CROP_KEYPOINTS, CropSet, load_crop_set, select_crops
from safefakes.anonymize.gan.recipe import GanHparams, GanRecipe, get_recipe
from safefakes.common.errors import SafefakesError
from safefakes.common.progress import progress
from safefakes.common.run_state import (
    LOG_FILE_NAME,
    STATE_FILE_NAME,
    LossLog,
    check_iterations,
    checkpoint_name,
    cpu_state_dict,
    read_torch_payload,
    run_fingerprint,
    save_state,
    select_device,
    try_resume,
    write_torch_payload,
)

LOGGER = logging.getLogger(__name__)

GAN_CHECKPOINT_FORMAT = "safefakes-gan-checkpoint/2"
GAN_STATE_FORMAT = "safefakes-gan-state/2"


def iteration_rngs(seed: int, iteration: int) -> tuple[np.random.Generator, torch.Generator]:
    """The numpy and torch random number generators of one iteration (everything random in it derives from these)."""
    numpy_rng = np.random.default_rng([seed, iteration])
    return numpy_rng, torch.Generator().manual_seed(int(numpy_rng.integers(2**62)))


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------


def write_gan_checkpoint(
    path: Path,
    gan: str,
    generator: nn.Module,
    hparams: GanHparams,
    iteration: int,
    resolution: int,
    alpha: float,
    seed: int,
    generator_config: Mapping[str, Any] | None = None,
    train_set: str = "",
    train_keypoint_sources: Mapping[str, int] | None = None,
    train_crops: int | None = None,
) -> None:
    """Write a generator checkpoint atomically (weights, hyper-parameters, iteration, resolution reached, training
    set, the number of crops trained on (None: not known) and those crops per keypoint source)."""
    payload = {
        "format": GAN_CHECKPOINT_FORMAT,
        "gan": gan,
        "hparams_json": json.dumps(hparams.to_dict(), sort_keys=True),
        "generator_config_json": json.dumps(dict(generator_config or {}), sort_keys=True),
        "iteration": iteration,
        "resolution": resolution,
        "alpha": alpha,
        "seed": seed,
        "train_set": train_set,
        "train_keypoint_sources_json": json.dumps(dict(train_keypoint_sources or {}), sort_keys=True),
        "train_crops": None if train_crops is None else int(train_crops),
        "generator": cpu_state_dict(generator),
    }
    write_torch_payload(path, payload)


@dataclass(frozen=True)
class GanCheckpoint:
    """A loaded generator checkpoint."""

    gan: str
    hparams: Any
    generator_config: dict[str, Any]
    generator_state: dict[str, torch.Tensor]
    iteration: int
    resolution: int
    alpha: float
    train_set: str
    train_keypoint_sources: dict[str, int] = field(default_factory=dict)  # training crops per keypoint source
    train_crops: int | None = None  # crops the run trained on (None: a checkpoint written before it was recorded)

    @property
    def recipe(self) -> GanRecipe:
        """The recipe of this checkpoint's GAN."""
        return get_recipe(self.gan)

    def record(self) -> dict[str, Any]:
        """What identifies the generator in a manifest: GAN, iteration, resolution, training set and the number of
        crops it trained on (``train_crops``, None for checkpoints written before it was recorded), and a one-line
        ``summary`` for the log."""
        crops = "an unrecorded number of" if self.train_crops is None else str(self.train_crops)
        train_set = self.train_set or "an unrecorded set"
        summary = f"{self.gan} generator at iteration {self.iteration} ({self.resolution} px), trained on {crops} crops of {train_set}"
        return {
            "gan": self.gan,
            "iteration": self.iteration,
            "resolution": self.resolution,
            "train_set": self.train_set,
            "train_crops": self.train_crops,
            "summary": summary,
        }

    def build_generator(self) -> nn.Module:
        """The generator with the checkpoint's weights (in eval mode, on the CPU)."""
        generator = self.recipe.build_generator(self.hparams, self.generator_config)
        generator.load_state_dict(self.generator_state)
        return generator.eval()


def load_gan_checkpoint(path: str | Path, expected_gan: str | None = None) -> GanCheckpoint:
    """Read a checkpoint written by :func:`write_gan_checkpoint`; refuses other files with a clear error."""
    payload = read_torch_payload(path, GAN_CHECKPOINT_FORMAT, "GAN checkpoint")
    if expected_gan is not None and payload["gan"] != expected_gan:
        raise SafefakesError(f"{path} is a {payload['gan']} checkpoint, not {expected_gan}")
    hparams = get_recipe(payload["gan"]).parse_hparams(json.loads(payload["hparams_json"]))
    return GanCheckpoint(
        payload["gan"],
        hparams,
        json.loads(payload["generator_config_json"]),
        payload["generator"],
        int(payload["iteration"]),
        int(payload["resolution"]),
        float(payload["alpha"]),
        str(payload.get("train_set", "")),
        json.loads(payload.get("train_keypoint_sources_json", "{}")),  # absent from checkpoints written before it was recorded
        None if payload.get("train_crops") is None else int(payload["train_crops"]),  # likewise
    )


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GanTrainRequest:
    """Everything one GAN training run needs."""

    gan: str
    train_set: Path
    checkpoints_dir: Path
    state_dir: Path
    hparams: Mapping[str, Any]
    checkpoint_iterations: tuple[int, ...]
    seed: int = 0
    device: str = "auto"
    max_faces: int | None = None  # cut the training set to this many crops (seeded choice)
    min_faces_per_identity: int | None = None  # identity sets: keep identities with this many photos (CIAGAN's CelebA: 30)
    max_identities: int | None = None  # identity sets: then at most this many, most photos first (CIAGAN's CelebA: 1,200)
    keypoints7: str = DEFAULT_CROP_KEYPOINTS  # PIPA / identity sets: where DeepPrivacy's 7 keypoints come from (rcnn, dlib, rcnn_or_dlib)

    def identity_selection(self) -> IdentitySelection | None:
        """The identity selection the request asks for, or None."""
        if self.min_faces_per_identity is None and self.max_identities is None:
            return None
        return IdentitySelection(self.min_faces_per_identity or 1, self.max_identities)


def _fingerprint(request: GanTrainRequest, hparams: GanHparams, dataset_digest: str) -> str:
    """Identifies a run (not its length: a longer request continues a shorter run's state)."""
    identity = {"gan": request.gan, "hparams": hparams.to_dict(), "seed": request.seed, "dataset": dataset_digest}
    return run_fingerprint(identity)


def load_training_crops(
    recipe: GanRecipe,
    hparams: GanHparams,
    train_set: Path,
    max_faces: int | None,
    seed: int,
    identity_selection: IdentitySelection | None = None,
    keypoints7: str = DEFAULT_CROP_KEYPOINTS,
    keypoint_device: str = "cpu",
) -> CropSet:
    """The crops a run trains on: the folder's crops (of the identities ``identity_selection`` keeps) that carry
    what the GAN needs, cut to ``max_faces``. ``keypoints7`` applies to the GANs conditioned on the 7 keypoints
    (DeepPrivacy); the others do not read them, so their PIPA / identity crops keep the dlib-derived ones."""
    t = hparams.train
    if recipe.landmark_kind != "keypoints7" and keypoints7 != CROP_KEYPOINTS_DLIB:
        LOGGER.info("%s is not conditioned on the 7 keypoints: keypoints7 %s does not apply (crops derive them from dlib's 68)", recipe.name, keypoints7)
        keypoints7 = CROP_KEYPOINTS_DLIB
    return load_crop_set(
        train_set,
        hparams.model.resolution,
        t.context_factor,
        t.min_face_size,
        recipe.requirements,
        max_faces,
        seed,
        identity_selection,
        keypoints7,
        keypoint_device,
    )


def train_gan(request: GanTrainRequest, crops: CropSet | None = None) -> list[Path]:
    """Run (or resume) one GAN training run; returns the checkpoint paths in iteration order.

    ``crops`` may be given to skip reading ``request.train_set`` (tests, benchmarks).
    """
    recipe = get_recipe(request.gan)
    hparams = recipe.parse_hparams(request.hparams)
    checkpoints = check_iterations(request.checkpoint_iterations)
    if not checkpoints:
        raise SafefakesError("--iterations needs one or more positive numbers")
    total = checkpoints[-1]
    device = select_device(request.device)
    train = hparams.train
    use_amp = train.amp and device.type == "cuda"
    if crops is None:
        crops = load_training_crops(
            recipe, hparams, request.train_set, request.max_faces, request.seed, request.identity_selection(), request.keypoints7, device.type
        )
    if crops.resolution != hparams.model.resolution:
        raise SafefakesError(f"training crops are {crops.resolution} px, the model is {hparams.model.resolution} px")
    generator_config = recipe.generator_config(hparams, crops)
    LOGGER.info("training %s on %d crops (%s), %d iterations, checkpoints at %s", request.gan, len(crops), crops.source, total, list(checkpoints))
    keypoint_sources = crops.keypoint_source_counts()
    LOGGER.info("%s training crops per 7-keypoint source: %s", request.gan, ", ".join(f"{name} {count}" for name, count in keypoint_sources.items()))

    torch.manual_seed(request.seed)
    training_state = recipe.build_training_state(hparams, generator_config, device, use_amp)
    state_path = request.state_dir / STATE_FILE_NAME
    fingerprint = _fingerprint(request, hparams, crops.digest())
    checkpoint_paths = {n: request.checkpoints_dir / checkpoint_name(n) for n in checkpoints}
    start = try_resume(state_path, training_state, fingerprint, device, checkpoint_paths, state_format=GAN_STATE_FORMAT, stop_iteration=total)
    request.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    request.state_dir.mkdir(parents=True, exist_ok=True)
    log = LossLog(request.checkpoints_dir / LOG_FILE_NAME)
    log.load_until(start)
    tick = time.perf_counter()
    for iteration in progress(range(start + 1, total + 1), desc=f"train {request.gan}", total=max(0, total - start)):
        phase = recipe.growth_phase(hparams, iteration)
        numpy_rng, torch_rng = iteration_rngs(request.seed, iteration)
        indices = numpy_rng.integers(0, len(crops), size=train.batch_size)
        flips = numpy_rng.random(train.batch_size) < 0.5 if train.horizontal_flip else np.zeros(train.batch_size, dtype=bool)
        batch = select_crops(crops, indices, flips)
        terms = recipe.train_step(training_state, crops, batch, phase, hparams, generator_config, torch_rng, device, use_amp)
        now = time.perf_counter()
        if iteration % train.log_every == 0 or iteration == total:
            rate = train.batch_size / max(now - tick, 1e-9)
            log.append(
                {
                    "iteration": iteration,
                    "resolution": phase.resolution,
                    "alpha": f"{phase.alpha:.4f}",
                    **{k: f"{v:.6g}" for k, v in terms.items()},
                    "images_per_s": f"{rate:.2f}",
                }
            )
        tick = now
        if iteration in checkpoint_paths:
            write_gan_checkpoint(
                checkpoint_paths[iteration],
                request.gan,
                training_state.generator,
                hparams,
                iteration,
                phase.resolution,
                phase.alpha,
                request.seed,
                generator_config,
                crops.source,
                keypoint_sources,
                len(crops),
            )
        if iteration in checkpoint_paths or iteration % train.state_every == 0:
            save_state(state_path, training_state, iteration, fingerprint, state_format=GAN_STATE_FORMAT)
            log.write()
    log.write()
    return list(checkpoint_paths.values())
