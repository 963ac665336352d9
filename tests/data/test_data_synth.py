"""Synthetic WIDER FACE (data/synth.py) and the real-WIDER download (data/download.py)."""

from __future__ import annotations

import argparse
import hashlib
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from safefakes.common.errors import SafefakesError
from safefakes.data import cli as data_cli
from safefakes.data.download import ArchiveSpec, Checksum, fetch_archives, file_digest, specs_from_arguments
from safefakes.data.synth import SynthConfig, identity_for, render_image, split_counts, synthesize
from safefakes.data.wider import KEYPOINTS_7, WiderLayout, load_split

SMALL = SynthConfig(image_width=256)


def _tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "wider"
    synthesize(root, 10, seed=5, val_images=4, config=SMALL)
    return root


def test_official_layout_and_annotations(small_root: Path) -> None:
    layout = WiderLayout(small_root)
    for split, count in (("train", 6), ("val", 4)):
        annotations, extras = load_split(small_root, split)
        assert len(annotations) == count
        assert [a.name for a in annotations] == sorted(a.name for a in annotations)
        assert extras is not None and set(extras) == {a.name for a in annotations}
        for annotation in annotations:
            assert annotation.event.split("--")[0].isdigit()
            image = cv2.imread(str(layout.image_path(split, annotation.name)))
            assert image is not None and image.shape[1] == 256
            for face, face_extras in zip(annotation.faces, extras[annotation.name], strict=True):
                assert 0 <= face.x and 0 <= face.y and face.x + face.w <= image.shape[1] and face.y + face.h <= image.shape[0]
                assert len(face_extras.keypoints7) == len(KEYPOINTS_7) and len(face_extras.landmarks68) == 68
                assert face_extras.identity is not None and 0 <= face_extras.identity < SMALL.identity_pool
    assert sum(len(a.faces) for split in ("train", "val") for a in load_split(small_root, split)[0]) > 10
    assert sorted(p.name for p in layout.ground_truth_dir.iterdir()) == [
        "wider_easy_val.mat",
        "wider_face_val.mat",
        "wider_hard_val.mat",
        "wider_medium_val.mat",
    ]


def test_ground_truth_settings_nested_and_match_the_txt(small_root: Path) -> None:
    annotations, _ = load_split(small_root, "val")
    faces_by_stem = {a.stem: a.faces for a in annotations}
    settings = {}
    for name in ("easy", "medium", "hard"):
        mat = scipy.io.loadmat(WiderLayout(small_root).ground_truth_dir / f"wider_{name}_val.mat")
        kept = {}
        for event in range(mat["event_list"].shape[0]):
            for j in range(mat["file_list"][event, 0].shape[0]):
                stem = str(mat["file_list"][event, 0][j, 0][0])
                boxes = mat["face_bbx_list"][event, 0][j, 0]
                assert [tuple(b) for b in boxes.reshape(-1, 4)] == [(f.x, f.y, f.w, f.h) for f in faces_by_stem[stem]]
                kept[stem] = {int(i) - 1 for i in np.asarray(mat["gt_list"][event, 0][j, 0]).ravel()}
                assert all(not faces_by_stem[stem][i].invalid for i in kept[stem])
        settings[name] = kept
    assert set(settings["hard"]) == set(faces_by_stem)
    for stem in faces_by_stem:
        assert settings["easy"][stem] <= settings["medium"][stem] <= settings["hard"][stem]


def test_same_seed_same_bytes_other_seed_differs(small_root: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    synthesize(again, 10, seed=5, val_images=4, config=SMALL)
    assert _tree_digest(again) == _tree_digest(small_root)
    other = tmp_path / "other"
    synthesize(other, 10, seed=6, val_images=4, config=SMALL)
    assert _tree_digest(other) != _tree_digest(small_root)
    parallel = tmp_path / "parallel"
    synthesize(parallel, 10, seed=5, val_images=4, config=SMALL, workers=2)
    assert _tree_digest(parallel) == _tree_digest(small_root)


def test_images_do_not_depend_on_how_many_are_made() -> None:
    assert render_image(5, "train", 2, SMALL).faces == render_image(5, "train", 2, SMALL).faces
    first = np.asarray(render_image(9, "train", 1, SMALL).pixels)
    _ = [render_image(9, "train", i, SMALL) for i in (3, 0)]
    np.testing.assert_array_equal(first, render_image(9, "train", 1, SMALL).pixels)
    assert not np.array_equal(first, render_image(9, "val", 1, SMALL).pixels)


def test_image_width_scales_faces_proportionally() -> None:
    big = render_image(2, "train", 0, SynthConfig(image_width=1024))
    small = render_image(2, "train", 0, SynthConfig(image_width=512))
    assert big.pixels.shape[1] == 1024 and small.pixels.shape[1] == 512
    assert len(big.faces) == len(small.faces) > 0
    for b, s in zip(big.faces, small.faces, strict=True):
        assert abs(b.box.x / 2 - s.box.x) <= 1.5 and abs(b.box.w / 2 - s.box.w) <= 1.5
        assert b.extras.identity == s.extras.identity


def test_identities_are_fixed_parameter_sets() -> None:
    assert identity_for(3, 17) == identity_for(3, 17)
    assert identity_for(3, 17) != identity_for(3, 18)
    assert identity_for(3, 17) != identity_for(4, 17)


@pytest.fixture(scope="module")
def calibration_faces() -> list:
    config = SynthConfig()
    return [face for index in range(90) for face in render_image(0, "val", index, config).faces]


def test_landmarks_are_the_drawn_parts_in_ibug_order(calibration_faces: list) -> None:
    upright = [f for f in calibration_faces if not f.box.pose and f.box.size > 30]
    assert len(upright) > 20
    for face in upright:
        lm = np.array(face.extras.landmarks68)
        kp = np.array(face.extras.keypoints7)
        box = face.box
        assert box.x <= lm[30, 0] <= box.x + box.w and box.y <= lm[30, 1] <= box.y + box.h  # nose tip in the box
        assert lm[0, 0] < lm[8, 0] < lm[16, 0]  # jaw from image left, via the chin, to image right
        assert lm[8, 1] > lm[57, 1] > lm[33, 1] > lm[27, 1] > lm[19, 1]  # chin below mouth below nose below brow
        assert lm[36:42, 0].mean() < lm[42:48, 0].mean()  # dlib 36-41 is the image-left eye
        np.testing.assert_allclose(kp[0, :2], lm[30], atol=0.01)  # nose
        np.testing.assert_allclose(kp[1, :2], lm[42:48].mean(axis=0), atol=0.01)  # COCO left eye = subject's left
        np.testing.assert_allclose(kp[2, :2], lm[36:42].mean(axis=0), atol=0.01)
        assert kp[5, 0] > kp[6, 0] and kp[5, 1] > lm[8, 1]  # shoulders below the chin, left on the image right
    visible = np.array([np.array(f.extras.keypoints7)[:, 2] for f in calibration_faces]).mean(axis=0)
    assert 0.5 < visible.min() and visible.max() < 1.0  # some parts hidden by pose and occlusion, most visible
    assert abs(visible[3] - visible[4]) < 0.1 and abs(visible[5] - visible[6]) < 0.1  # no side is favoured


def test_difficulty_medians_match_wider(calibration_faces: list) -> None:
    # WIDER val medians of sqrt(box area) at 1024 px: easy 71.8, medium 46.8, hard 22.2.
    targets = {"easy": 71.8, "medium": 46.8, "hard": 22.2}
    for name, target in targets.items():
        sizes = [f.box.size for f in calibration_faces if name in f.difficulty]
        assert len(sizes) > 30
        assert abs(np.median(sizes) - target) <= 0.2 * target, (name, np.median(sizes))
    invalid = [f for f in calibration_faces if f.box.invalid]
    assert invalid and all(not f.difficulty for f in invalid)
    sizes = np.array([f.box.size for f in calibration_faces])
    assert sizes.min() >= 6 and sizes.max() <= 330
    for attribute in ("blur", "occlusion", "pose", "illumination", "expression"):
        assert len({getattr(f.box, attribute) for f in calibration_faces}) > 1, attribute


def test_split_counts_and_bad_settings() -> None:
    assert split_counts(10, None, SynthConfig()) == (8, 2)
    assert split_counts(10, 3, SynthConfig()) == (7, 3)
    with pytest.raises(SafefakesError):
        split_counts(10, 10, SynthConfig())
    with pytest.raises(SafefakesError):
        split_counts(1, None, SynthConfig())
    with pytest.raises(SafefakesError, match="unknown synth setting"):
        SynthConfig.from_dict({"no_such_knob": 1})
    config = SynthConfig.from_dict({"image_width": 320, "events": [{"folder": "7--Cheering", "min_faces": 1, "max_faces": 2}]})
    assert config.image_width == 320 and config.events[0].folder == "7--Cheering"


def _run_cli(argv: list[str]) -> int:
    """Parse with the data stage's own sub-commands (the top-level CLI imports every stage, which is slow)."""
    parser = argparse.ArgumentParser()
    data_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert _run_cli(["synth", "--out", str(out), "--images", "3", "--seed", "1", "--image-width", "128", "--val-images", "1"]) == 0
    assert '"val_images": 1' in capsys.readouterr().out
    assert len(list((out / "WIDER_val" / "images").rglob("*.jpg"))) == 1
    with pytest.raises(SafefakesError, match="--val-images"):
        _run_cli(["synth", "--out", str(tmp_path / "bad"), "--images", "3", "--val-images", "3"])
    with pytest.raises(SafefakesError, match="not valid JSON"):
        _run_cli(["synth", "--out", str(tmp_path / "bad"), "--images", "3", "--config-json", "{"])
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------------------------------------------------------
# fetch-wider: download (file:// and local paths), checksums, atomic unpack, skip when present
# ---------------------------------------------------------------------------------------------------------------


def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as handle:
        for name, data in files.items():
            handle.writestr(name, data)
    return path


def test_fetch_verifies_unpacks_and_skips(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "WIDER_val.zip", {"WIDER_val/images/0--Parade/a.jpg": b"jpeg", "WIDER_val/images/1--H/b.jpg": b"x"})
    split = _zip(tmp_path / "split.zip", {"wider_face_split/wider_face_val_bbx_gt.txt": b"0--Parade/a.jpg\n0\n0 0 0 0 0 0 0 0 0 0 \n"})
    tools = _zip(tmp_path / "eval_tools.zip", {"eval_tools/ground_truth/wider_easy_val.mat": b"mat", "eval_tools/other.m": b"m"})
    root = tmp_path / "wider"
    specs = specs_from_arguments(
        [f"WIDER_val.zip={archive.as_uri()}", f"wider_face_split.zip={split}", f"eval_tools.zip={tools.as_uri()}"],
        [f"WIDER_val.zip=md5:{file_digest(archive, 'md5')}", f"wider_face_split.zip=sha256:{file_digest(split, 'sha256')}"],
        ["eval_tools.zip=eval_tools/ground_truth:ground_truth"],
    )
    assert fetch_archives(root, specs) == {"WIDER_val.zip": True, "wider_face_split.zip": True, "eval_tools.zip": True}
    assert (root / "WIDER_val/images/0--Parade/a.jpg").read_bytes() == b"jpeg"
    assert (root / "ground_truth/wider_easy_val.mat").read_bytes() == b"mat"
    assert not (root / "eval_tools").exists() and not (root / "other.m").exists()
    assert load_split(root, "val")[0][0].name == "0--Parade/a.jpg"
    assert not list((root / ".downloads").glob("*.zip"))  # archives removed after unpacking
    assert [p.name for p in root.iterdir() if p.name.endswith(".tmp")] == []
    for path in (archive, split, tools):
        path.unlink()  # offline now: a second run must not need the sources
    assert set(fetch_archives(root, specs).values()) == {False}


def test_fetch_checksum_mismatch_leaves_nothing(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", {"WIDER_train/images/x/y.jpg": b"1"})
    root = tmp_path / "wider"
    spec = ArchiveSpec("WIDER_train.zip", str(archive), Checksum.parse("md5:" + "0" * 32))
    with pytest.raises(SafefakesError, match="md5 mismatch"):
        fetch_archives(root, [spec])
    assert not (root / "WIDER_train").exists() and not (root / ".fetched").exists()
    assert not any((root / ".downloads").iterdir())


def test_fetch_refuses_escaping_members_and_bad_specs(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "evil.zip", {"ok/file.txt": b"1", "../escape.txt": b"2"})
    root = tmp_path / "wider"
    with pytest.raises(SafefakesError, match="outside the output folder"):
        fetch_archives(root, [ArchiveSpec("evil.zip", str(archive))])
    assert not (tmp_path / "escape.txt").exists() and not (root / "ok").exists()
    with pytest.raises(SafefakesError, match="ALGO:HEX"):
        Checksum.parse("crc32:1234")
    with pytest.raises(SafefakesError, match="32 hex digits"):
        Checksum.parse("md5:abc")
    with pytest.raises(SafefakesError, match="unknown archive"):
        specs_from_arguments(["a.zip=/x"], ["b.zip=md5:" + "0" * 32], [])
    with pytest.raises(SafefakesError, match="archive not found"):
        fetch_archives(root, [ArchiveSpec("missing.zip", str(tmp_path / "missing.zip"))])


def test_fetch_cli_with_json_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = _zip(tmp_path / "WIDER_val.zip", {"WIDER_val/images/0--Parade/a.jpg": b"jpeg"})
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps([{"name": "WIDER_val.zip", "url": archive.as_uri(), "checksum": "sha256:" + file_digest(archive, "sha256")}]))
    assert _run_cli(["fetch-wider", "--out", str(tmp_path / "wider"), "--spec", str(spec)]) == 0
    assert '"unpacked"' in capsys.readouterr().out
    assert _run_cli(["fetch-wider", "--out", str(tmp_path / "wider"), "--spec", str(spec)]) == 0
    assert '"already there"' in capsys.readouterr().out
