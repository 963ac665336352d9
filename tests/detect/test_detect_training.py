"""Training loop, exact resume, prediction files and an overfit check, with a small real detector defined here.

The stand-in is torchvision's Faster R-CNN machinery on a five-layer conv backbone: a real network
following the detector contract, small enough to train in seconds on one CPU core.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign

from safefakes.common.errors import SafefakesError
from safefakes.common.weights import Initialisation
from safefakes.data.synth import EventStyle, SynthConfig, synthesize
from safefakes.detect import registry
from safefakes.detect import train as train_module
from safefakes.detect.registry import DetectorSpec
from safefakes.detect.train import TrainRequest, read_checkpoint, train
from safefakes.detect.transforms import SsdStyleAugmentConfig, build_ssd_style_transform

IMAGE_WIDTH = 160
OVERFIT_ITERATIONS = 150


def build_tiny_detector(config: Mapping[str, Any], load_pretrained: bool = True) -> nn.Module:
    """Faster R-CNN with a 5-layer stride-8 backbone (BatchNorm, so running stats are part of the state), from random values."""
    width = int(config.get("width", 32))
    layers: list[nn.Module] = []
    channels = 3
    for stride in (2, 1, 2, 1, 2):
        layers += [nn.Conv2d(channels, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        channels = width
    backbone = nn.Sequential(*layers)
    backbone.out_channels = width
    size = int(config.get("size", IMAGE_WIDTH))
    model = FasterRCNN(
        backbone,
        min_size=size,
        max_size=size,
        rpn_anchor_generator=AnchorGenerator(((12, 24, 48, 96),), ((1.0, 1.3),)),
        box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2),
        box_head=TwoMLPHead(width * 49, 128),
        box_predictor=FastRCNNPredictor(128, 2),
        rpn_pre_nms_top_n_train=300,
        rpn_post_nms_top_n_train=100,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=100,
        rpn_batch_size_per_image=64,
        box_batch_size_per_image=64,
        box_score_thresh=0.01,
    )
    model.initialisation = Initialisation() if load_pretrained else None
    return model


def build_tiny_transform(augment: Mapping[str, Any]) -> registry.TrainTransform:
    return build_ssd_style_transform(SsdStyleAugmentConfig.from_dict(augment))


TINY_SPEC = DetectorSpec(
    name="tiny_test",
    build_model=build_tiny_detector,
    build_train_transform=build_tiny_transform,
    paper_hparams={
        "model": {"width": 32, "size": IMAGE_WIDTH},
        "augment": {"output_size": IMAGE_WIDTH, "expand_probability": 0.0, "crop_min_scale": 0.6},
        "train": {
            "batch_size": 2,
            "num_workers": 0,
            "state_every": 2,
            "optimizer": {"name": "adamw", "lr": 2e-3, "weight_decay": 1e-4},
            "schedule": {"name": "cosine", "warmup_iterations": 5, "cosine_final_factor": 0.05},
        },
        "predict": {"score_threshold": 0.01},
    },
)


@pytest.fixture(autouse=True)
def register_tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.DETECTOR_SPECS, "tiny_test", f"{__name__}:TINY_SPEC")
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small validation images with one or two clear faces each (plus four training images)."""
    root = tmp_path_factory.mktemp("synth") / "wider"
    clear = SynthConfig(
        image_width=IMAGE_WIDTH,
        events=(EventStyle("13--Interview", 1, 2), EventStyle("19--Couple", 2, 2)),
        portrait_face_px=300.0,
        p_occluder=0.0,
        p_invalid=0.0,
        p_extreme_light=0.0,
        p_profile=0.0,
        p_tilted=0.0,
        blur_probs_small=(1.0, 0.0, 0.0),
        blur_probs_medium=(1.0, 0.0, 0.0),
        blur_probs_large=(1.0, 0.0, 0.0),
    )
    synthesize(root, 10, seed=3, val_images=6, config=clear)
    return root


def _request(root: Path, out: Path, iterations: tuple[int, ...], hparams: Mapping[str, Any] | None = None) -> TrainRequest:
    return TrainRequest(
        detector="tiny_test",
        wider_root=root,
        checkpoints_dir=out / "checkpoints",
        state_dir=out / "state",
        hparams=dict(hparams or {}),
        checkpoint_iterations=iterations,
        split="val",
        seed=7,
        device="cpu",
    )


def test_resume_after_kill_gives_bit_identical_weights(synth_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    iterations = (3, 6)
    reference = train(_request(synth_root, tmp_path / "uninterrupted", iterations))
    assert [p.name for p in reference] == ["iter_3.pt", "iter_6.pt"]

    real_step = train_module.train_step
    calls = {"n": 0}

    def dying_step(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 6:  # killed during iteration 6; the last state is at iteration 4 (state_every=2)
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train(_request(synth_root, tmp_path / "resumed", iterations))
    state = torch.load(tmp_path / "resumed" / "state" / "state.pt", weights_only=False)
    assert state["iteration"] == 4
    assert not (tmp_path / "resumed" / "checkpoints" / "iter_6.pt").exists()

    monkeypatch.setattr(train_module, "train_step", real_step)
    resumed = train(_request(synth_root, tmp_path / "resumed", iterations))
    for ref_path, res_path in zip(reference, resumed):
        ref_state = read_checkpoint(ref_path).state
        res_state = read_checkpoint(res_path).state
        assert ref_state.keys() == res_state.keys()
        for key in ref_state:
            assert torch.equal(ref_state[key], res_state[key]), key
        assert ref_path.read_bytes() == res_path.read_bytes()
    log = (tmp_path / "resumed" / "checkpoints" / "train_log.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in log[1:]] == list(range(1, 7))
    assert log[0].startswith("iteration,") and "lr" in log[0] and "images_per_s" in log[0]


def test_one_job_per_iteration_point_equals_one_run(synth_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The workflow trains a run's points in separate calls (--run-length): the second continues the first's
    state and ends bit-identical to one call with both points; a rerun of the earlier point starts again."""
    iterations = (3, 6)
    reference = train(_request(synth_root, tmp_path / "one_call", iterations))
    split = tmp_path / "two_calls"
    first = train(dataclasses.replace(_request(synth_root, split, (3,)), run_length=6))
    with caplog.at_level("INFO"):
        second = train(dataclasses.replace(_request(synth_root, split, (6,)), run_length=6))
    assert "resuming from" in caplog.text and "iteration 3" in caplog.text
    for ref_path, res_path in zip(reference, first + second):
        assert ref_path.read_bytes() == res_path.read_bytes(), res_path.name
    caplog.clear()
    with caplog.at_level("WARNING"):
        again = train(dataclasses.replace(_request(synth_root, split, (3,)), run_length=6))
    assert "past this call's last checkpoint" in caplog.text
    assert again[0].read_bytes() == reference[0].read_bytes()
    with pytest.raises(SafefakesError, match="run-length"):
        train(dataclasses.replace(_request(synth_root, split, (6,)), run_length=4))


def test_weight_average_is_checkpointed_and_resumes_exactly(synth_root: Path, tmp_path: Path) -> None:
    """train.ema_decay: checkpoints hold the moving average (not the last weights), and a run split at a
    checkpoint ends bit-identical to one call, so the average is part of the resumable state."""
    averaged = {"train": {"ema_decay": 0.5}}
    plain = train(_request(synth_root, tmp_path / "plain", (3,)))
    reference = train(_request(synth_root, tmp_path / "one_call", (3, 6), averaged))
    split = tmp_path / "two_calls"
    first = train(dataclasses.replace(_request(synth_root, split, (3,), averaged), run_length=6))
    second = train(dataclasses.replace(_request(synth_root, split, (6,), averaged), run_length=6))
    for ref_path, res_path in zip(reference, first + second):
        assert ref_path.read_bytes() == res_path.read_bytes(), res_path.name
    plain_state = read_checkpoint(plain[0]).state
    averaged = read_checkpoint(reference[0])
    hparams, average_state = averaged.hparams, averaged.state
    assert hparams["train"]["ema_decay"] == 0.5
    # Same seed and batches for 3 iterations: only the averaging makes the checkpointed weights differ.
    assert plain_state.keys() == average_state.keys()
    assert any(not torch.equal(plain_state[key], average_state[key]) for key in plain_state if plain_state[key].is_floating_point())
    with pytest.raises(SafefakesError, match="ema_decay"):
        train(_request(synth_root, tmp_path / "bad", (3,), {"train": {"ema_decay": 1.5}}))


def test_changed_hparams_do_not_resume_a_foreign_state(synth_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    train(_request(synth_root, tmp_path, (2,)))
    other = {"train": {"optimizer": {"lr": 1e-3}}}
    with caplog.at_level("WARNING"):
        train(_request(synth_root, tmp_path, (2,), other))
    assert "belongs to another run" in caplog.text
    checkpoint = read_checkpoint(tmp_path / "checkpoints" / "iter_2.pt")
    detector, hparams, iteration = checkpoint.detector, checkpoint.hparams, checkpoint.iteration
    assert (detector, iteration, hparams["train"]["optimizer"]["lr"]) == ("tiny_test", 2, 1e-3)


def test_bad_requests_fail_with_one_clear_error(synth_root: Path, tmp_path: Path) -> None:
    with pytest.raises(SafefakesError, match="unknown detector"):
        train(TrainRequest("nope", synth_root, tmp_path / "c", tmp_path / "s", {}, (1,)))
    with pytest.raises(SafefakesError, match="unknown train setting"):
        train(_request(synth_root, tmp_path, (1,), {"train": {"batchsize": 3}}))
    with pytest.raises(SafefakesError, match="positive"):
        train(_request(synth_root, tmp_path, (0,)))


def _read_prediction_file(path: Path) -> tuple[str, np.ndarray]:
    lines = path.read_text().splitlines()
    count = int(lines[1])
    rows = np.array([[float(v) for v in line.split()] for line in lines[2:]]).reshape(-1, 5)
    assert len(rows) == count
    return lines[0], rows


@pytest.mark.slow
def test_overfit_reaches_easy_ap_and_writes_wider_predictions(synth_root: Path, tmp_path: Path) -> None:
    """Train on six images, predict them back: WIDER easy AP >= 0.9, files in the official format."""
    from safefakes.data.ground_truth import load_ground_truth
    from safefakes.data.predictions import read_predictions
    from safefakes.detect.predict import predict
    from safefakes.evaluate.wider_eval import evaluate

    memorize = {"augment": {"photometric_probability": 0.0, "crop_probability": 0.0}, "train": {"optimizer": {"lr": 4e-3}}}
    (checkpoint,) = train(_request(synth_root, tmp_path, (OVERFIT_ITERATIONS,), memorize))
    pred_dir = tmp_path / "pred"
    assert predict(checkpoint, synth_root, pred_dir, split="val", device="cpu", predict_overrides={"flip": True}) == 6

    ground_truth = load_ground_truth(synth_root / "ground_truth")
    for image in ground_truth.images:
        name, rows = _read_prediction_file(pred_dir / image.event / f"{image.stem}.txt")
        assert image.stem in name
        assert np.all(np.diff(rows[:, 4]) <= 0), "detections must be sorted by score"
        assert np.all(rows[:, 4] >= 0.01) and np.all(rows[:, 2:4] > 0)
        assert np.all(rows[:, 0] >= 0) and np.all(rows[:, 0] + rows[:, 2] <= IMAGE_WIDTH + 1e-6)
    result = evaluate(ground_truth, read_predictions(pred_dir, [image.key for image in ground_truth.images]))
    assert result.summary()["easy"] >= 0.9, result.summary()

    loss = [json.loads(line.split(",")[-3]) for line in (tmp_path / "checkpoints" / "train_log.csv").read_text().splitlines()[1:]]
    assert math.isfinite(loss[-1]) and np.mean(loss[-10:]) < np.mean(loss[:10])
