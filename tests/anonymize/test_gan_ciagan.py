"""CIAGAN: input representation, network shapes, losses, exact resume, privacy, blackout fallback and the command."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from gan_helpers import inside_boxes

from safefakes.anonymize.base import SKIP_BELOW_MIN_SIZE, build_anonymizer
from safefakes.anonymize.gan.ciagan import (
    LANDMARK_IMAGE_INDICES,
    MASK_HULL_INDICES,
    CiaganDiscriminator,
    CiaganGenerator,
    IdentityDiscriminator,
    condition_maps,
    discriminator_loss,
    generator_loss,
    hull_mask,
    identity_loss,
    landmark_image,
)
from safefakes.anonymize.gan.ciagan_training import RECIPE, CiaganHparams, make_batch, one_hot
from safefakes.anonymize.gan.cropsets import load_crop_set, select_crops
from safefakes.anonymize.gan.recipe import GrowthPhase, get_recipe
from safefakes.anonymize.gan.training import GanTrainRequest, iteration_rngs, load_gan_checkpoint, train_gan, write_gan_checkpoint
from safefakes.cli import main
from safefakes.common.errors import SafefakesError
from safefakes.data.wider import FaceBox, FaceExtras

TINY_MODEL = {
    "resolution": 16,
    "generator_base_channels": 4,
    "generator_max_channels": 8,
    "bottleneck_blocks": 1,
    "identity_dense_layers": 2,
    "identity_hidden_features": 8,
    "identity_map_channels": 4,
    "discriminator_base_channels": 4,
    "discriminator_max_channels": 8,
    "discriminator_dense_features": 16,
    "identity_base_channels": 4,
    "identity_max_channels": 8,
}
TINY_TRAIN = {"batch_size": 4, "min_face_size": 12, "log_every": 1, "state_every": 2}
TINY_HPARAMS = {"model": TINY_MODEL, "train": TINY_TRAIN}
NUM_IDENTITIES = 5


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny generator checkpoint (the privacy properties do not depend on training)."""
    torch.manual_seed(0)
    hparams = CiaganHparams.from_dict(TINY_HPARAMS)
    config = {"num_identities": NUM_IDENTITIES}
    path = tmp_path_factory.mktemp("ckpt") / "iter_1.pt"
    write_gan_checkpoint(path, "ciagan", RECIPE.build_generator(hparams, config), hparams, 1, 16, 1.0, 0, config)
    return path


def _points(**visible_at: tuple[float, float]) -> np.ndarray:
    """68 absent landmarks except ``p<i>=(u, v)``, visible."""
    points = np.zeros((68, 3))
    for name, (u, v) in visible_at.items():
        points[int(name[1:])] = [u, v, 1]
    return points


# ---------------------------------------------------------------------------------------------- configuration


def test_recipe_attributes_and_paper_defaults() -> None:
    recipe = get_recipe("ciagan")
    assert recipe is RECIPE and recipe.name == "ciagan" and recipe.requirements == ("landmarks68", "identity")
    assert recipe.landmark_kind == "landmarks68" and recipe.missing_landmarks == "blackout"
    defaults = recipe.parse_hparams(None)
    assert defaults.model.resolution == 128 and defaults.train.batch_size == 16 and defaults.train.learning_rate == 1e-4
    assert (defaults.train.adam_beta1, defaults.train.adam_beta2) == (0.5, 0.999)
    assert recipe.growth_phase(defaults, 7) == GrowthPhase(128, 1.0)
    assert CiaganHparams.from_dict(defaults.to_dict()) == defaults
    with pytest.raises(SafefakesError, match="oops"):
        recipe.parse_hparams({"model": {"oops": 1}})
    with pytest.raises(SafefakesError):
        recipe.parse_hparams({"model": {"resolution": 24}})
    with pytest.raises(SafefakesError, match="num_identities"):
        recipe.build_generator(defaults, {})


def test_identity_is_drawn_uniformly_from_the_given_rng() -> None:
    hparams = CiaganHparams.from_dict(TINY_HPARAMS)
    draws = [int(RECIPE.sample_face_inputs(hparams, {"num_identities": 4}, 16, np.random.default_rng([3, i]))["identity"]) for i in range(400)]
    assert set(draws) == {0, 1, 2, 3} and all(60 < draws.count(k) < 140 for k in range(4))
    again = RECIPE.sample_face_inputs(hparams, {"num_identities": 4}, 16, np.random.default_rng([3, 0]))
    assert int(again["identity"]) == draws[0] and set(again) == {"identity"}


# ---------------------------------------------------------------------------------------------- input representation


def test_landmark_image_and_mask() -> None:
    assert len(LANDMARK_IMAGE_INDICES) == 29 and set(range(17)) <= set(LANDMARK_IMAGE_INDICES) and 36 not in LANDMARK_IMAGE_INDICES
    assert MASK_HULL_INDICES == tuple(range(27))
    lines = landmark_image(_points(p0=(0.1, 0.5), p1=(0.9, 0.5)), 16)
    assert lines.sum() == 14 and lines[8, 1:15].all()  # one segment, pixels 1..14 of row 8
    assert landmark_image(_points(p0=(0.1, 0.5), p2=(0.9, 0.5)), 16).sum() == 0  # 0-2 is no segment
    eyes_moved = _points(p0=(0.1, 0.5), p1=(0.9, 0.5), p36=(0.3, 0.3), p45=(0.7, 0.3))
    assert np.array_equal(landmark_image(eyes_moved, 16), lines)  # eyes are not drawn
    assert landmark_image(None, 16).sum() == 0
    hull = hull_mask(_points(p0=(0.1, 0.1), p8=(0.5, 0.9), p16=(0.9, 0.1), p60=(0.5, 0.99)), 16)
    assert hull[4, 8] == 1 and hull[15, 0] == 0 and hull[15, 8] == 0  # the lip point is not part of the hull
    assert hull_mask(_points(p0=(0.1, 0.1), p8=(0.5, 0.9)), 16).sum() == 0  # fewer than 3 points: no hull
    landmarks, mask = condition_maps([_points(p0=(0.1, 0.1), p8=(0.5, 0.9), p16=(0.9, 0.1)), None], [(0, 24, 8, 32), (8, 8, 16, 16)], 32, 16)
    assert landmarks.shape == mask.shape == (2, 1, 16, 16)
    assert mask[0, 0, 4, 8] == 1 and mask[0, 0, 13, 1] == 1 and mask[0, 0, 15, 15] == 0  # hull united with the box
    assert mask[1, 0].sum() == 16 and mask[1, 0, 4:8, 4:8].all()  # no landmarks: the box alone


def test_batch_from_synthetic_crops(gan_synth_root: Path) -> None:
    crops = load_crop_set(gan_synth_root, 16, 2.0, 12, RECIPE.requirements)
    classes, count = crops.identity_classes()
    assert RECIPE.generator_config(CiaganHparams.from_dict(TINY_HPARAMS), crops) == {"num_identities": count}
    selection = select_crops(crops, np.arange(4), np.array([False, True, False, False]))
    batch = make_batch(selection, crops, 1, torch.device("cpu"))
    assert batch.real.shape == (4, 3, 16, 16) and batch.landmarks.shape == batch.mask.shape == (4, 1, 16, 16)
    assert batch.classes.tolist() == classes[:4].tolist()
    assert batch.landmarks.sum() > 0 and (batch.mask.flatten(1).sum(1) > 0).all()
    for i, (x0, y0, x1, y1) in enumerate(selection.boxes):
        assert batch.mask[i, 0, y0:y1, x0:x1].all()  # every box is inside the mask


# ---------------------------------------------------------------------------------------------- networks and losses


def test_shapes_and_composite() -> None:
    torch.manual_seed(0)
    hparams = CiaganHparams.from_dict({"model": {**TINY_MODEL, "resolution": 32}})
    generator = CiaganGenerator(hparams.model, NUM_IDENTITIES).eval()  # eval: no spectral-norm power iteration between calls
    image, landmarks = torch.rand(3, 3, 32, 32) * 2 - 1, torch.zeros(3, 1, 32, 32)
    mask = torch.zeros(3, 1, 32, 32)
    mask[:, :, 8:24, 10:22] = 1
    identity = one_hot(torch.tensor([0, 4, 2]), NUM_IDENTITIES)
    out = generator(image, landmarks, mask, identity)
    assert out.shape == (3, 3, 32, 32) and torch.equal(out * (1 - mask), image * (1 - mask))
    altered = image.clone()
    altered[:, :, 8:24, 10:22] = torch.rand(3, 3, 16, 12)
    assert torch.equal(generator(altered, landmarks, mask, identity), out)  # masked pixels are never read
    assert not torch.equal(generator(image, landmarks, mask, one_hot(torch.tensor([1, 1, 1]), NUM_IDENTITIES)), out)
    assert CiaganDiscriminator(hparams.model)(out, landmarks).shape == (3,)
    assert IdentityDiscriminator(hparams.model, NUM_IDENTITIES)(out).shape == (3, NUM_IDENTITIES)
    with pytest.raises(SafefakesError):
        generator(torch.zeros(1, 3, 16, 16), torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16), identity[:1])


def test_losses_move_in_the_right_direction(gan_synth_root: Path) -> None:
    """Each network trained alone lowers its own loss: discriminator, identity classifier, then the generator against both."""
    torch.manual_seed(0)
    hparams = CiaganHparams.from_dict(TINY_HPARAMS)
    crops = load_crop_set(gan_synth_root, 16, 2.0, 12, RECIPE.requirements)
    count = crops.identity_classes()[1]
    rng, _ = iteration_rngs(0, 1)
    batch = make_batch(select_crops(crops, rng.integers(0, len(crops), 8), np.zeros(8, bool)), crops, 1, torch.device("cpu"))
    generator, discriminator, identifier = (
        CiaganGenerator(hparams.model, count),
        CiaganDiscriminator(hparams.model),
        IdentityDiscriminator(hparams.model, count),
    )
    target = one_hot(torch.arange(8) % count, count)
    adam = lambda m: torch.optim.Adam(m.parameters(), lr=2e-3, betas=(0.5, 0.999))  # noqa: E731

    def optimize(step, module: torch.nn.Module, key: str) -> list[float]:
        optimizer, values = adam(module), []
        for _ in range(20):
            loss, terms = step()
            values.append(terms[key])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return values

    with torch.no_grad():
        fake = generator(batch.real, batch.landmarks, batch.mask, target)
    d = optimize(lambda: discriminator_loss(discriminator, batch.real, fake, batch.landmarks), discriminator, "d_loss")
    assert np.mean(d[-5:]) < np.mean(d[:5]) - 0.1
    i = optimize(lambda: identity_loss(identifier, batch.real, batch.classes), identifier, "id_loss")
    assert np.mean(i[-5:]) < np.mean(i[:5]) - 0.3
    discriminator.requires_grad_(False)
    identifier.requires_grad_(False)
    classes = target.argmax(1)
    g = optimize(
        lambda: generator_loss(discriminator, identifier, generator(batch.real, batch.landmarks, batch.mask, target), batch.landmarks, classes, hparams.loss),
        generator,
        "g_loss",
    )
    assert np.mean(g[-5:]) < np.mean(g[:5]) - 0.1


# ---------------------------------------------------------------------------------------------- training


def _request(tmp: Path, train_set: Path, iterations: tuple[int, ...], name: str) -> GanTrainRequest:
    return GanTrainRequest("ciagan", train_set, tmp / name / "ckpt", tmp / name / "state", TINY_HPARAMS, iterations, 3, "cpu")


def test_exact_resume_matches_uninterrupted_run(gan_synth_root: Path, tmp_path: Path) -> None:
    straight = train_gan(_request(tmp_path, gan_synth_root, (2, 4), "straight"))
    train_gan(_request(tmp_path, gan_synth_root, (2,), "resumed"))  # "killed" after its state at iteration 2
    resumed = train_gan(_request(tmp_path, gan_synth_root, (2, 4), "resumed"))
    for a, b in zip(straight, resumed):
        first, second = load_gan_checkpoint(a), load_gan_checkpoint(b)
        assert first.iteration == second.iteration and first.generator_config == second.generator_config
        assert first.generator_config["num_identities"] >= 2
        assert all(torch.equal(first.generator_state[k], second.generator_state[k]) for k in first.generator_state)
    states = [torch.load(tmp_path / n / "state" / "state.pt", weights_only=False) for n in ("straight", "resumed")]
    for network in ("discriminator", "identity_discriminator"):
        assert all(torch.equal(states[0][network][k], states[1][network][k]) for k in states[0][network])
    with open(tmp_path / "resumed" / "ckpt" / "train_log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(float(r[k])) for r in rows for k in ("d_loss", "g_loss", "id_loss", "g_identity", "g_adversarial"))
    assert load_gan_checkpoint(resumed[-1]).resolution == 16


def test_train_gan_command(gan_synth_root: Path, tmp_path: Path) -> None:
    args = [
        "train-gan",
        "--gan",
        "ciagan",
        "--train-set",
        str(gan_synth_root),
        "--iterations",
        "1",
        "--checkpoints",
        str(tmp_path / "c"),
        "--state-dir",
        str(tmp_path / "s"),
        "--hparams",
        json.dumps(TINY_HPARAMS),
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    checkpoint = load_gan_checkpoint(tmp_path / "c" / "iter_1.pt", "ciagan")
    assert checkpoint.hparams.model.resolution == 16 and checkpoint.build_generator().num_identities == checkpoint.generator_config["num_identities"]


# ---------------------------------------------------------------------------------------------- anonymization


def _landmarks_around(face: FaceBox, seed: int) -> list[list[float]]:
    """68 image points scattered over the box grown by a fifth (some fall outside the box)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(face.x - face.w / 5, face.x + face.w * 6 / 5, 68)
    y = rng.uniform(face.y - face.h / 5, face.y + face.h * 6 / 5, 68)
    return np.stack([x, y], axis=1).tolist()


def _scene() -> tuple[np.ndarray, list[FaceBox], list[FaceExtras]]:
    image = np.random.default_rng(1).integers(1, 255, (90, 120, 3), dtype=np.uint8)
    faces = [FaceBox(10, 10, 30, 34), FaceBox(60, 30, 24, 24), FaceBox(100, 80, 6, 6), FaceBox(105, 60, 20, 36)]
    extras = [FaceExtras(landmarks68=_landmarks_around(faces[0], 0)), FaceExtras(), FaceExtras(), FaceExtras(landmarks68=_landmarks_around(faces[3], 1))]
    return image, faces, extras


def test_privacy_box_pixels_never_reach_the_output(tiny_checkpoint: Path) -> None:
    anonymizer = build_anonymizer("ciagan", {"checkpoint": str(tiny_checkpoint), "keypoint_source": "none", "device": "cpu"})
    image, faces, extras = _scene()
    out, outcomes = anonymizer.anonymize(image.copy(), faces, extras, np.random.default_rng(5))
    assert [o.anonymized for o in outcomes] == [True, True, False, True]
    assert outcomes[2].reason == SKIP_BELOW_MIN_SIZE and outcomes[3].clipped
    assert [o.detail for o in outcomes if o.anonymized] == ["kp=dataset,size=20-50", "kp=none,size=20-50,fallback=blackout", "kp=dataset,size=20-50"]
    anonymized = [f for f, o in zip(faces, outcomes) if o.anonymized]
    inside = inside_boxes(anonymized, image.shape)
    assert np.array_equal(out[~inside], image[~inside])  # nothing outside the boxes changes
    assert (out[30:54, 60:84] == 0).all()  # the face without landmarks is blacked out
    generated = out[10:44, 10:40]
    assert not np.array_equal(generated, image[10:44, 10:40]) and generated.any()
    altered = image.copy()
    altered[inside] = np.random.default_rng(9).integers(0, 255, (int(inside.sum()), 3))
    out_altered, _ = anonymizer.anonymize(altered, faces, extras, np.random.default_rng(5))
    assert np.array_equal(out_altered, out)  # box pixels never influence the output
    batched = anonymizer.anonymize_batch([image.copy(), altered], [faces, faces], [extras, extras], [np.random.default_rng(5), np.random.default_rng(5)])
    assert np.array_equal(batched[0][0], out) and np.array_equal(batched[1][0], out)


def test_every_face_without_landmarks_is_blacked_out(tiny_checkpoint: Path) -> None:
    anonymizer = build_anonymizer("ciagan", {"checkpoint": str(tiny_checkpoint), "keypoint_source": "none", "device": "cpu"})
    image, faces, _ = _scene()
    out, outcomes = anonymizer.anonymize(image.copy(), faces, None, np.random.default_rng(0))
    anonymized = [f for f, o in zip(faces, outcomes) if o.anonymized]
    assert all(o.detail.endswith("fallback=blackout") for o in outcomes if o.anonymized)
    inside = inside_boxes(anonymized, image.shape)
    assert (out[inside] == 0).all() and np.array_equal(out[~inside], image[~inside])
