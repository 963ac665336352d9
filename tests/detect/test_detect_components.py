"""Detector building blocks: augmentation steps, hyper-parameter sections, LR schedule, dataset and sampling."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from safefakes.common.config import parse_json_argument
from safefakes.common.errors import SafefakesError
from safefakes.detect import transforms as T
from safefakes.detect.data import StreamBatchSampler, WiderFaceDataset, epoch_permutation
from safefakes.detect.hparams import PredictConfig, ScheduleConfig, TrainConfig, resolve_hparams
from safefakes.detect.train import LearningRateFactor


def _image(height: int = 60, width: int = 80) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)


def test_flip_twice_is_identity_and_mirrors_boxes() -> None:
    image, boxes = _image(), np.array([[10, 5, 30, 25]], np.float32)
    flipped, flipped_boxes = T.horizontal_flip(image, boxes)
    assert flipped_boxes.tolist() == [[50, 5, 70, 25]]
    assert np.array_equal(flipped[:, 50:70], image[:, 10:30][:, ::-1])
    back, back_boxes = T.horizontal_flip(flipped, flipped_boxes)
    assert np.array_equal(back, image) and np.array_equal(back_boxes, boxes)


def test_resize_scales_boxes_and_clip_filter() -> None:
    image, boxes = _image(), np.array([[10, 6, 30, 30]], np.float32)
    resized, scaled = T.resize(image, boxes, 40, 120)
    assert resized.shape == (120, 40, 3) and scaled.tolist() == [[5, 12, 15, 60]]
    clipped = T.clip_boxes(np.array([[-5, -5, 90, 20], [70, 50, 79, 59]], np.float32), 80, 60)
    assert clipped.tolist() == [[0, 0, 80, 20], [70, 50, 79, 59]]
    assert T.filter_boxes(np.array([[0, 0, 1, 10], [0, 0, 5, 5]], np.float32), 2).tolist() == [[0, 0, 5, 5]]


def test_crop_keeps_faces_whose_centre_is_inside() -> None:
    boxes = np.array([[0, 0, 10, 10], [30, 30, 50, 50], [55, 20, 79, 40]], np.float32)
    cropped, kept = T.crop(_image(), boxes, (20, 20, 60, 50))
    assert cropped.shape == (30, 40, 3)
    assert kept.tolist() == [[10, 10, 30, 30]]  # the third centre (67, 30) lies outside x < 60


def test_expand_keeps_the_image_and_shifts_boxes() -> None:
    image, boxes = _image(), np.array([[10, 10, 20, 20]], np.float32)
    canvas, shifted = T.expand(image, boxes, np.random.default_rng(1), 3.0, (1, 2, 3))
    left, top = int(shifted[0, 0] - 10), int(shifted[0, 1] - 10)
    assert np.array_equal(canvas[top : top + 60, left : left + 80], image)
    assert canvas.shape[0] >= 60 and canvas.shape[1] >= 80


def test_photometric_distortion_is_seeded() -> None:
    image = _image()
    first = T.photometric_distortion(image, np.random.default_rng(5))
    assert np.array_equal(first, T.photometric_distortion(image, np.random.default_rng(5)))
    assert first.dtype == np.uint8 and first.shape == image.shape


#: Each part of the photometric distortion applies with probability 1/2: over 40 seeds it must change the
#: image for some seeds and leave it as it is for others (bounds far from 0 and 40, fixed seeds).
PHOTOMETRIC_SEEDS = range(40)
#: A changed image differs from its input by more than this mean absolute difference (grey levels).
CHANGED_TOLERANCE = 2.0
ONLY = {"brightness_delta": 0.0, "contrast_range": (1.0, 1.0), "saturation_range": (1.0, 1.0), "hue_delta": 0.0}


def _colourful_image() -> np.ndarray:
    """Saturated, mid-bright colours (no channel near 0 or 255, so jitter is not hidden by clipping)."""
    rng = np.random.default_rng(11)
    return rng.integers(60, 196, (40, 50, 3), dtype=np.uint8)


def _hsv(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)  # H in degrees, S and V in [0, 1]


def test_photometric_distortion_changes_the_image_for_most_seeds() -> None:
    """With every part possible, only the seeds that draw none of the four parts (1 in 16) leave the image as it is."""
    image = _colourful_image()
    differences = [np.abs(T.photometric_distortion(image, np.random.default_rng(seed)).astype(float) - image).mean() for seed in PHOTOMETRIC_SEEDS]
    changed = sum(d > CHANGED_TOLERANCE for d in differences)
    assert changed >= 30, f"only {changed} of 40 seeds changed the image by more than {CHANGED_TOLERANCE} grey levels: {np.round(differences, 2)}"
    assert max(differences) > 15  # a full-range draw (32 brightness, 1.5 contrast, 18 degree hue) is far from subtle


def test_photometric_brightness_shift_stays_within_its_delta() -> None:
    image = np.full((8, 8, 3), 128, np.uint8)
    shifts = []
    for seed in PHOTOMETRIC_SEEDS:
        out = T.photometric_distortion(image, np.random.default_rng(seed), **{**ONLY, "brightness_delta": 32.0})
        assert len(np.unique(out)) == 1, "a brightness shift adds the same value to every pixel and channel"
        shifts.append(int(out[0, 0, 0]) - 128)
    assert all(abs(shift) <= 32 for shift in shifts)
    applied = [shift for shift in shifts if abs(shift) > CHANGED_TOLERANCE]
    assert 8 <= len(applied) <= 32 and max(applied) > 10 and min(applied) < -10  # about half the seeds, both signs


def test_photometric_contrast_scale_stays_within_its_range() -> None:
    image = np.full((8, 8, 3), 100, np.uint8)
    factors = []
    for seed in PHOTOMETRIC_SEEDS:
        out = T.photometric_distortion(image, np.random.default_rng(seed), **{**ONLY, "contrast_range": (0.5, 1.5)})
        assert len(np.unique(out)) == 1
        factors.append(out[0, 0, 0] / 100.0)
    assert all(0.5 - 0.006 <= f <= 1.5 + 0.006 for f in factors)  # 100 * factor rounded to a grey level
    applied = [f for f in factors if abs(f - 1) > 0.03]
    assert 8 <= len(applied) <= 32 and max(applied) > 1.1 and min(applied) < 0.9


def test_photometric_saturation_and_hue_stay_within_their_ranges() -> None:
    image = _colourful_image()
    before = _hsv(image)
    saturated = 0
    for seed in PHOTOMETRIC_SEEDS:
        out = T.photometric_distortion(image, np.random.default_rng(seed), **{**ONLY, "saturation_range": (0.5, 1.5)})
        after = _hsv(out)
        ratio = np.median(after[..., 1] / before[..., 1])
        assert 0.5 - 0.02 <= ratio <= 1.5 + 0.02
        assert np.abs(after[..., 2] - before[..., 2]).max() <= 1.5 / 255  # saturation leaves the value channel alone
        saturated += abs(ratio - 1) > 0.05
    assert 8 <= saturated <= 32
    rotated = 0
    for seed in PHOTOMETRIC_SEEDS:
        out = T.photometric_distortion(image, np.random.default_rng(seed), **{**ONLY, "hue_delta": 18.0})
        after = _hsv(out)
        shift = np.median((after[..., 0] - before[..., 0] + 180.0) % 360.0 - 180.0)
        assert abs(shift) <= 18.0 + 1.0  # rounding to 8 bits moves hue by well under a degree at these saturations
        rotated += abs(shift) > 2.0
    assert 8 <= rotated <= 32


# The Faster R-CNN training augmentation is the SSD/DSFD-style pipeline; both entry points are checked.
FACE_RGB = np.array([250, 20, 230], np.uint8)  # a colour the noise background hardly ever comes near
FACE_BOXES = np.array([[30, 40, 90, 100], [150, 60, 200, 110], [240, 150, 300, 215]], np.float32)


def _painted_faces(seed: int = 0) -> np.ndarray:
    """Random noise with a solid ``FACE_RGB`` square at each of ``FACE_BOXES``."""
    image = np.random.default_rng(seed).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    for x1, y1, x2, y2 in FACE_BOXES.astype(int):
        image[y1:y2, x1:x2] = FACE_RGB
    return image


def _ssd_transform(augment: dict) -> T.Step:
    return T.build_ssd_style_transform(T.SsdStyleAugmentConfig.from_dict(augment))


def _faster_rcnn_transform(augment: dict) -> T.Step:
    """Faster R-CNN's transform with its SSD-style pipeline selected (its paper default is DSFD's, tested in test_detect_faster_rcnn.py)."""
    from safefakes.detect import faster_rcnn

    return faster_rcnn.SPEC.build_train_transform({"pipeline": faster_rcnn.SSD_PIPELINE, **augment})


def _inner(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The pixels of ``box`` one pixel in from its (interpolated) border, as ``(N, 3)``."""
    x1, y1, x2, y2 = box
    return image[int(np.ceil(y1)) + 1 : int(np.floor(y2)) - 1, int(np.ceil(x1)) + 1 : int(np.floor(x2)) - 1].reshape(-1, 3)


@pytest.mark.parametrize("build", [_ssd_transform, _faster_rcnn_transform], ids=["ssd_style", "faster_rcnn"])
def test_ssd_style_pipeline_is_deterministic_per_seed(build) -> None:
    transform = build({"output_size": 64})
    boxes = np.array([[10, 10, 40, 40], [50, 20, 70, 45]], np.float32)
    outputs = [transform(_image(), boxes, np.random.default_rng(seed)) for seed in (3, 3, 4)]
    assert np.array_equal(outputs[0][0], outputs[1][0]) and np.array_equal(outputs[0][1], outputs[1][1])
    assert all(o[0].shape == (64, 64, 3) for o in outputs)
    assert all(((o[1] >= 0) & (o[1] <= 64)).all() for o in outputs)
    # Different seeds give different samples: every one of ten images differs, and so do the boxes.
    samples = [transform(_image(), boxes, np.random.default_rng(seed)) for seed in range(10)]
    assert len({image.tobytes() for image, _ in samples}) == 10
    assert len({kept.tobytes() for _, kept in samples}) >= 8


@pytest.mark.parametrize("build", [_ssd_transform, _faster_rcnn_transform], ids=["ssd_style", "faster_rcnn"])
def test_ssd_style_boxes_stay_on_the_painted_faces(build) -> None:
    """Geometry only (no colour jitter): inside every output box the pixels are the face colour, and with every
    face kept, no face-coloured pixel lies outside the boxes."""
    image = _painted_faces()
    transform = build({"output_size": 96, "photometric_probability": 0.0})
    checked, scales = 0, set()
    for seed in range(30):
        out, kept = transform(image, FACE_BOXES, np.random.default_rng(seed))
        assert out.shape == (96, 96, 3) and 1 <= len(kept) <= len(FACE_BOXES)
        face_like = np.abs(out.astype(int) - FACE_RGB).max(axis=2) <= 12
        covered = np.zeros(out.shape[:2], bool)
        for box in kept:
            x1, y1, x2, y2 = box
            covered[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] = True
            scales.add(round(float(x2 - x1), 1))
            inner = _inner(out, box)
            if len(inner) == 0:
                continue
            checked += 1
            on_face = (np.abs(inner.astype(int) - FACE_RGB).max(axis=1) <= 12).mean()
            assert on_face >= 0.9, f"seed {seed}: box {box.round(1).tolist()} holds only {on_face:.0%} face pixels"
        if len(kept) == len(FACE_BOXES):  # outside the boxes only the 1-pixel resampling fringe may look like a face
            assert (face_like & ~covered).sum() <= 4 * 96, f"seed {seed}: face pixels outside every box"
    assert checked >= 40 and len(scales) >= 10  # many boxes checked, at many zooms


@pytest.mark.parametrize("build", [_ssd_transform, _faster_rcnn_transform], ids=["ssd_style", "faster_rcnn"])
def test_ssd_style_boxes_stay_on_the_faces_with_colour_jitter(build) -> None:
    """The full pipeline recolours the face, but a per-pixel colour change keeps a solid square solid: inside each
    box the pixels stay uniform, on a noise background that is anything but, and are not the zoom-out fill."""
    image = _painted_faces()
    transform = build({"output_size": 96})
    fill = np.round(T.SsdStyleAugmentConfig().fill_rgb).astype(int)
    checked = recoloured = 0
    for seed in range(30):
        out, kept = transform(image, FACE_BOXES, np.random.default_rng(seed))
        assert out.reshape(-1, 3).std(axis=0).mean() > 5  # not one solid colour (much of it may be zoom-out fill)
        for box in kept:
            inner = _inner(out, box).astype(int)
            if len(inner) == 0:
                continue
            checked += 1
            centre = np.median(inner, axis=0)
            assert (np.abs(inner - centre).max(axis=1) <= 6).mean() >= 0.9, f"seed {seed}: box {box.round(1).tolist()} is not on a solid face"
            assert np.abs(centre - fill).max() > 6, f"seed {seed}: box {box.round(1).tolist()} lies on the zoom-out fill"
            recoloured += np.abs(centre - FACE_RGB).max() > 6
    assert checked >= 40 and recoloured >= checked // 2  # the faces were recoloured, and the boxes followed them


def test_hparams_sections_refuse_typos_and_merge_over_paper_values() -> None:
    paper = {"model": {"a": 1}, "augment": {}, "train": {"batch_size": 4, "optimizer": {"lr": 1e-3}}, "predict": {}}
    merged = resolve_hparams(paper, {"train": {"optimizer": {"lr": 0.02}}})
    assert merged["train"] == {"batch_size": 4, "optimizer": {"lr": 0.02}} and merged["model"] == {"a": 1}
    with pytest.raises(SafefakesError, match="unknown hyper-parameter section"):
        resolve_hparams(paper, {"trian": {}})
    with pytest.raises(SafefakesError, match=r"train\.optimizer"):
        TrainConfig.from_dict({"optimizer": {"learning_rate": 1}})
    with pytest.raises(SafefakesError, match="test_scales"):
        PredictConfig.from_dict({"test_scales": []})


def test_hparams_argument_accepts_inline_json_and_files(tmp_path: Path) -> None:
    assert parse_json_argument('{"train": {"batch_size": 2}}', "--hparams") == {"train": {"batch_size": 2}}
    path = tmp_path / "h.yaml"
    path.write_text("predict:\n  flip: true\n")
    assert parse_json_argument(str(path), "--hparams") == {"predict": {"flip": True}}
    with pytest.raises(SafefakesError, match="--hparams"):
        parse_json_argument("{not json", "--hparams")
    with pytest.raises(SafefakesError, match="--hparams"):
        parse_json_argument(str(tmp_path / "missing.json"), "--hparams")


def test_step_schedule_decays_every_three_epochs_with_warmup() -> None:
    schedule = ScheduleConfig(name="step", step_epochs=3, gamma=0.1, warmup_iterations=4, warmup_start_factor=0.2)
    factor = LearningRateFactor(schedule, iterations_per_epoch=10, total_iterations=100)
    assert factor(0) == pytest.approx(0.2) and factor(2) == pytest.approx(0.6) and factor(4) == 1.0
    assert factor(29) == 1.0 and factor(30) == pytest.approx(0.1) and factor(60) == pytest.approx(0.01)
    assert TrainConfig(batch_size=4).iterations_per_epoch(10) == 3
    multistep = LearningRateFactor(ScheduleConfig(name="multistep", milestone_iterations=[5, 8]), 10, 100)
    assert [round(multistep(i), 6) for i in (4, 5, 8)] == [1.0, 0.1, 0.01]
    cosine = LearningRateFactor(ScheduleConfig(name="cosine", cosine_final_factor=0.1), 10, 100)
    assert cosine(0) == 1.0 and cosine(50) == pytest.approx(0.55) and cosine(100) == pytest.approx(0.1)


def test_stream_sampler_visits_every_image_once_per_epoch_and_resumes_anywhere() -> None:
    sampler = StreamBatchSampler(num_items=5, batch_size=2, seed=9, start_iteration=0, stop_iteration=5)
    batches = list(sampler)
    indices = [index for batch in batches for index, _ in batch]
    assert sorted(indices[:5]) == list(range(5)) and sorted(indices[5:10]) == list(range(5))
    assert list(epoch_permutation(5, 9, 0)) == indices[:5]
    assert list(StreamBatchSampler(5, 2, 9, 3, 5)) == batches[3:]
    seeds = [seed for batch in batches for _, seed in batch]
    assert len(set(seeds)) == len(seeds)
    assert list(StreamBatchSampler(5, 2, 10, 0, 5)) != batches


def test_dataset_reads_real_wider_images_and_drops_faceless_ones(wider_fixture_root: Path, tmp_path: Path) -> None:
    from safefakes.data.wider import WiderLayout, read_bbx_gt, write_bbx_gt

    root = tmp_path / "wider"
    source = read_bbx_gt(wider_fixture_root / "train_subset_bbx_gt.txt")[:3]
    source[2].faces = []
    write_bbx_gt(WiderLayout(root).annotation_file("train"), source)
    (root / "WIDER_train").symlink_to(wider_fixture_root / "WIDER_train")
    dataset = WiderFaceDataset(root, "train")
    assert len(dataset) == 2 and len(WiderFaceDataset(root, "train", drop_empty=False)) == 3
    sample = dataset[0]
    assert sample.image.dtype == np.uint8 and sample.image.ndim == 3 and sample.image.shape[1] == 1024
    face = source[0].faces[0]
    assert sample.boxes[0].tolist() == [face.x, face.y, face.x + face.w, face.y + face.h]
