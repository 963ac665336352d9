"""Reading and writing the WIDER FACE evaluation ground truth (.mat files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from safefakes.common.errors import SafefakesError
from safefakes.data.ground_truth import ALL_FACES_FILE, load_ground_truth, setting_file, write_ground_truth
from safefakes.data.wider import DIFFICULTIES, FaceBox, ImageAnnotation

ALL_FILES = (ALL_FACES_FILE, *(setting_file(s) for s in DIFFICULTIES))


def _annotations() -> list[ImageAnnotation]:
    return [
        ImageAnnotation("1--Handshaking/1_a_1.jpg", [FaceBox(10, 20, 30, 40, blur=2, invalid=0), FaceBox(300, 20, 12, 14, pose=1)]),
        ImageAnnotation("0--Parade/0_b_2.jpg", [FaceBox(5, 5, 300, 280, occlusion=1, expression=1, illumination=1)]),
        ImageAnnotation("1--Handshaking/1_c_3.jpg", []),
    ]


def _difficulty() -> dict[str, list[list[int]]]:
    return {"easy": [[0], [], []], "medium": [[0], [0], []], "hard": [[1, 0], [0], []]}


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    write_ground_truth(tmp_path, _annotations(), _difficulty())
    ground_truth = load_ground_truth(tmp_path)
    assert ground_truth.keys() == [("1--Handshaking", "1_a_1"), ("1--Handshaking", "1_c_3"), ("0--Parade", "0_b_2")]
    first, empty, parade = ground_truth.images
    np.testing.assert_array_equal(first.boxes, [[10, 20, 30, 40], [300, 20, 12, 14]])
    assert first.counted["easy"].tolist() == [True, False] and first.counted["hard"].tolist() == [True, True]
    assert parade.counted["easy"].tolist() == [False] and parade.counted["medium"].tolist() == [True]
    # An image without faces carries the official all-zero placeholder box, counted nowhere.
    np.testing.assert_array_equal(empty.boxes, [[0, 0, 0, 0]])
    assert not any(mask.any() for mask in empty.counted.values())
    assert ground_truth.face_counts() == {"easy": 1, "medium": 2, "hard": 3}
    labels = scipy.io.loadmat(str(tmp_path / ALL_FACES_FILE))
    assert labels["blur_label_list"][0, 0][0, 0].ravel().tolist() == [2, 0]
    assert labels["pose_label_list"][0, 0][0, 0].ravel().tolist() == [0, 1]
    assert labels["illumination_label_list"][1, 0][0, 0].ravel().tolist() == [1]


def test_written_bytes_are_reproducible(tmp_path: Path) -> None:
    write_ground_truth(tmp_path / "a", _annotations(), _difficulty())
    write_ground_truth(tmp_path / "b", _annotations(), _difficulty())
    for name in ALL_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert not list((tmp_path / "a").glob(".*"))  # no temporary files left behind


@pytest.mark.parametrize(
    "difficulty, message",
    [
        ({"easy": [[0], [], []], "medium": [[0], [0], []]}, "lacks setting"),
        ({"easy": [[0], []], "medium": [[0], [0], []], "hard": [[0], [0], []]}, "entries for 3 images"),
        ({"easy": [[2], [], []], "medium": [[0], [0], []], "hard": [[0], [0], []]}, "must lie in"),
        ({"easy": [[0, 0], [], []], "medium": [[0], [0], []], "hard": [[0], [0], []]}, "repeat"),
        ({"easy": [[0], [], [0]], "medium": [[0], [0], []], "hard": [[0], [0], []]}, "must lie in"),
    ],
)
def test_write_rejects_bad_difficulty(tmp_path: Path, difficulty: dict, message: str) -> None:
    with pytest.raises(SafefakesError, match=message):
        write_ground_truth(tmp_path, _annotations(), difficulty)
    assert not any(tmp_path.iterdir())


def test_load_reports_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(SafefakesError, match="not found"):
        load_ground_truth(tmp_path)
    scipy.io.savemat(str(tmp_path / ALL_FACES_FILE), {"something": np.zeros(3)})
    with pytest.raises(SafefakesError, match="missing key"):
        load_ground_truth(tmp_path)


def test_subset_keeps_order_and_rejects_unknown_images(tmp_path: Path) -> None:
    write_ground_truth(tmp_path, _annotations(), _difficulty())
    ground_truth = load_ground_truth(tmp_path)
    subset = ground_truth.subset([("0--Parade", "0_b_2"), ("1--Handshaking", "1_a_1")])
    assert subset.keys() == [("1--Handshaking", "1_a_1"), ("0--Parade", "0_b_2")]
    with pytest.raises(SafefakesError, match="not in the ground truth"):
        ground_truth.subset([("0--Parade", "nope")])


def test_real_validation_ground_truth(shared_data: Path) -> None:
    ground_truth = load_ground_truth(shared_data / "wider_face" / "ground_truth")
    assert len(ground_truth) == 3226
    assert sum(image.boxes.shape[0] for image in ground_truth.images) == 39708
    assert ground_truth.face_counts() == {"easy": 7211, "medium": 13319, "hard": 31958}
    assert ground_truth.images[0].key == ("0--Parade", "0_Parade_marchingband_1_465")
    for image in ground_truth.images:  # the settings are nested
        assert not (image.counted["easy"] & ~image.counted["medium"]).any()
        assert not (image.counted["medium"] & ~image.counted["hard"]).any()


def _read_val_txt_keeping_degenerate_boxes(path: Path) -> list[ImageAnnotation]:
    """The official val txt as annotations, keeping w<=0 / h<=0 boxes so face indices match the .mat files."""
    lines = path.read_text().splitlines()
    annotations, index = [], 0
    while index < len(lines):
        name, count = lines[index], int(lines[index + 1])
        rows = [[int(v) for v in line.split()] for line in lines[index + 2 : index + 2 + max(count, 1)]]
        faces = [FaceBox(*row) for row in rows if any(row)] if count else []
        annotations.append(ImageAnnotation(name, faces))
        index += 2 + max(count, 1)
    return annotations


def test_written_files_reproduce_the_official_arrays(shared_data: Path, tmp_path: Path) -> None:
    official_dir = shared_data / "wider_face" / "ground_truth"
    annotations = _read_val_txt_keeping_degenerate_boxes(shared_data / "wider_face" / "wider_face_split" / "wider_face_val_bbx_gt.txt")
    official = load_ground_truth(official_dir)
    difficulty = {s: [np.flatnonzero(image.counted[s]).tolist() for image in official.images] for s in DIFFICULTIES}
    write_ground_truth(tmp_path, annotations, difficulty)
    for name in ALL_FILES:
        expected = scipy.io.loadmat(str(official_dir / name))
        written = scipy.io.loadmat(str(tmp_path / name))
        keys = sorted(k for k in expected if not k.startswith("__"))
        assert keys == sorted(k for k in written if not k.startswith("__")), name
        empty_shape_differences = 0
        for key in keys:
            assert expected[key].shape == written[key].shape == (61, 1) and written[key].dtype == object
            for event in range(61):
                a, b = expected[key][event, 0], written[key][event, 0]
                if key == "event_list":
                    assert a.dtype == b.dtype and a.tolist() == b.tolist()
                    continue
                assert a.shape == b.shape, (name, key, event)
                for row in range(a.shape[0]):
                    x, y = a[row, 0], b[row, 0]
                    assert x.dtype == y.dtype, (name, key, event, row)
                    if key == "gt_list" and x.size == 0 and y.size == 0:
                        # The official files store some empty gt_lists as 0x0 and others as 0x1, by no rule the
                        # inputs carry; we write 0x0 for images without faces and 0x1 otherwise.
                        empty_shape_differences += x.shape != y.shape
                        continue
                    if key == "face_bbx_list" and (event, row) == (33, 8):
                        # 39_Ice_Skating_iceskiing_39_583, face 8: w = -2 in the .mat, 0 in the official txt.
                        assert x[7, 2] == -2 and y[7, 2] == 0
                        y = y.copy()
                        y[7, 2] = -2
                    assert x.shape == y.shape and np.array_equal(x, y), (name, key, event, row)
        assert empty_shape_differences == {"wider_easy_val.mat": 80, "wider_medium_val.mat": 20}.get(name, 0), name
