"""The WIDER FACE reader/writer (data/wider.py) on the real annotation files in ../shared/data/wider_face."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from safefakes.common.errors import SafefakesError
from safefakes.data.wider import (
    FaceBox,
    FaceExtras,
    ImageAnnotation,
    WiderLayout,
    format_bbx_gt,
    load_split,
    parse_bbx_gt,
    read_bbx_gt,
    read_extras,
    safe_relative_name,
    write_bbx_gt,
    write_extras,
)


@pytest.fixture(scope="module")
def val_annotations(wider_fixture_root: Path) -> list[ImageAnnotation]:
    return read_bbx_gt(wider_fixture_root / "wider_face_split" / "wider_face_val_bbx_gt.txt")


def test_official_val_counts(val_annotations: list[ImageAnnotation]) -> None:
    # 3,226 images and 39,708 rows: 39,697 real boxes, 7 degenerate boxes dropped, 4 empty images (count 1, zero box).
    assert len(val_annotations) == 3226
    assert sum(len(a.faces) for a in val_annotations) == 39697
    assert sum(a.dropped_degenerate for a in val_annotations) == 7
    assert sum(1 for a in val_annotations if not a.faces) == 4
    assert all(face.w > 0 and face.h > 0 for a in val_annotations for face in a.faces)
    assert sum(face.invalid for a in val_annotations for face in a.faces) == 585


def test_official_train_counts(wider_fixture_root: Path) -> None:
    annotations = read_bbx_gt(wider_fixture_root / "wider_face_split" / "wider_face_train_bbx_gt.from_mat.txt")
    assert len(annotations) == 12880
    kept = sum(len(a.faces) for a in annotations)
    dropped = sum(a.dropped_degenerate for a in annotations)
    empty = sum(1 for a in annotations if not a.faces)
    assert (kept, dropped, empty) == (159393, 27, 4)
    assert kept + dropped + empty == 159424  # the row count of wider_face_train.mat


def test_val_txt_matches_official_mat(val_annotations: list[ImageAnnotation], wider_fixture_root: Path) -> None:
    mat = scipy.io.loadmat(wider_fixture_root / "ground_truth" / "wider_face_val.mat")
    by_stem = {a.stem: a for a in val_annotations}
    checked = 0
    for event in range(mat["event_list"].shape[0]):
        for j in range(mat["file_list"][event, 0].shape[0]):
            stem = str(mat["file_list"][event, 0][j, 0][0])
            boxes = mat["face_bbx_list"][event, 0][j, 0].astype(int)
            valid = boxes[(boxes[:, 2] > 0) & (boxes[:, 3] > 0)]
            ours = np.array([[f.x, f.y, f.w, f.h] for f in by_stem[stem].faces]).reshape(-1, 4)
            np.testing.assert_array_equal(ours, valid)
            checked += 1
    assert checked == 3226


def test_subsets_round_trip_byte_identical_and_images_exist(wider_fixture_root: Path) -> None:
    layout = WiderLayout(wider_fixture_root)
    for split, name, images, faces in (("val", "val_subset_bbx_gt.txt", 115, 765), ("train", "train_subset_bbx_gt.txt", 50, 297)):
        path = wider_fixture_root / name
        annotations = read_bbx_gt(path)
        assert (len(annotations), sum(len(a.faces) for a in annotations)) == (images, faces)
        assert format_bbx_gt(annotations) == path.read_text(encoding="utf-8")
        assert all(layout.image_path(split, a.name).is_file() for a in annotations)


def test_both_empty_image_conventions() -> None:
    text = "0--Parade/a.jpg\n0\n0 0 0 0 0 0 0 0 0 0 \n0--Parade/b.jpg\n1\n0 0 0 0 0 0 0 0 0 0 \n0--Parade/c.jpg\n1\n1 2 3 4 2 0 0 0 1 0 \n"
    a, b, c = parse_bbx_gt(text)
    assert a.faces == [] and b.faces == [] and a.dropped_degenerate == b.dropped_degenerate == 0
    assert c.faces == [FaceBox(1, 2, 3, 4, blur=2, occlusion=1)]


def test_degenerate_boxes_dropped_and_counted() -> None:
    text = "1--Handshaking/x.jpg\n3\n10 10 0 5 0 0 0 0 0 0 \n10 10 -2 5 0 0 0 0 0 0 \n5 5 8 9 0 0 0 0 0 0 \n"
    (annotation,) = parse_bbx_gt(text)
    assert annotation.faces == [FaceBox(5, 5, 8, 9)]
    assert annotation.dropped_degenerate == 2


@pytest.mark.parametrize("name", ["../etc/passwd.jpg", "/abs/x.jpg", "0--Parade/../../x.jpg", "..\\x.jpg"])
def test_escaping_paths_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(SafefakesError, match="refusing image path"):
        safe_relative_name(name)
    with pytest.raises(SafefakesError, match="refusing image path"):
        WiderLayout(tmp_path).image_path("val", name)
    path = tmp_path / "bad.txt"
    path.write_text(f"{name}\n1\n1 2 3 4 0 0 0 0 0 0 \n", encoding="utf-8")
    with pytest.raises(SafefakesError, match=rf"{path}:1: refusing"):
        read_bbx_gt(path)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a/b.jpg\n1\n1 2 x 4 0 0 0 0 0 0\n", 3, "expected numbers"),
        ("a/b.jpg\ntwo\n", 2, "expected a face count"),
        ("a/b.jpg\n3\n1 2 3 4\n", 2, "ends early"),
        ("a/b.jpg\n1\n1 2 3\n", 3, "4 to 10 numbers"),
        ("a/b.jpg\n1\n1 2 3 4 0 0 0 0 0 0\nnot_an_image\n", 4, "expected an image path"),
        ("a/b.jpg\n", 1, "no face-count line"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "wider_face_val_bbx_gt.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SafefakesError, match=rf"{path}:{line}: .*{message}"):
        read_bbx_gt(path)


def test_missing_files_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(SafefakesError, match="annotation file not found"):
        read_bbx_gt(tmp_path / "nope.txt")
    with pytest.raises(SafefakesError, match="extras file not found"):
        read_extras(tmp_path / "nope.json")
    with pytest.raises(SafefakesError, match="unknown split"):
        WiderLayout(tmp_path).annotation_file("test")


def test_write_then_load_split_with_extras(tmp_path: Path) -> None:
    layout = WiderLayout(tmp_path)
    annotations = [ImageAnnotation("0--Parade/p.jpg", [FaceBox(1, 2, 3, 4, invalid=1)]), ImageAnnotation("0--Parade/q.jpg")]
    extras = {"0--Parade/p.jpg": [FaceExtras(identity=3, keypoints7=[[1.0, 2.0, 1]] * 7, landmarks68=[[0.5, 0.5]] * 68)], "0--Parade/q.jpg": []}
    write_bbx_gt(layout.annotation_file("val"), annotations)
    write_extras(layout.extras_file("val"), extras)
    loaded, loaded_extras = load_split(tmp_path, "val")
    assert [a.faces for a in loaded] == [a.faces for a in annotations]
    assert loaded_extras == extras
