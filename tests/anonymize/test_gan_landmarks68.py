"""dlib's 68 landmarks inside face boxes (landmarks68.py), checked on dlib's own annotated example faces."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from safefakes.anonymize.gan.landmarks68 import LANDMARK68_SOURCES, DlibLandmarks68, NoLandmarks, build_landmark68_source
from safefakes.common.errors import SafefakesError
from safefakes.data.wider import FaceBox

#: dlib's example annotations: each box with the 68 points dlib's predictor placed in it.
ANNOTATION_FILES = ("training_with_face_landmarks.xml", "testing_with_face_landmarks.xml")
#: Of the 43 faces of 37-109 px, dlib's detector (upsampling once) finds all but a few in their boxes.
MIN_FOUND_SHARE = 0.9
#: Mean point distance to dlib's annotation, as a share of the box width.
MAX_MEDIAN_ERROR, MAX_ERROR = 0.03, 0.1
PORTRAIT = "2008_001009.jpg"
PORTRAIT_FACE = FaceBox(145, 79, 76, 76)  # its upper face, in training.xml


@pytest.fixture(scope="module")
def dlib_source() -> DlibLandmarks68:
    source = build_landmark68_source("dlib")
    assert isinstance(source, DlibLandmarks68) and source.name == "dlib"
    return source


@pytest.fixture(scope="module")
def dlib_faces(shared_data: Path) -> Path:
    return shared_data / "dlib_faces"


def _annotated_faces(folder: Path) -> list[tuple[str, list[FaceBox], list[np.ndarray]]]:
    """(image file, boxes, (68, 2) annotated points per box) from dlib's example XML files."""
    images = []
    for name in ANNOTATION_FILES:
        for image in ET.parse(folder / name).getroot().iter("image"):
            boxes, points = [], []
            for box in image.iter("box"):
                boxes.append(FaceBox(int(box.get("left")), int(box.get("top")), int(box.get("width")), int(box.get("height"))))
                parts = sorted(box.iter("part"), key=lambda part: int(part.get("name")))
                points.append(np.array([[float(part.get("x")), float(part.get("y"))] for part in parts]))
            images.append((image.get("file"), boxes, points))
    return images


def test_dlib_landmarks_match_dlibs_own_annotations(dlib_source: DlibLandmarks68, dlib_faces: Path) -> None:
    errors, missed = [], 0
    for file, boxes, annotated in _annotated_faces(dlib_faces):
        image = cv2.imread(str(dlib_faces / file))
        found = dlib_source.detect(image, boxes)
        assert len(found) == len(boxes)
        for box, expected, points in zip(boxes, annotated, found):
            assert expected.shape == (68, 2)
            if points is None:
                missed += 1
                continue
            assert points.shape == (68, 3) and (points[:, 2] == 1).all()
            errors.append(float(np.linalg.norm(points[:, :2] - expected, axis=1).mean()) / box.w)
    assert len(errors) + missed == 43
    assert len(errors) >= MIN_FOUND_SHARE * 43
    assert np.median(errors) < MAX_MEDIAN_ERROR and max(errors) < MAX_ERROR


def test_points_are_in_image_pixels_wherever_the_face_is(dlib_source: DlibLandmarks68, dlib_faces: Path) -> None:
    image = cv2.imread(str(dlib_faces / PORTRAIT))
    dx, dy = 20, 30
    shifted_face = FaceBox(PORTRAIT_FACE.x - dx, PORTRAIT_FACE.y - dy, PORTRAIT_FACE.w, PORTRAIT_FACE.h)
    (whole,) = dlib_source.detect(image, [PORTRAIT_FACE])
    (cut,) = dlib_source.detect(np.ascontiguousarray(image[dy:, dx:]), [shifted_face])
    assert whole is not None and cut is not None
    np.testing.assert_allclose(cut[:, :2] + [dx, dy], whole[:, :2])
    inside = (whole[:, 0] >= PORTRAIT_FACE.x - 5) & (whole[:, 0] <= PORTRAIT_FACE.x + PORTRAIT_FACE.w + 5)
    assert inside.all()


def test_tiny_faces_and_boxes_without_a_face_get_none(dlib_source: DlibLandmarks68, dlib_faces: Path) -> None:
    image = cv2.imread(str(dlib_faces / PORTRAIT))
    background = FaceBox(5, 400, 60, 60)  # the portrait's dark bottom-left corner, no face
    found = dlib_source.detect(image, [background, PORTRAIT_FACE])
    assert found[0] is None and found[1] is not None
    for side, expect_found in ((60, True), (15, False)):  # the same face shrunk: found at 60 px, too small at 15 px
        scale = side / PORTRAIT_FACE.w
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        face = FaceBox(round(PORTRAIT_FACE.x * scale), round(PORTRAIT_FACE.y * scale), side, side)
        (points,) = dlib_source.detect(small, [face])
        assert (points is not None) == expect_found, f"{side} px face"
    assert dlib_source.detect(image, []) == []


def test_no_landmarks_finds_nothing() -> None:
    source = build_landmark68_source("none")
    assert isinstance(source, NoLandmarks) and source.name == "none"
    image = np.zeros((50, 50, 3), dtype=np.uint8)
    assert source.detect(image, [FaceBox(0, 0, 10, 10), FaceBox(5, 5, 20, 20)]) == [None, None]
    assert source.detect(image, []) == []


def test_unknown_source_is_a_clear_error() -> None:
    with pytest.raises(SafefakesError, match=r"unknown 68-landmark source 'mtcnn'; expected one of auto, dlib, none"):
        build_landmark68_source("mtcnn")
    assert LANDMARK68_SOURCES == ("auto", "dlib", "none")
