"""Training-set readers of the GAN anonymizers: PIPA, identity folders, identities.csv, CelebA (crop_readers.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from safefakes.anonymize.gan.crop_readers import (
    IdentitySelection,
    identity_crop_set,
    identity_numbers,
    identity_samples,
    keypoints7_from_landmarks68,
    pipa_crop_set,
    read_crop_folder,
    read_pipa_annotations,
    select_identities,
)
from safefakes.anonymize.gan.cropsets import load_crop_set
from safefakes.anonymize.gan.landmarks68 import NoLandmarks
from safefakes.common.errors import SafefakesError
from safefakes.data.synth_identities import SynthIdentitiesConfig, render_identity_photo, synthesize_identities
from safefakes.data.wider import KEYPOINTS_7

RESOLUTION = 64
CONTEXT = 2.0
NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR, LEFT_SHOULDER, RIGHT_SHOULDER = range(7)

# PIPA fixture: real photos with dlib's face boxes (dlib_faces/*.xml) as head boxes, identities chosen here.
#   (photoset, photo, split folder, dlib image, [(x, y, w, h, identity, subset)])
PIPA_PHOTOS = [
    ("100", "1", "train", "2008_001009.jpg", [(145, 79, 76, 76, 11, 1), (125, 214, 90, 91, 12, 1)]),
    (
        "100",
        "2",
        "val",
        "2008_001322.jpg",
        [(104, 162, 76, 76, 21, 2), (232, 218, 63, 63, 22, 2), (344, 155, 90, 90, 23, 2), (10, 10, 60, 60, 24, 1)],
    ),  # foliage, no face; a train head in a val photo
    ("200", "1", "test", "2009_004587.jpg", [(154, 46, 75, 76, 31, 3), (266, 280, 63, 63, 32, 3)]),
    ("300", "1", "leftover", "2008_002506.jpg", [(329, 78, 109, 109, 41, 0)]),
]
PIPA_TRAIN_VAL_FACES = 6
FOLIAGE_IDENTITY = 24


def _write_pipa(root: Path, dlib_faces: Path, photos=PIPA_PHOTOS) -> Path:
    lines = []
    for photoset, photo, folder, source, heads in photos:
        (root / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(dlib_faces / source, root / folder / f"{photoset}_{photo}.jpg")
        lines += [f"{photoset} {photo} {x} {y} {w} {h} {identity} {subset}" for x, y, w, h, identity, subset in heads]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "index.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def pipa_root(tmp_path_factory, shared_data: Path) -> Path:
    return _write_pipa(tmp_path_factory.mktemp("pipa"), shared_data / "dlib_faces")


@pytest.fixture(scope="module")
def pipa_crops(pipa_root: Path):
    return read_crop_folder(pipa_root, RESOLUTION, CONTEXT, min_face_size=50)


def _image_region(image: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
    """The context square of a box that lies inside the image, resized to RESOLUTION, as RGB."""
    side = int(round(CONTEXT * max(w, h)))
    x0, y0 = int(np.floor(x + w / 2 - side / 2)), int(np.floor(y + h / 2 - side / 2))
    assert x0 >= 0 and y0 >= 0 and x0 + side <= image.shape[1] and y0 + side <= image.shape[0]
    return cv2.resize(image[y0 : y0 + side, x0 : x0 + side], (RESOLUTION, RESOLUTION), interpolation=cv2.INTER_AREA)[:, :, ::-1]


# ----------------------------------------------------------------------------------------------------------------
# keypoints7_from_landmarks68


def _grid_landmarks() -> np.ndarray:
    rng = np.random.default_rng(3)
    return np.concatenate([rng.uniform(0, 100, size=(68, 2)), np.ones((68, 1))], axis=1)


def test_keypoints7_from_landmarks68_takes_nose_tip_eye_centres_and_jaw_ends() -> None:
    points = _grid_landmarks()
    keypoints = keypoints7_from_landmarks68(points)
    assert keypoints.shape == (7, 3)
    assert KEYPOINTS_7[NOSE] == "nose" and KEYPOINTS_7[LEFT_EYE] == "left_eye" and KEYPOINTS_7[RIGHT_EAR] == "right_ear"
    np.testing.assert_allclose(keypoints[NOSE], [*points[30, :2], 1])
    np.testing.assert_allclose(keypoints[RIGHT_EYE], [*points[36:42, :2].mean(axis=0), 1])  # person's right = image left
    np.testing.assert_allclose(keypoints[LEFT_EYE], [*points[42:48, :2].mean(axis=0), 1])
    np.testing.assert_allclose(keypoints[RIGHT_EAR], [*points[0, :2], 1])
    np.testing.assert_allclose(keypoints[LEFT_EAR], [*points[16, :2], 1])
    assert not keypoints[[LEFT_SHOULDER, RIGHT_SHOULDER]].any()


def test_keypoints7_from_landmarks68_hides_points_with_an_invisible_source() -> None:
    points = _grid_landmarks()
    points[40, 2] = 0  # one point of the right eye
    points[16, 2] = 0  # the left jaw end
    keypoints = keypoints7_from_landmarks68(points)
    assert keypoints[RIGHT_EYE, 2] == 0 and keypoints[LEFT_EAR, 2] == 0
    assert keypoints[[NOSE, LEFT_EYE, RIGHT_EAR], 2].tolist() == [1, 1, 1]


def test_keypoints7_from_landmarks68_accepts_xy_and_rejects_other_shapes() -> None:
    points = _grid_landmarks()
    np.testing.assert_allclose(keypoints7_from_landmarks68(points[:, :2]), keypoints7_from_landmarks68(points))
    with pytest.raises(SafefakesError, match="68 rows"):
        keypoints7_from_landmarks68(points[:67])


def test_identity_numbers_sort_numeric_names_numerically() -> None:
    assert identity_numbers(["10", "9", "b", "a", "9"]) == {"9": 0, "10": 1, "a": 2, "b": 3}
    assert identity_numbers(["id02", "id01"]) == {"id01": 0, "id02": 1}


# ----------------------------------------------------------------------------------------------------------------
# PIPA


def test_pipa_reads_train_and_val_heads_with_their_identities(pipa_crops) -> None:
    assert len(pipa_crops) == PIPA_TRAIN_VAL_FACES
    assert pipa_crops.images.shape == (PIPA_TRAIN_VAL_FACES, RESOLUTION, RESOLUTION, 3) and pipa_crops.images.dtype == np.uint8
    assert pipa_crops.identities.tolist() == [11, 12, 21, 22, 23, FOLIAGE_IDENTITY]  # test (3) and leftover (0) left out
    assert pipa_crops.source.startswith("pipa:")


def test_pipa_min_face_size_is_the_square_root_of_the_area(pipa_root: Path) -> None:
    crops = pipa_crop_set(pipa_root, RESOLUTION, CONTEXT, min_face_size=70, landmark_source=NoLandmarks())
    assert crops.identities.tolist() == [11, 12, 21, 23]  # the 63 px and 60 px heads are too small


def test_pipa_crops_are_the_rgb_context_squares_with_the_box_in_the_middle(pipa_crops, shared_data: Path) -> None:
    image = cv2.imread(str(shared_data / "dlib_faces" / "2008_001009.jpg"))
    np.testing.assert_array_equal(pipa_crops.images[0], _image_region(image, 145, 79, 76, 76))
    half = RESOLUTION / (2 * CONTEXT)
    for x0, y0, x1, y1 in pipa_crops.boxes:
        assert abs((x0 + x1) / 2 - RESOLUTION / 2) <= 1 and abs((y0 + y1) / 2 - RESOLUTION / 2) <= 1
        assert abs((x1 - x0) - 2 * half) <= 2 and abs((y1 - y0) - 2 * half) <= 2


def test_pipa_landmarks_lie_on_the_faces_and_keypoints_follow_from_them(pipa_crops) -> None:
    faces = pipa_crops.identities != FOLIAGE_IDENTITY
    assert pipa_crops.landmarks[faces, :, 2].all(), "dlib should find all five real faces of 63-90 px"
    for landmarks, keypoints, (x0, y0, x1, y1) in zip(pipa_crops.landmarks[faces], pipa_crops.keypoints[faces], pipa_crops.boxes[faces]):
        pixels = landmarks[:, :2] * RESOLUTION
        margin = 0.25 * (x1 - x0)
        assert (pixels[:, 0] > x0 - margin).all() and (pixels[:, 0] < x1 + margin).all()
        assert (pixels[:, 1] > y0 - margin).all() and (pixels[:, 1] < y1 + margin).all()
        np.testing.assert_allclose(keypoints, keypoints7_from_landmarks68(landmarks), atol=1e-6)
        # upright frontal faces: the person's right eye and ear on the image's left, nose below and between the eyes
        assert keypoints[RIGHT_EAR, 0] < keypoints[RIGHT_EYE, 0] < keypoints[NOSE, 0] < keypoints[LEFT_EYE, 0] < keypoints[LEFT_EAR, 0]
        assert keypoints[NOSE, 1] > max(keypoints[LEFT_EYE, 1], keypoints[RIGHT_EYE, 1])
        assert not keypoints[[LEFT_SHOULDER, RIGHT_SHOULDER], 2].any()


def test_pipa_head_without_a_face_keeps_absent_points_and_load_crop_set_can_drop_it(pipa_root: Path, pipa_crops) -> None:
    foliage = pipa_crops.identities.tolist().index(FOLIAGE_IDENTITY)
    assert not pipa_crops.landmarks[foliage].any() and not pipa_crops.keypoints[foliage].any()
    kept = load_crop_set(pipa_root, RESOLUTION, CONTEXT, 50, requirements=("landmarks68", "keypoints7"))
    assert kept.identities.tolist() == [11, 12, 21, 22, 23]


def test_pipa_annotation_file_may_be_given_itself(pipa_root: Path) -> None:
    crops = read_crop_folder(pipa_root / "annotations" / "index.txt", RESOLUTION, CONTEXT, 80)
    assert crops.identities.tolist() == [12, 23]


def test_pipa_errors_name_the_problem(tmp_path: Path, shared_data: Path) -> None:
    root = _write_pipa(tmp_path / "pipa", shared_data / "dlib_faces", PIPA_PHOTOS[:1])
    index = root / "annotations" / "index.txt"
    index.write_text("100 1 145 79 76 76 11\n", encoding="utf-8")
    with pytest.raises(SafefakesError, match=r"index.txt:1: expected 8 columns"):
        read_crop_folder(root, RESOLUTION, CONTEXT, 0)
    index.write_text("100 1 145 79 76 76 11 7\n", encoding="utf-8")
    with pytest.raises(SafefakesError, match="subset_id must be one of"):
        read_pipa_annotations(index)
    index.write_text("100 9 145 79 76 76 11 1\n", encoding="utf-8")
    with pytest.raises(SafefakesError, match=r"PIPA photo 100_9.jpg not found"):
        read_crop_folder(root, RESOLUTION, CONTEXT, 0)
    index.write_text("100 1 145 79 76 76 11 3\n", encoding="utf-8")
    with pytest.raises(SafefakesError, match="no head of subset 1, 2"):
        read_crop_folder(root, RESOLUTION, CONTEXT, 0)
    index.unlink()
    (root / "val").mkdir()
    with pytest.raises(SafefakesError, match="looks like PIPA but has no annotations/index.txt"):
        read_crop_folder(root, RESOLUTION, CONTEXT, 0)


# ----------------------------------------------------------------------------------------------------------------
# Identity folders, identities.csv, CelebA

# Real photos of two identities (face_recognition/deepface, one face each), small enough to read quickly.
DEEPFACE_PHOTOS = {"id10": ("img46.jpg", "img45.jpg"), "id01": ("img5.jpg", "img10.jpg")}


@pytest.fixture(scope="module")
def identity_root(tmp_path_factory, shared_data: Path) -> Path:
    root = tmp_path_factory.mktemp("identities")
    for identity, names in DEEPFACE_PHOTOS.items():
        (root / identity).mkdir()
        for name in names:
            shutil.copy(shared_data / "face_recognition" / "deepface" / identity / name, root / identity / name)
    (root / "notes").mkdir()  # a folder without images is no identity
    (root / "notes" / "readme.txt").write_text("not an image", encoding="utf-8")
    return root


def test_identity_folders_are_numbered_by_sorted_name_with_detected_faces(identity_root: Path) -> None:
    crops = read_crop_folder(identity_root, RESOLUTION, CONTEXT, 40)
    assert crops.identities.tolist() == [0, 0, 1, 1]  # id01, id01, id10, id10
    assert crops.images.shape == (4, RESOLUTION, RESOLUTION, 3) and crops.source.startswith("identity-folders:")
    assert crops.landmarks[:, :, 2].all() and crops.keypoints[:, :5, 2].all()
    for x0, _y0, x1, _y1 in crops.boxes:  # dlib's box is the face, not the whole photo
        assert abs((x1 - x0) - RESOLUTION / CONTEXT) <= 2 and abs((x0 + x1) / 2 - RESOLUTION / 2) <= 1
    eyes_u = crops.keypoints[:, [RIGHT_EYE, LEFT_EYE], 0]
    assert (eyes_u[:, 0] < eyes_u[:, 1]).all()


def test_identities_csv_without_boxes_reads_the_listed_photos(tmp_path: Path, identity_root: Path) -> None:
    root = tmp_path / "csv"
    shutil.copytree(identity_root, root)
    (root / "identities.csv").write_text("path,identity\nid10/img46.jpg,bob\nid01/img5.jpg,alice\nid01/img10.jpg,alice\n", encoding="utf-8")
    crops = read_crop_folder(root, RESOLUTION, CONTEXT, 40)
    assert crops.identities.tolist() == [1, 0, 0] and crops.source.startswith("identities:")


def test_photo_without_a_detectable_face_becomes_the_face_box(tmp_path: Path) -> None:
    for identity in ("a", "b"):
        (tmp_path / identity).mkdir()
        gradient = np.tile(np.linspace(0, 255, 120, dtype=np.uint8)[None, :, None], (90, 1, 3))
        cv2.imwrite(str(tmp_path / identity / "plain.png"), gradient)
    crops = read_crop_folder(tmp_path, RESOLUTION, CONTEXT, 40)
    side = RESOLUTION / CONTEXT
    for x0, y0, x1, y1 in crops.boxes:  # the whole 120 x 90 photo, its longer side filling 1 / CONTEXT of the crop
        assert abs((x1 - x0) - side) <= 2 and abs((y1 - y0) - side * 90 / 120) <= 2
    assert crops.identities.tolist() == [0, 1] and not crops.landmarks.any() and not crops.keypoints.any()
    with pytest.raises(SafefakesError, match="no face to train on"):
        read_crop_folder(tmp_path, RESOLUTION, CONTEXT, 200)  # min_face_size applies to every reader


def test_synthetic_identity_set_uses_its_csv_boxes(tmp_path: Path) -> None:
    root = tmp_path / "synth_ids"
    config = SynthIdentitiesConfig(size_px=96)
    synthesize_identities(root, n_identities=3, photos_per_identity=2, seed=0, config=config)
    crops = load_crop_set(root, RESOLUTION, CONTEXT, 10)
    assert crops.identities.tolist() == [0, 0, 1, 1, 2, 2]
    assert crops.landmarks.shape == (6, 68, 3) and crops.keypoints.shape == (6, 7, 3)
    assert set(np.unique(crops.landmarks[:, :, 2])) <= {0.0, 1.0}
    box = render_identity_photo(0, 0, 0, config).box  # identity 0, photo 0: its csv box, in crop pixels
    square_side = round(CONTEXT * max(box[2], box[3]))
    x0, y0, x1, y1 = crops.boxes[0]
    assert abs((x1 - x0) - box[2] * RESOLUTION / square_side) <= 2 and abs((y1 - y0) - box[3] * RESOLUTION / square_side) <= 2


def test_celeba_layout_reads_identity_file(tmp_path: Path) -> None:
    images = tmp_path / "img_align_celeba"
    images.mkdir()
    lines = []
    for index, identity in enumerate((2880, 2880, 17, 17)):
        name = f"{index + 1:06d}.jpg"
        cv2.imwrite(str(images / name), render_identity_photo(1, identity, index, SynthIdentitiesConfig(size_px=96)).image)
        lines.append(f"{name} {identity}")
    (tmp_path / "identity_CelebA.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    crops = read_crop_folder(tmp_path, RESOLUTION, CONTEXT, 10)
    assert crops.identities.tolist() == [1, 1, 0, 0]  # 17 before 2880: numeric order
    assert crops.source.startswith("celeba:")
    (tmp_path / "img_align_celeba").rename(tmp_path / "elsewhere")
    with pytest.raises(SafefakesError, match="CelebA needs img_align_celeba/"):
        read_crop_folder(tmp_path, RESOLUTION, CONTEXT, 10)


def test_unknown_or_missing_folders_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SafefakesError, match="training set not found"):
        read_crop_folder(tmp_path / "missing", RESOLUTION, CONTEXT, 10)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SafefakesError, match="not a known training set"):
        read_crop_folder(tmp_path / "empty", RESOLUTION, CONTEXT, 10)


# Identity selection (CIAGAN's CelebA subset: identities with >= 30 faces, 1,200 of them), on a tiny set:
#   identity folder -> photos. With at least 3 photos and at most 2 identities: "40" has too few, "70" (5 photos) ranks
#   first although its name sorts late, and the tie at 4 photos goes by name in numeric order ("3" before "12" and
#   "ann"; text order would put "12" first), so only "3" joins it.
SELECTION_PHOTOS = {"12": 4, "3": 4, "40": 2, "70": 5, "ann": 4}
TINY_SELECTION = IdentitySelection(min_faces_per_identity=3, max_identities=2)
TINY_SELECTION_KEPT = ("3", "70")


def _write_identity_folders(root: Path, photos: dict[str, int]) -> Path:
    """One folder per identity holding that many plain (faceless, so whole-photo) images."""
    for identity, count in photos.items():
        (root / identity).mkdir(parents=True)
        for index in range(count):
            cv2.imwrite(str(root / identity / f"{index:03d}.png"), np.full((48, 40, 3), 10 * index, dtype=np.uint8))
    return root


def test_identity_selection_keeps_the_best_represented_identities_ties_by_name(tmp_path: Path) -> None:
    root = _write_identity_folders(tmp_path / "ids", SELECTION_PHOTOS)
    samples, _ = identity_samples(root)
    kept = select_identities(samples, TINY_SELECTION)
    assert sorted({sample.identity for sample in kept}, key=int) == sorted(TINY_SELECTION_KEPT, key=int)
    assert [sample.key for sample in kept] == [sample.key for sample in samples if sample.identity in TINY_SELECTION_KEPT]  # listed order
    assert select_identities(samples[::-1], TINY_SELECTION) == kept[::-1]  # the same identities whatever the listing order
    at_least_three = select_identities(samples, IdentitySelection(min_faces_per_identity=3))
    assert {sample.identity for sample in at_least_three} == {"12", "3", "70", "ann"}
    assert select_identities(samples, IdentitySelection(3, max_identities=10)) == at_least_three  # a cap above the count keeps all
    assert select_identities(samples, IdentitySelection(max_identities=1)) == [sample for sample in samples if sample.identity == "70"]
    assert select_identities(samples, IdentitySelection()) == samples and not IdentitySelection().selects


def test_identity_crop_set_with_a_selection_numbers_the_kept_identities(tmp_path: Path) -> None:
    root = _write_identity_folders(tmp_path / "ids", SELECTION_PHOTOS)
    everyone = identity_crop_set(root, RESOLUTION, CONTEXT, 10, landmark_source=NoLandmarks())
    assert len(everyone) == sum(SELECTION_PHOTOS.values()) and len(set(everyone.identities.tolist())) == len(SELECTION_PHOTOS)
    crops = identity_crop_set(root, RESOLUTION, CONTEXT, 10, landmark_source=NoLandmarks(), selection=TINY_SELECTION)
    # Folders are listed "12", "3", "40", "70", "ann"; the kept "3" and "70" are numbered 0 and 1 among themselves.
    assert crops.identities.tolist() == [0] * 4 + [1] * 5
    assert crops.source.startswith("identity-folders[2 identities]:")
    with pytest.raises(SafefakesError, match="none of its 5 identities is kept: identities with at least 6 photos"):
        identity_crop_set(root, RESOLUTION, CONTEXT, 10, landmark_source=NoLandmarks(), selection=IdentitySelection(6))


def test_identity_selection_reaches_celeba_through_load_crop_set_and_is_refused_elsewhere(tmp_path: Path, pipa_root: Path) -> None:
    celeba = tmp_path / "celeba"
    (celeba / "img_align_celeba").mkdir(parents=True)
    lines = []
    for index, identity in enumerate((17, 17, 17, 9, 9, 9, 5, 5)):
        name = f"{index + 1:06d}.jpg"
        cv2.imwrite(str(celeba / "img_align_celeba" / name), np.full((48, 40, 3), 20 * index, dtype=np.uint8))
        lines.append(f"{name} {identity}")
    (celeba / "identity_CelebA.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    crops = load_crop_set(celeba, RESOLUTION, CONTEXT, 10, identity_selection=IdentitySelection(min_faces_per_identity=3, max_identities=1))
    assert len(crops) == 3 and crops.identities.tolist() == [0, 0, 0]
    samples, layout = identity_samples(celeba)
    assert layout == "celeba" and {sample.identity for sample in select_identities(samples, IdentitySelection(3, 1))} == {"9"}  # 9 before 17
    assert crops.source.startswith("celeba[1 identities]:")
    with pytest.raises(SafefakesError, match="applies to identity sets only"):
        read_crop_folder(pipa_root, RESOLUTION, CONTEXT, 50, identity_selection=TINY_SELECTION)
    fdf = tmp_path / "fdf"
    (fdf / "images").mkdir(parents=True)
    np.save(fdf / "landmarks.npy", np.zeros((0, 7, 2)))
    with pytest.raises(SafefakesError, match=r"applies to identity sets \(CelebA style\) only"):
        load_crop_set(fdf, RESOLUTION, CONTEXT, 10, identity_selection=TINY_SELECTION)
    for bad in ({"min_faces_per_identity": 0}, {"max_identities": 0}):
        with pytest.raises(SafefakesError, match="must be >= 1"):
            IdentitySelection(**bad)


def test_train_gan_command_passes_the_identity_selection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`safefakes train-gan --min-faces-per-identity 30 --max-identities 1200` (the workflow's CIAGAN CelebA set) reaches the reader."""
    from safefakes.anonymize.gan import training
    from safefakes.cli import build_parser

    requests = []
    monkeypatch.setattr(training, "train_gan", lambda request: requests.append(request) or [])
    common = ["train-gan", "--gan", "ciagan", "--train-set", str(tmp_path), "--iterations", "2", "--checkpoints", str(tmp_path), "--state-dir", str(tmp_path)]
    for extra in (["--min-faces-per-identity", "30", "--max-identities", "1200"], []):
        args = build_parser().parse_args(common + extra)
        assert args.func(args) == 0
    selected, plain = requests
    assert selected.identity_selection() == IdentitySelection(min_faces_per_identity=30, max_identities=1200)
    assert plain.identity_selection() is None
