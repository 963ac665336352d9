"""Detector building blocks: augmentation steps, hyper-parameter sections, LR schedule, dataset and sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from safefakes.common.errors import SafefakesError
from safefakes.detect import transforms as T
from safefakes.detect.data import StreamBatchSampler, WiderFaceDataset, epoch_permutation
from safefakes.detect.hparams import PredictConfig, ScheduleConfig, TrainConfig, load_hparams_argument, resolve_hparams
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


def test_ssd_style_pipeline_is_deterministic_per_seed() -> None:
    transform = T.build_ssd_style_transform(T.SsdStyleAugmentConfig(output_size=64))
    boxes = np.array([[10, 10, 40, 40], [50, 20, 70, 45]], np.float32)
    outputs = [transform(_image(), boxes, np.random.default_rng(seed)) for seed in (3, 3, 4)]
    assert np.array_equal(outputs[0][0], outputs[1][0]) and np.array_equal(outputs[0][1], outputs[1][1])
    assert all(o[0].shape == (64, 64, 3) for o in outputs)
    assert all(((o[1] >= 0) & (o[1] <= 64)).all() for o in outputs)


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
    assert load_hparams_argument('{"train": {"batch_size": 2}}') == {"train": {"batch_size": 2}}
    path = tmp_path / "h.yaml"
    path.write_text("predict:\n  flip: true\n")
    assert load_hparams_argument(str(path)) == {"predict": {"flip": True}}
    with pytest.raises(SafefakesError):
        load_hparams_argument("{not json")
    with pytest.raises(SafefakesError):
        load_hparams_argument(str(tmp_path / "missing.json"))


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
