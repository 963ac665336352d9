"""Overfit test per registered detector, through the real pipeline (issue 3).

For each detector: synthesize a few validation images with clear faces, train on them with
:func:`safefakes.detect.train.train` (shrunk model, memorizing settings), predict them back with
:func:`safefakes.detect.predict.predict` and score the predictions with the real WIDER evaluation.
A detector that cannot learn misses the easy AP floor.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from safefakes.data.ground_truth import load_ground_truth
from safefakes.data.predictions import read_predictions
from safefakes.data.synth import SynthConfig, synthesize
from safefakes.detect.predict import predict
from safefakes.detect.registry import DETECTOR_SPECS
from safefakes.detect.train import TrainRequest, train
from safefakes.evaluate.wider_eval import evaluate

#: Issue 3: "it reaches easy AP of at least 0.9".
EASY_AP_FLOOR = 0.9
IMAGE_WIDTH = 128  # square images (aspect 1), so the detectors' square crops cover the whole image
VAL_IMAGES = 4
DATA_SEED = 11
TRAIN_SEED = 0

#: Portraits and couples only, every face clear: unoccluded, sharp, frontal, not tiny (30-60 px here).
CLEAR_FACES = {
    "image_width": IMAGE_WIDTH,
    "min_aspect": 1.0,
    "max_aspect": 1.0,
    "events": [{"folder": "13--Interview", "min_faces": 1, "max_faces": 2}, {"folder": "19--Couple", "min_faces": 2, "max_faces": 2}],
    "portrait_face_px": 400.0,
    "image_size_log_sigma": 0.1,
    "face_size_log_sigma": 0.1,
    "p_invalid": 0.0,
    "p_occluder": 0.0,
    "p_extreme_light": 0.0,
    "p_exaggerated": 0.0,
    "p_profile": 0.0,
    "p_tilted": 0.0,
    "blur_probs_small": [1.0, 0.0, 0.0],
    "blur_probs_medium": [1.0, 0.0, 0.0],
    "blur_probs_large": [1.0, 0.0, 0.0],
}

#: Shared by every detector: one batch holds every image, AdamW with a cosine decay (the low final rate
#: lets the weights settle instead of oscillating around the memorized solution), no worker processes.
MEMORIZE_TRAIN = {
    "batch_size": VAL_IMAGES,
    "num_workers": 0,
    "optimizer": {"name": "adamw", "lr": 2e-3, "weight_decay": 1e-4},
    "schedule": {"name": "cosine", "cosine_final_factor": 0.05, "warmup_iterations": 0},
    "grad_clip_norm": 10.0,
}


@dataclass(frozen=True)
class OverfitCase:
    """One detector's shrunk model, memorizing augmentation (flip only) and iteration count.

    Pretrained weights are switched off so that the result does not depend on the torch hub cache.
    """

    detector: str
    hparams: Mapping[str, Any]
    iterations: int


CASES = (
    OverfitCase(
        "faster_rcnn",
        {
            "model": {
                "pretrained": "none",
                "min_size": IMAGE_WIDTH,
                "max_size": IMAGE_WIDTH,
                "width_per_group": 8,
                "fpn_channels": 32,
                "box_representation_size": 256,
                "rpn_pre_nms_top_n_train": 300,
                "rpn_post_nms_top_n_train": 150,
                "rpn_pre_nms_top_n_test": 300,
                "rpn_post_nms_top_n_test": 150,
                "box_batch_size_per_image": 64,
                "box_detections_per_img": 100,
            },
            # The SSD-style pipeline with every random step off: the plain image (the paper's DSFD pipeline always crops).
            "augment": {"pipeline": "ssd", "output_size": IMAGE_WIDTH, "photometric_probability": 0.0, "expand_probability": 0.0, "crop_probability": 0.0},
            "train": MEMORIZE_TRAIN,
        },
        iterations=80,  # measured: easy AP 0.98-1.0 from 70 iterations (3 seeds), ~37 s CPU at 80
    ),
    OverfitCase(
        "dsfd",
        {
            "model": {"width_scale": 0.125, "pretrained": "none", "test_max_side": IMAGE_WIDTH},
            "augment": {
                "output_size": IMAGE_WIDTH,
                "data_anchor_sampling_prob": 0.0,
                "ssd_crop_min_scale": 1.0,
                "brightness_prob": 0.0,
                "contrast_prob": 0.0,
                "saturation_prob": 0.0,
                "hue_prob": 0.0,
            },
            "train": MEMORIZE_TRAIN,
        },
        iterations=80,  # measured: 0.92-1.0 at 60 iterations, 1.0 at 80 (2 seeds), ~16 s CPU
    ),
    OverfitCase(
        "tinaface",
        {
            "model": {
                "width_scale": 0.125,
                "pretrained": "none",
                "deformable_stages": [False, False, False, False],
                "head_stacked_convs": 2,
                "inference": {"test_short_side_max": None, "test_long_side_max": None, "pre_nms_top_k": 1000},
            },
            "augment": {"output_size": IMAGE_WIDTH, "crop_choices": [1.0], "photometric_probability": 0.0},
            "train": MEMORIZE_TRAIN,
        },
        iterations=40,  # measured: 0.98-1.0 already at 20 iterations, 1.0 at 40 (2 seeds), ~8 s CPU
    ),
)


def test_every_registered_detector_has_a_case() -> None:
    """A newly registered detector must get an overfit case too."""
    assert sorted(case.detector for case in CASES) == sorted(DETECTOR_SPECS)


@pytest.fixture(scope="module")
def clear_faces_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic WIDER FACE whose validation split holds a few clear faces, all of them easy."""
    root = tmp_path_factory.mktemp("overfit") / "wider"
    synthesize(root, VAL_IMAGES + 1, seed=DATA_SEED, val_images=VAL_IMAGES, config=SynthConfig.from_dict(CLEAR_FACES))
    return root


def train_predict_evaluate(case: OverfitCase, wider_root: Path, work_dir: Path, seed: int = TRAIN_SEED) -> dict[str, float | None]:
    """Train ``case`` on the validation split, predict the same images and return the WIDER APs."""
    request = TrainRequest(
        detector=case.detector,
        wider_root=wider_root,
        checkpoints_dir=work_dir / "checkpoints",
        state_dir=work_dir / "state",
        hparams=case.hparams,
        checkpoint_iterations=(case.iterations,),
        split="val",
        seed=seed,
        device="cpu",
    )
    (checkpoint,) = train(request)
    pred_dir = work_dir / "predictions"
    assert predict(checkpoint, wider_root, pred_dir, split="val", device="cpu") == VAL_IMAGES
    ground_truth = load_ground_truth(wider_root / "ground_truth")
    predictions = read_predictions(pred_dir, [image.key for image in ground_truth.images])
    return evaluate(ground_truth, predictions).summary()


def test_fixture_has_easy_faces(clear_faces_root: Path) -> None:
    """The AP floor means something only if every face of every image counts as easy."""
    ground_truth = load_ground_truth(clear_faces_root / "ground_truth")
    assert len(ground_truth.images) == VAL_IMAGES
    assert all(image.counted["easy"].all() and len(image.boxes) for image in ground_truth.images)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[case.detector for case in CASES])
def test_detector_overfits_to_easy_ap(case: OverfitCase, clear_faces_root: Path, tmp_path: Path) -> None:
    """Trained on a handful of images and evaluated on the same ones, the detector reaches easy AP >= 0.9."""
    torch.set_num_threads(1)
    start = time.process_time()
    summary = train_predict_evaluate(case, clear_faces_root, tmp_path)
    print(f"{case.detector}: {summary}, {time.process_time() - start:.1f} s CPU")
    assert summary["easy"] is not None and summary["easy"] >= EASY_AP_FLOOR, summary
