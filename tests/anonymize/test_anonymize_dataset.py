"""The dataset command: layout, manifest, determinism, atomicity, bad input, and a run on real WIDER images."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import safefakes.anonymize.cli as anonymize_cli
import safefakes.anonymize.dataset as dataset_module
from safefakes.anonymize.base import ANONYMIZER_SPECS, AnonymizerSpec, PerImageAnonymizer
from safefakes.anonymize.conventional import BlackoutAnonymizer, BlackoutConfig
from safefakes.anonymize.dataset import MANIFEST_NAME, AnonymizeJob, anonymize_dataset
from safefakes.anonymize.images import BadImageError
from safefakes.common.errors import SafefakesError
from safefakes.data.wider import FaceBox, FaceExtras, ImageAnnotation, WiderLayout, read_bbx_gt, read_extras, write_bbx_gt, write_extras

FACE = FaceBox(10, 12, 30, 36)


def make_image(path: Path, seed: int, channels: int = 3) -> bytes:
    """A small textured picture written in the format of its extension."""
    rng = np.random.default_rng(seed)
    shape = (80, 100) if channels == 1 else (80, 100, channels)
    ok, buffer = cv2.imencode(path.suffix, rng.integers(0, 256, size=shape, dtype=np.uint8))
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.tobytes())
    return buffer.tobytes()


def make_root(tmp_path: Path, names: list[str] | None = None, extras: bool = False) -> tuple[Path, list[ImageAnnotation]]:
    """A WIDER-layout root with a few training images, a ground_truth folder and an extra split file."""
    root = tmp_path / "root"
    layout = WiderLayout(root)
    names = names or [f"0--Parade/img_{i}.jpg" for i in range(5)]
    annotations = []
    for index, name in enumerate(names):
        make_image(layout.image_path("train", name), index)
        annotations.append(ImageAnnotation(name, [FACE, FaceBox(80, 60, 40, 40)] if index % 2 else [FACE]))
    layout.split_dir.mkdir(parents=True)
    write_bbx_gt(layout.annotation_file("train"), annotations)
    (layout.split_dir / "readme.txt").write_text("attribute codes\n")
    if extras:
        write_extras(layout.extras_file("train"), {a.name: [FaceExtras(identity=i) for i, _ in enumerate(a.faces)] for a in annotations})
    layout.ground_truth_dir.mkdir()
    (layout.ground_truth_dir / "wider_face_val.mat").write_bytes(b"not really a mat file")
    return root, annotations


def run_job(root: Path, out: Path, method: str = "noise", **kwargs) -> dict:
    return anonymize_dataset(AnonymizeJob(wider_root=root, split="train", out=out, method=method, **kwargs))


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST_NAME}


def stable_manifest(folder: Path) -> dict:
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    return {key: value for key, value in manifest.items() if key not in ("wall_time_s", "workers")}


def test_layout_and_manifest(tmp_path: Path) -> None:
    root, annotations = make_root(tmp_path, extras=True)
    out = tmp_path / "out"
    manifest = run_job(root, out, "blackout", params={"min_face_size": "35"})
    layout, target = WiderLayout(root), WiderLayout(out)
    assert (out / "ground_truth" / "wider_face_val.mat").read_bytes() == b"not really a mat file"
    assert (target.split_dir / "readme.txt").is_file()
    assert target.annotation_file("train").read_bytes() == layout.annotation_file("train").read_bytes()
    assert target.extras_file("train").read_bytes() == layout.extras_file("train").read_bytes()
    for annotation in annotations:
        pixels = cv2.imread(str(target.image_path("train", annotation.name))).astype(np.int16)
        source = cv2.imread(str(layout.image_path("train", annotation.name))).astype(np.int16)
        assert pixels.shape == (80, 100, 3)
        face = np.s_[FACE.y : FACE.y + FACE.h, FACE.x : FACE.x + FACE.w]
        assert np.abs(pixels[face] - source[face]).mean() < 10  # FACE (size 32.9 < 35) kept, up to JPEG noise
        assert (pixels[62:, 82:].mean() < 3) == (len(annotation.faces) == 2)  # the clipped 40x40 box is black
    counts = manifest["counts"]
    assert counts["images_listed"] == counts["images_written"] == 5
    assert counts["faces_listed"] == 7
    # FACE (sqrt(30*36) = 32.9) is below 35 and stays; the 40x40 boxes are clipped (image is 100x80)
    assert counts["faces_skipped"] == {"below_min_face_size": 5}
    assert counts["faces_anonymized"] == counts["faces_clipped"] == 2
    assert manifest["method"] == "blackout" and manifest["params"]["min_face_size"] == 35.0 and manifest["seed"] == 0
    assert json.loads((out / MANIFEST_NAME).read_text())["counts"] == counts


def test_same_bytes_with_one_and_two_workers(tmp_path: Path) -> None:
    root, _ = make_root(tmp_path)
    run_job(root, tmp_path / "one", seed=7, workers=1)
    run_job(root, tmp_path / "two", seed=7, workers=2)
    run_job(root, tmp_path / "again", seed=7, workers=1)
    run_job(root, tmp_path / "other", seed=8, workers=1)
    one = tree_bytes(tmp_path / "one")
    assert one == tree_bytes(tmp_path / "two") == tree_bytes(tmp_path / "again")
    assert stable_manifest(tmp_path / "one") == stable_manifest(tmp_path / "two")
    assert one != tree_bytes(tmp_path / "other")


def test_original_copies_files_byte_for_byte(tmp_path: Path) -> None:
    root, annotations = make_root(tmp_path)
    manifest = run_job(root, tmp_path / "out", "original")
    for annotation in annotations:
        source = WiderLayout(root).image_path("train", annotation.name)
        assert WiderLayout(tmp_path / "out").image_path("train", annotation.name).read_bytes() == source.read_bytes()
    assert manifest["counts"]["faces_skipped"] == {"identity_method": 7}


def test_failure_midway_leaves_no_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = make_root(tmp_path)
    calls = {"n": 0}
    real_encode = dataset_module.encode_image

    def failing_encode(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(dataset_module, "encode_image", failing_encode)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_job(root, tmp_path / "out", "blur")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"], "no OUT and no temporary folder may remain"


def bad_inputs_root(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A root whose listed images include every kind of bad file, plus grayscale/RGBA/PNG ones."""
    names = ["e/good.jpg", "e/missing.jpg", "e/cut.jpg", "e/junk.jpg", "e/empty.jpg", "e/gray.jpg", "e/rgba.png", "e/gray.png"]
    root, _ = make_root(tmp_path, names, extras=True)
    layout = WiderLayout(root)
    layout.image_path("train", "e/missing.jpg").unlink()
    cut = layout.image_path("train", "e/cut.jpg")
    cut.write_bytes(cut.read_bytes()[:-300])
    layout.image_path("train", "e/junk.jpg").write_bytes(b"garbage" * 50)
    layout.image_path("train", "e/empty.jpg").write_bytes(b"")
    make_image(layout.image_path("train", "e/gray.jpg"), 5, channels=1)
    make_image(layout.image_path("train", "e/rgba.png"), 6, channels=4)
    make_image(layout.image_path("train", "e/gray.png"), 7, channels=1)
    expected = {"e/missing.jpg": "missing", "e/cut.jpg": "truncated", "e/junk.jpg": "undecodable", "e/empty.jpg": "empty_file"}
    return root, expected


def test_bad_images_are_skipped_counted_and_left_out(tmp_path: Path) -> None:
    root, expected = bad_inputs_root(tmp_path)
    out = tmp_path / "out"
    manifest = run_job(root, out, "blur")
    target = WiderLayout(out)
    written = {a.name for a in read_bbx_gt(target.annotation_file("train"))}
    assert written == {"e/good.jpg", "e/gray.jpg", "e/rgba.png", "e/gray.png"}
    assert {p.relative_to(target.images_dir("train")).as_posix() for p in target.images_dir("train").rglob("*.*")} == written
    assert {f["image"]: f["reason"] for f in manifest["failures"]} == expected
    assert set(read_extras(target.extras_file("train"))) == written
    assert manifest["counts"]["images_skipped"] == {"empty_file": 1, "missing": 1, "truncated": 1, "undecodable": 1}
    assert manifest["counts"]["images_written"] == 4 and manifest["counts"]["faces_in_skipped_images"] == 6
    for name in ("e/rgba.png", "e/gray.png"):
        data = target.image_path("train", name).read_bytes()
        assert data.startswith(b"\x89PNG") and cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).shape == (80, 100, 3)
    assert target.image_path("train", "e/gray.jpg").read_bytes().startswith(b"\xff\xd8")


def test_bad_image_with_error_policy_names_the_file(tmp_path: Path) -> None:
    root, _ = bad_inputs_root(tmp_path)
    with pytest.raises(SafefakesError, match=r"missing\.jpg: missing"):
        run_job(root, tmp_path / "out", "blur", on_bad_image="error")
    assert not (tmp_path / "out").exists()


def test_all_images_bad_is_an_error(tmp_path: Path) -> None:
    root, _ = make_root(tmp_path, ["e/a.jpg"])
    WiderLayout(root).image_path("train", "e/a.jpg").unlink()
    with pytest.raises(SafefakesError, match="no image"):
        run_job(root, tmp_path / "out", "blur")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("e/a.jpg\n1\n10 10 abc 20 0 0 0 0 0 0\n", "expected numbers"),
        ("e/a.jpg\n2\n10 10 20 20 0 0 0 0 0 0\n", "ends early"),
        ("../escape.jpg\n1\n10 10 20 20 0 0 0 0 0 0\n", "refusing image path"),
        ("/abs/a.jpg\n1\n10 10 20 20 0 0 0 0 0 0\n", "refusing image path"),
        ("e/a.jpg\n1\n1 1 5 5\ne/a.jpg\n1\n1 1 5 5\n", "listed twice"),
    ],
)
def test_bad_annotations_are_errors(tmp_path: Path, text: str, message: str) -> None:
    root, _ = make_root(tmp_path, ["e/a.jpg"])
    WiderLayout(root).annotation_file("train").write_text(text)
    with pytest.raises(SafefakesError, match=message):
        run_job(root, tmp_path / "out", "blur")
    assert not (tmp_path / "out").exists()


def test_odd_boxes_are_clipped_dropped_or_skipped(tmp_path: Path) -> None:
    root, _ = make_root(tmp_path, ["e/a.jpg"])
    text = "e/a.jpg\n4\n-10 -10 30 30 0 0 0 0 0 0 \n50 50 0 20 0 0 0 0 0 0 \n500 500 20 20 0 0 0 0 0 0 \n20 20 10 10 0 0 0 0 0 0 \n"
    WiderLayout(root).annotation_file("train").write_text(text)
    manifest = run_job(root, tmp_path / "out", "blackout")
    counts = manifest["counts"]
    assert counts["degenerate_boxes_dropped"] == 1
    assert counts["faces_anonymized"] == 2 and counts["faces_clipped"] == 1
    assert counts["faces_skipped"] == {"outside_image": 1}
    pixels = cv2.imread(str(WiderLayout(tmp_path / "out").image_path("train", "e/a.jpg")))
    assert pixels[:20, :20].mean() < 3


def test_extras_that_do_not_match_the_boxes_are_an_error(tmp_path: Path) -> None:
    root, annotations = make_root(tmp_path, extras=True)
    write_extras(WiderLayout(root).extras_file("train"), {annotations[0].name: [FaceExtras(), FaceExtras(), FaceExtras()]})
    with pytest.raises(SafefakesError, match="extras entries"):
        run_job(root, tmp_path / "out", "eyes")


def test_refuses_to_overwrite_the_input(tmp_path: Path) -> None:
    root, _ = make_root(tmp_path)
    with pytest.raises(SafefakesError, match="would replace the input"):
        run_job(root, root, "blur")
    with pytest.raises(SafefakesError, match="would replace the input"):
        run_job(root, tmp_path, "blur")


def run_cli(argv: list[str]) -> int:
    """Parse with only this stage's sub-commands (the full CLI would import every stage, torch included)."""
    parser = argparse.ArgumentParser(prog="safefakes")
    anonymize_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_runs_and_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = make_root(tmp_path)
    out = tmp_path / "out"
    argv = ["anonymize", "--method", "pixelate", "--param", "grid=8", "--wider-root", str(root), "--split", "train", "--out", str(out), "--seed", "3"]
    assert run_cli(argv) == 0
    assert json.loads((out / MANIFEST_NAME).read_text())["params"]["grid"] == 8
    assert run_cli([*argv[:3], "--config-json", '{"grid": 16}', *argv[5:]]) == 0
    assert json.loads((out / MANIFEST_NAME).read_text())["params"]["grid"] == 16
    with pytest.raises(SafefakesError, match="expected int"):
        run_cli([*argv[:4], "grid=zero", *argv[5:]])
    with pytest.raises(SafefakesError, match="both"):
        run_cli([*argv[:3], "--config-json", '{"grid": 16}', *argv[3:]])
    capsys.readouterr()
    assert run_cli(["anonymize-methods", "--json"]) == 0
    assert "blur" in json.loads(capsys.readouterr().out)


def real_root(tmp_path: Path, wider_fixture_root: Path) -> Path:
    """The real training subset in the official layout (symlinked images, annotation file in place)."""
    root = tmp_path / "real"
    (root / "WIDER_train").mkdir(parents=True)
    (root / "WIDER_train" / "images").symlink_to(wider_fixture_root / "WIDER_train" / "images")
    (root / "wider_face_split").mkdir()
    shutil.copyfile(wider_fixture_root / "train_subset_bbx_gt.txt", WiderLayout(root).annotation_file("train"))
    return root


def test_real_training_images(tmp_path: Path, wider_fixture_root: Path) -> None:
    root = real_root(tmp_path, wider_fixture_root)
    annotations = read_bbx_gt(WiderLayout(root).annotation_file("train"))
    manifest = run_job(root, tmp_path / "black", "blackout")
    counts = manifest["counts"]
    assert counts["images_written"] == len(annotations) == 50 and counts["images_skipped"] == {}
    assert counts["faces_anonymized"] == sum(len(a.faces) for a in annotations) == 297
    target = WiderLayout(tmp_path / "black")
    for annotation in annotations:
        source = cv2.imread(str(WiderLayout(root).image_path("train", annotation.name)))
        pixels = cv2.imread(str(target.image_path("train", annotation.name)))
        assert pixels.shape == source.shape
        for face in annotation.faces:
            if min(face.w, face.h) >= 16:  # JPEG ringing at the box edge dominates smaller boxes
                inner = pixels[face.y + 4 : face.y + face.h - 4, face.x + 4 : face.x + face.w - 4]
                assert inner.mean() < 4, f"{annotation.name}: face {face} not black"


class RejectingBatchAnonymizer(PerImageAnonymizer):
    """A batched method (3 images per call) that blacks out faces and refuses images named ``*reject*``."""

    name = "rejecting_batch"
    batch_size = 3

    def anonymize(self, image, faces, extras, rng):
        return BlackoutAnonymizer(self.config).anonymize(image, faces, extras, rng)

    def anonymize_batch(self, images, faces, extras, rngs):
        if any("reject" in name for name in self.names_of_batch(images)):
            raise BadImageError("batch", "method_refused", "a test refusal")
        return super().anonymize_batch(images, faces, extras, rngs)

    @staticmethod
    def names_of_batch(images):
        # The test images encode their name in the top-left pixel's blue value (see the test below).
        return ["reject" if image[0, 0, 0] == 255 else "ok" for image in images]


REJECTING_SPEC = AnonymizerSpec("rejecting_batch", BlackoutConfig, RejectingBatchAnonymizer, "test method")


def test_a_refused_image_fails_alone_in_its_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"e/img_{i}.png" for i in range(5)] + ["e/reject.png"]
    root, _ = make_root(tmp_path, names)
    layout = WiderLayout(root)
    for name in names:  # mark the refused image by a white top-left pixel (PNG keeps it exact)
        pixels = cv2.imread(str(layout.image_path("train", name)))
        pixels[0, 0] = 255 if "reject" in name else 0
        cv2.imwrite(str(layout.image_path("train", name)), pixels)
    monkeypatch.setitem(ANONYMIZER_SPECS, "rejecting_batch", f"{__name__}:REJECTING_SPEC")
    manifest = run_job(root, tmp_path / "out", "rejecting_batch")
    assert [f["image"] for f in manifest["failures"]] == ["e/reject.png"]
    assert manifest["counts"]["images_skipped"] == {"method_refused": 1} and manifest["counts"]["images_written"] == 5
    written = WiderLayout(tmp_path / "out")
    assert not written.image_path("train", "e/reject.png").exists()
    for name in names[3:5]:  # batch-mates of the refused image were retried one by one and written
        pixels = cv2.imread(str(written.image_path("train", name)))
        assert pixels[FACE.y : FACE.y + FACE.h, FACE.x : FACE.x + FACE.w].max() == 0
