"""Where DeepPrivacy's keypoints come from: the detector choice (no silent fallback), Keypoint R-CNN's visibility
from its keypoint scores, the per-face source counts of the manifest, and the sources of the training crops."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from safefakes.anonymize.base import build_anonymizer
from safefakes.anonymize.dataset import AnonymizeJob, anonymize_dataset
from safefakes.anonymize.gan import anonymizer as gan_anonymizer
from safefakes.anonymize.gan import crop_readers, keypoints
from safefakes.anonymize.gan.crop_readers import pipa_crop_set, read_crop_folder
from safefakes.anonymize.gan.crops import context_square, keypoints_in_crop
from safefakes.anonymize.gan.cropsets import CROP_KEYPOINT_CHOICES, SOURCE_DLIB_DERIVED
from safefakes.anonymize.gan.deepprivacy import DeepPrivacyGenerator
from safefakes.anonymize.gan.deepprivacy_training import DeepPrivacyHparams
from safefakes.anonymize.gan.keypoints import (
    KEYPOINT_RCNN_WEIGHTS,
    KEYPOINT_VISIBLE_LOGIT,
    MIN_PERSON_SCORE,
    FaceLandmarkDetail,
    choose_keypoint_detector,
    keypoints7_from_rcnn_output,
    landmark_source_counts,
    parse_face_detail,
    rcnn_people_keypoints,
)
from safefakes.anonymize.gan.recipe import get_recipe
from safefakes.anonymize.gan.training import GanTrainRequest, load_gan_checkpoint, load_training_crops, train_gan, write_gan_checkpoint
from safefakes.cli import main
from safefakes.common.errors import SafefakesError
from safefakes.common.weights import WEIGHTS_DIR_ENV
from safefakes.data.wider import FaceBox, FaceExtras, ImageAnnotation, WiderLayout, write_bbx_gt, write_extras

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TINY_MODEL = {"resolution": 16, "max_channels": 16, "min_channels": 8, "full_width_until": 8, "latent_channels": 4}
TINY_TRAIN = {"batch_size": 4, "transition_images": 8, "stabilization_images": 8, "min_face_size": 12, "log_every": 1, "state_every": 2}
COCO_KEYPOINTS = 17
#: The untrained Keypoint R-CNN runs on small images (its transform resizes to this side) and keeps this many people.
UNTRAINED_RCNN_SIDE = 96
UNTRAINED_RCNN_PEOPLE = 3


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny DeepPrivacy generator checkpoint."""
    torch.manual_seed(0)
    hparams = DeepPrivacyHparams.from_dict({"model": TINY_MODEL, "train": TINY_TRAIN})
    path = tmp_path_factory.mktemp("ckpt") / "iter_1.pt"
    write_gan_checkpoint(path, "deepprivacy", DeepPrivacyGenerator(hparams.model), hparams, 1, TINY_MODEL["resolution"], 1.0, 0)
    return path


@pytest.fixture
def no_keypoint_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache and no extra weight folder: Keypoint R-CNN's weights are nowhere. Returns the hub folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


@pytest.fixture
def keypoint_weights_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file where Keypoint R-CNN's weights belong (the choice only looks for it; nothing here loads it)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / KEYPOINT_RCNN_WEIGHTS).write_bytes(b"placeholder")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(folder))
    return folder


def _preset_method_params(config_file: Path, method: str) -> dict:
    """A preset's parameters of one anonymization method."""
    return dict(yaml.safe_load(config_file.read_text(encoding="utf-8"))["anonymize"]["methods"][method] or {})


def _points7_at(face: FaceBox) -> np.ndarray:
    """Seven visible keypoints spread inside ``face`` (image pixels)."""
    u = np.array([0.5, 0.65, 0.35, 0.8, 0.2, 0.9, 0.1])
    v = np.array([0.55, 0.4, 0.4, 0.45, 0.45, 0.95, 0.95])
    return np.stack([face.x + u * face.w, face.y + v * face.h, np.ones(7)], axis=1)


class StandInDetector:
    """A keypoint detector that finds points on the first face it is shown and nothing on the others."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    def detect(self, image: np.ndarray, faces: list[FaceBox]) -> list[np.ndarray | None]:
        self.calls += 1
        return [_points7_at(face) if i == 0 else None for i, face in enumerate(faces)]


# ---------------------------------------------------------------------------------------------- Keypoint R-CNN visibility


def test_rcnn_visibility_comes_from_the_keypoint_scores() -> None:
    points = np.zeros((2, COCO_KEYPOINTS, 3))
    points[..., 0], points[..., 1], points[..., 2] = np.arange(COCO_KEYPOINTS), 100 + np.arange(COCO_KEYPOINTS), 1  # torchvision: always 1
    scores = np.full((2, COCO_KEYPOINTS), -1.0)
    scores[0, :7] = [5.0, KEYPOINT_VISIBLE_LOGIT, 2.5, -3.0, 0.0, 9.0, 1.99]
    people = rcnn_people_keypoints(points, scores, np.array([0.9, MIN_PERSON_SCORE - 0.01]))
    assert len(people) == 1, "a person below the person score is not kept"
    np.testing.assert_array_equal(people[0][:, :2], points[0, :7, :2])
    assert people[0][:, 2].tolist() == [1, 0, 1, 0, 0, 1, 0]  # visible only above the threshold, whatever keypoints[..., 2] says
    output = {
        "keypoints": torch.from_numpy(points).float(),
        "keypoints_scores": torch.from_numpy(scores).float(),
        "scores": torch.tensor([0.9, 0.8]),
        "boxes": torch.zeros(2, 4),
    }
    assert [person[:, 2].tolist() for person in keypoints7_from_rcnn_output(output)] == [[1, 0, 1, 0, 0, 1, 0], [0] * 7]
    assert rcnn_people_keypoints(points, scores, [0.9, 0.9], visible_logit=-2.0)[1][:, 2].all()
    with pytest.raises(SafefakesError, match="lacks keypoints_scores"):
        keypoints7_from_rcnn_output({"keypoints": output["keypoints"], "scores": output["scores"]})
    with pytest.raises(SafefakesError, match="expected keypoints"):
        rcnn_people_keypoints(points[:, :7], scores, [0.9, 0.8])


def test_untrained_torchvision_keypoint_rcnn_output_converts_with_score_visibility() -> None:
    from torchvision.models.detection import keypointrcnn_resnet50_fpn

    torch.manual_seed(0)
    model = keypointrcnn_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        min_size=UNTRAINED_RCNN_SIDE,
        max_size=UNTRAINED_RCNN_SIDE,
        box_score_thresh=0.0,
        box_detections_per_img=UNTRAINED_RCNN_PEOPLE,
    ).eval()
    with torch.inference_mode():
        output = model([torch.rand(3, UNTRAINED_RCNN_SIDE, UNTRAINED_RCNN_SIDE)])[0]
    assert len(output["scores"]) > 0 and (output["keypoints"][..., 2] == 1).all()  # torchvision's own visibility column says nothing
    people = rcnn_people_keypoints(output["keypoints"], output["keypoints_scores"], output["scores"], min_person_score=0.0)
    assert len(people) == len(output["scores"])
    for person, points, scores in zip(people, output["keypoints"], output["keypoints_scores"]):
        np.testing.assert_allclose(person[:, :2], points[:7, :2].numpy())
        assert person[:, 2].tolist() == (scores[:7] > KEYPOINT_VISIBLE_LOGIT).float().tolist()


# ---------------------------------------------------------------------------------------------- the detector choice


def test_detector_choice_uses_rcnn_when_its_weights_are_there(keypoint_weights_present: Path) -> None:
    choice = choose_keypoint_detector("auto", "mtcnn")
    assert (choice.primary, choice.detector, choice.used_fallback, choice.reason) == ("rcnn", "rcnn", False, "")
    assert "landmark detector rcnn" in choice.summary()


def test_detector_choice_without_weights_follows_keypoint_fallback(no_keypoint_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SafefakesError, match="keypoint_fallback mtcnn or none"):
        choose_keypoint_detector("auto", "error")
    none = choose_keypoint_detector("rcnn", "none")
    assert none.detector == "none" and none.used_fallback and "safefakes fetch-weights --only keypointrcnn_coco" in none.reason
    assert choose_keypoint_detector("none", "error").detector == "none"
    with pytest.raises(SafefakesError, match="keypoint_fallback must be one of"):
        choose_keypoint_detector("rcnn", "dlib")
    with pytest.raises(SafefakesError, match="unknown keypoint source"):
        choose_keypoint_detector("sonar", "none")
    monkeypatch.setattr(keypoints.importlib.util, "find_spec", lambda name: None)  # facenet-pytorch absent too
    with pytest.raises(SafefakesError, match="keypoint_fallback mtcnn cannot run either: .*facenet-pytorch"):
        choose_keypoint_detector("auto", "mtcnn")
    with pytest.raises(SafefakesError, match="keypoint_fallback must be one of error, none"):
        build_anonymizer("ciagan", {"keypoint_fallback": "mtcnn"})  # the 68-landmark GANs have no MTCNN stand-in


def test_paper_preset_without_weights_refuses_in_one_line_naming_fetch_weights(
    no_keypoint_weights: Path, gan_synth_root: Path, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = _preset_method_params(PROJECT_ROOT / "config" / "paper.yaml", "deepprivacy")
    assert params == {"keypoint_source": "rcnn", "keypoint_fallback": "error"}
    out = tmp_path / "out"
    argv = ["anonymize", "--method", "deepprivacy", "--checkpoint", str(tiny_checkpoint), "--wider-root", str(gan_synth_root), "--split", "train"]
    argv += ["--out", str(out), "--param", "device=cpu", *[part for key, value in params.items() for part in ("--param", f"{key}={value}")]]
    assert main(argv) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: keypoint_source rcnn: Keypoint R-CNN weights not found at ")
    assert f"'safefakes fetch-weights --only keypointrcnn_coco --out {no_keypoint_weights}'" in error and "keypoint_fallback mtcnn or none" in error
    assert not out.exists()
    with pytest.raises(SafefakesError, match="fetch-weights"):  # the code default refuses as well: only a config allows a stand-in
        build_anonymizer("deepprivacy", {"checkpoint": str(tiny_checkpoint), "device": "cpu"})


# ---------------------------------------------------------------------------------------------- the run: logged once, recorded, counted

#: Two images: faces with synthetic keypoints, faces without (the detector's), and one under min_face_size.
IMAGE_FACES = {
    "0--E/a.jpg": [(10, 10, 30, 34, True), (60, 30, 24, 24, False), (100, 80, 6, 6, False)],
    "0--E/b.jpg": [(20, 20, 28, 28, True), (70, 40, 30, 30, False), (110, 60, 26, 26, True)],
}


def _dataset_with_and_without_keypoints(root: Path) -> Path:
    """A WIDER root (train split) whose faces carry keypoints where IMAGE_FACES says so."""
    layout = WiderLayout(root)
    annotations, extras = [], {}
    rng = np.random.default_rng(0)
    for name, faces in IMAGE_FACES.items():
        path = layout.images_dir("train") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
        boxes = [FaceBox(x, y, w, h) for x, y, w, h, _ in faces]
        annotations.append(ImageAnnotation(name, boxes))
        extras[name] = [FaceExtras(keypoints7=_points7_at(box).tolist() if has else None) for box, (*_, has) in zip(boxes, faces)]
    write_bbx_gt(layout.annotation_file("train"), annotations)
    write_extras(layout.extras_file("train"), extras)
    return root


def test_demo_preset_fallback_is_explicit_logged_once_recorded_and_counted_per_face(
    no_keypoint_weights: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("facenet_pytorch")
    params = _preset_method_params(PROJECT_ROOT / "config.yaml", "deepprivacy")
    assert params == {"keypoint_fallback": "mtcnn"}
    built: list[StandInDetector] = []
    monkeypatch.setattr(gan_anonymizer, "build_keypoint_detector", lambda name, device: built.append(StandInDetector(name)) or built[-1])
    root = _dataset_with_and_without_keypoints(tmp_path / "wider")
    job = AnonymizeJob(root, "train", tmp_path / "out", "deepprivacy", {**params, "checkpoint": str(tiny_checkpoint), "device": "cpu", "batch_images": 1})
    with caplog.at_level(logging.INFO):
        manifest = anonymize_dataset(job)
    record = manifest["method_record"]["landmarks"]
    assert (record["requested"], record["primary"], record["fallback"], record["detector"], record["used_fallback"]) == ("auto", "rcnn", "mtcnn", "mtcnn", True)
    assert "safefakes fetch-weights" in record["reason"] and record["dataset_landmarks"] is True
    announced = [r for r in caplog.records if "instead of keypoint_source auto" in r.getMessage()]
    assert len(announced) == 1 and announced[0].levelno == logging.WARNING, "the stand-in is announced once per run, not per face"
    assert [detector.name for detector in built] == ["mtcnn"] and built[0].calls == len(IMAGE_FACES)
    counts = manifest["counts"]
    # 3 faces carry synthetic keypoints; the 2 without (one per image, the first each detector call sees) get the stand-in's
    assert counts["landmark_sources"] == {"dataset": 3, "mtcnn": 2}
    assert sum(counts["landmark_sources"].values()) == counts["faces_anonymized"] == 5
    assert counts["faces_skipped"] == {"below_min_face_size": 1}
    assert landmark_source_counts(counts["face_details"]) == counts["landmark_sources"]
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk["counts"]["landmark_sources"] == counts["landmark_sources"] and on_disk["method_record"] == manifest["method_record"]


def test_fallback_none_runs_no_detector_and_counts_the_faces_without_keypoints(no_keypoint_weights: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    root = _dataset_with_and_without_keypoints(tmp_path / "wider")
    params = {"checkpoint": str(tiny_checkpoint), "device": "cpu", "keypoint_source": "rcnn", "keypoint_fallback": "none"}
    manifest = anonymize_dataset(AnonymizeJob(root, "train", tmp_path / "out", "deepprivacy", params))
    assert manifest["method_record"]["landmarks"]["detector"] == "none"
    assert manifest["counts"]["landmark_sources"] == {"dataset": 3, "none": 2}


def test_face_details_round_trip_and_count_blackouts_apart() -> None:
    detail = FaceLandmarkDetail("rcnn", "20-50")
    assert detail.text() == "kp=rcnn,size=20-50" and parse_face_detail(detail.text()) == detail
    blacked = FaceLandmarkDetail("none", "10-20", blacked_out=True)
    assert blacked.text() == "kp=none,size=10-20,fallback=blackout" and parse_face_detail(blacked.text()) == blacked
    details = {"kp=dataset,size=10-20": 4, "kp=rcnn,size=20-50": 2, "kp=rcnn,size=>=100": 1, blacked.text(): 3, "eyes=dataset": 9}
    assert landmark_source_counts(details) == {"blackout": 3, "dataset": 4, "rcnn": 3}
    with pytest.raises(SafefakesError, match="expected kp=<source>"):
        parse_face_detail("kp=rcnn")


# ---------------------------------------------------------------------------------------------- training crops

PIPA_PHOTO_SIDE = 160
#: Two training heads of one PIPA photo: (x, y, w, h).
PIPA_HEADS = [(20, 20, 40, 40), (90, 80, 44, 44)]
CROP_RESOLUTION = 16


def _pipa_release(root: Path) -> Path:
    """A one-photo PIPA release (noise pixels: the detectors here are stand-ins) with two training heads."""
    (root / "train").mkdir(parents=True)
    cv2.imwrite(str(root / "train" / "1_1.jpg"), np.random.default_rng(1).integers(0, 255, (PIPA_PHOTO_SIDE, PIPA_PHOTO_SIDE, 3), dtype=np.uint8))
    (root / "annotations").mkdir()
    lines = [f"1 1 {x} {y} {w} {h} {7 + i} 1" for i, (x, y, w, h) in enumerate(PIPA_HEADS)]
    (root / "annotations" / "index.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


class StandInLandmarks68:
    """A 68-landmark source that places a grid of points in the first face and finds nothing in the others."""

    name = "dlib"

    def detect(self, image: np.ndarray, faces: list[FaceBox]) -> list[np.ndarray | None]:
        found: list[np.ndarray | None] = []
        for i, face in enumerate(faces):
            if i:
                found.append(None)
                continue
            grid = np.linspace(0.1, 0.9, 68)
            found.append(np.stack([face.x + grid * face.w, face.y + grid[::-1] * face.h, np.ones(68)], axis=1))
        return found


def _heads() -> list[FaceBox]:
    return [FaceBox(*head) for head in PIPA_HEADS]


def test_crop_keypoints_need_an_explicit_choice_and_dlib_derived_points_are_counted(
    no_keypoint_weights: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _pipa_release(tmp_path / "pipa")
    with pytest.raises(SafefakesError) as refused:
        read_crop_folder(root, CROP_RESOLUTION, 2.0, 10, keypoints7="rcnn")
    message = str(refused.value)
    assert "\n" not in message and f"safefakes fetch-weights --only keypointrcnn_coco --out {no_keypoint_weights}" in message
    assert "keypoints7 rcnn_or_dlib or dlib" in message
    with pytest.raises(SafefakesError, match="keypoints7 must be one of rcnn, dlib, rcnn_or_dlib"):
        read_crop_folder(root, CROP_RESOLUTION, 2.0, 10, keypoints7="mtcnn")
    with caplog.at_level(logging.INFO):
        crops = pipa_crop_set(root, CROP_RESOLUTION, 2.0, 10, landmark_source=StandInLandmarks68(), keypoints7="rcnn_or_dlib")
    assert sum("instead of Keypoint R-CNN" in r.getMessage() for r in caplog.records) == 1
    assert crops.keypoint_sources.tolist() == [SOURCE_DLIB_DERIVED, "none"]
    assert crops.keypoint_source_counts() == {SOURCE_DLIB_DERIVED: 1, "none": 1}
    assert crops.keypoints[0, :5, 2].all() and not crops.keypoints[1].any()
    kept = crops.require("keypoints7")
    assert kept.keypoint_source_counts() == {SOURCE_DLIB_DERIVED: 1}


def test_crop_keypoints_from_rcnn_when_its_weights_are_there_recorded_in_the_checkpoint(
    keypoint_weights_present: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(crop_readers, "KeypointRCNNSource", lambda device: StandInDetector("rcnn"))
    monkeypatch.setattr(crop_readers, "shared_dlib_landmarks", StandInLandmarks68)
    root = _pipa_release(tmp_path / "pipa")
    crops = pipa_crop_set(root, CROP_RESOLUTION, 2.0, 10, keypoints7="rcnn_or_dlib")
    assert crops.keypoint_sources.tolist() == ["rcnn", "none"]
    square = context_square(_heads()[0], 2.0)
    np.testing.assert_allclose(crops.keypoints[0], keypoints_in_crop(_points7_at(_heads()[0]), square), atol=1e-6)
    request = GanTrainRequest(
        "deepprivacy", root, tmp_path / "ckpt", tmp_path / "state", {"model": TINY_MODEL, "train": TINY_TRAIN}, (1,), device="cpu", keypoints7="rcnn"
    )
    with caplog.at_level(logging.INFO):
        (checkpoint,) = train_gan(request)
    assert load_gan_checkpoint(checkpoint).train_keypoint_sources == {"rcnn": 1}  # the crop without keypoints is left out
    assert any("training crops per 7-keypoint source: rcnn 1" in r.getMessage() for r in caplog.records)


def test_gans_without_the_7_keypoints_do_not_ask_for_keypoint_rcnn(no_keypoint_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crop_readers, "shared_dlib_landmarks", StandInLandmarks68)
    recipe = get_recipe("sun2018")
    hparams = recipe.parse_hparams({"model": {"resolution": CROP_RESOLUTION}, "train": {"min_face_size": 10}})
    crops = load_training_crops(recipe, hparams, _pipa_release(tmp_path / "pipa"), None, 0, keypoints7="rcnn")
    assert crops.keypoint_source_counts() == {SOURCE_DLIB_DERIVED: 1}


def test_presets_and_schema_name_the_crop_keypoint_choices() -> None:
    schema = yaml.safe_load((PROJECT_ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text(encoding="utf-8"))
    train_set = schema["properties"]["gans"]["properties"]["train_sets"]["additionalProperties"]
    assert tuple(train_set["properties"]["keypoints7"]["enum"]) == CROP_KEYPOINT_CHOICES
    paper = yaml.safe_load((PROJECT_ROOT / "config" / "paper.yaml").read_text(encoding="utf-8"))
    assert paper["gans"]["train_sets"]["pipa"]["keypoints7"] == "rcnn"
