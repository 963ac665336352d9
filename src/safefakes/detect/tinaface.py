"""TinaFace (Zhu et al., 2020, "TinaFace: Strong but Simple Baseline for Face Detection"), as trained in Safe Fakes.

Safe Fakes (supplement, Sec. B) ran the official code (Media-Smart/vedadet, R50-FPN-GN-DCN configuration) with
every setting unchanged except the length: 60,000 iterations on one GPU instead of three. The network lives in
:mod:`~safefakes.detect.tinaface_model` (backbone :mod:`~safefakes.detect.tinaface_backbone`, neck
:mod:`~safefakes.detect.tinaface_neck`, anchors :mod:`~safefakes.detect.tinaface_anchors`), the augmentation in
:mod:`~safefakes.detect.tinaface_augment` and every hyper-parameter, with its source, in
:mod:`~safefakes.detect.tinaface_config`. This module gathers them and registers the :class:`DetectorSpec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from safefakes.data.wider import WIDER_TRAIN_IMAGES
from safefakes.detect.registry import DetectorSpec, TrainTransform
from safefakes.detect.tinaface_augment import build_tinaface_train_transform
from safefakes.detect.tinaface_config import TinaFaceAugmentConfig, TinaFaceModelConfig, plain_dict
from safefakes.detect.tinaface_model import TinaFace

PAPER_ITERATIONS = 60_000  # Safe Fakes supplement Sec. B: 60,000 iterations (official: 630 epochs on 3 GPUs)
PAPER_BATCH_SIZE = 4  # vedadet samples_per_gpu=4, and Safe Fakes trained on a single GPU
#: Keys of the shared ``predict`` section that override the model's own post-processing.
PREDICT_OVERRIDES = ("score_threshold", "nms_iou", "max_detections")

PAPER_HPARAMS: dict[str, Any] = {
    "model": plain_dict(TinaFaceModelConfig()),
    "augment": plain_dict(TinaFaceAugmentConfig()),
    "train": {
        "batch_size": PAPER_BATCH_SIZE,
        "epochs": PAPER_ITERATIONS * PAPER_BATCH_SIZE / WIDER_TRAIN_IMAGES,  # = 60,000 iterations at batch 4
        "optimizer": {
            "name": "sgd",  # vedadet optimizer SGD
            "lr": 3.75e-3,  # vedadet lr (set for 3 GPUs x 4 images; Safe Fakes kept it on one GPU)
            "momentum": 0.9,  # vedadet momentum
            "weight_decay": 5e-4,  # vedadet weight_decay
        },
        "schedule": {
            # vedadet: CosineRestartLrSchedulerHook, periods of 30 epochs (SGDR), min_lr_ratio 0.01, by epoch.
            # At batch 4 one period is 96,600 iterations, longer than the 60,000-iteration run, so Safe Fakes
            # ended mid-period (lr ~0.35x base); the shared "cosine" schedule anneals fully to the final factor.
            "name": "cosine",
            "cosine_final_factor": 0.01,  # vedadet min_lr_ratio
            "warmup_iterations": 500,  # vedadet warmup_iters (linear)
            "warmup_start_factor": 0.1,  # vedadet warmup_ratio
        },
        "amp": False,  # vedadet trains in fp32
    },
    "predict": {
        "score_threshold": 0.01,  # vedadet val_engine score_thr
        "nms_iou": 0.45,  # vedadet val_engine nms iou_thr
        "max_detections": 1000,  # vedadet keeps all (max_per_img=-1); the shared loop needs a cap
        "test_scales": [1.0],  # the model itself rescales to vedadet's (1100, 1650) test scale
        "flip": False,  # single-scale test, as Safe Fakes
    },
}


def build_tinaface(model_hparams: Mapping[str, Any], load_pretrained: bool = True) -> TinaFace:
    """A TinaFace network from the ``model`` section (missing keys take the paper's values); ``load_pretrained=False``
    skips the initial weights (a checkpoint's replace them)."""
    return TinaFace(TinaFaceModelConfig.from_dict(model_hparams), load_pretrained)


def build_tinaface_transform(augment_hparams: Mapping[str, Any]) -> TrainTransform:
    """TinaFace's training augmentation from the ``augment`` section (missing keys take the paper's values)."""
    return build_tinaface_train_transform(augment_hparams)


def apply_predict_hparams(model: TinaFace, predict: Mapping[str, Any]) -> TinaFace:
    """Override the model's post-processing with the shared ``predict`` keys it knows (:data:`PREDICT_OVERRIDES`)."""
    model.configure_inference(**{key: predict[key] for key in PREDICT_OVERRIDES if key in predict})
    return model


SPEC = DetectorSpec(
    name="tinaface",
    build_model=build_tinaface,
    build_train_transform=build_tinaface_transform,
    paper_hparams=PAPER_HPARAMS,
    configure_inference=apply_predict_hparams,
    check_model=TinaFaceModelConfig.from_dict,
)

__all__ = ["PAPER_HPARAMS", "SPEC", "TinaFace", "apply_predict_hparams", "build_tinaface", "build_tinaface_transform"]
