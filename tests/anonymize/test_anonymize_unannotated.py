"""``safefakes anonymize --boxes-from``: images without annotations, faces found by CenterFace, on real WIDER val images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from safefakes.anonymize.coverage import GroundTruthFaces, image_coverage, overlaps
from safefakes.anonymize.dataset import MANIFEST_NAME
from safefakes.anonymize.unannotated import FinderResult, pixel_boxes, review_file, split_by_threshold
from safefakes.cli import main
from safefakes.data.ground_truth import load_ground_truth
from safefakes.data.wider import DIFFICULTIES, FaceBox, WiderLayout, read_bbx_gt

#: The real images the end-to-end tests copy: the first ones of an event with few, large faces.
SMALL_EVENT = "19--Couple"
SMALL_IMAGES = 3
#: CenterFace must find this share of the easy faces at its default threshold (IoU >= 0.5).
MIN_EASY_RECALL = 0.8
#: An untrained tiny DeepPrivacy generator (what a GAN method does with a box does not depend on training).
TINY_DEEPPRIVACY = {"resolution": 16, "max_channels": 16, "min_channels": 8, "full_width_until": 8, "latent_channels": 4}


def run_cli(*args: str | Path) -> int:
    """``safefakes anonymize`` with ``args``."""
    return main(["anonymize", *map(str, args)])


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The command's stderr, checked to be one ``error:`` line."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.fixture(scope="module")
def small_folder(wider_fixture_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain folder (no annotations, no WIDER layout) with a few real images under their event folder, plus a non-image file."""
    folder = tmp_path_factory.mktemp("plain") / "photos"
    images = sorted((wider_fixture_root / "WIDER_val" / "images" / SMALL_EVENT).glob("*.jpg"))[:SMALL_IMAGES]
    for image in images:
        (folder / SMALL_EVENT).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, folder / SMALL_EVENT / image.name)
    (folder / "notes.txt").write_text("not an image\n")
    return folder


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path (the manifest without its run-dependent fields)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if path.name == MANIFEST_NAME:
                manifest = json.loads(data)
                for key in ("wall_time_s", "workers"):
                    manifest.pop(key)
                data = json.dumps(manifest, sort_keys=True).encode()
            files[path.relative_to(folder).as_posix()] = data
    return files


def test_blur_of_found_faces_end_to_end(small_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert run_cli("--method", "blur", "--boxes-from", "centerface", "--images", small_folder, "--out", out) == 0
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and "images written" in summary[0] and str(out) in summary[0]

    layout = WiderLayout(out)
    sources = sorted(p.relative_to(small_folder).as_posix() for p in small_folder.rglob("*.jpg"))
    assert sorted(p.relative_to(layout.images_dir("val")).as_posix() for p in layout.images_dir("val").rglob("*")) == [SMALL_EVENT, *sources]
    annotations = read_bbx_gt(layout.annotation_file("val"))
    assert [a.name for a in annotations] == sources
    assert all(a.faces for a in annotations), "CenterFace finds a face in every couple photo"
    assert [a.name for a in read_bbx_gt(review_file(layout, "val"))] == sources

    manifest = json.loads((out / MANIFEST_NAME).read_text())
    counts = manifest["counts"]
    assert (manifest["method"], manifest["boxes_from"], manifest["threshold"], manifest["review_threshold"]) == ("blur", "centerface", 0.2, 0.1)
    assert counts["images_written"] == SMALL_IMAGES and counts["files_ignored"] == 1
    assert counts["faces_listed"] == counts["faces_anonymized"] == sum(len(a.faces) for a in annotations)
    assert [row["image"] for row in manifest["images"]] == sources
    assert [row["faces_found"] for row in manifest["images"]] == [len(a.faces) for a in annotations]
    assert manifest["ground_truth"] is None  # a plain folder has none

    for annotation in annotations:
        before = cv2.imread(str(small_folder / annotation.name)).astype(np.int16)
        after = cv2.imread(str(layout.image_path("val", annotation.name))).astype(np.int16)
        inside = np.zeros(before.shape[:2], dtype=bool)
        for face in annotation.faces:
            inside[face.y : face.y + face.h, face.x : face.x + face.w] = True
        change = np.abs(after - before).mean(axis=2)
        assert change[inside].mean() > 4 * change[~inside].mean(), f"{annotation.name}: the found faces are blurred, the rest only re-encoded"


def test_output_is_deterministic_whatever_the_workers(small_folder: Path, tmp_path: Path) -> None:
    common = ("--method", "pixelate", "--boxes-from", "centerface", "--images", small_folder)
    assert run_cli(*common, "--out", tmp_path / "one") == 0
    assert run_cli(*common, "--out", tmp_path / "two", "--workers", "2") == 0
    assert tree_bytes(tmp_path / "one") == tree_bytes(tmp_path / "two")


def test_ground_truth_text_file_counts_unprotected_faces(small_folder: Path, wider_fixture_root: Path, tmp_path: Path) -> None:
    """With a bbx_gt text file as ground truth, faces are counted in one group; a huge threshold protects none of them."""
    out = tmp_path / "out"
    subset = wider_fixture_root / "val_subset_bbx_gt.txt"
    assert run_cli("--method", "blur", "--boxes-from", "centerface", "--images", small_folder, "--ground-truth", subset, "--threshold", "2", "--out", out) == 0
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    truth = {a.name: a for a in read_bbx_gt(subset)}
    faces = sum(len(truth[row["image"]].faces) for row in manifest["images"])
    assert manifest["counts"]["faces_listed"] == 0 and read_bbx_gt(WiderLayout(out).annotation_file("val"))[0].faces == []
    assert manifest["ground_truth"]["kind"] == "txt" and manifest["ground_truth"]["images_with_ground_truth"] == SMALL_IMAGES
    assert manifest["ground_truth"]["coverage"] == {"all": {"faces": faces, "found": 0, "unprotected": faces, "recall": 0.0}}
    assert manifest["counts"]["possible_faces_untouched"] >= SMALL_IMAGES  # every face now scores below the threshold


def _recall_from_files(out: Path, ground_truth_dir: Path) -> dict[str, float]:
    """CenterFace's recall per setting, recomputed from the written boxes and the official .mat files (plain IoU >= 0.5)."""
    found = {a.name: a.faces for a in read_bbx_gt(WiderLayout(out).annotation_file("val"))}
    by_key = {image.key: image for image in load_ground_truth(ground_truth_dir).images}
    hits = dict.fromkeys(DIFFICULTIES, 0)
    totals = dict.fromkeys(DIFFICULTIES, 0)
    for name, boxes in found.items():
        image = by_key[(name.split("/")[0], Path(name).stem)]
        for row, (x, y, w, h) in enumerate(image.boxes):
            best = 0.0
            for box in boxes:
                inter = max(0.0, min(x + w, box.x + box.w) - max(x, box.x)) * max(0.0, min(y + h, box.y + box.h) - max(y, box.y))
                best = max(best, inter / (w * h + box.w * box.h - inter))
            for setting in DIFFICULTIES:
                if image.counted[setting][row]:
                    totals[setting] += 1
                    hits[setting] += best >= 0.5
    return {setting: hits[setting] / totals[setting] for setting in DIFFICULTIES}


def test_centerface_recall_on_the_real_validation_images(wider_fixture_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """All 115 real WIDER val images: the WIDER root is recognised, its .mat ground truth gives recall and unprotected faces per setting."""
    out = tmp_path / "out"
    assert run_cli("--method", "blur", "--boxes-from", "centerface", "--images", wider_fixture_root, "--out", out) == 0
    summary = capsys.readouterr().out.strip()
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    truth = manifest["ground_truth"]
    assert manifest["counts"]["images_written"] == manifest["counts"]["images_listed"] == 115 and manifest["split"] == "val"
    assert truth["kind"] == "mat" and truth["images_with_ground_truth"] == 115 and truth["coverage"]["all"]["faces"] == 765
    recall = {setting: truth["coverage"][setting]["recall"] for setting in DIFFICULTIES}
    assert recall == pytest.approx(_recall_from_files(out, wider_fixture_root / "ground_truth"))
    unprotected = {setting: f"{truth['coverage'][setting]['unprotected']}/{truth['coverage'][setting]['faces']}" for setting in ("all", *DIFFICULTIES)}
    with capsys.disabled():
        print(
            f"\nCenterFace at threshold {manifest['threshold']} on the 115 real WIDER val images: recall (IoU >= 0.5) "
            + ", ".join(f"{setting} {value:.3f}" for setting, value in recall.items())
            + f"; unprotected faces {unprotected}; possible faces left untouched {manifest['counts']['possible_faces_untouched']}"
        )
    assert recall["easy"] >= MIN_EASY_RECALL, recall
    assert recall["easy"] >= recall["medium"] >= recall["hard"]
    assert f"easy {truth['coverage']['easy']['unprotected']}/" in summary


def test_bad_inputs_fail_in_one_line_and_leave_no_output(
    small_folder: Path, wider_fixture_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    common = ("--boxes-from", "centerface", "--out", out)
    assert run_cli("--method", "blur", "--images", tmp_path / "absent", *common) == 1
    assert "images folder not found" in one_line_error(capsys)
    assert run_cli("--method", "nosuchmethod", "--images", small_folder, *common) == 1
    assert "unknown anonymization method" in one_line_error(capsys)
    assert run_cli("--method", "blur", "--images", small_folder, "--boxes-from", "nosuchfinder", "--out", out) == 1
    assert "unknown face finder" in one_line_error(capsys)
    assert run_cli("--method", "blur", "--images", small_folder, *common, "--threshold", "0.1", "--review-threshold", "0.3") == 1
    assert "must not exceed" in one_line_error(capsys)
    assert run_cli("--method", "blur", "--images", small_folder, "--out", out) == 1
    assert "go together" in one_line_error(capsys)
    assert run_cli("--method", "blur", "--images", small_folder, *common[:2], "--out", small_folder / "inside") == 1
    assert "inside the images folder" in one_line_error(capsys)
    assert run_cli("--method", "blur", "--images", small_folder, *common, "--ground-truth", tmp_path / "absent") == 1
    assert "ground truth not found" in one_line_error(capsys)
    assert run_cli("--method", "blur", "--images", small_folder, *common, "--ground-truth", wider_fixture_root / "train_subset_bbx_gt.txt") == 1
    assert "is in the ground truth" in one_line_error(capsys)
    assert not out.exists()


def test_unreadable_image_is_skipped_or_stops_the_run(small_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "photos"
    shutil.copytree(small_folder, folder)
    first = sorted(folder.rglob("*.jpg"))[0]
    first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])  # cut off: no end-of-image marker
    broken = first.relative_to(folder).as_posix()
    common = ("--method", "blur", "--boxes-from", "centerface", "--images", folder)
    assert run_cli(*common, "--out", tmp_path / "strict", "--on-bad-image", "error") == 1
    assert broken in one_line_error(capsys) and not (tmp_path / "strict").exists()
    assert run_cli(*common, "--out", tmp_path / "out") == 0
    manifest = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    assert manifest["failures"] == [{"image": broken, "reason": "truncated", "detail": "the file ends before the image's end marker"}]
    assert manifest["counts"]["images_skipped"] == {"truncated": 1} and manifest["counts"]["images_written"] == SMALL_IMAGES - 1
    assert broken not in {a.name for a in read_bbx_gt(WiderLayout(tmp_path / "out").annotation_file("val"))}
    assert not WiderLayout(tmp_path / "out").image_path("val", broken).exists()


def test_a_path_the_annotation_file_cannot_hold_is_skipped(small_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    image = sorted(small_folder.rglob("*.jpg"))[0]
    (folder / "ok").mkdir(parents=True)
    shutil.copyfile(image, folder / "ok" / "face.jpg")
    shutil.copyfile(image, folder / "ok" / "line\nbreak.jpg")
    assert run_cli("--method", "blur", "--boxes-from", "centerface", "--images", folder, "--out", tmp_path / "out") == 0
    manifest = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    assert [(f["image"], f["reason"]) for f in manifest["failures"]] == [("ok/line\nbreak.jpg", "unsupported_name")]
    assert [a.name for a in read_bbx_gt(WiderLayout(tmp_path / "out").annotation_file("val"))] == ["ok/face.jpg"]


def test_gan_method_anonymizes_found_faces(small_folder: Path, tmp_path: Path) -> None:
    """A GAN method takes found boxes like annotated ones (no dataset keypoints: its keypoint source decides)."""
    import torch

    from safefakes.anonymize.gan.deepprivacy import DeepPrivacyGenerator
    from safefakes.anonymize.gan.deepprivacy_training import DeepPrivacyHparams
    from safefakes.anonymize.gan.training import write_gan_checkpoint

    torch.manual_seed(0)
    hparams = DeepPrivacyHparams.from_dict({"model": TINY_DEEPPRIVACY})
    checkpoint = tmp_path / "iter_1.pt"
    write_gan_checkpoint(checkpoint, "deepprivacy", DeepPrivacyGenerator(hparams.model), hparams, 1, TINY_DEEPPRIVACY["resolution"], 1.0, 0)
    out = tmp_path / "out"
    args = ("--method", "deepprivacy", "--checkpoint", checkpoint, "--param", "device=cpu", "--param", "keypoint_source=none")
    assert run_cli(*args, "--boxes-from", "centerface", "--images", small_folder, "--out", out) == 0
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    annotations = read_bbx_gt(WiderLayout(out).annotation_file("val"))
    assert manifest["counts"]["images_written"] == SMALL_IMAGES and manifest["counts"]["faces_anonymized"] > 0
    assert manifest["counts"]["faces_anonymized"] + sum(manifest["counts"]["faces_skipped"].values()) == sum(len(a.faces) for a in annotations)
    assert all(key.startswith("kp=none") for key in manifest["counts"]["face_details"])


def test_a_wider_images_folder_gives_its_split_and_ground_truth(wider_fixture_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--images ROOT/WIDER_train/images``: the split comes from the folder, the ground truth from ROOT's text file."""
    images = tmp_path / "root" / "WIDER_train" / "images"
    source = sorted((wider_fixture_root / "WIDER_train" / "images").rglob("*.jpg"))[0]
    name = source.relative_to(wider_fixture_root / "WIDER_train" / "images").as_posix()
    (images / name).parent.mkdir(parents=True)
    shutil.copyfile(source, images / name)
    split_dir = tmp_path / "root" / "wider_face_split"
    split_dir.mkdir()
    shutil.copyfile(wider_fixture_root / "train_subset_bbx_gt.txt", split_dir / "wider_face_train_bbx_gt.txt")
    out = tmp_path / "out"
    assert run_cli("--method", "blackout", "--boxes-from", "centerface", "--images", images, "--out", out) == 0
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["split"] == "train" and WiderLayout(out).image_path("train", name).is_file()
    assert manifest["ground_truth"]["kind"] == "txt" and manifest["ground_truth"]["images_with_ground_truth"] == 1
    assert run_cli("--method", "blackout", "--boxes-from", "centerface", "--images", images, "--split", "val", "--out", out) == 1
    assert "contradicts" in one_line_error(capsys)


# --------------------------------------------------------------------------------------------------
# The pieces, on hand-made boxes
# --------------------------------------------------------------------------------------------------


def test_finder_boxes_are_rounded_outwards_and_clipped() -> None:
    boxes, kept = pixel_boxes(np.array([[10.4, 20.6, 30.2, 40.0], [-5.0, 90.0, 8.5, 130.0], [120.0, 0.0, 140.0, 10.0]]), height=100, width=100)
    assert boxes == [FaceBox(10, 20, 21, 20), FaceBox(0, 90, 9, 10)]
    assert kept.tolist() == [True, True, False]


def test_threshold_split_keeps_only_review_boxes_outside_the_anonymized_ones() -> None:
    result = FinderResult(
        "e/a.jpg",
        height=200,
        width=200,
        boxes=np.array([[10, 10, 50, 50], [12, 12, 48, 48], [100, 100, 140, 140], [150, 10, 190, 50]], dtype=np.float64),
        scores=np.array([0.9, 0.15, 0.12, 0.01]),
    )
    found = split_by_threshold(result, threshold=0.2, review_threshold=0.1)
    assert found.faces == (FaceBox(10, 10, 40, 40),)
    assert found.review == (FaceBox(100, 100, 40, 40),)  # the second box lies inside the first; the last scores too low


def test_overlaps_and_coverage_rules() -> None:
    face = np.array([[0, 0, 10, 10]], dtype=np.float64)
    iou, covered = overlaps(face, np.array([[0, 0, 10, 20], [0, 0, 10, 9], [5, 0, 10, 10]], dtype=np.float64))
    assert iou[0].tolist() == pytest.approx([0.5, 0.9, 50 / 150])
    assert covered[0].tolist() == pytest.approx([1.0, 0.9, 0.5])
    truth = GroundTruthFaces(
        Path("gt"),
        "txt",
        {"e/a.jpg": np.array([[0, 0, 10, 10], [100, 100, 10, 10], [200, 200, 10, 10]], dtype=np.float64)},
        {"e/a.jpg": {"all": np.ones(3, dtype=bool)}},
    )
    found = [FaceBox(0, 0, 10, 10), FaceBox(95, 95, 30, 30), FaceBox(200, 200, 10, 10)]
    counts = image_coverage(truth, "e/a.jpg", found, [True, True, False]).groups["all"]
    # face 1: matched and anonymized; face 2: inside a large anonymized box (IoU 1/9) so protected but not found;
    # face 3: matched by a box the method did not anonymize, so found but unprotected.
    assert (counts.faces, counts.found, counts.unprotected) == (3, 2, 1)
