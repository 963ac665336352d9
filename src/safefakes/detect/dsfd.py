"""DSFD (Li et al., CVPR 2019, "DSFD: Dual Shot Face Detector"), VGG-16 variant, as trained in Safe Fakes.

The network lives in :mod:`safefakes.detect.dsfd_model`, anchors in :mod:`~safefakes.detect.dsfd_anchors`,
the loss in :mod:`~safefakes.detect.dsfd_loss` and the augmentation in :mod:`~safefakes.detect.dsfd_augment`.
This module gathers the paper's hyper-parameters and registers the :class:`DetectorSpec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from safefakes.data.wider import WIDER_TRAIN_IMAGES
from safefakes.detect.dsfd_augment import DSFDAugmentConfig, DSFDTrainTransform
from safefakes.detect.dsfd_model import DSFD, DSFDModelConfig, apply_predict_hparams
from safefakes.detect.registry import DetectorSpec, TrainTransform

PAPER_ITERATIONS = 60_000  # Safe Fakes Sec. IV-A: DSFD trained 60,000 iterations (also the official max_iter)
PAPER_BATCH_SIZE = 4  # Safe Fakes Sec. IV-A: batch size 4 (reduced for memory)

PAPER_HPARAMS: dict[str, Any] = {
    "model": DSFDModelConfig().to_dict(),
    "augment": {k: list(v) if isinstance(v, tuple) else v for k, v in DSFDAugmentConfig().__dict__.items()},
    "train": {
        "batch_size": PAPER_BATCH_SIZE,
        "epochs": PAPER_ITERATIONS * PAPER_BATCH_SIZE / WIDER_TRAIN_IMAGES,  # = 60,000 iterations at batch 4
        "optimizer": {
            "name": "sgd",
            "lr": 2.5e-4,  # Safe Fakes Sec. IV-A: 2.5e-4 (reduced for memory)
            "momentum": 0.9,  # DSFD.pytorch train.py
            "weight_decay": 5e-4,  # DSFD.pytorch train.py
        },
        "schedule": {
            "name": "multistep",
            "gamma": 0.1,  # DSFD.pytorch train.py --gamma
            "milestone_iterations": [40_000, 50_000],  # official widerface_640 lr_steps (40000, 50000, 60000=end)
            "warmup_iterations": 0,  # the DSFD code has no warm-up
        },
        "amp": False,  # the DSFD code trains in fp32
    },
    "predict": {
        "score_threshold": 0.01,  # official conf_thresh
        "nms_iou": 0.3,  # DSFD Sec. 4.1 / official nms_thresh
        "max_detections": 750,  # DSFD Sec. 4.1: top-750 after NMS
        "test_scales": [1.0],  # single-scale test (DSFD's multi-scale test is not part of Safe Fakes' setup)
        "flip": False,
    },
}


def build_dsfd(model_hparams: Mapping[str, Any], load_pretrained: bool = True) -> DSFD:
    """A DSFD network from the ``model`` section (missing keys take the paper's values); ``load_pretrained=False``
    skips the initial weights (a checkpoint's replace them)."""
    return DSFD(DSFDModelConfig.from_dict(model_hparams), load_pretrained)


def build_dsfd_transform(augment_hparams: Mapping[str, Any]) -> TrainTransform:
    """DSFD's training augmentation from the ``augment`` section (missing keys take the paper's values)."""
    return DSFDTrainTransform(DSFDAugmentConfig.from_dict(augment_hparams))


SPEC = DetectorSpec(
    name="dsfd",
    build_model=build_dsfd,
    build_train_transform=build_dsfd_transform,
    paper_hparams=PAPER_HPARAMS,
    configure_inference=apply_predict_hparams,
    check_model=DSFDModelConfig.from_dict,
)

__all__ = ["PAPER_HPARAMS", "SPEC", "apply_predict_hparams", "build_dsfd", "build_dsfd_transform"]
