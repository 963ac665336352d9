"""DeepPrivacy: crops, keypoints, model shapes, losses, exact resume, the checkpoints' training-crop count, privacy and
the dataset command (whose manifest records the generator)."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from gan_helpers import inside_boxes

from safefakes.anonymize import gan_cli
from safefakes.anonymize.base import SKIP_BELOW_MIN_SIZE, build_anonymizer
from safefakes.anonymize.dataset import AnonymizeJob, anonymize_dataset
from safefakes.anonymize.gan.crops import block_boxes, context_square, keypoints_in_crop, make_face_crop, paste_inside_box
from safefakes.anonymize.gan.cropsets import fdf_crop_set, load_crop_set, select_crops
from safefakes.anonymize.gan.deepprivacy import (
    DeepPrivacyDiscriminator,
    DeepPrivacyGenerator,
    DeepPrivacyModelConfig,
    discriminator_loss,
    generator_loss,
    pose_maps,
)
from safefakes.anonymize.gan.deepprivacy_training import DeepPrivacyHparams, ProgressiveSchedule, make_batch
from safefakes.anonymize.gan.keypoints import build_keypoint_source, match_people_to_faces, size_bin
from safefakes.anonymize.gan.recipe import GAN_RECIPES, GanTrainConfig, GrowthPhase, get_recipe
from safefakes.anonymize.gan.training import (
    GanCheckpoint,
    GanTrainRequest,
    iteration_rngs,
    load_gan_checkpoint,
    load_training_crops,
    train_gan,
    write_gan_checkpoint,
)
from safefakes.cli import main
from safefakes.common.errors import SafefakesError
from safefakes.data.wider import FaceBox, FaceExtras
from safefakes.plots.gan_figures import generator_training_faces

TINY_MODEL = {"resolution": 16, "max_channels": 16, "min_channels": 8, "full_width_until": 8, "latent_channels": 4}
TINY_TRAIN = {"batch_size": 4, "transition_images": 8, "stabilization_images": 8, "min_face_size": 12, "log_every": 1, "state_every": 2}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny generator checkpoint (the privacy properties do not depend on training)."""
    torch.manual_seed(0)
    hparams = DeepPrivacyHparams.from_dict({"model": TINY_MODEL, "train": TINY_TRAIN})
    path = tmp_path_factory.mktemp("ckpt") / "iter_1.pt"
    write_gan_checkpoint(path, "deepprivacy", DeepPrivacyGenerator(hparams.model), hparams, 1, 16, 1.0, 0)
    return path


# ---------------------------------------------------------------------------------------------- crops, keypoints


def test_crop_square_keypoints_and_paste_only_inside_box() -> None:
    face = FaceBox(10, 20, 8, 12)
    square = context_square(face, 2.0)
    assert square.side == 24 and (square.x0, square.y0) == (2, 14)
    points = keypoints_in_crop(np.array([[14.0, 26.0, 1], [100.0, 26.0, 1], [14.0, 26.0, 0]]), square)
    assert np.allclose(points[0, :2], [12 / 24, 12 / 24]) and points[:, 2].tolist() == [1, 0, 0]
    image = np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)
    out = image.copy()
    assert paste_inside_box(out, np.full((16, 16, 3), 7, np.uint8), square, face)
    changed = np.any(out != image, axis=2)
    assert (out[20:32, 10:18] == 7).all() and not changed[:20].any() and not changed[:, :10].any() and not changed[32:].any()
    blocked = block_boxes(image, [face, FaceBox(-5, -5, 8, 8)])
    assert (blocked[20:32, 10:18] == 0).all() and (blocked[0:3, 0:3] == 0).all() and np.array_equal(blocked[35:], image[35:])
    crop = make_face_crop(blocked, face, None, 2.0, 16)
    x0, y0, x1, y1 = crop.box
    assert crop.pixels.shape == (16, 16, 3) and (crop.pixels[y0:y1, x0:x1] == 0).all() and crop.keypoints is None


def test_size_bins_and_people_matching() -> None:
    assert [size_bin(s) for s in (5, 10, 19.9, 49, 99, 150)] == ["<10", "10-20", "10-20", "20-50", "50-100", ">=100"]
    faces = [FaceBox(0, 0, 10, 10), FaceBox(50, 50, 10, 10)]
    person_b = np.array([[55, 55, 1], [53, 54, 1], [57, 54, 1], [51, 55, 1], [59, 55, 1], [50, 70, 1], [60, 70, 1]], float)
    person_far = person_b + [200, 200, 0]
    matched = match_people_to_faces([person_far, person_b], faces)
    assert matched[0] is None and matched[1] is person_b
    assert build_keypoint_source("none").detect(np.zeros((8, 8, 3), np.uint8), faces) == [None, None]
    with pytest.raises(SafefakesError):
        build_keypoint_source("bogus")


def test_mtcnn_source_when_installed() -> None:
    pytest.importorskip("facenet_pytorch")
    source = build_keypoint_source("mtcnn")
    found = source.detect(np.full((64, 64, 3), 128, np.uint8), [FaceBox(20, 20, 20, 20)])
    assert found == [None]  # a flat grey image has no face; a found face would be a (7, 3) array with ears/shoulders absent


#: dlib's example portrait (PASCAL VOC) and its two annotated faces (dlib_faces/training.xml), upper face first.
PORTRAIT = "2008_001009.jpg"
PORTRAIT_FACES = [FaceBox(145, 79, 76, 76), FaceBox(125, 214, 90, 91)]
BACKGROUND = FaceBox(5, 400, 60, 60)  # the portrait's dark bottom-left corner, no face
#: MTCNN's points against dlib's annotated eye centres and nose tip, as a share of the box width (measured over
#: dlib's 43 annotated faces: median 0.05, worst 0.10).
MAX_MTCNN_POINT_ERROR = 0.15


def _dlib_faces_with_landmarks(folder: Path) -> list[tuple[str, list[FaceBox], list[np.ndarray]]]:
    """(image file, boxes, (68, 2) points per box) from dlib's annotated example faces."""
    import xml.etree.ElementTree as ET

    images = []
    for name in ("training_with_face_landmarks.xml", "testing_with_face_landmarks.xml"):
        for image in ET.parse(folder / name).getroot().iter("image"):
            boxes, points = [], []
            for box in image.iter("box"):
                boxes.append(FaceBox(int(box.get("left")), int(box.get("top")), int(box.get("width")), int(box.get("height"))))
                parts = sorted(box.iter("part"), key=lambda part: int(part.get("name")))
                points.append(np.array([[float(part.get("x")), float(part.get("y"))] for part in parts]))
            images.append((image.get("file"), boxes, points))
    return images


def _annotated_nose_and_eyes(points68: np.ndarray) -> np.ndarray:
    """Nose tip and the person's left and right eye centres (iBUG 68: 30, 42-47 on the image right, 36-41), in KEYPOINTS_7 order."""
    return np.stack([points68[30], points68[42:48].mean(axis=0), points68[36:42].mean(axis=0)])


def _iou(a: FaceBox, box: np.ndarray) -> float:
    x1, y1, x2, y2 = max(a.x, box[0]), max(a.y, box[1]), min(a.x + a.w, box[2]), min(a.y + a.h, box[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / (a.w * a.h + (box[2] - box[0]) * (box[3] - box[1]) - inter)


def test_mtcnn_finds_the_faces_of_a_real_portrait(shared_data: Path) -> None:
    pytest.importorskip("facenet_pytorch")
    folder = shared_data / "dlib_faces"
    image = cv2.imread(str(folder / PORTRAIT))
    assert image is not None, f"cannot read {folder / PORTRAIT}"
    source = build_keypoint_source("mtcnn")
    # The detector itself, on the whole picture: one confident box on each annotated face.
    boxes, probs = source.detector.detect(np.ascontiguousarray(image[:, :, ::-1]))
    assert boxes is not None and len(boxes) == len(PORTRAIT_FACES) and (probs > 0.9).all()
    for face in PORTRAIT_FACES:
        assert max(_iou(face, box) for box in boxes) >= 0.5, f"no MTCNN box on {face}"
    # The keypoint source: nose and eyes inside each annotated box, at dlib's points, ears and shoulders absent.
    (_, annotated_boxes, annotated_points) = next(entry for entry in _dlib_faces_with_landmarks(folder) if entry[0] == PORTRAIT)
    assert annotated_boxes == PORTRAIT_FACES
    found = source.detect(image, [*PORTRAIT_FACES, BACKGROUND])
    assert found[-1] is None, "a keypoint set was found on the faceless background"
    for face, points68, keypoints in zip(PORTRAIT_FACES, annotated_points, found):
        assert keypoints is not None and keypoints.shape == (7, 3) and keypoints[:, 2].tolist() == [1, 1, 1, 0, 0, 0, 0]
        nose, left_eye, right_eye = keypoints[:3, :2]
        assert all(face.x <= x <= face.x + face.w and face.y <= y <= face.y + face.h for x, y in keypoints[:3, :2])
        assert left_eye[0] > right_eye[0] and max(left_eye[1], right_eye[1]) < nose[1]  # the person's left eye is on the image right
        error = np.linalg.norm(keypoints[:3, :2] - _annotated_nose_and_eyes(points68), axis=1) / face.w
        assert error.max() < MAX_MTCNN_POINT_ERROR, f"{face}: MTCNN points {np.round(error, 3)} box widths from dlib's"


# ---------------------------------------------------------------------------------------------- model


def test_shapes_at_every_stage_and_variants_build() -> None:
    config = DeepPrivacyModelConfig.from_dict({"resolution": 32, "max_channels": 16, "min_channels": 8, "latent_channels": 4})
    assert config.resolutions == [8, 16, 32]
    generator, discriminator = DeepPrivacyGenerator(config), DeepPrivacyDiscriminator(config)
    assert discriminator.input_channels == 6 and discriminator.from_rgb["32"].in_channels == 6
    assert discriminator.blocks["32"].main[0][0].in_channels == config.channels(32) + config.num_keypoints
    for resolution in config.resolutions:
        condition = torch.randn(2, 3, resolution, resolution)
        mask = torch.ones(2, 1, resolution, resolution)
        keypoints = torch.rand(2, 7, 3)
        for alpha in (0.5, 1.0):
            out = generator(condition, mask, keypoints, torch.randn(generator.latent_shape(2)), alpha)
            assert out.shape == (2, 3, resolution, resolution)
            assert discriminator(out, condition, keypoints, alpha).shape == (2,)
    assert torch.equal(out, condition)  # mask 1 everywhere: nothing to generate, the condition comes back
    for flags in ({"discriminator_deep": True}, {"discriminator_wide": True}, {"discriminator_deep": True, "discriminator_wide": True}):
        variant = DeepPrivacyModelConfig.from_dict({"resolution": 16, "max_channels": 16, **flags})
        d = DeepPrivacyDiscriminator(variant)
        assert d(torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16), None).shape == (2,)
        assert (d.blocks["16"].shortcut is not None) == flags.get("discriminator_deep", False)
    assert DeepPrivacyModelConfig().channels(8, wide=True) == round(256 * 2**0.5)
    maps = pose_maps(torch.tensor([[[0.5, 0.25, 1.0], [0.9, 0.9, 0.0]]]), 8, 2, 1, torch.device("cpu"))
    assert maps[0, 0, 2, 4] == 1 and maps.sum() == 1
    with pytest.raises(SafefakesError):
        DeepPrivacyModelConfig.from_dict({"resolution": 24})


def test_progressive_schedule() -> None:
    schedule = ProgressiveSchedule((8, 16, 32), transition_iterations=2, stabilization_iterations=3)
    assert [schedule.at(i) for i in range(1, 14)] == [
        GrowthPhase(8, 1.0),
        GrowthPhase(8, 1.0),
        GrowthPhase(8, 1.0),
        GrowthPhase(16, 0.5),
        GrowthPhase(16, 1.0),
        GrowthPhase(16, 1.0),
        GrowthPhase(16, 1.0),
        GrowthPhase(16, 1.0),
        GrowthPhase(32, 0.5),
        GrowthPhase(32, 1.0),
        GrowthPhase(32, 1.0),
        GrowthPhase(32, 1.0),
        GrowthPhase(32, 1.0),
    ]


def test_every_gan_train_config_extends_the_shared_contract() -> None:
    """The shared loop's fields live on :class:`GanTrainConfig`; every GAN keeps their defaults and sets its own batch size."""
    shared = {field.name: field.default for field in dataclasses.fields(GanTrainConfig) if field.name != "batch_size"}
    batch_sizes = {}
    for gan in GAN_RECIPES:
        train = get_recipe(gan).parse_hparams(None).train
        assert isinstance(train, GanTrainConfig)
        assert {name: getattr(train, name) for name in shared} == shared
        batch_sizes[gan] = train.batch_size
    assert batch_sizes == {"deepprivacy": 128, "ciagan": 16, "sun2018": 64}
    with pytest.raises(SafefakesError, match="min_face_size"):
        get_recipe("sun2018").parse_hparams({"train": {"min_face_size": -1}})


def test_losses_move_in_the_right_direction(gan_synth_root: Path) -> None:
    """A critic trained alone widens its Wasserstein estimate; a generator trained alone lowers its loss."""
    torch.manual_seed(0)
    hparams = DeepPrivacyHparams.from_dict({"model": TINY_MODEL, "train": TINY_TRAIN})
    crops = load_crop_set(gan_synth_root, 16, hparams.train.context_factor, hparams.train.min_face_size, ("keypoints7",))
    numpy_rng, torch_rng = iteration_rngs(0, 1)
    selection = select_crops(crops, numpy_rng.integers(0, len(crops), 8), np.zeros(8, bool))
    batch = make_batch(selection, 16, GrowthPhase(16, 1.0), "black", torch_rng, torch.device("cpu"))
    generator, critic = DeepPrivacyGenerator(hparams.model), DeepPrivacyDiscriminator(hparams.model)
    z, mix = torch.randn(generator.latent_shape(8)), torch.rand(8, 1, 1, 1)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=1e-3, betas=(0.0, 0.99))
    with torch.no_grad():
        fake = generator(batch.condition, batch.mask, batch.keypoints, z)
    estimates = []
    for _ in range(30):
        loss, terms = discriminator_loss(critic, batch.real, fake, batch.condition, batch.keypoints, 1.0, mix, hparams.loss)
        assert np.isfinite(terms["gradient_penalty"]) and terms["gradient_penalty"] >= 0
        estimates.append(terms["wasserstein"])
        critic_opt.zero_grad()
        loss.backward()
        critic_opt.step()
    assert np.mean(estimates[-5:]) > np.mean(estimates[:5]) + 0.1
    critic.requires_grad_(False)
    generator_opt = torch.optim.Adam(generator.parameters(), lr=1e-3, betas=(0.0, 0.99))
    losses = []
    for _ in range(30):
        loss = generator_loss(critic, generator(batch.condition, batch.mask, batch.keypoints, z), batch.condition, batch.keypoints, 1.0)
        losses.append(float(loss.detach()))
        generator_opt.zero_grad()
        loss.backward()
        generator_opt.step()
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.1


# ---------------------------------------------------------------------------------------------- training


def _request(tmp: Path, train_set: Path, iterations: tuple[int, ...], name: str) -> GanTrainRequest:
    return GanTrainRequest(
        "deepprivacy", train_set, tmp / name / "ckpt", tmp / name / "state", {"model": TINY_MODEL, "train": TINY_TRAIN}, iterations, 3, "cpu"
    )


def test_exact_resume_matches_uninterrupted_run(gan_synth_root: Path, tmp_path: Path) -> None:
    straight = train_gan(_request(tmp_path, gan_synth_root, (3, 6), "straight"))
    train_gan(_request(tmp_path, gan_synth_root, (3,), "resumed"))  # "killed" after its state at iteration 3
    resumed = train_gan(_request(tmp_path, gan_synth_root, (3, 6), "resumed"))
    for a, b in zip(straight, resumed):
        first, second = load_gan_checkpoint(a), load_gan_checkpoint(b)
        assert first.iteration == second.iteration
        assert all(torch.equal(first.generator_state[k], second.generator_state[k]) for k in first.generator_state)
    states = [torch.load(tmp_path / n / "state" / "state.pt", weights_only=False) for n in ("straight", "resumed")]
    assert all(torch.equal(states[0]["discriminator"][k], states[1]["discriminator"][k]) for k in states[0]["discriminator"])
    with open(tmp_path / "resumed" / "ckpt" / "train_log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(float(r[k])) for r in rows for k in ("d_loss", "g_loss", "gradient_penalty", "wasserstein"))
    assert load_gan_checkpoint(resumed[-1]).resolution == 16  # 2 iterations at 8 px, then the 16 px fade-in


def test_checkpoints_record_the_crops_the_run_trained_on(gan_synth_root: Path, tmp_path: Path) -> None:
    recipe = get_recipe("deepprivacy")
    full_request = _request(tmp_path, gan_synth_root, (1,), "full")
    available = len(load_training_crops(recipe, recipe.parse_hparams(full_request.hparams), gan_synth_root, None, full_request.seed))
    assert available > 5
    (full,) = train_gan(full_request)
    (cut,) = train_gan(dataclasses.replace(_request(tmp_path, gan_synth_root, (1,), "cut"), max_faces=5))  # Fig. 7's max_faces
    assert load_gan_checkpoint(full).train_crops == available
    assert load_gan_checkpoint(cut).train_crops == 5


def test_checkpoint_train_crops_round_trip_and_older_checkpoints_load_without_it(tmp_path: Path) -> None:
    hparams = DeepPrivacyHparams.from_dict({"model": TINY_MODEL, "train": TINY_TRAIN})
    path = tmp_path / "iter_3.pt"
    write_gan_checkpoint(path, "deepprivacy", DeepPrivacyGenerator(hparams.model), hparams, 3, 16, 1.0, 0, train_set="synth_large", train_crops=875)
    loaded = load_gan_checkpoint(path, "deepprivacy")
    assert (loaded.train_crops, loaded.train_set, loaded.iteration) == (875, "synth_large", 3)
    record = loaded.record()
    assert {key: value for key, value in record.items() if key != "summary"} == {
        "gan": "deepprivacy",
        "iteration": 3,
        "resolution": 16,
        "train_set": "synth_large",
        "train_crops": 875,
    }
    assert "trained on 875 crops of synth_large" in record["summary"]
    payload = torch.load(path, weights_only=True)
    del payload["train_crops"]  # a checkpoint written before the count was recorded
    torch.save(payload, tmp_path / "old.pt")
    old = load_gan_checkpoint(tmp_path / "old.pt", "deepprivacy")
    assert old.train_crops is None and old.record()["train_crops"] is None and old.iteration == 3
    assert "unrecorded number of crops" in old.record()["summary"]
    old.build_generator()  # still usable


def test_train_gan_command(gan_synth_root: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    gan_cli.register(parser.add_subparsers(dest="command"))
    hparams = json.dumps({"model": TINY_MODEL, "train": TINY_TRAIN})
    args = parser.parse_args(
        [
            "train-gan",
            "--gan",
            "deepprivacy",
            "--train-set",
            str(gan_synth_root),
            "--iterations",
            "2",
            "--checkpoints",
            str(tmp_path / "c"),
            "--state-dir",
            str(tmp_path / "s"),
            "--hparams",
            hparams,
            "--device",
            "cpu",
        ]
    )
    assert args.func(args) == 0 and (tmp_path / "c" / "iter_2.pt").is_file()
    bad = parser.parse_args(
        [
            "train-gan",
            "--gan",
            "deepprivacy",
            "--train-set",
            str(tmp_path),
            "--iterations",
            "2",
            "--checkpoints",
            str(tmp_path / "c"),
            "--state-dir",
            str(tmp_path / "s"),
            "--hparams",
            '{"oops": 1}',
        ]
    )
    with pytest.raises(SafefakesError, match="oops"):
        bad.func(bad)


def test_fdf_reader(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "images" / "32").mkdir(parents=True)
    (tmp_path / "bounding_box").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "images" / "32" / f"{i}.png"), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    np.save(tmp_path / "bounding_box" / "32.npy", np.array([[8, 8, 24, 24]] * 3))
    landmarks = rng.uniform(0.2, 0.8, (3, 7, 2))
    landmarks[0, 6] = [-0.1, 1.2]  # a shoulder outside the crop: not visible
    np.save(tmp_path / "landmarks.npy", landmarks.reshape(3, -1))
    crops = fdf_crop_set(tmp_path, 16)
    assert crops.images.shape == (3, 16, 16, 3) and crops.boxes[0].tolist() == [4, 4, 12, 12]
    assert crops.keypoints[0, 6, 2] == 0 and crops.keypoints[1, :, 2].all()


# ---------------------------------------------------------------------------------------------- anonymization


def _scene() -> tuple[np.ndarray, list[FaceBox], list[FaceExtras]]:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    faces = [FaceBox(10, 10, 30, 34), FaceBox(60, 30, 24, 24), FaceBox(100, 80, 6, 6), FaceBox(110, 70, 20, 30)]
    kp = [[20, 20, 1], [25, 18, 1], [15, 18, 1], [30, 22, 1], [10, 22, 1], [35, 50, 1], [5, 50, 1]]
    extras = [FaceExtras(keypoints7=kp), FaceExtras(), FaceExtras(), FaceExtras(keypoints7=[[p[0] + 100, p[1] + 60, 1] for p in kp])]
    return image, faces, extras


def _generated_by_hand(checkpoint: Path, image: np.ndarray, faces: list[FaceBox], keypoints: list, rng: np.random.Generator) -> np.ndarray:
    """The image the anonymizer must return, recomputed around its generator: every face box black, each face's
    16 px context crop with the box masked (filled with -1 or drawn noise), the generator run on the batch with
    latents drawn from ``rng`` in face order, and each output resized back and written inside its box only."""
    record = load_gan_checkpoint(checkpoint, "deepprivacy")
    model, resolution = record.hparams.model, record.resolution
    blocked = block_boxes(image, faces)
    crops = [make_face_crop(blocked, face, points, 2.0, resolution) for face, points in zip(faces, keypoints)]
    conditions, masks, latents, points = [], [], [], []
    for crop in crops:
        latents.append(rng.standard_normal((model.latent_channels, model.start_resolution, model.start_resolution)))
        fill = rng.uniform(-1, 1, (3, resolution, resolution)) if model.input_blocking == "noise" else np.full((3, resolution, resolution), -1.0)
        mask = np.ones((1, resolution, resolution))
        x0, y0, x1, y1 = crop.box
        mask[:, y0:y1, x0:x1] = 0
        rgb = crop.pixels[..., ::-1].transpose(2, 0, 1) / 127.5 - 1.0
        conditions.append(rgb * mask + fill * (1 - mask))
        masks.append(mask)
        points.append(crop.keypoints if crop.keypoints is not None else np.zeros((7, 3)))
    as_tensor = lambda arrays: torch.from_numpy(np.stack(arrays).astype(np.float32))  # noqa: E731
    with torch.inference_mode():
        generated = record.build_generator()(as_tensor(conditions), as_tensor(masks), as_tensor(points), as_tensor(latents), record.alpha)
    pixels = generated.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()[..., ::-1]
    expected = blocked.copy()
    for face, crop, face_pixels in zip(faces, crops, pixels):
        square = crop.square
        full = cv2.resize(np.ascontiguousarray(face_pixels), (square.side, square.side), interpolation=cv2.INTER_LINEAR)
        y0, y1, x0, x1 = max(face.y, 0), min(face.y + face.h, image.shape[0]), max(face.x, 0), min(face.x + face.w, image.shape[1])
        expected[y0:y1, x0:x1] = full[y0 - square.y0 : y1 - square.y0, x0 - square.x0 : x1 - square.x0]
    return expected


@pytest.mark.parametrize("blocking", ["black", "noise"])
def test_privacy_box_pixels_never_reach_the_output(tiny_checkpoint: Path, tmp_path: Path, blocking: str) -> None:
    checkpoint = tiny_checkpoint
    if blocking == "noise":
        payload = torch.load(tiny_checkpoint, weights_only=True)
        hparams = json.loads(payload["hparams_json"])
        hparams["model"]["input_blocking"] = "noise"
        payload["hparams_json"] = json.dumps(hparams)
        checkpoint = tmp_path / "noise.pt"
        torch.save(payload, checkpoint)
    anonymizer = build_anonymizer("deepprivacy", {"checkpoint": str(checkpoint), "keypoint_source": "none", "device": "cpu"})
    image, faces, extras = _scene()
    out, outcomes = anonymizer.anonymize(image.copy(), faces, extras, np.random.default_rng(5))
    assert [o.anonymized for o in outcomes] == [True, True, False, True]
    assert outcomes[2].reason == SKIP_BELOW_MIN_SIZE and outcomes[3].clipped
    assert [o.detail for o in outcomes if o.anonymized] == ["kp=dataset,size=20-50", "kp=none,size=20-50", "kp=dataset,size=20-50"]
    anonymized = [f for f, o in zip(faces, outcomes) if o.anonymized]
    outside = ~inside_boxes(anonymized, image.shape)
    assert np.array_equal(out[outside], image[outside])
    assert not np.array_equal(out[10:44, 10:40], image[10:44, 10:40])
    # Each box holds exactly the generator's output for that face's blocked crop (not the input, not a constant).
    keypoints = [np.array(extras[0].keypoints7, float), None, np.array(extras[3].keypoints7, float)]
    expected = _generated_by_hand(checkpoint, image, anonymized, keypoints, np.random.default_rng(5))
    for face in anonymized:
        box = (slice(face.y, face.y + face.h), slice(face.x, face.x + face.w))
        assert np.array_equal(out[box], expected[box]), f"box {face} is not the generator's output for its crop"
        assert len(np.unique(out[box].reshape(-1, 3), axis=0)) > 10  # a generated face, not a flat fill
    assert np.array_equal(out, expected)
    altered = image.copy()
    altered[inside_boxes(anonymized, image.shape)] = np.random.default_rng(9).integers(0, 255, (int(inside_boxes(anonymized, image.shape).sum()), 3))
    out_altered, _ = anonymizer.anonymize(altered, faces, extras, np.random.default_rng(5))
    assert np.array_equal(out_altered, out)
    batched = anonymizer.anonymize_batch([image.copy(), image.copy()], [faces, faces], [extras, extras], [np.random.default_rng(5), np.random.default_rng(5)])
    assert np.array_equal(batched[0][0], out) and np.array_equal(batched[1][0], out)


def test_manifest_records_the_generator_read_once_before_any_image(
    gan_synth_root: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    hparams = DeepPrivacyHparams.from_dict({"model": TINY_MODEL, "train": TINY_TRAIN})
    checkpoint = tmp_path / "iter_400.pt"
    torch.manual_seed(0)
    write_gan_checkpoint(
        checkpoint, "deepprivacy", DeepPrivacyGenerator(hparams.model), hparams, 400, 16, 1.0, 0, train_set="synth_large_quarter", train_crops=218
    )
    params = {"checkpoint": str(checkpoint), "device": "cpu", "keypoint_source": "none"}
    with caplog.at_level(logging.INFO):
        manifest = anonymize_dataset(AnonymizeJob(gan_synth_root, "train", tmp_path / "out", "deepprivacy", params))
    generator = manifest["method_record"]["generator"]
    assert {key: value for key, value in generator.items() if key != "summary"} == {
        "gan": "deepprivacy",
        "iteration": 400,
        "resolution": 16,
        "train_set": "synth_large_quarter",
        "train_crops": 218,
    }
    assert "landmarks" in manifest["method_record"] and manifest["counts"]["faces_anonymized"] > 0
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["method_record"] == manifest["method_record"]
    assert generator_training_faces(tmp_path / "out", "synth_large_quarter") == 218  # what Fig. 7 shows under the bar
    assert sum("trained on 218 crops of synth_large_quarter" in record.getMessage() for record in caplog.records) == 1  # logged once

    # Building the method reads nothing; its run record reads the checkpoint's record without building the generator.
    absent = {"checkpoint": str(tmp_path / "absent.pt"), "device": "cpu", "keypoint_source": "none"}
    unread = build_anonymizer("deepprivacy", absent)
    with pytest.raises(SafefakesError, match="GAN checkpoint not found"):
        unread.run_record()
    with pytest.raises(SafefakesError, match="GAN checkpoint not found"):  # before any image: no output
        anonymize_dataset(AnonymizeJob(gan_synth_root, "train", tmp_path / "never", "deepprivacy", absent))
    assert not (tmp_path / "never").exists()
    monkeypatch.setattr(GanCheckpoint, "build_generator", lambda self: pytest.fail("run_record built the generator"))
    old = build_anonymizer("deepprivacy", {"checkpoint": str(tiny_checkpoint), "device": "cpu", "keypoint_source": "none"})
    assert old.run_record()["generator"]["train_crops"] is None  # a checkpoint without the count


def test_anonymize_command_is_deterministic(gan_synth_root: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    common = [
        "anonymize",
        "--method",
        "deepprivacy",
        "--checkpoint",
        str(tiny_checkpoint),
        "--wider-root",
        str(gan_synth_root),
        "--split",
        "train",
        "--seed",
        "2",
        "--param",
        "device=cpu",
        "--param",
        "keypoint_fallback=none",  # every face has synthetic keypoints; no stand-in detector needed where Keypoint R-CNN's weights are absent
    ]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--workers", "2"]) == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a" / "WIDER_train").rglob("*.jpg"))
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    counts = json.loads((tmp_path / "a" / "manifest.json").read_text())["counts"]
    assert counts["faces_anonymized"] > 0 and all(k.startswith("kp=dataset,size=") for k in counts["face_details"])
    assert sum(counts["face_details"].values()) == counts["faces_anonymized"]
    assert main(["anonymize", "--method", "deepprivacy", "--wider-root", str(gan_synth_root), "--split", "train", "--out", str(tmp_path / "c")]) == 1
    assert (
        main(
            [
                "anonymize",
                "--method",
                "blur",
                "--checkpoint",
                str(tiny_checkpoint),
                "--wider-root",
                str(gan_synth_root),
                "--split",
                "train",
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 1
    )
