"""Off-the-shelf detectors on real WIDER FACE validation images (../shared/data), scored by ``safefakes evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from safefakes.cli import main
from safefakes.data.wider import read_bbx_gt, write_bbx_gt

SHARED_WIDER = Path(__file__).resolve().parents[3] / "shared" / "data" / "wider_face"
IMAGES = 24  # the first images of the 115-image real subset (fast enough for the suite)

pytestmark = pytest.mark.skipif(not (SHARED_WIDER / "val_subset_bbx_gt.txt").is_file(), reason="../shared/data/wider_face is absent (real WIDER val images)")


@pytest.fixture(scope="module")
def real_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A WIDER root holding the first real validation images (linked, not copied) and their annotations."""
    root = tmp_path_factory.mktemp("realval")
    annotations = read_bbx_gt(SHARED_WIDER / "val_subset_bbx_gt.txt")[:IMAGES]
    for annotation in annotations:
        target = root / "WIDER_val" / "images" / annotation.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(SHARED_WIDER / "WIDER_val" / "images" / annotation.name)
    write_bbx_gt(root / "wider_face_split" / "wider_face_val_bbx_gt.txt", annotations)
    return root


def _ap(pred: Path, root: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, float]:
    assert main(["evaluate", "--pred", str(pred), "--gt", str(SHARED_WIDER / "ground_truth"), "--images-of", str(root)]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_centerface_finds_real_faces_and_not_blacked_out_ones(real_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect-pretrained", "--detector", "centerface", "--wider-root", str(real_root), "--out", str(tmp_path / "original")]) == 0
    original = _ap(tmp_path / "original", real_root, capsys)
    assert original["easy"] >= 0.7, original
    assert len(list((tmp_path / "original").rglob("*.txt"))) == IMAGES
    blacked = tmp_path / "blackout_root"
    assert main(["anonymize", "--method", "blackout", "--wider-root", str(real_root), "--split", "val", "--out", str(blacked)]) == 0
    assert main(["detect-pretrained", "--detector", "centerface", "--wider-root", str(blacked), "--out", str(tmp_path / "blackout")]) == 0
    assert _ap(tmp_path / "blackout", real_root, capsys)["easy"] <= original["easy"] / 2


def test_images_outside_the_root_do_not_count_as_missed(real_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Against the full 3,226-image ground truth, the same predictions score far lower without --images-of."""
    assert main(["detect-pretrained", "--detector", "dlib_hog", "--wider-root", str(real_root), "--out", str(tmp_path / "hog")]) == 0
    subset = _ap(tmp_path / "hog", real_root, capsys)
    assert main(["evaluate", "--pred", str(tmp_path / "hog"), "--gt", str(SHARED_WIDER / "ground_truth")]) == 0
    everything = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert subset["easy"] > 0.2 and everything["easy"] < subset["easy"] * IMAGES / 1000


def test_centerface_decoding_places_a_box_on_its_heatmap_peak() -> None:
    from safefakes.detect.pretrained import CenterFace

    detector = CenterFace.__new__(CenterFace)
    from safefakes.detect.pretrained import CenterFaceConfig

    detector.config = CenterFaceConfig()
    heatmap = np.zeros((8, 8), dtype=np.float32)
    heatmap[3, 5] = 0.9
    sizes = np.zeros((2, 8, 8), dtype=np.float32)
    sizes[:, 3, 5] = np.log([10.0, 6.0])  # height 40 px, width 24 px
    offsets = np.zeros((2, 8, 8), dtype=np.float32)
    offsets[:, 3, 5] = (0.25, -0.25)
    boxes, scores = detector.decode(heatmap, sizes, offsets)
    centre_x, centre_y = (5 - 0.25 + 0.5) * 4, (3 + 0.25 + 0.5) * 4
    assert scores.tolist() == pytest.approx([0.9])
    assert boxes[0] == pytest.approx([centre_x - 12, centre_y - 20, centre_x + 12, centre_y + 20])
