"""Tests of the DSFD detector: architecture shapes, anchors, loss, inference format, augmentation, overfitting."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest
import torch
from torchvision.models.vgg import make_layers
from torchvision.ops import box_iou

from safefakes.common.errors import SafefakesError
from safefakes.detect.dsfd import PAPER_HPARAMS, SPEC, build_dsfd, build_dsfd_transform
from safefakes.detect.dsfd_anchors import decode_boxes, encode_boxes, match_anchors, pyramid_anchors
from safefakes.detect.dsfd_augment import (
    DSFDAugmentConfig,
    DSFDTrainTransform,
    choose_anchor_sample,
    crop_and_resize,
    face_sizes,
    keep_visible_faces,
)
from safefakes.detect.dsfd_model import VGG16_LAYOUT, DSFDBackbone, DSFDModelConfig, apply_predict_hparams
from safefakes.detect.hparams import resolve_hparams
from safefakes.detect.registry import get_detector

TINY = {"width_scale": 0.125, "pretrained": "none"}


@pytest.fixture(autouse=True)
def _one_thread():
    """Keep every test on one core (the CI machine is shared)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def face_scene(rng: np.random.Generator, size: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured background with ``count`` cartoon faces (skin ellipse, eyes, mouth) and their boxes."""
    image = rng.integers(60, 200, size=(size // 8, size // 8, 3), dtype=np.uint8)
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST)
    image = (image.astype(np.int16) + rng.integers(-20, 20, size=image.shape)).clip(0, 255).astype(np.uint8)
    boxes: list[list[float]] = []
    attempts = 0
    while len(boxes) < count and attempts < 200:
        attempts += 1
        width = float(rng.uniform(0.16, 0.34) * size)
        height = width * 1.3
        x1, y1 = rng.uniform(2, size - width - 2), rng.uniform(2, size - height - 2)
        box = [x1, y1, x1 + width, y1 + height]
        if boxes and box_iou(torch.tensor([box]), torch.tensor(boxes)).max() > 0:  # no overlapping faces
            continue
        cx, cy = x1 + width / 2, y1 + height / 2
        cv2.ellipse(image, (int(cx), int(cy)), (int(width / 2), int(height / 2)), 0, 0, 360, (224, 172, 130), -1)
        for side in (-1, 1):
            cv2.circle(image, (int(cx + side * width * 0.2), int(cy - height * 0.1)), max(1, int(width * 0.08)), (30, 20, 20), -1)
        cv2.ellipse(image, (int(cx), int(cy + height * 0.22)), (int(width * 0.18), max(1, int(height * 0.05))), 0, 0, 360, (150, 40, 40), -1)
        boxes.append(box)
    return image, np.asarray(boxes, dtype=np.float32)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 HWC RGB -> float CHW in [0, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1).float() / 255.0


def test_registry_and_paper_hparams() -> None:
    """The spec is registered and its paper values pass the shared validation."""
    assert get_detector("dsfd") is SPEC
    resolved = resolve_hparams(SPEC.paper_hparams, {})
    assert resolved["train"]["batch_size"] == 4
    assert resolved["train"]["optimizer"]["lr"] == pytest.approx(2.5e-4)
    assert round(resolved["train"]["epochs"] * 12_880 / 4) == 60_000
    assert PAPER_HPARAMS["model"]["positive_iou"] == 0.4
    assert DSFDModelConfig.from_dict(PAPER_HPARAMS["model"]) == DSFDModelConfig()
    assert DSFDAugmentConfig.from_dict(PAPER_HPARAMS["augment"]) == DSFDAugmentConfig()
    with pytest.raises(SafefakesError, match="unknown DSFD model"):
        build_dsfd({"widht_scale": 1.0})
    with pytest.raises(SafefakesError, match="needs width_scale 1.0"):
        build_dsfd({"width_scale": 0.5, "pretrained": "imagenet"})
    with pytest.raises(SafefakesError, match="pretrained must be one of imagenet, none"):
        build_dsfd({"width_scale": 0.125, "pretrained": "imagenet_if_available"})


def test_missing_imagenet_weights(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Absent VGG-16 file: the paper's 'imagenet' refuses to build; 'none' starts from random values and says so."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("SAFEFAKES_WEIGHTS_DIR", raising=False)
    with pytest.raises(SafefakesError, match=r"vgg16-397923af\.pth.*safefakes fetch-weights --only vgg16"):
        build_dsfd({})
    assert build_dsfd(TINY).initialisation.label == "none"
    assert build_dsfd({"width_scale": 1.0}, load_pretrained=False).initialisation is None  # a checkpoint's weights follow


@pytest.mark.parametrize("batch_norm", [False, True])
def test_backbone_detects_after_conv3_3_4_3_5_3_and_loads_torchvision_s_vgg_layout(batch_norm: bool) -> None:
    """VGG-16 or VGG-16-BN: the three L2-normalized outputs follow the ReLUs of conv3_3, conv4_3, conv5_3, and
    torchvision's feature stack (the ImageNet files' keys) loads by index."""
    backbone = DSFDBackbone(1.0, (10.0, 8.0, 5.0), batch_norm=batch_norm)
    torchvision_features = make_layers(list(VGG16_LAYOUT), batch_norm=batch_norm)
    backbone.features.load_state_dict(torchvision_features.state_dict())  # strict: same keys and shapes
    convs_before = [sum(isinstance(m, torch.nn.Conv2d) for m in backbone.features[:end]) for end in backbone.stage_ends]
    assert convs_before == [7, 10, 13]  # conv3_3, conv4_3, conv5_3
    assert all(isinstance(backbone.features[end - 1], torch.nn.ReLU) for end in backbone.stage_ends)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.features) == (13 if batch_norm else 0)


def test_batch_norm_backbone_asks_for_the_vgg16_bn_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """model.batch_norm with the paper's 'imagenet' needs torchvision's VGG-16-BN file, named in the error."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("SAFEFAKES_WEIGHTS_DIR", raising=False)
    with pytest.raises(SafefakesError, match=r"vgg16_bn-6c64b313\.pth.*safefakes fetch-weights --only vgg16_bn"):
        build_dsfd({"batch_norm": True})
    model = build_dsfd({**TINY, "batch_norm": True})
    assert model.initialisation.label == "none" and any(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules())


def test_levels_shapes_and_anchor_sizes() -> None:
    """Six levels at strides 4..128, FEM keeps channels, one anchor per location, first shot half the second."""
    model = build_dsfd(TINY).eval()
    size = 320  # 320 / 128 is not whole: the stride-128 level rounds up to 3
    with torch.no_grad():
        batch = model.batch_images([torch.rand(3, size, size)])
        out = model.shots(batch)
    strides = model.config.strides
    assert strides == (4, 8, 16, 32, 64, 128)
    for feature, enhanced, stride, channels in zip(out["original"], out["enhanced"], strides, model.backbone.out_channels, strict=True):
        cells = -(-size // stride)
        assert feature.shape == (1, channels, cells, cells)
        assert enhanced.shape == feature.shape
    locations = sum((-(-size // s)) ** 2 for s in strides)
    for logits, offsets in (out["first"], out["second"]):
        assert logits.shape == (1, locations, 2) and offsets.shape == (1, locations, 4)
    first = model.anchors_for(out["feature_sizes"], (size, size), first_shot=True)
    second = model.anchors_for(out["feature_sizes"], (size, size), first_shot=False)
    assert first.shape == second.shape == (locations, 4)
    assert model.config.anchor_sizes == (16, 32, 64, 128, 256, 512)
    assert model.config.first_shot_anchor_sizes == (8, 16, 32, 64, 128, 256)
    # Unclipped anchors: area = size**2, height / width = 1.5, centres on the cell centres.
    unclipped = pyramid_anchors([(4, 4)], [8], [16.0], 1.5)
    wh = unclipped[:, 2:] - unclipped[:, :2]
    assert torch.allclose(wh.prod(dim=1), torch.full((16,), 256.0))
    assert torch.allclose(wh[:, 1] / wh[:, 0], torch.full((16,), 1.5))
    assert torch.allclose((unclipped[:5, :2] + unclipped[:5, 2:])[:, 0] / 2, torch.tensor([4.0, 12, 20, 28, 4]))


def test_encoding_roundtrip_and_matching() -> None:
    """Encoding inverts decoding; every face gets at least one positive anchor."""
    anchors = pyramid_anchors([(8, 8), (4, 4)], [8, 16], [16.0, 32.0], 1.5)
    faces = torch.tensor([[3.0, 5.0, 20.0, 31.0], [40.0, 30.0, 60.0, 62.0], [10.0, 50.0, 12.0, 53.0]])
    matched = match_anchors(faces, anchors, positive_iou=0.4)
    assert set(matched[matched >= 0].tolist()) == {0, 1, 2}
    positive = matched >= 0
    offsets = encode_boxes(faces[matched[positive]], anchors[positive], (0.1, 0.2))
    assert torch.allclose(decode_boxes(offsets, anchors[positive], (0.1, 0.2)), faces[matched[positive]], atol=1e-4)
    assert (match_anchors(torch.zeros(0, 4), anchors, 0.4) == -1).all()


def test_loss_finite_and_decreasing() -> None:
    """The four PAL terms are finite, and a few SGD steps reduce their sum on a fixed batch."""
    torch.manual_seed(0)
    model = build_dsfd(TINY).train()
    rng = np.random.default_rng(1)
    scenes = [face_scene(rng, 128, 2) for _ in range(2)]
    images = [to_tensor(img) for img, _ in scenes]
    targets = [{"boxes": torch.from_numpy(b), "labels": torch.ones(len(b), dtype=torch.int64)} for _, b in scenes]
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    totals = []
    for _ in range(8):
        losses = model(images, targets)
        assert set(losses) == {f"loss_{s}_{t}" for s in ("first_shot", "second_shot") for t in ("classification", "regression")}
        total = sum(losses.values())
        assert torch.isfinite(total)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(total.detach()))
    assert totals[-1] < totals[0]
    # An image without faces still gives a finite loss.
    empty = model([images[0]], [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}])
    assert all(torch.isfinite(v) for v in empty.values())


def test_eval_output_format() -> None:
    """Eval mode returns boxes inside each (differently sized) image, scores in [0, 1] sorted, int64 labels."""
    model = build_dsfd(TINY | {"max_detections": 20}).eval()
    images = [torch.rand(3, 100, 150), torch.rand(3, 130, 90)]
    detections = model(images)
    assert len(detections) == 2
    for det, img in zip(detections, images, strict=True):
        assert det["boxes"].shape == (det["scores"].shape[0], 4) and det["scores"].shape[0] <= 20
        assert det["labels"].dtype == torch.int64 and (det["labels"] == 1).all()
        assert ((det["scores"] >= 0) & (det["scores"] <= 1)).all()
        assert (det["scores"][:-1] >= det["scores"][1:]).all()
        assert (det["boxes"][:, 0::2] <= img.shape[-1]).all() and (det["boxes"][:, 1::2] <= img.shape[-2]).all()
    limited = apply_predict_hparams(model, {"max_detections": 5, "test_max_side": 64, "flip": False})(images)
    assert all(d["scores"].shape[0] <= 5 for d in limited)
    assert (limited[0]["boxes"][:, 0::2] <= 150).all()


def test_data_anchor_sampling_hits_chosen_anchor_scale() -> None:
    """The chosen face ends up between half and twice the chosen anchor; small anchors are reachable."""
    config = DSFDAugmentConfig(output_size=640)
    image = np.full((480, 640, 3), 100, dtype=np.uint8)
    boxes = np.array([[300.0, 200.0, 500.0, 400.0], [100.0, 100.0, 130.0, 130.0]], dtype=np.float32)
    rng = np.random.default_rng(0)
    chosen_anchors = {0: set(), 1: set()}
    for _ in range(150):
        sample = choose_anchor_sample(boxes, image.shape[:2], config, rng)
        assert sample is not None
        chosen_anchors[sample.face_index].add(sample.anchor_index)
        _, moved = crop_and_resize(image, boxes, sample.window, config.output_size, config.fill_rgb)
        size = float(face_sizes(moved[sample.face_index : sample.face_index + 1])[0])
        if sample.target_size <= config.output_size:
            assert size == pytest.approx(sample.target_size, rel=0.02)
            anchor = config.anchor_scales[sample.anchor_index]
            assert anchor / 2 * 0.98 <= size <= anchor * 2 * 1.02
            face = moved[sample.face_index]
            assert face[0] >= -1 and face[1] >= -1 and face[2] <= 641 and face[3] <= 641
    # 200 px face: nearest anchor 256 (index 4), so targets 0..5; 30 px face: nearest 32 (index 1), targets 0..2.
    assert chosen_anchors[0] == {0, 1, 2, 3, 4, 5}
    assert chosen_anchors[1] == {0, 1, 2}


def test_transform_keeps_boxes_on_the_faces() -> None:
    """After the full augmentation every kept box still frames a drawn face (skin pixels inside), deterministically."""
    transform = build_dsfd_transform({"output_size": 256})
    rng = np.random.default_rng(3)
    image, boxes = face_scene(rng, 480, 3)
    mask = np.zeros(image.shape[:2], dtype=np.uint8)
    for x1, y1, x2, y2 in boxes:
        cv2.ellipse(mask, (int((x1 + x2) / 2), int((y1 + y2) / 2)), (int((x2 - x1) / 2), int((y2 - y1) / 2)), 0, 0, 360, 255, -1)
    marked = np.dstack([mask] * 3)  # the face masks, transformed with the same geometry as the image
    no_colour = {"brightness_prob": 0, "contrast_prob": 0, "saturation_prob": 0, "hue_prob": 0}
    geometry = DSFDTrainTransform(DSFDAugmentConfig.from_dict({"output_size": 256} | no_colour))
    for seed in range(25):
        out, kept = transform(image, boxes, np.random.default_rng(seed))
        again, kept_again = transform(image, boxes, np.random.default_rng(seed))
        assert np.array_equal(out, again) and np.array_equal(kept, kept_again)
        assert out.shape == (256, 256, 3) and out.dtype == np.uint8 and kept.dtype == np.float32
        mask_out, mask_boxes = geometry(marked, boxes, np.random.default_rng(seed))
        assert np.allclose(mask_boxes, kept, atol=1e-3)  # photometric draws do not change the geometry
        for x1, y1, x2, y2 in kept:
            assert 0 <= x1 < x2 <= 256 and 0 <= y1 < y2 <= 256
            assert min(x2 - x1, y2 - y1) >= 6.0
            inner = mask_out[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2)), 0]
            assert (inner > 200).mean() > 0.5  # mostly face pixels


def test_transform_without_faces_and_picklable() -> None:
    """Images without faces still give an output square; the transform survives pickling (data-loader workers)."""
    transform = pickle.loads(pickle.dumps(build_dsfd_transform({"output_size": 128})))
    out, kept = transform(np.zeros((90, 200, 3), dtype=np.uint8), np.zeros((0, 4), dtype=np.float32), np.random.default_rng(0))
    assert out.shape == (128, 128, 3) and kept.shape == (0, 4)
    assert keep_visible_faces(np.array([[-10.0, -10.0, 4.0, 4.0]], dtype=np.float32), 128, 6.0).shape == (0, 4)


@pytest.mark.slow
def test_overfits_two_images() -> None:
    """A small DSFD trained on two fixed images finds their faces (recall >= 0.9 at IoU 0.5, score >= 0.5)."""
    torch.manual_seed(0)
    model = build_dsfd(TINY)
    rng = np.random.default_rng(7)
    scenes = [face_scene(rng, 128, 2 + i % 2) for i in range(2)]
    images = [to_tensor(img) for img, _ in scenes]
    targets = [{"boxes": torch.from_numpy(b), "labels": torch.ones(len(b), dtype=torch.int64)} for _, b in scenes]
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(OVERFIT_STEPS):
        total = sum(model(images, targets).values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    model.eval()
    detections = model(images)
    found = faces = false_positives = 0
    for det, target in zip(detections, targets, strict=True):
        confident = det["boxes"][det["scores"] >= 0.5]
        iou = box_iou(target["boxes"], confident) if len(confident) else torch.zeros(len(target["boxes"]), 0)
        found += int((iou.max(dim=1).values >= 0.5).sum()) if iou.shape[1] else 0
        faces += len(target["boxes"])
        false_positives += int((iou.max(dim=0).values < 0.5).sum()) if iou.shape[1] else 0
    assert found / faces >= 0.9
    assert false_positives <= 2


OVERFIT_STEPS = 80  # recall reaches 1.0 after about 60 steps
