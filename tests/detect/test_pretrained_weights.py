"""Pretrained weights are never skipped silently: the detectors' weight files, the refusal when one is missing,
training from random values with ``pretrained: none``, and the initialisation record from checkpoint to figure."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from torchvision.models import ResNet18_Weights, ResNet34_Weights, ResNet50_Weights, ResNet101_Weights, VGG16_BN_Weights, VGG16_Weights, resnet18
from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights, KeypointRCNN_ResNet50_FPN_Weights

from safefakes.cli import main
from safefakes.common import weights
from safefakes.common.errors import SafefakesError
from safefakes.data.predictions import METADATA_FILE_NAME, read_prediction_metadata
from safefakes.data.synth import EventStyle, SynthConfig, synthesize
from safefakes.detect.predict import predict
from safefakes.detect.train import TrainRequest, read_checkpoint, train

IMAGE_WIDTH = 128
#: A tiny TinaFace: the demo's code path with fewer channels, no deformable convolutions, from random values.
TINY_TINAFACE = {
    "model": {
        "pretrained": "none",
        "width_scale": 0.125,
        "deformable_stages": [False, False, False, False],
        "head_stacked_convs": 1,
        "inference": {"test_short_side_max": None, "test_long_side_max": None, "pre_nms_top_k": 200},
    },
    "augment": {"output_size": IMAGE_WIDTH},
    "train": {"batch_size": 2, "num_workers": 0, "optimizer": {"name": "adamw", "lr": 1e-3}, "schedule": {"name": "constant"}},
}
#: A tiny Faster R-CNN on a ResNet-18 body (the smallest backbone torchvision has ImageNet weights for).
TINY_FASTER_RCNN = {
    "model": {
        "backbone": "resnet18",
        "min_size": IMAGE_WIDTH,
        "max_size": IMAGE_WIDTH,
        "fpn_channels": 32,
        "box_representation_size": 64,
        "rpn_pre_nms_top_n_train": 100,
        "rpn_post_nms_top_n_train": 50,
        "rpn_pre_nms_top_n_test": 100,
        "rpn_post_nms_top_n_test": 50,
        "box_batch_size_per_image": 32,
    },
    "augment": {"output_size": IMAGE_WIDTH},
    "train": {"batch_size": 2, "num_workers": 0, "optimizer": {"name": "adamw", "lr": 1e-3}, "schedule": {"name": "constant"}},
}


@pytest.fixture(autouse=True)
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``TORCH_HOME`` in a fresh folder (so the torch hub cache is empty) and no extra weights folder; one thread."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(weights.WEIGHTS_DIR_ENV, raising=False)
    torch.set_num_threads(1)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two training and two validation images with one or two large faces each."""
    root = tmp_path_factory.mktemp("synth") / "wider"
    config = SynthConfig(image_width=IMAGE_WIDTH, events=(EventStyle("13--Interview", 1, 2),), portrait_face_px=300.0, p_invalid=0.0)
    synthesize(root, 4, seed=5, val_images=2, config=config)
    return root


def _request(detector: str, root: Path, out: Path, hparams: dict) -> TrainRequest:
    return TrainRequest(detector, root, out / "checkpoints", out / "state", hparams, checkpoint_iterations=(1,), split="val", seed=0, device="cpu")


# ----------------------------------------------------------------------------------------- weight files


def test_detector_weight_files_are_torchvision_s_with_their_name_s_sha256_prefix() -> None:
    expected_urls = {
        "vgg16": VGG16_Weights.IMAGENET1K_V1.url,
        "vgg16_bn": VGG16_BN_Weights.IMAGENET1K_V1.url,
        "resnet18": ResNet18_Weights.IMAGENET1K_V1.url,
        "resnet34": ResNet34_Weights.IMAGENET1K_V1.url,
        "resnet50": ResNet50_Weights.IMAGENET1K_V1.url,
        "resnet101": ResNet101_Weights.IMAGENET1K_V1.url,
        "fasterrcnn_coco": FasterRCNN_ResNet50_FPN_Weights.COCO_V1.url,
        "keypointrcnn_coco": KeypointRCNN_ResNet50_FPN_Weights.COCO_V1.url,
    }
    for key, url in expected_urls.items():
        spec = weights.WEIGHT_FILES[key]
        assert spec.url == url and spec.filename == url.rsplit("/", 1)[-1]
        assert re.fullmatch(r"[0-9a-f]{8}", spec.sha256) and spec.filename.endswith(f"-{spec.sha256}.pth")


def test_fetch_keeps_a_detector_file_only_when_its_sha256_starts_with_the_name_s_prefix(tmp_path: Path) -> None:
    """The download path on local bytes (no network here): wrong bytes are refused and not kept."""
    payload = b"not the VGG-16 weights" * 10
    with pytest.raises(SafefakesError, match="does not match 397923af"):
        weights.fetch_weight(weights.WEIGHT_FILES["vgg16"], tmp_path / "out", opener=lambda url: io.BytesIO(payload))
    assert not list((tmp_path / "out").iterdir())
    matching = dataclasses.replace(weights.WEIGHT_FILES["vgg16"], sha256=weights.hashlib.sha256(payload).hexdigest()[:8])
    assert weights.fetch_weight(matching, tmp_path / "out", opener=lambda url: io.BytesIO(payload)).read_bytes() == payload


def test_resolve_pretrained_finds_verifies_and_records_a_local_file(empty_hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = empty_hub_cache / "resnet50-0676ba61.pth"
    with pytest.raises(SafefakesError) as missing:
        weights.resolve_pretrained("resnet50", "imagenet", "tinaface")
    message = str(missing.value)
    assert "\n" not in message and str(expected) in message
    assert f"safefakes fetch-weights --only resnet50 --out {empty_hub_cache}" in message and "pretrained: none" in message

    elsewhere = tmp_path / "weights"
    elsewhere.mkdir()
    (elsewhere / expected.name).write_bytes(b"some other file")
    monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(elsewhere))
    with pytest.raises(SafefakesError, match="not the expected 0676ba61"):
        weights.resolve_pretrained("resnet50", "imagenet", "tinaface")
    digest = weights.sha256_of_file(elsewhere / expected.name)
    monkeypatch.setitem(weights.WEIGHT_FILES, "resnet50", dataclasses.replace(weights.WEIGHT_FILES["resnet50"], sha256=digest))
    path, initialisation = weights.resolve_pretrained("resnet50", "imagenet", "tinaface")
    assert path == elsewhere / expected.name
    assert initialisation.to_dict() == {"pretrained": "imagenet", "weights_file": expected.name, "sha256": digest}
    assert initialisation.label == f"{expected.name} sha256:{digest}"
    assert weights.Initialisation.from_dict(initialisation.to_dict()) == initialisation
    with pytest.raises(SafefakesError, match="inconsistent"):
        weights.Initialisation("imagenet")


def test_keypoint_rcnn_source_names_its_file_and_fetch_command(empty_hub_cache: Path) -> None:
    from safefakes.anonymize.gan.keypoints import build_keypoint_source

    expected = empty_hub_cache / "keypointrcnn_resnet50_fpn_coco-fc266e95.pth"
    with pytest.raises(SafefakesError, match=f"{re.escape(str(expected))}.*'safefakes fetch-weights --only keypointrcnn_coco --out "):
        build_keypoint_source("rcnn")


# ----------------------------------------------------------------------------------------- refusal before training


@pytest.mark.parametrize(
    ("detector", "filename"), [("dsfd", "vgg16-397923af.pth"), ("tinaface", "resnet50-0676ba61.pth"), ("faster_rcnn", "resnet50-0676ba61.pth")]
)
def test_train_with_paper_defaults_and_an_empty_hub_cache_stops_in_one_line_before_training(
    detector: str, filename: str, synth_root: Path, empty_hub_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--detector", detector, "--wider-root", str(synth_root), "--split", "val", "--iterations", "1"]
    assert main([*argv, "--checkpoints", str(out / "checkpoints"), "--state-dir", str(out / "state"), "--device", "cpu"]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1, error
    key = filename.split("-")[0]
    assert str(empty_hub_cache / filename) in error[0] and f"'safefakes fetch-weights --only {key} --out {empty_hub_cache}'" in error[0]
    assert not (out / "checkpoints").exists() and not (out / "state").exists()


# ----------------------------------------------------------------------------------------- the record


def test_training_from_random_values_records_none_up_to_the_figure_table(synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (checkpoint,) = train(_request("tinaface", synth_root, tmp_path, TINY_TINAFACE))
    saved = read_checkpoint(checkpoint)
    assert saved.initialisation == weights.Initialisation() and saved.iteration == 1

    pred_dir = tmp_path / "predictions"
    assert predict(checkpoint, synth_root, pred_dir, split="val", device="cpu") == 2
    metadata = read_prediction_metadata(pred_dir)
    assert metadata is not None and (metadata.detector, metadata.iteration, metadata.initialisation.label) == ("tinaface", 1, "none")

    evaluation = tmp_path / "original.json"
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(synth_root / "ground_truth"), "--out", str(evaluation)]) == 0
    recorded = json.loads(evaluation.read_text())
    assert recorded["initialisation"] == {"pretrained": "none", "weights_file": None, "sha256": None}
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == recorded

    fig4_csv = tmp_path / "fig4.csv"
    argv = ["plot-fig4", "--detector", "tinaface", "--iterations", "1", "--result", f"original={evaluation}"]
    assert main([*argv, "--out-png", str(tmp_path / "fig4.png"), "--out-csv", str(fig4_csv)]) == 0
    assert list(pd.read_csv(fig4_csv)["initialisation"]) == ["none"]


def test_a_pretrained_start_is_recorded_by_file_name_and_sha256(
    synth_root: Path, empty_hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local stand-in for torchvision's ResNet-18 file (its checksum entered as the expected one): the checkpoint
    names it, and prediction does not need the file any more (the checkpoint's weights replace it)."""
    empty_hub_cache.mkdir(parents=True)
    torch.manual_seed(1)
    local_file = empty_hub_cache / weights.WEIGHT_FILES["resnet18"].filename
    torch.save(resnet18().state_dict(), local_file)
    digest = weights.sha256_of_file(local_file)
    monkeypatch.setitem(weights.WEIGHT_FILES, "resnet18", dataclasses.replace(weights.WEIGHT_FILES["resnet18"], sha256=digest))
    hparams = {**TINY_FASTER_RCNN, "model": {**TINY_FASTER_RCNN["model"], "pretrained": "imagenet"}}

    (checkpoint,) = train(_request("faster_rcnn", synth_root, tmp_path, hparams))
    assert read_checkpoint(checkpoint).initialisation == weights.Initialisation("imagenet", local_file.name, digest)
    local_file.unlink()
    assert predict(checkpoint, synth_root, tmp_path / "predictions", split="val", device="cpu") == 2
    assert json.loads((tmp_path / "predictions" / METADATA_FILE_NAME).read_text())["initialisation"]["sha256"] == digest


# ----------------------------------------------------------------------------------------- figures


def _evaluation(path: Path, initialisation: weights.Initialisation | None) -> Path:
    values: dict[str, object] = {"easy": 0.5, "medium": 0.4, "hard": 0.2}
    if initialisation is not None:
        values["initialisation"] = initialisation.to_dict()
    path.write_text(json.dumps(values))
    return path


def test_a_figure_of_detectors_that_started_differently_is_refused_naming_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    imagenet = weights.Initialisation("imagenet", "vgg16-397923af.pth", "397923af" + "0" * 56)
    original = _evaluation(tmp_path / "original.json", imagenet)
    blur = _evaluation(tmp_path / "blur.json", weights.Initialisation())
    argv = ["plot-fig6", "--detector", "dsfd", "--result", f"original@10={original}", "--result", f"blur@10={blur}"]
    assert main([*argv, "--out-png", str(tmp_path / "fig6.png"), "--out-csv", str(tmp_path / "fig6.csv")]) == 1
    error = capsys.readouterr().err
    assert "started differently" in error and f"{imagenet.label}: original@10" in error and "none: blur@10" in error
    assert not (tmp_path / "fig6.png").exists() and not (tmp_path / "fig6.csv").exists()

    unrecorded = _evaluation(tmp_path / "unrecorded.json", None)  # e.g. predictions written by another tool
    argv = ["plot-fig6", "--detector", "dsfd", "--result", f"original@10={original}", "--result", f"blur@10={unrecorded}"]
    assert main([*argv, "--out-png", str(tmp_path / "fig6.png"), "--out-csv", str(tmp_path / "fig6.csv")]) == 1
    assert "unrecorded: blur@10" in capsys.readouterr().err

    same = _evaluation(tmp_path / "blur_imagenet.json", imagenet)
    argv = ["plot-fig6", "--detector", "dsfd", "--result", f"original@10={original}", "--result", f"blur@10={same}"]
    assert main([*argv, "--out-png", str(tmp_path / "fig6.png"), "--out-csv", str(tmp_path / "fig6.csv")]) == 0
    assert set(pd.read_csv(tmp_path / "fig6.csv")["initialisation"]) == {imagenet.label}


def test_fig9_and_table2_refuse_detectors_that_started_differently(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from safefakes.evaluate.correlation import build_method_table

    imagenet = weights.Initialisation("imagenet", "resnet50-0676ba61.pth", "0676ba61" + "1" * 56)
    trained = [_evaluation(tmp_path / f"gan{index}.json", imagenet) for index in range(2)]
    reference = _evaluation(tmp_path / "reference.json", weights.Initialisation())
    argv = ["plot-fig9", "--detector", "tinaface", "--result", f"800k={trained[0]}", "--result", f"4M={trained[1]}", "--reference", f"original={reference}"]
    assert main([*argv, "--out-png", str(tmp_path / "fig9.png"), "--out-csv", str(tmp_path / "fig9.csv")]) == 1
    assert "none: original (reference)" in capsys.readouterr().err and not (tmp_path / "fig9.csv").exists()

    metrics = [{"l1": 0.1}, {"l1": 0.2}]
    aps = [json.loads(path.read_text()) for path in (trained[0], reference)]
    with pytest.raises(SafefakesError, match=f"{re.escape(imagenet.label)}: blur; none: blackout"):
        build_method_table(["blur", "blackout"], metrics, aps)
    assert list(build_method_table(["blur", "pixelate"], metrics, [aps[0], aps[0]]).index) == ["blur", "pixelate"]
