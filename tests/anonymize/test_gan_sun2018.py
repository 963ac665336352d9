"""Sun2018: both stages' shapes, landmark heatmaps, losses, exact resume, privacy and the train-gan command."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from gan_helpers import inside_boxes

from safefakes.anonymize.base import SKIP_BELOW_MIN_SIZE, build_anonymizer
from safefakes.anonymize.gan.cropsets import load_crop_set, select_crops
from safefakes.anonymize.gan.recipe import GrowthPhase, get_recipe
from safefakes.anonymize.gan.sun2018 import (
    InpaintingGenerator,
    LandmarkGenerator,
    Sun2018Discriminator,
    Sun2018Generator,
    Sun2018LossConfig,
    Sun2018ModelConfig,
    discriminator_loss,
    generator_loss,
    landmark_error,
    landmark_heatmaps,
    landmark_loss,
    with_visibility,
)
from safefakes.anonymize.gan.sun2018_training import Sun2018Hparams, make_batch
from safefakes.anonymize.gan.training import GanTrainRequest, iteration_rngs, load_gan_checkpoint, train_gan, write_gan_checkpoint
from safefakes.cli import main
from safefakes.common.errors import SafefakesError
from safefakes.data.wider import FaceBox, FaceExtras

TINY_MODEL = {"resolution": 16, "base_channels": 8, "max_channels": 16, "landmark_hidden": 32, "discriminator_channels": 8}
TINY_TRAIN = {"batch_size": 4, "min_face_size": 12, "log_every": 1, "state_every": 2}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny checkpoint of both stages (the privacy properties do not depend on training)."""
    torch.manual_seed(0)
    hparams = Sun2018Hparams.from_dict({"model": TINY_MODEL, "train": TINY_TRAIN})
    path = tmp_path_factory.mktemp("ckpt") / "iter_1.pt"
    write_gan_checkpoint(path, "sun2018", Sun2018Generator(hparams.model), hparams, 1, 16, 1.0, 0)
    return path


# ---------------------------------------------------------------------------------------------- model


def test_recipe_attributes_and_defaults() -> None:
    recipe = get_recipe("sun2018")
    assert (recipe.name, recipe.requirements, recipe.landmark_kind, recipe.missing_landmarks) == ("sun2018", ("landmarks68",), "landmarks68", "generate")
    hparams = recipe.parse_hparams({})
    assert (hparams.model.resolution, hparams.train.batch_size) == (128, 64)
    assert (hparams.train.generator_learning_rate, hparams.train.discriminator_learning_rate) == (5e-4, 2e-5)
    assert recipe.growth_phase(hparams, 7) == GrowthPhase(128, 1.0)
    assert recipe.sample_face_inputs(hparams, {}, 128, np.random.default_rng(0)) == {}
    assert Sun2018Hparams.from_dict(hparams.to_dict()) == hparams
    with pytest.raises(SafefakesError, match="oops"):
        recipe.parse_hparams({"oops": {}})
    with pytest.raises(SafefakesError):
        Sun2018ModelConfig.from_dict({"resolution": 24})


def test_landmark_heatmaps() -> None:
    landmarks = torch.tensor([[[0.35, 0.65, 1.0], [0.5, 0.5, 0.0]]])  # one visible point on pixel (row 6, col 3), one absent
    sigma = 0.05
    maps = landmark_heatmaps(landmarks, 10, sigma)
    assert maps.shape == (1, 2, 10, 10)
    assert maps[0, 1].abs().sum() == 0  # absent: an empty map
    assert divmod(int(maps[0, 0].argmax()), 10) == (6, 3) and torch.isclose(maps[0, 0].max(), torch.tensor(1.0))
    one_pixel = float(np.exp(-(0.1**2) / (2 * sigma**2)))  # neighbours are 0.1 crop units away
    for row, col in ((5, 3), (7, 3), (6, 2), (6, 4)):
        assert maps[0, 0, row, col].item() == pytest.approx(one_pixel, rel=1e-5)
    assert maps[0, 0, 5, 4].item() == pytest.approx(one_pixel**2, rel=1e-5)
    assert maps[0, 0, 0, 9] < 1e-6  # far from the point: nothing


def test_shapes_of_both_stages_and_missing_landmarks() -> None:
    config = Sun2018ModelConfig.from_dict({**TINY_MODEL, "resolution": 32})
    assert config.depth == 3
    torch.manual_seed(0)
    condition, mask = torch.randn(3, 3, 32, 32), torch.ones(3, 1, 32, 32)
    mask[:, :, 8:24, 8:24] = 0
    stage1 = LandmarkGenerator(config)
    predicted = stage1(condition, mask)
    assert predicted.shape == (3, 68, 2) and predicted.min() >= 0 and predicted.max() <= 1
    landmarks = with_visibility(torch.rand(3, 68, 2))
    heatmaps = landmark_heatmaps(landmarks, 32, config.heatmap_sigma)
    raw, composite = InpaintingGenerator(config)(condition, mask, heatmaps)
    assert raw.shape == composite.shape == (3, 3, 32, 32)
    assert torch.equal(composite[:, :, :8], condition[:, :, :8]) and torch.equal(composite[:, :, 8:24, 8:24], raw[:, :, 8:24, 8:24])
    assert Sun2018Discriminator(config)(composite, mask, heatmaps).shape == (3,)
    plain = Sun2018ModelConfig.from_dict({**TINY_MODEL, "resolution": 32, "discriminator_landmarks": False})
    assert Sun2018Discriminator(plain)(composite, mask, heatmaps).shape == (3,)
    with pytest.raises(SafefakesError):
        stage1(torch.randn(1, 3, 16, 16), torch.ones(1, 1, 16, 16))

    generator = Sun2018Generator(config).eval()
    landmarks[1] = 0  # face 1: no landmarks found
    with torch.no_grad():
        completed = generator.complete_landmarks(condition, mask, landmarks)
        assert torch.equal(completed[[0, 2]], landmarks[[0, 2]])
        assert torch.allclose(completed[1], with_visibility(generator.landmark_generator(condition[1:2], mask[1:2]))[0])
        generated = generator(condition, mask, landmarks)
        empty = Sun2018Generator(Sun2018ModelConfig.from_dict({**TINY_MODEL, "resolution": 32, "missing_landmarks": "empty"})).eval()
        empty.load_state_dict(generator.state_dict())
        without = empty(condition, mask, landmarks)
    assert torch.equal(generated[[0, 2]], without[[0, 2]]) and not torch.equal(generated[1], without[1])


def test_losses_move_in_the_right_direction(gan_synth_root: Path) -> None:
    """Stage I's landmark error drops; a discriminator trained alone lowers its loss; a generator trained alone lowers its adversarial loss."""
    torch.manual_seed(0)
    hparams = Sun2018Hparams.from_dict({"model": TINY_MODEL, "train": TINY_TRAIN})
    crops = load_crop_set(gan_synth_root, 16, hparams.train.context_factor, hparams.train.min_face_size, ("landmarks68",))
    rng, _ = iteration_rngs(0, 1)
    batch = make_batch(select_crops(crops, rng.integers(0, len(crops), 8), np.zeros(8, bool)), 16, CPU)
    assert (batch.condition[batch.mask.expand_as(batch.condition) == 0] == -1).all()

    stage1 = LandmarkGenerator(hparams.model)
    optimizer = torch.optim.Adam(stage1.parameters(), lr=1e-3)
    errors = []
    for _ in range(40):
        predicted = stage1(batch.condition, batch.mask)
        errors.append(float(landmark_error(predicted.detach(), batch.landmarks)))
        optimizer.zero_grad()
        landmark_loss(predicted, batch.landmarks).backward()
        optimizer.step()
    assert np.mean(errors[-5:]) < 0.5 * np.mean(errors[:5])

    inpainter, critic = InpaintingGenerator(hparams.model), Sun2018Discriminator(hparams.model)
    heatmaps = landmark_heatmaps(batch.landmarks, 16, hparams.model.heatmap_sigma)
    with torch.no_grad():
        raw, fake = inpainter(batch.condition, batch.mask, heatmaps)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=1e-3, betas=(0.5, 0.999))
    d_losses = []
    for _ in range(30):
        loss = discriminator_loss(critic(batch.real, batch.mask, heatmaps), critic(fake, batch.mask, heatmaps))
        d_losses.append(float(loss.detach()))
        critic_opt.zero_grad()
        loss.backward()
        critic_opt.step()
    assert np.mean(d_losses[-5:]) < np.mean(d_losses[:5]) - 0.1
    critic.requires_grad_(False)
    generator_opt = torch.optim.Adam(inpainter.parameters(), lr=1e-3, betas=(0.5, 0.999))
    adversarial, reconstruction = [], []
    weights = Sun2018LossConfig()
    for _ in range(30):
        raw, fake = inpainter(batch.condition, batch.mask, heatmaps)
        loss, terms = generator_loss(critic(fake, batch.mask, heatmaps), raw, batch.real, weights)
        adversarial.append(terms["g_adversarial"])
        reconstruction.append(terms["g_l1"])
        generator_opt.zero_grad()
        loss.backward()
        generator_opt.step()
    assert np.mean(adversarial[-5:]) < np.mean(adversarial[:5]) - 0.1
    assert np.mean(reconstruction[-5:]) < np.mean(reconstruction[:5])


# ---------------------------------------------------------------------------------------------- training


def _request(tmp: Path, train_set: Path, iterations: tuple[int, ...], name: str) -> GanTrainRequest:
    return GanTrainRequest("sun2018", train_set, tmp / name / "ckpt", tmp / name / "state", {"model": TINY_MODEL, "train": TINY_TRAIN}, iterations, 3, "cpu")


def test_exact_resume_matches_uninterrupted_run(gan_synth_root: Path, tmp_path: Path) -> None:
    straight = train_gan(_request(tmp_path, gan_synth_root, (3, 6), "straight"))
    train_gan(_request(tmp_path, gan_synth_root, (3,), "resumed"))  # "killed" after its state at iteration 3
    resumed = train_gan(_request(tmp_path, gan_synth_root, (3, 6), "resumed"))
    for a, b in zip(straight, resumed):
        first, second = load_gan_checkpoint(a), load_gan_checkpoint(b)
        assert first.iteration == second.iteration and first.resolution == 16
        assert all(torch.equal(first.generator_state[k], second.generator_state[k]) for k in first.generator_state)
    states = [torch.load(tmp_path / n / "state" / "state.pt", weights_only=False) for n in ("straight", "resumed")]
    assert all(torch.equal(states[0]["discriminator"][k], states[1]["discriminator"][k]) for k in states[0]["discriminator"])
    initial = load_gan_checkpoint(straight[0]).generator_state
    final = load_gan_checkpoint(straight[1]).generator_state
    for stage in ("landmark_generator.", "inpainter."):  # both stages train
        assert any(not torch.equal(initial[k], final[k]) for k in initial if k.startswith(stage))
    with open(tmp_path / "resumed" / "ckpt" / "train_log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(float(r[k])) for r in rows for k in ("landmark_loss", "landmark_error", "d_loss", "g_loss", "g_l1", "g_adversarial"))


def test_train_gan_command(gan_synth_root: Path, tmp_path: Path) -> None:
    hparams = json.dumps({"model": TINY_MODEL, "train": TINY_TRAIN})
    common = [
        "train-gan",
        "--gan",
        "sun2018",
        "--train-set",
        str(gan_synth_root),
        "--iterations",
        "2",
        "--checkpoints",
        str(tmp_path / "c"),
        "--state-dir",
        str(tmp_path / "s"),
    ]
    assert main([*common, "--hparams", hparams, "--device", "cpu"]) == 0
    checkpoint = load_gan_checkpoint(tmp_path / "c" / "iter_2.pt", "sun2018")
    assert checkpoint.iteration == 2 and isinstance(checkpoint.build_generator(), Sun2018Generator)
    assert main([*common, "--hparams", json.dumps({"model": {"oops": 1}})]) != 0


# ---------------------------------------------------------------------------------------------- anonymization


def _landmarks_in(face: FaceBox, rng: np.random.Generator) -> list[list[float]]:
    """68 made-up landmark rows ``[x, y]`` inside ``face``."""
    return rng.uniform([face.x + 2, face.y + 2], [face.x + face.w - 2, face.y + face.h - 2], (68, 2)).round(2).tolist()


def _scene() -> tuple[np.ndarray, list[FaceBox], list[FaceExtras]]:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    faces = [FaceBox(10, 10, 30, 34), FaceBox(60, 30, 24, 24), FaceBox(5, 70, 6, 6), FaceBox(95, 55, 20, 30)]
    extras = [FaceExtras(landmarks68=_landmarks_in(faces[0], rng)), FaceExtras(), FaceExtras(), FaceExtras(landmarks68=_landmarks_in(faces[3], rng))]
    return image, faces, extras


def test_privacy_box_pixels_never_reach_the_output(tiny_checkpoint: Path, tmp_path: Path) -> None:
    anonymizer = build_anonymizer("sun2018", {"checkpoint": str(tiny_checkpoint), "device": "cpu", "keypoint_source": "none"})
    image, faces, extras = _scene()
    out, outcomes = anonymizer.anonymize(image.copy(), faces, extras, np.random.default_rng(5))
    assert [o.anonymized for o in outcomes] == [True, True, False, True]
    assert outcomes[2].reason == SKIP_BELOW_MIN_SIZE
    assert [o.detail for o in outcomes if o.anonymized] == ["kp=dataset,size=20-50", "kp=none,size=20-50", "kp=dataset,size=20-50"]
    anonymized = [f for f, o in zip(faces, outcomes) if o.anonymized]
    inside = inside_boxes(anonymized, image.shape)
    assert np.array_equal(out[~inside], image[~inside])
    for face in anonymized:  # every face is painted, the one without landmarks too (from Stage I's landmarks)
        box = out[face.y : face.y + face.h, face.x : face.x + face.w]
        assert not np.array_equal(box, image[face.y : face.y + face.h, face.x : face.x + face.w]) and box.any()
    altered = image.copy()
    altered[inside] = np.random.default_rng(9).integers(0, 255, (int(inside.sum()), 3))
    out_altered, _ = anonymizer.anonymize(altered, faces, extras, np.random.default_rng(6))  # another seed: nothing random either
    assert np.array_equal(out_altered, out)
    batched = anonymizer.anonymize_batch([image.copy(), altered], [faces, faces], [extras, extras], [np.random.default_rng(5), np.random.default_rng(5)])
    assert np.array_equal(batched[0][0], out) and np.array_equal(batched[1][0], out)

    payload = torch.load(tiny_checkpoint, weights_only=True)  # the same weights run without landmarks for face 2
    hparams = json.loads(payload["hparams_json"])
    hparams["model"]["missing_landmarks"] = "empty"
    payload["hparams_json"] = json.dumps(hparams)
    torch.save(payload, tmp_path / "empty.pt")
    empty = build_anonymizer("sun2018", {"checkpoint": str(tmp_path / "empty.pt"), "device": "cpu", "keypoint_source": "none"})
    out_empty, _ = empty.anonymize(image.copy(), faces, extras, np.random.default_rng(5))
    second = inside_boxes([faces[1]], image.shape)
    assert np.array_equal(out_empty[~second], out[~second]) and not np.array_equal(out_empty[second], out[second])
