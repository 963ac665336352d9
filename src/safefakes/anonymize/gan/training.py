"""Face-crop training sets and the resumable DeepPrivacy training loop.

Training sets (:func:`load_crop_set` picks the reader from the folder's content):

* **synthetic** — a synthetic WIDER FACE root (``safefakes synth``): every face of the split at least
  ``min_face_size`` px with ground-truth keypoints is cut out with context (:mod:`.crops`) and resized.
* **FDF** (Hukkelås et al.'s released format, as read by DeepPrivacy's own loader): ``DIR/images/<R>/<i>.png``
  (R x R face crops numbered from 0), ``DIR/bounding_box/<R>.torch`` or ``.npy`` (``N x 4`` boxes
  ``x0 y0 x1 y1`` in pixels of the R x R crop) and ``DIR/landmarks.npy`` (``N x 7 x 2``, or flat, the 7
  keypoints in COCO order in [0, 1] crop units). FDF has no visibility flags; we assume a keypoint is
  present when it lies inside the crop. Crops at another resolution than the model's are resized.

Training runs by iterations (one critic step and one generator step on one batch each). The
progressive schedule, the batch indices, flips, latent noise and gradient-penalty mixing are all
functions of ``(seed, iteration)``, so a run is resumable from its state file with no sampler state:
``STATE_DIR/state.pt`` holds both networks, both Adam states, the AMP scalers and the RNG states.
Checkpoints ``CHECKPOINTS/iter_{N}.pt`` are written at every requested N (one run serves several
iteration points), the losses go to ``CHECKPOINTS/train_log.csv``. A killed run restarted with the
same arguments ends, on CPU, with weights bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from safefakes.anonymize.base import MethodConfig, require
from safefakes.anonymize.gan.crops import context_square, extract_square, keypoints_in_crop, resize_square, box_in_crop
from safefakes.anonymize.gan.deepprivacy import (
    DeepPrivacyDiscriminator,
    DeepPrivacyGenerator,
    DeepPrivacyModelConfig,
    WganGpConfig,
    discriminator_loss,
    generator_loss,
)
from safefakes.anonymize.gan.keypoints import NUM_KEYPOINTS, keypoints_from_extras
from safefakes.common.errors import SafefakesError
from safefakes.common.progress import progress
from safefakes.data.wider import KEYPOINTS_7, WiderLayout, load_split
from safefakes.detect.train import (
    LossLog,
    checkpoint_name,
    cpu_state_dict,
    read_torch_payload,
    save_state,
    select_device,
    try_resume,
    write_torch_payload,
)

LOGGER = logging.getLogger(__name__)

GAN_CHECKPOINT_FORMAT = "safefakes-gan-checkpoint/1"
GAN_STATE_FORMAT = "safefakes-gan-state/1"
STATE_FILE_NAME = "state.pt"
LOG_FILE_NAME = "train_log.csv"
#: Horizontal flip swaps these keypoint pairs (left/right eye, ear, shoulder).
FLIP_PAIRS = tuple((KEYPOINTS_7.index(f"left_{part}"), KEYPOINTS_7.index(f"right_{part}")) for part in ("eye", "ear", "shoulder"))


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeepPrivacyTrainConfig(MethodConfig):
    """Training hyper-parameters (paper values as defaults)."""

    batch_size: int = 128  # Safe Fakes Sec. III-A1: DeepPrivacy with batch size 128 ...
    learning_rate: float = 1.5e-3  # ... and learning rate 1.5e-3 (both networks)
    adam_beta1: float = 0.0  # DeepPrivacy / progressive GAN: Adam(0, 0.99)
    adam_beta2: float = 0.99
    transition_images: int = 1_200_000  # DeepPrivacy: images shown while fading in a new resolution
    stabilization_images: int = 1_200_000  # DeepPrivacy: images shown at each resolution once faded in
    context_factor: float = 2.0  # crop side / face box side (our choice; FDF crops show about this much context)
    min_face_size: float = 24.0  # synthetic crop set: smallest face (sqrt area, px) used for training
    horizontal_flip: bool = True  # flip half of the batch (keypoints swapped left/right)
    amp: bool = True  # float16 autocast and gradient scaling on CUDA (ignored on CPU)
    log_every: int = 10  # iterations between loss-log rows
    state_every: int = 200  # iterations between resumable state files (and at every checkpoint)

    def validate(self) -> None:
        """Positive sizes and rates."""
        require(self.batch_size >= 1, "batch_size must be >= 1")
        require(self.learning_rate > 0, "learning_rate must be > 0")
        require(self.transition_images >= 0 and self.stabilization_images >= 1, "phase lengths must be positive")
        require(self.context_factor >= 1, "context_factor must be >= 1")
        require(self.log_every >= 1 and self.state_every >= 1, "log_every and state_every must be >= 1")

    def iterations(self, images: int) -> int:
        """Iterations needed to show ``images`` images (at least one when ``images`` > 0)."""
        return math.ceil(images / self.batch_size) if images > 0 else 0


@dataclass(frozen=True)
class DeepPrivacyHparams:
    """All hyper-parameters of one training run: ``{"model": {...}, "train": {...}, "loss": {...}}``."""

    model: DeepPrivacyModelConfig
    train: DeepPrivacyTrainConfig
    loss: WganGpConfig

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> DeepPrivacyHparams:
        """Build from the config.yaml section (passed as JSON); unknown sections are an error."""
        values = dict(values or {})
        unknown = sorted(set(values) - {"model", "train", "loss"})
        if unknown:
            raise SafefakesError(f"unknown hyper-parameter section(s) {', '.join(unknown)}; expected model, train, loss")
        return cls(
            DeepPrivacyModelConfig.from_dict(values.get("model")),
            DeepPrivacyTrainConfig.from_dict(values.get("train")),
            WganGpConfig.from_dict(values.get("loss")),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping of every resolved value (stored in checkpoints)."""
        return {"model": self.model.to_dict(), "train": self.train.to_dict(), "loss": self.loss.to_dict()}


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

    def at(self, iteration: int) -> tuple[int, float]:
        """``(resolution, alpha)`` used by the 1-based ``iteration``."""
        step = iteration - 1 - self.stabilization_iterations
        if step < 0:
            return self.resolutions[0], 1.0
        phase = self.transition_iterations + self.stabilization_iterations
        for resolution in self.resolutions[1:]:
            if step < self.transition_iterations:
                return resolution, (step + 1) / self.transition_iterations
            if step < phase:
                return resolution, 1.0
            step -= phase
        return self.resolutions[-1], 1.0


# --------------------------------------------------------------------------------------------------
# Crop sets
# --------------------------------------------------------------------------------------------------


@dataclass
class CropSet:
    """Face crops for training: RGB ``images (N, R, R, 3)`` uint8, ``boxes (N, 4)`` x0 y0 x1 y1 in crop pixels,
    ``keypoints (N, 7, 3)`` [u, v, visible] in [0, 1] crop units."""

    images: np.ndarray
    boxes: np.ndarray
    keypoints: np.ndarray
    source: str

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def resolution(self) -> int:
        """Side of the crops in pixels."""
        return int(self.images.shape[1])

    def digest(self) -> str:
        """SHA-256 of the content (identifies the training data in a run's fingerprint)."""
        hasher = hashlib.sha256()
        for array in (self.images, self.boxes, self.keypoints):
            hasher.update(str(array.shape).encode())
            hasher.update(np.ascontiguousarray(array).tobytes())
        return hasher.hexdigest()


def synthetic_crop_set(wider_root: Path, resolution: int, context_factor: float, min_face_size: float, split: str = "train") -> CropSet:
    """Crops of every face of a synthetic WIDER split that is large enough and has ground-truth keypoints."""
    annotations, extras = load_split(wider_root, split)
    if extras is None:
        raise SafefakesError(f"{wider_root}: no {split} extras file; the synthetic crop set needs ground-truth keypoints")
    layout = WiderLayout(Path(wider_root))
    images, boxes, keypoints = [], [], []
    for annotation in progress(annotations, desc="synthetic crops", unit="img"):
        faces_extras = extras.get(annotation.name) or [None] * len(annotation.faces)
        chosen = [(f, keypoints_from_extras(e)) for f, e in zip(annotation.faces, faces_extras) if f.size >= min_face_size]
        chosen = [(f, k) for f, k in chosen if k is not None]
        if not chosen:
            continue
        image = cv2.imread(str(layout.image_path(split, annotation.name)), cv2.IMREAD_COLOR)
        if image is None:
            raise SafefakesError(f"cannot read {layout.image_path(split, annotation.name)}")
        for face, points in chosen:
            square = context_square(face, context_factor)
            images.append(resize_square(extract_square(image, square), resolution)[:, :, ::-1])
            boxes.append(box_in_crop(face, square, resolution))
            keypoints.append(keypoints_in_crop(points, square))
    if not images:
        raise SafefakesError(f"{wider_root}: no {split} face of at least {min_face_size} px with keypoints to train on")
    return CropSet(np.ascontiguousarray(np.stack(images)), np.asarray(boxes, dtype=np.int64), np.asarray(keypoints, dtype=np.float32), f"synthetic:{wider_root}")


def _load_array(path: Path) -> np.ndarray:
    """A ``.npy`` array or a tensor saved with ``torch.save`` (``.torch``)."""
    if path.suffix == ".npy":
        return np.load(path)
    value = torch.load(path, map_location="cpu", weights_only=True)
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def fdf_crop_set(folder: Path, resolution: int) -> CropSet:
    """Read an FDF folder (format in the module docstring) at ``resolution``, resizing crops of another size."""
    image_root = folder / "images"
    sizes = sorted(int(p.name) for p in image_root.iterdir() if p.is_dir() and p.name.isdigit()) if image_root.is_dir() else []
    if not sizes:
        raise SafefakesError(f"{folder}: not an FDF folder (expected images/<resolution>/<index>.png)")
    size = resolution if resolution in sizes else max(sizes)
    paths = sorted((image_root / str(size)).glob("*.png"), key=lambda p: int(p.stem))
    box_file = next((folder / "bounding_box" / f"{size}{ext}" for ext in (".torch", ".npy") if (folder / "bounding_box" / f"{size}{ext}").is_file()), None)
    if box_file is None or not (folder / "landmarks.npy").is_file():
        raise SafefakesError(f"{folder}: FDF needs bounding_box/{size}.torch (or .npy) and landmarks.npy")
    boxes = _load_array(box_file).reshape(-1, 4).astype(np.float64)[: len(paths)]
    landmarks = np.load(folder / "landmarks.npy").reshape(-1, NUM_KEYPOINTS, 2).astype(np.float64)[: len(paths)]
    if not (len(boxes) == len(landmarks) == len(paths)):
        raise SafefakesError(f"{folder}: {len(paths)} images, {len(boxes)} boxes, {len(landmarks)} landmark sets")
    images = []
    for path in progress(paths, desc="FDF crops", unit="img"):
        pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if pixels is None:
            raise SafefakesError(f"cannot read {path}")
        images.append(resize_square(pixels, resolution)[:, :, ::-1])
    scale = resolution / size
    scaled = np.stack([np.floor(boxes[:, 0] * scale), np.floor(boxes[:, 1] * scale), np.ceil(boxes[:, 2] * scale), np.ceil(boxes[:, 3] * scale)], axis=1)
    inside = ((landmarks >= 0) & (landmarks <= 1)).all(axis=2, keepdims=True).astype(np.float64)
    keypoints = np.concatenate([np.clip(landmarks, 0, 1), inside], axis=2)
    return CropSet(np.ascontiguousarray(np.stack(images)), np.clip(scaled, 0, resolution).astype(np.int64), keypoints.astype(np.float32), f"fdf:{folder}")


def load_crop_set(path: Path, resolution: int, train: DeepPrivacyTrainConfig) -> CropSet:
    """The training crops at ``path``: a synthetic WIDER root or an FDF folder."""
    path = Path(path)
    if WiderLayout(path).annotation_file("train").is_file():
        return synthetic_crop_set(path, resolution, train.context_factor, train.min_face_size)
    if (path / "images").is_dir():
        return fdf_crop_set(path, resolution)
    raise SafefakesError(f"--train-set {path}: neither a (synthetic) WIDER FACE root nor an FDF folder")


# --------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainBatch:
    """One batch at the current resolution: real images and conditions in [-1, 1], the known-pixel mask, keypoints."""

    real: torch.Tensor
    condition: torch.Tensor
    mask: torch.Tensor
    keypoints: torch.Tensor


def iteration_generators(seed: int, iteration: int) -> tuple[np.random.Generator, torch.Generator]:
    """The numpy and torch generators of one iteration (everything random in it derives from these)."""
    rng = np.random.default_rng([seed, iteration])
    return rng, torch.Generator().manual_seed(int(rng.integers(2**62)))


def box_mask(boxes: np.ndarray, full_resolution: int, resolution: int) -> torch.Tensor:
    """``(B, 1, r, r)`` masks: 0 inside each box (scaled to ``resolution``, grown to whole pixels), 1 elsewhere."""
    scale = resolution / full_resolution
    mask = torch.ones(len(boxes), 1, resolution, resolution)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        c0, r0 = int(math.floor(x0 * scale)), int(math.floor(y0 * scale))
        c1, r1 = max(int(math.ceil(x1 * scale)), c0 + 1), max(int(math.ceil(y1 * scale)), r0 + 1)
        mask[i, :, r0:r1, c0:c1] = 0
    return mask


def blocked_condition(real: torch.Tensor, mask: torch.Tensor, blocking: str, generator: torch.Generator) -> torch.Tensor:
    """The real image with the box replaced by black (-1) or by uniform noise."""
    fill = torch.rand(real.shape, generator=generator) * 2 - 1 if blocking == "noise" else torch.full_like(real, -1.0)
    return real * mask + fill.to(real.device) * (1 - mask)


def make_batch(crops: CropSet, indices: np.ndarray, flips: np.ndarray, resolution: int, alpha: float, blocking: str, generator: torch.Generator, device: torch.device) -> TrainBatch:
    """Select, flip, scale to ``resolution`` (progressive fade of the real images) and block the boxes."""
    images = crops.images[indices].copy()
    boxes = crops.boxes[indices].copy()
    keypoints = crops.keypoints[indices].copy()
    full = crops.resolution
    for i in np.flatnonzero(flips):
        images[i] = images[i, :, ::-1]
        boxes[i, [0, 2]] = full - boxes[i, [2, 0]]
        keypoints[i, :, 0] = np.where(keypoints[i, :, 2] > 0, np.clip(1.0 - keypoints[i, :, 0], 0, np.nextafter(1, 0)), keypoints[i, :, 0])
        for left, right in FLIP_PAIRS:
            keypoints[i, [left, right]] = keypoints[i, [right, left]]
    real = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    if resolution != full:
        real = F.avg_pool2d(real, full // resolution)
    if alpha < 1.0:
        real = alpha * real + (1 - alpha) * F.interpolate(F.avg_pool2d(real, 2), scale_factor=2, mode="nearest")
    mask = box_mask(boxes, full, resolution)
    condition = blocked_condition(real, mask, blocking, generator)
    return TrainBatch(real.to(device), condition.to(device), mask.to(device), torch.from_numpy(keypoints).to(device))


# --------------------------------------------------------------------------------------------------
# Training objects, checkpoints, state
# --------------------------------------------------------------------------------------------------


@dataclass
class GanObjects:
    """The mutable parts of a run that a state file captures."""

    generator: DeepPrivacyGenerator
    discriminator: DeepPrivacyDiscriminator
    g_optimizer: torch.optim.Optimizer
    d_optimizer: torch.optim.Optimizer
    g_scaler: torch.amp.GradScaler
    d_scaler: torch.amp.GradScaler


def build_objects(hparams: DeepPrivacyHparams, device: torch.device, use_amp: bool) -> GanObjects:
    """Fresh networks (seeded by the caller) and their Adam optimizers."""
    generator = DeepPrivacyGenerator(hparams.model).to(device)
    discriminator = DeepPrivacyDiscriminator(hparams.model).to(device)
    t = hparams.train
    adam = lambda module: torch.optim.Adam(module.parameters(), lr=t.learning_rate, betas=(t.adam_beta1, t.adam_beta2))  # noqa: E731
    return GanObjects(generator, discriminator, adam(generator), adam(discriminator), torch.amp.GradScaler(device.type, enabled=use_amp), torch.amp.GradScaler(device.type, enabled=use_amp))


def write_gan_checkpoint(path: Path, gan: str, generator: DeepPrivacyGenerator, hparams: DeepPrivacyHparams, iteration: int, resolution: int, alpha: float, seed: int) -> None:
    """Write a generator checkpoint atomically (weights, hyper-parameters, iteration, resolution reached)."""
    payload = {
        "format": GAN_CHECKPOINT_FORMAT,
        "gan": gan,
        "hparams_json": json.dumps(hparams.to_dict(), sort_keys=True),
        "iteration": iteration,
        "resolution": resolution,
        "alpha": alpha,
        "seed": seed,
        "generator": cpu_state_dict(generator),
    }
    write_torch_payload(path, payload)


@dataclass(frozen=True)
class GanCheckpoint:
    """A loaded generator checkpoint."""

    gan: str
    hparams: DeepPrivacyHparams
    generator_state: dict[str, torch.Tensor]
    iteration: int
    resolution: int
    alpha: float


def load_gan_checkpoint(path: str | Path, expected_gan: str | None = None) -> GanCheckpoint:
    """Read a checkpoint written by :func:`write_gan_checkpoint`; refuses other files with a clear error."""
    payload = read_torch_payload(path, GAN_CHECKPOINT_FORMAT, "GAN checkpoint")
    if expected_gan is not None and payload["gan"] != expected_gan:
        raise SafefakesError(f"{path} is a {payload['gan']} checkpoint, not {expected_gan}")
    hparams = DeepPrivacyHparams.from_dict(json.loads(payload["hparams_json"]))
    return GanCheckpoint(payload["gan"], hparams, payload["generator"], int(payload["iteration"]), int(payload["resolution"]), float(payload["alpha"]))


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


def train_step(objects: GanObjects, batch: TrainBatch, hparams: DeepPrivacyHparams, alpha: float, generator: torch.Generator, use_amp: bool) -> dict[str, float]:
    """One critic step and one generator step on ``batch``; returns the logged losses."""
    device = batch.real.device
    size = batch.real.shape[0]
    z = torch.randn(objects.generator.latent_shape(size), generator=generator).to(device)
    mix = torch.rand(size, 1, 1, 1, generator=generator).to(device)
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
        fake = objects.generator(batch.condition, batch.mask, batch.keypoints, z, alpha)
        d_loss, terms = discriminator_loss(objects.discriminator, batch.real, fake, batch.condition, batch.keypoints, alpha, mix, hparams.loss)
    if not torch.isfinite(d_loss):
        raise SafefakesError(f"training diverged: discriminator loss {terms}")
    objects.d_optimizer.zero_grad(set_to_none=True)
    objects.d_scaler.scale(d_loss).backward()
    objects.d_scaler.step(objects.d_optimizer)
    objects.d_scaler.update()
    objects.discriminator.requires_grad_(False)
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
        g_loss = generator_loss(objects.discriminator, fake, batch.condition, batch.keypoints, alpha)
    objects.g_optimizer.zero_grad(set_to_none=True)
    objects.g_scaler.scale(g_loss).backward()
    objects.g_scaler.step(objects.g_optimizer)
    objects.g_scaler.update()
    objects.discriminator.requires_grad_(True)
    terms["g_loss"] = float(g_loss.detach())
    return terms


def _fingerprint(request: GanTrainRequest, hparams: DeepPrivacyHparams, dataset_digest: str) -> str:
    """Identifies a run (not its length: a longer request continues a shorter run's state)."""
    identity = {"gan": request.gan, "hparams": hparams.to_dict(), "seed": request.seed, "dataset": dataset_digest}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()


def _check_iterations(requested: Sequence[int]) -> tuple[int, ...]:
    iterations = tuple(sorted({int(n) for n in requested}))
    if not iterations or iterations[0] < 1:
        raise SafefakesError(f"--iterations needs one or more positive numbers, got {list(requested)}")
    return iterations


def train_gan(request: GanTrainRequest, crops: CropSet | None = None) -> list[Path]:
    """Run (or resume) one DeepPrivacy training run; returns the checkpoint paths in iteration order.

    ``crops`` may be given to skip reading ``request.train_set`` (tests, benchmarks).
    """
    if request.gan != "deepprivacy":
        raise SafefakesError(f"unknown GAN {request.gan!r}; this version trains: deepprivacy")
    hparams = DeepPrivacyHparams.from_dict(request.hparams)
    checkpoints = _check_iterations(request.checkpoint_iterations)
    total = checkpoints[-1]
    device = select_device(request.device)
    use_amp = hparams.train.amp and device.type == "cuda"
    crops = crops if crops is not None else load_crop_set(request.train_set, hparams.model.resolution, hparams.train)
    if crops.resolution != hparams.model.resolution:
        raise SafefakesError(f"training crops are {crops.resolution} px, the model is {hparams.model.resolution} px")
    schedule = ProgressiveSchedule.from_hparams(hparams)
    LOGGER.info("training %s on %d crops (%s), %d iterations, checkpoints at %s", request.gan, len(crops), crops.source, total, list(checkpoints))

    torch.manual_seed(request.seed)
    objects = build_objects(hparams, device, use_amp)
    state_path = request.state_dir / STATE_FILE_NAME
    fingerprint = _fingerprint(request, hparams, crops.digest())
    checkpoint_paths = {n: request.checkpoints_dir / checkpoint_name(n) for n in checkpoints}
    start = try_resume(state_path, objects, fingerprint, device, checkpoint_paths, state_format=GAN_STATE_FORMAT)
    request.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    request.state_dir.mkdir(parents=True, exist_ok=True)
    log = LossLog(request.checkpoints_dir / LOG_FILE_NAME)
    log.load_until(start)
    train = hparams.train
    tick = time.perf_counter()
    for iteration in progress(range(start + 1, total + 1), desc=f"train {request.gan}", total=max(0, total - start)):
        resolution, alpha = schedule.at(iteration)
        rng, generator = iteration_generators(request.seed, iteration)
        indices = rng.integers(0, len(crops), size=train.batch_size)
        flips = rng.random(train.batch_size) < 0.5 if train.horizontal_flip else np.zeros(train.batch_size, dtype=bool)
        batch = make_batch(crops, indices, flips, resolution, alpha, hparams.model.input_blocking, generator, device)
        terms = train_step(objects, batch, hparams, alpha, generator, use_amp)
        now = time.perf_counter()
        if iteration % train.log_every == 0 or iteration == total:
            log.append({"iteration": iteration, "resolution": resolution, "alpha": f"{alpha:.4f}", **{k: f"{v:.6g}" for k, v in terms.items()}, "images_per_s": f"{train.batch_size / max(now - tick, 1e-9):.2f}"})
        tick = now
        if iteration in checkpoint_paths:
            write_gan_checkpoint(checkpoint_paths[iteration], request.gan, objects.generator, hparams, iteration, resolution, alpha, request.seed)
        if iteration in checkpoint_paths or iteration % train.state_every == 0:
            save_state(state_path, objects, iteration, fingerprint, state_format=GAN_STATE_FORMAT)
            log.write()
    log.write()
    return list(checkpoint_paths.values())
