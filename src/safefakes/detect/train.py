"""Train any registered detector by iterations, with checkpoints at requested iterations and exact resume.

One run writes ``CHECKPOINTS/iter_{N}.pt`` at every requested ``N`` (the paper's Fig. 6 points come
from one run) and a loss log ``CHECKPOINTS/train_log.csv``. Each checkpoint records the network's
initialisation (the pretrained file's name and sha256, or ``none``); the model is built, and a missing
pretrained file refused, before any training. Every ``train.state_every`` iterations
and at each checkpoint it writes ``STATE_DIR/state.pt``: model, optimizer, scheduler, AMP scaler and
the python/numpy/torch RNG states. The data-loader position is the iteration number itself (see
:mod:`safefakes.detect.data`), so a killed run restarted with the same arguments continues from the
last state and, on CPU, ends with weights bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from safefakes.common import optim
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
    seed_everything,
    select_device,
    try_resume,
    write_torch_payload,
)
from safefakes.common.weights import Initialisation
from safefakes.detect.data import AugmentedDataset, StreamBatchSampler, WiderFaceDataset, collate_detection, to_model_inputs
from safefakes.detect.hparams import OptimizerConfig, ScheduleConfig, TrainConfig, resolve_hparams
from safefakes.detect.registry import get_detector, model_initialisation

LOGGER = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "safefakes-detector-checkpoint/2"  # 2: records the initialisation


@dataclass(frozen=True)
class TrainRequest:
    """Everything one training run needs; ``hparams`` overrides the detector's paper values."""

    detector: str
    wider_root: Path
    checkpoints_dir: Path
    state_dir: Path
    hparams: Mapping[str, Any]
    checkpoint_iterations: tuple[int, ...] = ()
    split: str = "train"
    seed: int = 0
    device: str = "auto"
    run_length: int | None = None  # the whole run's length when this call stops at an earlier checkpoint


def build_optimizer(model: nn.Module, config: OptimizerConfig) -> torch.optim.Optimizer:
    """The optimizer over the model's trainable parameters."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    if config.name == "sgd":
        return optim.sgd(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=config.nesterov)
    return optim.adam(parameters, lr=config.lr, weight_decay=config.weight_decay, decoupled_weight_decay=True)


class LearningRateFactor:
    """Multiplier of the base learning rate at an iteration: linear warm-up times the decay schedule."""

    def __init__(self, schedule: ScheduleConfig, iterations_per_epoch: int, total_iterations: int) -> None:
        self.schedule = schedule
        self.step_length = schedule.step_length(iterations_per_epoch)
        self.milestones = schedule.milestones(iterations_per_epoch)
        self.total_iterations = max(1, total_iterations)

    def decay(self, iteration: int) -> float:
        """The schedule's factor without warm-up."""
        s = self.schedule
        if s.name == "step":
            return s.gamma ** (iteration // self.step_length)
        if s.name == "multistep":
            return s.gamma ** sum(1 for m in self.milestones if iteration >= m)
        if s.name == "cosine":
            progress_fraction = min(1.0, iteration / self.total_iterations)
            return s.cosine_final_factor + (1 - s.cosine_final_factor) * 0.5 * (1 + math.cos(math.pi * progress_fraction))
        return 1.0

    def __call__(self, iteration: int) -> float:
        factor = self.decay(iteration)
        warmup = self.schedule.warmup_iterations
        if iteration < warmup:
            start = self.schedule.warmup_start_factor
            factor *= start + (1 - start) * iteration / warmup
        return factor


def write_checkpoint(
    path: Path, model: nn.Module, detector: str, hparams: Mapping[str, Any], iteration: int, seed: int, initialisation: Initialisation
) -> None:
    """Write a detector checkpoint atomically: weights, detector name, hyper-parameters, iteration, seed, initialisation."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "detector": detector,
        "hparams_json": json.dumps(hparams, sort_keys=True),
        "iteration": iteration,
        "seed": seed,
        "initialisation_json": json.dumps(initialisation.to_dict(), sort_keys=True),
        "model": cpu_state_dict(model),
    }
    write_torch_payload(path, payload)


@dataclass(frozen=True)
class DetectorCheckpoint:
    """The content of a checkpoint written by :func:`write_checkpoint`."""

    detector: str
    hparams: dict[str, Any]
    state: dict[str, torch.Tensor]
    iteration: int
    seed: int
    initialisation: Initialisation


def read_checkpoint(path: str | Path) -> DetectorCheckpoint:
    """Read a detector checkpoint; a clear error for a missing, damaged or foreign file."""
    payload = read_torch_payload(path, CHECKPOINT_FORMAT, "detector checkpoint")
    return DetectorCheckpoint(
        detector=payload["detector"],
        hparams=json.loads(payload["hparams_json"]),
        state=payload["model"],
        iteration=int(payload["iteration"]),
        seed=int(payload["seed"]),
        initialisation=Initialisation.from_dict(json.loads(payload["initialisation_json"])),
    )


def _fingerprint(request: TrainRequest, hparams: Mapping[str, Any], dataset_digest: str, total_iterations: int, initialisation: Initialisation) -> str:
    """Identifies a training run; a state with another fingerprint belongs to another run and is not resumed."""
    identity = {
        "detector": request.detector,
        "hparams": hparams,
        "initialisation": initialisation.label,
        "seed": request.seed,
        "split": request.split,
        "dataset": dataset_digest,
        "total_iterations": total_iterations,
    }
    return run_fingerprint(identity)


@dataclass
class TrainingState:
    """The mutable parts of a run that a state file captures: the model, its optimizer, learning-rate scheduler, AMP gradient
    scaler and optional weight average. save_state stores each field under its name: renaming one changes the state file."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    averaged_model: torch.optim.swa_utils.AveragedModel | None = None  # train.ema_decay's moving average, if set

    def weights_to_save(self) -> nn.Module:
        """The network a checkpoint holds: the moving average of the weights when there is one, else the model."""
        return self.model if self.averaged_model is None else self.averaged_model.module


def make_loader(dataset: AugmentedDataset, config: TrainConfig, seed: int, start: int, stop: int, device: torch.device) -> DataLoader:
    """The data loader of iterations ``start .. stop - 1`` (worker processes and pinned memory as configured)."""
    sampler = StreamBatchSampler(len(dataset), config.batch_size, seed, start, stop)
    # Its own generator: a DataLoader iterator otherwise draws a seed from the global torch RNG,
    # which a resumed run would draw once more than an uninterrupted one.
    return DataLoader(
        dataset,
        generator=torch.Generator().manual_seed(seed + start),
        batch_sampler=sampler,
        num_workers=config.num_workers,
        collate_fn=collate_detection,
        pin_memory=config.pin_memory and device.type == "cuda",
        persistent_workers=False,
    )


def train(request: TrainRequest) -> list[Path]:
    """Run (or resume) one training run; returns the checkpoint paths, in iteration order."""
    spec = get_detector(request.detector)
    hparams = resolve_hparams(spec.paper_hparams, request.hparams)
    config = TrainConfig.from_dict(hparams["train"])
    device = select_device(request.device)
    base = WiderFaceDataset(request.wider_root, request.split, drop_empty=True)
    dataset = AugmentedDataset(base, spec.build_train_transform(hparams["augment"]))
    iterations_per_epoch = config.iterations_per_epoch(len(base))
    checkpoints = check_iterations(request.checkpoint_iterations) or (config.default_iterations(len(base)),)
    total = checkpoints[-1]
    run_length = request.run_length or total
    if run_length < total:
        raise SafefakesError(f"--run-length {run_length} is shorter than the last checkpoint ({total})")
    LOGGER.info(
        "training %s on %d images of %s (%s), %d iterations (%.2f epochs), checkpoints at %s",
        request.detector,
        len(base),
        request.wider_root,
        request.split,
        total,
        total / iterations_per_epoch,
        list(checkpoints),
    )

    seed_everything(request.seed)
    model = spec.build_model(hparams["model"])  # refuses a missing pretrained file, before any training
    initialisation = model_initialisation(model, request.detector)
    LOGGER.info("%s starts from %s", request.detector, initialisation.label)
    model = model.to(device)
    use_amp = (config.amp and device.type == "cuda") or (config.cpu_bfloat16 and device.type == "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config.optimizer)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, LearningRateFactor(config.schedule, iterations_per_epoch, run_length))
    # Gradient scaling guards float16's narrow range; bfloat16 (the CPU's autocast type) has float32's.
    training_state = TrainingState(
        model, optimizer, scheduler, torch.amp.GradScaler(device.type, enabled=use_amp and device.type == "cuda"), exponential_average(model, config.ema_decay)
    )

    state_path = request.state_dir / STATE_FILE_NAME
    fingerprint = _fingerprint(request, hparams, base.content_digest(), run_length, initialisation)
    checkpoint_paths = {n: request.checkpoints_dir / checkpoint_name(n) for n in checkpoints}
    start = try_resume(state_path, training_state, fingerprint, device, checkpoint_paths, stop_iteration=total)
    request.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    log = LossLog(request.checkpoints_dir / LOG_FILE_NAME)
    log.load_until(start)

    model.train()
    loader = make_loader(dataset, config, request.seed, start, total, device)
    steps = progress(zip(range(start + 1, total + 1), loader), desc=f"train {request.detector}", total=total - start)
    tick = time.perf_counter()
    for iteration, (images, boxes) in steps:
        lr_used = optimizer.param_groups[0]["lr"]
        losses = train_step(training_state, images, boxes, device, config, use_amp)
        now = time.perf_counter()
        if iteration % config.log_every == 0 or iteration == total:
            log.append(_log_row(iteration, losses, lr_used, len(images) / max(now - tick, 1e-9)))
        tick = now
        if iteration in checkpoints:
            write_checkpoint(checkpoint_paths[iteration], training_state.weights_to_save(), request.detector, hparams, iteration, request.seed, initialisation)
        if iteration in checkpoints or iteration % config.state_every == 0:
            request.state_dir.mkdir(parents=True, exist_ok=True)
            save_state(state_path, training_state, iteration, fingerprint)
            log.write()
    log.write()
    return list(checkpoint_paths.values())


def exponential_average(model: nn.Module, decay: float | None) -> torch.optim.swa_utils.AveragedModel | None:
    """torch's exponential moving average of ``model``'s weights and buffers (``None`` when ``decay`` is None)."""
    if decay is None:
        return None
    return torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True)


def autocast_dtype(device: torch.device) -> torch.dtype:
    """The mixed-precision type of a device: float16 on CUDA, bfloat16 on the CPU."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def train_step(
    training_state: TrainingState,
    images: list[torch.Tensor],
    boxes: list[torch.Tensor],
    device: torch.device,
    config: TrainConfig,
    use_amp: bool,
) -> dict[str, float]:
    """One optimizer step on one batch; returns the losses (and their sum as ``loss``)."""
    inputs, targets = to_model_inputs(images, boxes, device)
    with torch.autocast(device_type=device.type, dtype=autocast_dtype(device), enabled=use_amp):
        loss_dict = training_state.model(inputs, targets)
        loss = sum(loss_dict.values())
    if not torch.isfinite(loss):
        raise SafefakesError(f"training diverged: loss is {loss.item()} ({ {k: float(v) for k, v in loss_dict.items()} })")
    training_state.optimizer.zero_grad(set_to_none=True)
    training_state.scaler.scale(loss).backward()
    if config.grad_clip_norm is not None:
        training_state.scaler.unscale_(training_state.optimizer)
        torch.nn.utils.clip_grad_norm_([p for p in training_state.model.parameters() if p.requires_grad], config.grad_clip_norm)
    training_state.scaler.step(training_state.optimizer)
    training_state.scaler.update()
    training_state.scheduler.step()
    if training_state.averaged_model is not None:
        training_state.averaged_model.update_parameters(training_state.model)
    values = {name: float(value.detach()) for name, value in loss_dict.items()}
    values["loss"] = float(loss.detach())
    return values


def _log_row(iteration: int, losses: Mapping[str, float], lr_used: float, images_per_second: float) -> dict[str, Any]:
    row: dict[str, Any] = {"iteration": iteration}
    row.update({name: f"{value:.6g}" for name, value in losses.items()})
    row["lr"] = f"{lr_used:.6g}"
    row["images_per_s"] = f"{images_per_second:.3f}"
    return row
