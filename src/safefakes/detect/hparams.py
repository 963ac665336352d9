"""Typed hyper-parameters shared by every detector: the ``train`` and ``predict`` config sections.

Each dataclass is built from the plain mapping the workflow passes as JSON (``from_dict``, with
:func:`~safefakes.common.config.build_config`); unknown keys are refused so that a typo in
``config.yaml`` fails loudly instead of silently using a default.
Defaults are the paper's Faster R-CNN values (supplementary material, Sec. III-A) unless a comment
says otherwise; DSFD and TinaFace override them through their ``paper_hparams``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from safefakes.common.config import build_config
from safefakes.common.errors import SafefakesError

SCHEDULE_NAMES = ("step", "multistep", "cosine", "constant")
OPTIMIZER_NAMES = ("sgd", "adamw")


@dataclass(frozen=True)
class OptimizerConfig:
    """Optimizer settings (paper: SGD, lr 1e-3, momentum 0.9, weight decay 1e-4; supp. Sec. III-A)."""

    name: str = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZER_NAMES:
            raise SafefakesError(f"train.optimizer.name must be one of {', '.join(OPTIMIZER_NAMES)}, got {self.name!r}")
        if self.lr <= 0:
            raise SafefakesError(f"train.optimizer.lr must be positive, got {self.lr}")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> OptimizerConfig:
        """Build from the ``train.optimizer`` mapping."""
        return build_config(cls, raw, "train.optimizer")


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule: linear warm-up, then ``step``, ``multistep``, ``cosine`` or ``constant``.

    Step lengths and milestones are in epochs (converted with the dataset size) unless the
    ``*_iterations`` variants are given, which take precedence. Paper: lr x0.1 every 3 epochs.
    """

    name: str = "step"
    gamma: float = 0.1  # paper: "decrease the learning rate by a factor of 10"
    step_epochs: float = 3.0  # paper: "every 3 epochs"
    step_iterations: int | None = None
    milestone_epochs: list[float] = field(default_factory=list)
    milestone_iterations: list[int] | None = None
    cosine_final_factor: float = 0.0  # lr at the last iteration as a fraction of the base lr
    warmup_iterations: int = 0  # the paper's Faster R-CNN uses no warm-up
    warmup_start_factor: float = 1e-3

    def __post_init__(self) -> None:
        if self.name not in SCHEDULE_NAMES:
            raise SafefakesError(f"train.schedule.name must be one of {', '.join(SCHEDULE_NAMES)}, got {self.name!r}")
        if self.warmup_iterations < 0:
            raise SafefakesError("train.schedule.warmup_iterations must be >= 0")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> ScheduleConfig:
        """Build from the ``train.schedule`` mapping."""
        return build_config(cls, raw, "train.schedule")

    def step_length(self, iterations_per_epoch: int) -> int:
        """Iterations between two decays of the ``step`` schedule."""
        if self.step_iterations is not None:
            return max(1, int(self.step_iterations))
        return max(1, round(self.step_epochs * iterations_per_epoch))

    def milestones(self, iterations_per_epoch: int) -> list[int]:
        """Iterations at which the ``multistep`` schedule decays, sorted."""
        if self.milestone_iterations is not None:
            return sorted(int(m) for m in self.milestone_iterations)
        return sorted(round(m * iterations_per_epoch) for m in self.milestone_epochs)


@dataclass(frozen=True)
class TrainConfig:
    """The shared ``train`` section: batch, optimizer, schedule, length and device options."""

    batch_size: int = 4  # paper: batch size 4
    epochs: float = 10.0  # paper: 10 epochs; used only when no iterations are requested explicitly
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    grad_clip_norm: float | None = None  # none in the paper; a safety valve for from-scratch training
    # Exponential moving average of the weights, kept beside the trained ones; checkpoints hold the average.
    # None in the paper. Short constant-rate runs oscillate from one checkpoint to the next; the average does less.
    ema_decay: float | None = None
    amp: bool = True  # mixed precision (float16 autocast with gradient scaling), CUDA only
    cpu_bfloat16: bool = False  # bfloat16 autocast on the CPU (fast where the CPU has AMX / AVX-512 BF16); not the paper's
    channels_last: bool = True  # memory format on CUDA only
    num_workers: int = 2  # data-loader worker processes
    pin_memory: bool = True  # CUDA only
    state_every: int = 500  # iterations between two resumable state files
    log_every: int = 1  # iterations between two loss-log rows

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise SafefakesError(f"train.batch_size must be >= 1, got {self.batch_size}")
        if self.state_every < 1 or self.log_every < 1:
            raise SafefakesError("train.state_every and train.log_every must be >= 1")
        if self.num_workers < 0:
            raise SafefakesError("train.num_workers must be >= 0")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise SafefakesError(f"train.ema_decay must lie between 0 and 1 (or be null), got {self.ema_decay}")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> TrainConfig:
        """Build from the ``train`` mapping (nested ``optimizer`` and ``schedule`` mappings)."""
        return build_config(cls, raw, "train")

    def iterations_per_epoch(self, dataset_size: int) -> int:
        """Iterations that see every training image once."""
        return max(1, math.ceil(dataset_size / self.batch_size))

    def default_iterations(self, dataset_size: int) -> int:
        """Total iterations of ``epochs`` epochs."""
        return max(1, round(self.epochs * self.iterations_per_epoch(dataset_size)))


@dataclass(frozen=True)
class PredictConfig:
    """The shared ``predict`` section: score floor, NMS, test scales and flip.

    ``test_scales`` are factors of the original resolution (``[1.0]``: original size only).
    Detections of all scales and flips are merged with plain NMS at ``nms_iou``.
    """

    score_threshold: float = 0.01  # low, so the WIDER PR curve reaches high recall
    nms_iou: float = 0.4  # merge threshold of multi-scale / flip test
    max_detections: int = 750  # per image; WIDER images hold up to ~1000 faces
    test_scales: list[float] = field(default_factory=lambda: [1.0])
    flip: bool = False
    min_box_size: float = 1.0  # boxes narrower or lower than this (pixels) are dropped
    amp: bool = True  # mixed-precision inference, CUDA only

    def __post_init__(self) -> None:
        if not self.test_scales or any(s <= 0 for s in self.test_scales):
            raise SafefakesError(f"predict.test_scales must be positive factors, got {self.test_scales}")
        if not 0 <= self.score_threshold <= 1:
            raise SafefakesError(f"predict.score_threshold must be in [0, 1], got {self.score_threshold}")
        if self.max_detections < 1:
            raise SafefakesError("predict.max_detections must be >= 1")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> PredictConfig:
        """Build from the ``predict`` mapping."""
        return build_config(cls, raw, "predict")


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in recursively (mappings merge, other values replace)."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


HPARAM_SECTIONS = ("model", "augment", "train", "predict")
#: The key of an ``augment`` section that picks one of several augmentation pipelines (Faster R-CNN: ``dsfd`` or ``ssd``).
AUGMENT_PIPELINE_KEY = "pipeline"


def iterations_for_epochs(epochs: float, dataset_size: int, batch_size: int) -> int:
    """The iteration count of ``epochs`` epochs over ``dataset_size`` images at ``batch_size``, counted as training
    counts them (:meth:`TrainConfig.iterations_per_epoch`), so that an epoch-based schedule decays on epoch boundaries."""
    if epochs <= 0:
        raise SafefakesError(f"epochs must be positive, got {epochs}")
    return TrainConfig(batch_size=batch_size, epochs=epochs).default_iterations(dataset_size)


def _merge_augment(paper_augment: Mapping[str, Any], override_augment: Mapping[str, Any]) -> dict[str, Any]:
    """The ``augment`` section: the override merged onto the paper's, unless the override picks another
    ``pipeline`` than the paper's; the paper's values belong to its own pipeline, so that override then stands alone
    (the pipeline's defaults fill the rest)."""
    paper_pipeline = paper_augment.get(AUGMENT_PIPELINE_KEY)
    chosen_pipeline = override_augment.get(AUGMENT_PIPELINE_KEY, paper_pipeline)
    if chosen_pipeline != paper_pipeline:
        return copy.deepcopy(dict(override_augment))
    return deep_merge(paper_augment, override_augment)


def resolve_hparams(paper_hparams: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """The detector's paper hyper-parameters with ``override`` merged in; refuses unknown sections.

    An ``augment`` override naming another ``pipeline`` than the paper's replaces the paper's section (see
    :func:`_merge_augment`)."""
    unknown = sorted(set(override) - set(HPARAM_SECTIONS))
    if unknown:
        raise SafefakesError(f"unknown hyper-parameter section(s): {', '.join(unknown)}; expected {', '.join(HPARAM_SECTIONS)}")
    merged = deep_merge(paper_hparams, override)
    if isinstance(override.get("augment"), Mapping):
        merged["augment"] = _merge_augment(paper_hparams.get("augment") or {}, override["augment"])
    for section in HPARAM_SECTIONS:
        merged.setdefault(section, {})
    # Validate the shared sections early so that a bad value fails before any training starts.
    TrainConfig.from_dict(merged["train"])
    PredictConfig.from_dict(merged["predict"])
    return merged
