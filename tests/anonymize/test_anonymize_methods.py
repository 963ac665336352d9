"""The conventional anonymizers: pixels change only where they should, with the expected effect."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from safefakes.anonymize import GAN_METHODS
from safefakes.anonymize.base import (
    SKIP_BELOW_MIN_SIZE,
    SKIP_OUTSIDE_IMAGE,
    FaceAnonymizer,
    build_anonymizer,
    get_anonymizer_spec,
    method_names,
    parse_param_assignments,
)
from safefakes.anonymize.conventional import SKIP_IDENTITY, clip_box, smooth
from safefakes.common.errors import SafefakesError
from safefakes.data.wider import FaceBox, FaceExtras

HEIGHT, WIDTH = 120, 160
INSIDE = FaceBox(20, 30, 40, 48)
CLIPPED = FaceBox(140, 90, 40, 50)  # right and bottom parts outside the image
OUTSIDE = FaceBox(200, 10, 20, 20)  # nothing inside
TINY = FaceBox(100, 10, 3, 3)
FACES = [INSIDE, CLIPPED, OUTSIDE, TINY]
PER_FACE_METHODS = ["blur", "pixelate", "blackout", "heavyblur", "gaussian9", "noise", "eyes"]


def textured_image(seed: int = 0) -> np.ndarray:
    """A noisy BGR test picture: every filter visibly changes it."""
    return np.random.default_rng(seed).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)


def face_mask(faces: list[FaceBox]) -> np.ndarray:
    """True inside the (clipped) boxes."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    for face in faces:
        box = clip_box(face, HEIGHT, WIDTH)
        if box is not None:
            mask[box.y0 : box.y1, box.x0 : box.x1] = True
    return mask


def run(method: str, image: np.ndarray, faces=FACES, extras=None, seed: int = 0, **params):
    anonymizer = build_anonymizer(method, params)
    return anonymizer.anonymize(image.copy(), faces, extras, np.random.default_rng(seed))


def region(image: np.ndarray, face: FaceBox) -> np.ndarray:
    box = clip_box(face, HEIGHT, WIDTH)
    assert box is not None
    return box.view(image)


@pytest.mark.parametrize("method", PER_FACE_METHODS)
def test_per_face_methods_change_only_face_boxes(method: str) -> None:
    image = textured_image()
    out, outcomes = run(method, image)
    assert out.shape == image.shape and out.dtype == np.uint8
    changed = np.any(out != image, axis=2)
    assert not changed[~face_mask(FACES)].any(), "pixels outside the face boxes changed"
    assert changed[face_mask([INSIDE])].mean() > 0.1
    assert changed[face_mask([CLIPPED])].any()
    assert [o.anonymized for o in outcomes] == [True, True, False, True]
    assert outcomes[1].clipped and not outcomes[0].clipped
    assert outcomes[2].reason == SKIP_OUTSIDE_IMAGE


@pytest.mark.parametrize("method", method_names())
def test_every_method_is_a_face_anonymizer_with_strength(method: str) -> None:
    # A GAN method refuses to start when its landmark detector cannot run here, unless keypoint_fallback allows a stand-in.
    landmarks = {"keypoint_fallback": "none"} if method in GAN_METHODS else {}
    anonymizer = build_anonymizer(method, {"strength": "3", **landmarks})
    assert isinstance(anonymizer, FaceAnonymizer)
    assert anonymizer.name == method
    spec = get_anonymizer_spec(method)
    if spec.config_class.STRENGTH_FIELD is not None:
        assert anonymizer.config.to_dict()[spec.config_class.STRENGTH_FIELD] == 3


#: Strength sweeps from weak to strong. Pixelation's strength is its grid size k, where a smaller k is stronger.
STRENGTH_SWEEPS = {
    "blur": [3, 9, 25, 45],
    "fullblur": [3, 9, 18, 35],
    "pixelate": [32, 16, 8, 4],
    "blackout": [25, 50, 75, 100],
    "heavyblur": [10, 30, 60, 90],
    "gaussian9": [3, 9, 15, 27],
    "noise": [10, 30, 60, 90],
    "eyes": [10, 25, 50, 100],
}
#: Each stronger setting moves the image at least this much further from the original (ratio of distances).
MIN_STRENGTH_STEP = 1.05


def structured_image() -> np.ndarray:
    """Coarse, medium and fine structure together, so blurs of every size remove something more."""
    rng = np.random.default_rng(0)
    coarse = cv2.resize(rng.integers(0, 256, (6, 8, 3)).astype(np.uint8), (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
    medium = cv2.resize(rng.integers(0, 256, (24, 32, 3)).astype(np.uint8), (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR)
    fine = rng.integers(0, 256, (HEIGHT, WIDTH, 3))
    return np.clip(0.5 * coarse + 0.3 * medium + 0.2 * fine, 0, 255).astype(np.uint8)


def test_every_conventional_method_with_a_strength_has_a_sweep() -> None:
    with_strength = {m for m in method_names() if get_anonymizer_spec(m).config_class.STRENGTH_FIELD is not None}
    assert with_strength == set(STRENGTH_SWEEPS)


@pytest.mark.parametrize("method", sorted(STRENGTH_SWEEPS))
def test_a_stronger_setting_moves_the_image_further_from_the_original(method: str) -> None:
    image = structured_image()
    face = FaceBox(24, 12, 96, 96)
    distances = []
    for strength in STRENGTH_SWEEPS[method]:
        out, outcomes = run(method, image, faces=[face], strength=strength)
        assert outcomes[0].anonymized
        distances.append(float(np.abs(out.astype(np.float64) - image).mean()))
    steps = [after / before for before, after in zip(distances, distances[1:])]
    assert distances[0] > 1.0 and all(step >= MIN_STRENGTH_STEP for step in steps), (
        f"{method}: distances {np.round(distances, 2)} for {STRENGTH_SWEEPS[method]}"
    )


def test_min_face_size_skips_small_faces() -> None:
    image = textured_image()
    out, outcomes = run("blackout", image, min_face_size="10")
    assert outcomes[3].reason == SKIP_BELOW_MIN_SIZE
    assert np.array_equal(region(out, TINY), region(image, TINY))
    assert (region(out, INSIDE) == 0).all()


def test_blackout_is_black_and_opacity_darkens() -> None:
    image = textured_image()
    out, _ = run("blackout", image)
    assert (region(out, INSIDE) == 0).all() and (region(out, CLIPPED) == 0).all()
    half, _ = run("blackout", image, opacity_percent=50)
    expected = np.round(region(image, INSIDE).astype(np.float64) * 0.5)
    assert np.abs(region(half, INSIDE) - expected).max() <= 1


def test_blur_equals_blurring_the_whole_image_inside_the_box() -> None:
    image = textured_image()
    out, _ = run("blur", image)
    reference = cv2.GaussianBlur(image, (25, 25), 0, borderType=cv2.BORDER_REFLECT_101).astype(np.int16)
    for face in (INSIDE, CLIPPED):  # cv2.GaussianBlur rounds its taps to fixed point: +-1 grey level
        assert np.abs(region(out, face) - region(reference, face)).max() <= 1


def test_gaussian9_and_heavyblur_kernels() -> None:
    image = textured_image()
    out, _ = run("gaussian9", image)
    reference = cv2.GaussianBlur(image, (9, 9), 3).astype(np.int16)
    assert np.abs(region(out, INSIDE) - region(reference, INSIDE)).max() <= 1
    face = FaceBox(20, 20, 100, 60)  # heavy blur kernel = 30% of 100 px = 30 (even)
    out, _ = run("heavyblur", image, faces=[face])
    assert np.array_equal(region(out, face), region(smooth(image, "gaussian", 30, 0.0), face))


def test_even_gaussian_kernel_is_accepted() -> None:
    image = textured_image()
    out, outcomes = run("blur", image, kernel=10)
    assert outcomes[0].anonymized and not np.array_equal(region(out, INSIDE), region(image, INSIDE))
    assert np.array_equal(run("blur", image, kernel=1)[0], image), "a 1x1 kernel must leave the face unchanged"


def test_fullblur_is_an_18x18_mean_of_the_whole_image() -> None:
    image = textured_image()
    out, outcomes = run("fullblur", image)
    assert np.array_equal(out, cv2.blur(image, (18, 18), borderType=cv2.BORDER_REFLECT_101))
    assert [o.anonymized for o in outcomes] == [True, True, False, True]


@pytest.mark.parametrize("grid", [8, 10, 16])
def test_pixelate_makes_grid_blocks(grid: int) -> None:
    image = textured_image()
    face = FaceBox(10, 10, 64, 80)
    out, _ = run("pixelate", image, faces=[face], grid=grid)
    pixels = region(out, face)
    cells = cv2.resize(region(image, face), (grid, grid), interpolation=cv2.INTER_AREA)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) <= grid * grid
    assert set(map(tuple, pixels.reshape(-1, 3))) <= set(map(tuple, cells.reshape(-1, 3)))
    steps_along_rows = np.any(pixels[:, 1:] != pixels[:, :-1], axis=2).sum(axis=1)
    steps_along_cols = np.any(pixels[1:] != pixels[:-1], axis=2).sum(axis=0)
    assert steps_along_rows.max() <= grid - 1 and steps_along_cols.max() <= grid - 1  # at most grid blocks per line


def test_pixelate_box_smaller_than_grid_is_left_as_is() -> None:
    image = textured_image()
    out, _ = run("pixelate", image, faces=[FaceBox(5, 5, 6, 7)])
    assert np.array_equal(out, image)


@pytest.mark.parametrize("percent", [10, 50, 90])
def test_noise_changes_k_percent_of_face_pixels(percent: int) -> None:
    image = textured_image()
    out, _ = run("noise", image, faces=[INSIDE], percent=percent)
    changed = np.any(region(out, INSIDE) != region(image, INSIDE), axis=2).mean()
    assert changed == pytest.approx(percent / 100, abs=0.01)


def test_noise_is_reproducible_from_the_rng() -> None:
    image = textured_image()
    first, _ = run("noise", image, seed=3)
    again, _ = run("noise", image, seed=3)
    other, _ = run("noise", image, seed=4)
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_eyes_bar_from_box_geometry() -> None:
    image = textured_image()
    out, outcomes = run("eyes", image, faces=[INSIDE])
    assert outcomes[0].detail == "box_geometry"
    eye_row = INSIDE.y + int(0.4 * INSIDE.h)
    assert (out[eye_row, INSIDE.x : INSIDE.x + INSIDE.w] == 0).all()
    assert np.array_equal(out[INSIDE.y, INSIDE.x : INSIDE.x + INSIDE.w], image[INSIDE.y, INSIDE.x : INSIDE.x + INSIDE.w])


def test_eyes_bar_follows_keypoints_and_landmarks() -> None:
    image = textured_image()
    face = FaceBox(20, 20, 80, 80)
    left, right = (45.0, 70.0), (75.0, 60.0)  # tilted eye line, low in the box
    keypoints = [[60, 80, 1], [*left, 1], [*right, 1], [30, 70, 0], [90, 70, 0], [20, 110, 0], [100, 110, 0]]
    out, outcomes = run("eyes", image, faces=[face], extras=[FaceExtras(keypoints7=keypoints)])
    assert outcomes[0].detail == "keypoints7"
    for x, y in (left, right, (60, 65)):
        assert (out[int(y), int(x)] == 0).all()
    assert np.array_equal(out[face.y + 2, face.x : face.x + face.w], image[face.y + 2, face.x : face.x + face.w])
    landmarks = [[0.0, 0.0]] * 36 + [list(left)] * 6 + [list(right)] * 6 + [[0.0, 0.0]] * 20
    out68, outcomes68 = run("eyes", image, faces=[face], extras=[FaceExtras(landmarks68=landmarks)])
    assert outcomes68[0].detail == "landmarks68"
    assert np.array_equal(out68, out)
    hidden = [row[:2] + [0] for row in keypoints]
    _, fallback = run("eyes", image, faces=[face], extras=[FaceExtras(keypoints7=hidden)])
    assert fallback[0].detail == "box_geometry"


def test_original_changes_nothing() -> None:
    image = textured_image()
    out, outcomes = run("original", image)
    assert np.array_equal(out, image)
    assert {o.reason for o in outcomes} == {SKIP_IDENTITY}
    assert build_anonymizer("original", {}).changes_pixels is False


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("blur", {"kernal": "25"}, r"unknown BlurConfig setting\(s\): kernal"),
        ("blur", {"kernel": "abc"}, "expected int"),
        ("blur", {"kernel": 2.5}, "expected int"),
        ("blur", {"kernel": "0"}, "kernel must be >= 1"),
        ("blur", {"filter": "median"}, "expected one of"),
        ("blur", {"strength": 5, "kernel": 7}, "not both"),
        ("noise", {"percent": "101"}, "percent must be in"),
        ("noise", {"percent": "nan"}, "expected float"),
        ("blackout", {"min_face_size": "-1"}, "min_face_size"),
        ("pixelate", {"grid": True}, "expected int"),
        ("nosuchmethod", {}, "unknown anonymization method"),
    ],
)
def test_bad_parameters_are_clear_errors(method: str, params: dict, message: str) -> None:
    with pytest.raises(SafefakesError, match=message):
        build_anonymizer(method, params)


def test_parameters_from_strings_and_json_values_agree() -> None:
    from_cli = build_anonymizer("blur", parse_param_assignments(["kernel=31", "sigma=2.5", "filter=box"]))
    from_json = build_anonymizer("blur", {"kernel": 31, "sigma": 2.5, "filter": "box"})
    assert from_cli.config == from_json.config
    gaussian = build_anonymizer("gaussian9", {"strength": "15"}).config
    assert (gaussian.kernel, gaussian.sigma) == (15, 5.0)
    with pytest.raises(SafefakesError, match="KEY=VALUE"):
        parse_param_assignments(["kernel"])
