"""TinaFace: configuration, architecture shapes, anchors and assignment, losses, inference output,
augmentation, and an overfit check on rendered faces."""

from __future__ import annotations

import dataclasses
import math
import re
import time

import cv2
import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops import box_iou

from safefakes.common import weights
from safefakes.common.errors import SafefakesError
from safefakes.data.wider import read_bbx_gt
from safefakes.detect import tinaface_anchors
from safefakes.detect.hparams import resolve_hparams
from safefakes.detect.registry import get_detector
from safefakes.detect.tinaface import PAPER_HPARAMS, SPEC, apply_predict_hparams, build_tinaface
from safefakes.detect.tinaface_anchors import NEGATIVE, assign_anchors, base_anchors, decode_boxes, grid_anchors
from safefakes.detect.tinaface_augment import TinaFaceTrainTransform
from safefakes.detect.tinaface_backbone import DeformableConv3x3, ResNetBackbone, initialise_backbone
from safefakes.detect.tinaface_config import TinaFaceAugmentConfig, TinaFaceModelConfig
from safefakes.detect.tinaface_neck import Inception

#: A small, fast variant: same code path, fewer channels, no deformable convolutions.
SMALL_MODEL = {"width_scale": 0.125, "pretrained": "none", "deformable_stages": [False, False, False, False]}


def small_model(**overrides: object) -> nn.Module:
    torch.manual_seed(0)
    return build_tinaface({**SMALL_MODEL, **overrides})


def face_target(boxes: list[list[float]]) -> dict[str, torch.Tensor]:
    tensor = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return {"boxes": tensor, "labels": torch.ones(len(tensor), dtype=torch.int64)}


# ----------------------------------------------------------------------------------------- config


def test_paper_hparams_are_valid_and_round_trip() -> None:
    assert get_detector("tinaface") is SPEC
    resolve_hparams(PAPER_HPARAMS, {})  # the shared train/predict sections accept TinaFace's values
    assert TinaFaceModelConfig.from_dict(PAPER_HPARAMS["model"]) == TinaFaceModelConfig()
    assert TinaFaceAugmentConfig.from_dict(PAPER_HPARAMS["augment"]) == TinaFaceAugmentConfig()
    model = PAPER_HPARAMS["model"]
    assert model["strides"] == [4, 8, 16, 32, 64, 128] and model["anchor_ratios"] == [1.3]
    assert (model["focal_alpha"], model["focal_gamma"]) == (0.25, 2.0)
    assert model["positive_iou"] == model["negative_iou"] == 0.35
    assert PAPER_HPARAMS["train"]["optimizer"]["lr"] == 3.75e-3
    assert PAPER_HPARAMS["predict"]["nms_iou"] == 0.45
    assert round(PAPER_HPARAMS["train"]["epochs"] * 12_880 / 4) == 60_000


def test_unknown_or_invalid_settings_are_user_errors() -> None:
    with pytest.raises(SafefakesError, match="typo_key"):
        build_tinaface({"typo_key": 1})
    with pytest.raises(SafefakesError, match="inference"):
        build_tinaface({"inference": {"nms": 0.5}})
    with pytest.raises(SafefakesError, match="norm"):
        build_tinaface({"norm": "layer"})
    with pytest.raises(SafefakesError, match="crop"):
        SPEC.build_train_transform({"crop_choices": [0.0]})


# ----------------------------------------------------------------------------------------- architecture


def test_backbone_at_full_width_is_torchvision_resnet50_and_loads_cached_imagenet_weights(tmp_path, monkeypatch) -> None:
    config = TinaFaceModelConfig(pretrained="imagenet")
    backbone = ResNetBackbone(config)
    reference = torchvision.models.resnet50().state_dict()
    own = backbone.state_dict()
    learnable = {k: v for k, v in reference.items() if not k.startswith("fc.") and "running" not in k and "num_batches" not in k}
    assert set(learnable) <= set(own)
    assert all(own[k].shape == v.shape for k, v in learnable.items())
    assert backbone.out_channels == [256, 512, 1024, 2048]
    assert isinstance(backbone.layer3[0].conv2, DeformableConv3x3)
    assert isinstance(backbone.layer4[2].conv2, DeformableConv3x3)
    assert isinstance(backbone.layer2[0].conv2, nn.Conv2d)
    assert isinstance(backbone.bn1, nn.GroupNorm)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(weights.WEIGHTS_DIR_ENV, raising=False)
    checkpoint = tmp_path / "hub" / "checkpoints" / torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    with pytest.raises(SafefakesError, match=f"needs {re.escape(str(checkpoint))} .*safefakes fetch-weights --only resnet50"):
        initialise_backbone(backbone, config)  # nothing cached: refused, never downloaded
    checkpoint.parent.mkdir(parents=True)
    torch.save(reference, checkpoint)
    with pytest.raises(SafefakesError, match="not the expected 0676ba61"):  # a random ResNet-50 is not torchvision's file
        initialise_backbone(backbone, config)
    digest = weights.sha256_of_file(checkpoint)
    monkeypatch.setitem(weights.WEIGHT_FILES, "resnet50", dataclasses.replace(weights.WEIGHT_FILES["resnet50"], sha256=digest))
    assert initialise_backbone(backbone, config) == weights.Initialisation("imagenet", checkpoint.name, digest)
    loaded = backbone.state_dict()
    for name in ("conv1.weight", "layer3.0.conv2.weight", "layer4.2.conv3.weight", "layer1.0.bn1.weight"):
        assert torch.equal(loaded[name], reference[name])
    with pytest.raises(SafefakesError, match="needs ResNet-50's shape"):
        TinaFaceModelConfig.from_dict({"width_scale": 0.5})  # shapes differ: refused, not silently skipped
    assert initialise_backbone(backbone, dataclasses.replace(config, pretrained="none")) == weights.Initialisation()


def test_levels_strides_channels_and_head_outputs() -> None:
    model = small_model(width_scale=0.25)
    config = model.config
    batch = torch.zeros(2, 3, 256, 256)
    levels = model.inception(model.fpn(model.backbone(batch)))
    assert len(levels) == 6  # P2..P7
    assert [256 // level.shape[-1] for level in levels] == [4, 8, 16, 32, 64, 128]
    assert all(level.shape[1] == config.neck_channels == 64 for level in levels)
    outputs = model.head(levels)
    assert config.anchors_per_location == 3  # 3 scales x 1 ratio
    expected = [3 * level.shape[-2] * level.shape[-1] for level in levels]
    assert outputs.level_sizes == expected
    total = sum(expected)
    assert outputs.class_logits.shape == (2, total)
    assert outputs.box_deltas.shape == (2, total, 4)
    assert outputs.iou_logits.shape == (2, total)  # IoU-aware branch: one value per anchor
    head_norms = [m for m in model.head.modules() if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d))]
    assert head_norms and all(isinstance(m, nn.GroupNorm) for m in head_norms)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_inception_module_concatenates_three_receptive_fields() -> None:
    inception = Inception(64, lambda c: nn.GroupNorm(8, c))
    output = inception([torch.randn(1, 64, 9, 9)])[0]
    assert output.shape == (1, 64, 9, 9) and output.min() >= 0  # C/2 + C/4 + C/4 channels, then ReLU
    assert inception.branch3[0].out_channels == 32 and inception.branch5[0].out_channels == 16
    assert inception.branch7[0].out_channels == 16


def test_deformable_backbone_runs_and_trains() -> None:
    model = small_model(deformable_stages=[False, False, True, True])
    losses = model.train()([torch.rand(3, 64, 64)], [face_target([[10, 10, 40, 45]])])
    sum(losses.values()).backward()
    offset_grad = model.backbone.layer4[0].conv2.offset.weight.grad
    assert offset_grad is not None and torch.isfinite(offset_grad).all()


# ----------------------------------------------------------------------------------------- anchors


def test_anchor_sizes_ratio_and_grid_order() -> None:
    config = TinaFaceModelConfig()
    anchors = base_anchors(4, config)
    widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    expected_sizes = [4 * 2 ** (4 / 3) * 2 ** (i / 3) for i in range(3)]
    assert torch.allclose((widths * heights).sqrt(), torch.tensor(expected_sizes), rtol=1e-5)
    assert torch.allclose(heights / widths, torch.full((3,), 1.3), rtol=1e-5)
    assert 10 <= math.sqrt(float(widths[0] * heights[0])) <= 10.1  # smallest anchor fits ~10-px faces
    grid = grid_anchors(8, 2, 3, config)
    assert grid.shape == (2 * 3 * 3, 4)
    centres = (grid[:, :2] + grid[:, 2:]) / 2
    assert torch.allclose(centres[3], torch.tensor([8.0, 0.0])) and torch.allclose(centres[9], torch.tensor([0.0, 8.0]))


def test_decode_zero_deltas_gives_anchors_and_clips() -> None:
    config = TinaFaceModelConfig()
    anchors = torch.tensor([[-5.0, -5.0, 15.0, 25.0]])
    assert torch.allclose(decode_boxes(anchors, torch.zeros(1, 4), config), anchors)
    clipped = decode_boxes(anchors, torch.zeros(1, 4), config, image_size=(20, 10))
    assert torch.equal(clipped, torch.tensor([[0.0, 0.0, 10.0, 20.0]]))
    huge = decode_boxes(anchors, torch.tensor([[0.0, 0.0, 1e4, 1e4]]), config)
    assert torch.isfinite(huge).all()


def test_assignment_thresholds_and_chunking(monkeypatch) -> None:
    config = TinaFaceModelConfig()
    anchors = torch.tensor([[0.0, 0.0, 10, 10], [0, 0, 10, 7], [0, 0, 10, 3], [50, 50, 60, 60]])
    faces = torch.tensor([[0.0, 0.0, 10, 10]])
    # IoUs: 1.0 (positive), 0.7 (positive), 0.3 (negative), 0 (negative)
    assert assign_anchors(anchors, faces, config).tolist() == [0, 0, NEGATIVE, NEGATIVE]
    tiny = torch.tensor([[100.0, 100, 102, 102]])  # best IoU < 0.35 with every anchor: no positives
    assert (assign_anchors(anchors, tiny, config) == NEGATIVE).all()
    assert (assign_anchors(anchors, torch.zeros(0, 4), config) == NEGATIVE).all()

    generator = torch.Generator().manual_seed(0)
    many_anchors = grid_anchors(8, 16, 16, config)
    corners = torch.rand(300, 2, generator=generator) * 110
    many_faces = torch.cat([corners, corners + 8 + torch.rand(300, 2, generator=generator) * 30], dim=1)
    whole = assign_anchors(many_anchors, many_faces, config)
    monkeypatch.setattr(tinaface_anchors, "ASSIGN_FACE_CHUNK", 7)
    assert torch.equal(assign_anchors(many_anchors, many_faces, config), whole)
    assert (whole >= 0).any()


# ----------------------------------------------------------------------------------------- losses


def test_losses_finite_and_decreasing() -> None:
    model = small_model().train()
    images = [torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(1))]
    targets = [face_target([[20, 20, 50, 60], [60, 10, 80, 35]])]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    history = []
    for _ in range(12):
        losses = model(images, targets)
        assert set(losses) == {"loss_classifier", "loss_box_diou", "loss_iou"}
        assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
        total = sum(losses.values())
        history.append({k: v.item() for k, v in losses.items()})
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert history[-1]["loss_classifier"] < history[0]["loss_classifier"]
    assert history[-1]["loss_box_diou"] < history[0]["loss_box_diou"]
    empty = model([torch.rand(3, 64, 64)], [face_target([])])
    assert all(torch.isfinite(v) for v in empty.values()) and empty["loss_box_diou"] == 0
    with pytest.raises(SafefakesError):
        model(images)


# ----------------------------------------------------------------------------------------- inference


def test_eval_output_format_and_postprocess_settings() -> None:
    model = small_model().eval()
    model.configure_inference(test_short_side_max=None, test_long_side_max=None)  # resizing: tested below
    images = [torch.rand(3, 90, 150), torch.rand(3, 64, 64)]
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2
    for detection, image in zip(detections, images):
        assert set(detection) == {"boxes", "scores", "labels"}
        boxes, scores = detection["boxes"], detection["scores"]
        assert boxes.dtype == torch.float32 and boxes.shape == (len(scores), 4)
        assert detection["labels"].dtype == torch.int64 and (detection["labels"] == 1).all()
        assert ((scores > 0.01) & (scores <= 1)).all() and torch.equal(scores, scores.sort(descending=True).values)
        assert (boxes[:, [0, 2]] <= image.shape[2] + 1e-3).all() and (boxes[:, [1, 3]] <= image.shape[1] + 1e-3).all()
        assert ((boxes[:, 3] - boxes[:, 1]) >= 9).all()  # vedadet's minimum box height
    assert len(detections[0]["scores"]) > 0  # untrained scores sit near the prior, above 0.01

    apply_predict_hparams(model, {"score_threshold": 0.0, "max_detections": 5, "nms_iou": 0.3, "flip": False})
    assert model.inference.max_detections == 5 and model.inference.nms_iou == 0.3
    with torch.no_grad():
        capped = model(images[:1])[0]
    assert len(capped["scores"]) == 5
    assert box_iou(capped["boxes"], capped["boxes"]).fill_diagonal_(0).max() <= 0.3 + 1e-6


def test_test_time_resize_maps_boxes_back_to_input_pixels() -> None:
    model = small_model().eval()
    model.configure_inference(test_short_side_max=None, test_long_side_max=None)
    image = torch.rand(3, 64, 96)
    prepared = model.prepare([image], resize=True)
    assert prepared.images.shape[-2:] == (64, 96) and prepared.scales == [(1.0, 1.0)]
    model.configure_inference(test_short_side_max=128, test_long_side_max=1000)
    prepared = model.prepare([image], resize=True)
    assert prepared.sizes == [(128, 192)] and prepared.images.shape[-2:] == (128, 192)
    with torch.no_grad():
        boxes = model([image])[0]["boxes"]
    assert len(boxes) and (boxes[:, 2] <= 96 + 1e-3).all() and (boxes[:, 3] <= 64 + 1e-3).all()


# ----------------------------------------------------------------------------------------- augmentation


def white_faces_image(boxes: np.ndarray, height: int = 240, width: int = 320) -> np.ndarray:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    for x1, y1, x2, y2 in boxes.astype(int):
        image[y1:y2, x1:x2] = 255
    return image


def test_augmentation_keeps_boxes_on_their_faces() -> None:
    faces = np.array([[20, 30, 60, 80], [150, 100, 200, 160], [260, 20, 300, 70]], dtype=np.float32)
    image = white_faces_image(faces)
    transform = SPEC.build_train_transform({"photometric_probability": 0.0, "output_size": 160})
    for seed in range(25):
        out_image, out_boxes = transform(image, faces, np.random.default_rng(seed))
        assert out_image.shape == (160, 160, 3) and out_image.dtype == np.uint8
        assert out_boxes.dtype == np.float32 and out_boxes.shape[1] == 4
        assert (out_boxes >= 0).all() and (out_boxes <= 160).all()
        assert len(out_boxes) <= len(faces)
        covered = np.zeros((160, 160), dtype=bool)
        for x1, y1, x2, y2 in out_boxes:
            inner = out_image[int(y1) + 1 : int(y2) - 1, int(x1) + 1 : int(x2) - 1]
            assert inner.size == 0 or inner.mean() > 200  # each box still sits on its (white) face
            covered[int(y1) : int(math.ceil(y2)), int(x1) : int(math.ceil(x2))] = True
        # white pixels outside every box belong to faces dropped because their centre left the crop
        white = out_image[..., 0] > 128
        if len(out_boxes) == len(faces):
            assert (white & ~covered).sum() <= 2 * 160  # only resampling fringes
        scale = 160 / (0.3 * 240)
        sizes = (out_boxes[:, 2:] - out_boxes[:, :2]).max(axis=1)
        assert (sizes <= 60 * scale + 1).all()  # at most the 1/0.3 crop zoom, no extra scale augmentation


def test_augmentation_is_deterministic_and_photometric_changes_colours() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)
    faces = np.array([[50, 40, 90, 90]], dtype=np.float32)
    transform = TinaFaceTrainTransform(TinaFaceAugmentConfig(output_size=96, photometric_probability=1.0))
    first = transform(image, faces, np.random.default_rng(7))
    second = transform(image, faces, np.random.default_rng(7))
    assert first[0].tobytes() == second[0].tobytes() and np.array_equal(first[1], second[1])
    plain = TinaFaceTrainTransform(TinaFaceAugmentConfig(output_size=96, photometric_probability=0.0))
    changed = sum(not np.array_equal(transform(image, faces, np.random.default_rng(s))[0], plain(image, faces, np.random.default_rng(s))[0]) for s in range(10))
    assert changed >= 5
    empty_image, empty_boxes = transform(image, np.zeros((0, 4), np.float32), np.random.default_rng(1))
    assert empty_image.shape == (96, 96, 3) and empty_boxes.shape == (0, 4)


def test_augmentation_on_real_wider_images(wider_fixture_root) -> None:
    annotations = read_bbx_gt(wider_fixture_root / "train_subset_bbx_gt.txt")[:6]
    transform = SPEC.build_train_transform({"output_size": 320})
    for index, annotation in enumerate(annotations):
        path = wider_fixture_root / "WIDER_train" / "images" / annotation.name
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        boxes = np.array([[f.x, f.y, f.x + f.w, f.y + f.h] for f in annotation.faces], dtype=np.float32).reshape(-1, 4)
        out_image, out_boxes = transform(image, boxes, np.random.default_rng(index))
        assert out_image.shape == (320, 320, 3)
        assert ((out_boxes >= 0) & (out_boxes <= 320)).all()
        assert (out_boxes[:, 2:] >= out_boxes[:, :2]).all()
        if len(boxes):
            assert len(out_boxes) >= 1  # the crop is retried until it keeps a face


# ----------------------------------------------------------------------------------------- overfit


def render_faces(rng: np.random.Generator, size: int, n_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured background with ``n_faces`` simple cartoon faces (skin ellipse, eyes, mouth), non-overlapping."""
    image = (rng.random((size, size, 3)) * 60 + 90).astype(np.uint8)
    for offset in range(0, 2 * size, 12):
        cv2.line(image, (offset, 0), (0, offset), tuple(int(c) for c in rng.integers(40, 200, 3)), 2)
    boxes: list[np.ndarray] = []
    while len(boxes) < n_faces:
        w = int(rng.integers(size // 5, size // 3))
        h = int(w * 1.3)
        x, y = int(rng.integers(2, size - w - 2)), int(rng.integers(2, size - h - 2))
        box = np.array([x, y, x + w, y + h], dtype=np.float32)
        if boxes and box_iou(torch.tensor(np.stack(boxes)), torch.tensor(box[None])).max() > 0:
            continue
        boxes.append(box)
        cx, cy = x + w // 2, y + h // 2
        cv2.ellipse(image, (cx, cy), (w // 2, h // 2), 0, 0, 360, (224, 172, 140), -1)
        for side in (-1, 1):
            cv2.circle(image, (int(cx + side * w * 0.2), int(cy - h * 0.1)), max(2, w // 10), (30, 30, 30), -1)
        cv2.ellipse(image, (cx, int(cy + h * 0.22)), (w // 5, h // 14), 0, 0, 360, (170, 40, 40), -1)
    return image, np.stack(boxes)


@pytest.mark.slow
def test_overfits_rendered_faces() -> None:
    """~20 s CPU on one core: 80 Adam steps of a width-0.125 TinaFace on three 128-px images."""
    rng = np.random.default_rng(0)
    rendered = [render_faces(rng, 128, 1 + index % 2) for index in range(3)]
    images = [torch.from_numpy(image).permute(2, 0, 1).float() / 255 for image, _ in rendered]
    targets = [face_target(boxes.tolist()) for _, boxes in rendered]
    model = small_model(head_stacked_convs=2).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    start = time.process_time()
    for _ in range(80):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.configure_inference(test_short_side_max=None, test_long_side_max=None)
    with torch.no_grad():
        detections = model(images)
    found = faces = false_positives = 0
    for detection, target in zip(detections, targets):
        boxes = detection["boxes"][detection["scores"] >= 0.5]
        faces += len(target["boxes"])
        if len(boxes):
            iou = box_iou(target["boxes"], boxes)
            found += int((iou.max(dim=1).values >= 0.5).sum())
            false_positives += int((iou.max(dim=0).values < 0.5).sum())
    print(f"overfit: recall {found / faces:.2f}, false positives {false_positives}, {time.process_time() - start:.1f} s CPU")
    assert found / faces >= 0.9
    assert false_positives <= 1
