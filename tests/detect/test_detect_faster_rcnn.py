"""Faster R-CNN: anchors (incl. size 16), pretrained-weight handling, one real training step and prediction."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import FrozenBatchNorm2d

from safefakes.common import weights
from safefakes.common.errors import SafefakesError
from safefakes.detect.faster_rcnn import IMAGENET_WEIGHTS, SPEC, FasterRcnnConfig, build_faster_rcnn
from safefakes.detect.registry import get_detector

SMALL = {"min_size": 64, "max_size": 64, "backbone": "resnet18", "pretrained": "none"}


def test_registered_with_paper_hparams() -> None:
    spec = get_detector("faster_rcnn")
    assert spec is SPEC
    train, model = spec.paper_hparams["train"], spec.paper_hparams["model"]
    assert train["batch_size"] == 4 and train["optimizer"] == {"name": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False}
    assert train["schedule"]["name"] == "step" and train["schedule"]["step_epochs"] == 3 and train["schedule"]["gamma"] == 0.1
    assert model["backbone"] == "resnet50" and model["num_classes"] == 2


def test_anchor_sizes_per_fpn_level_include_16() -> None:
    model = build_faster_rcnn({**SMALL, "backbone": "resnet50"})
    generator = model.rpn.anchor_generator
    assert generator.sizes == ((16, 32), (32, 64), (64, 128), (128, 256), (256, 512))
    assert generator.num_anchors_per_location() == [6] * 5
    assert model.rpn.head.cls_logits.out_channels == 6
    assert model.roi_heads.box_predictor.cls_score.out_features == 2
    # Anchors actually generated on the finest level (stride 4) include 16x16 squares.
    features = model.backbone(torch.zeros(1, 3, 64, 64))
    anchors = generator(ImageList(torch.zeros(1, 3, 64, 64), [(64, 64)]), list(features.values()))[0]
    level0 = anchors[: 16 * 16 * 6]
    sizes = torch.stack([level0[:, 2] - level0[:, 0], level0[:, 3] - level0[:, 1]], 1).round()
    assert (sizes == torch.tensor([16.0, 16.0])).all(1).any()
    assert anchors.shape[0] == 6 * sum(f.shape[-1] * f.shape[-2] for f in features.values())


def test_from_scratch_uses_trainable_batch_norm_and_no_frozen_layer(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO"):
        model = build_faster_rcnn(SMALL)
    assert "model.pretrained none" in caplog.text
    assert model.initialisation == weights.Initialisation()
    norms = [m for m in model.backbone.body.modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
    assert norms and all(isinstance(m, nn.BatchNorm2d) for m in norms)
    assert all(p.requires_grad for p in model.parameters())


def test_cached_imagenet_weights_are_loaded_and_early_stages_frozen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(weights.WEIGHTS_DIR_ENV, raising=False)
    spec = weights.WEIGHT_FILES[IMAGENET_WEIGHTS["resnet18"]]
    expected = tmp_path / "hub" / "checkpoints" / spec.filename
    with pytest.raises(
        SafefakesError, match=f"needs {re.escape(str(expected))} .*'safefakes fetch-weights --only resnet18 --out {re.escape(str(expected.parent))}'"
    ):
        build_faster_rcnn({**SMALL, "pretrained": "imagenet"})  # nothing cached: refused, never downloaded
    expected.parent.mkdir(parents=True)
    torch.manual_seed(0)
    reference = resnet18().state_dict()
    torch.save(reference, expected)
    with pytest.raises(SafefakesError, match="not the expected f37072fd"):  # a random ResNet-18 is not torchvision's file
        build_faster_rcnn({**SMALL, "pretrained": "imagenet"})
    digest = weights.sha256_of_file(expected)
    monkeypatch.setitem(weights.WEIGHT_FILES, spec.key, dataclasses.replace(spec, sha256=digest))
    with caplog.at_level("INFO"):
        model = build_faster_rcnn({**SMALL, "pretrained": "imagenet"})
    assert "imagenet weights resnet18-f37072fd.pth" in caplog.text
    assert model.initialisation == weights.Initialisation("imagenet", spec.filename, digest)
    body = model.backbone.body
    assert torch.equal(body.layer3[0].conv1.weight, reference["layer3.0.conv1.weight"])
    assert isinstance(body.bn1, FrozenBatchNorm2d)
    assert not body.conv1.weight.requires_grad and not body.layer1[0].conv1.weight.requires_grad
    assert not body.layer2[0].conv1.weight.requires_grad  # paper: first three stages frozen (conv1, layer1, layer2)
    assert body.layer3[0].conv1.weight.requires_grad and body.layer4[0].conv1.weight.requires_grad


def test_config_refuses_bad_values() -> None:
    with pytest.raises(SafefakesError, match="unknown Faster R-CNN model setting"):
        FasterRcnnConfig.from_dict({"anchor_size": [[16]]})
    with pytest.raises(SafefakesError, match="same number of sizes"):
        FasterRcnnConfig.from_dict({"anchor_sizes": [[16, 32], [64], [128], [256], [512]]})
    with pytest.raises(SafefakesError, match="one list per FPN level"):
        FasterRcnnConfig.from_dict({"anchor_sizes": [[16], [32]]})
    with pytest.raises(SafefakesError, match="needs width_per_group 64"):
        FasterRcnnConfig.from_dict({"width_per_group": 16})  # the paper's ImageNet backbone does not fit a narrower ResNet
    with pytest.raises(SafefakesError, match="must be one of imagenet, coco, none"):
        FasterRcnnConfig.from_dict({"pretrained": "imagenet_if_available"})


def test_one_training_step_and_inference_follow_the_contract() -> None:
    torch.manual_seed(0)
    model = build_faster_rcnn(SMALL)
    model.train()
    images = [torch.rand(3, 64, 64), torch.rand(3, 48, 64)]
    targets = [
        {"boxes": torch.tensor([[8.0, 8.0, 30.0, 34.0]]), "labels": torch.ones(1, dtype=torch.int64)},
        {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total)
    model.eval()
    with torch.no_grad():
        outputs = model([torch.rand(3, 50, 70)])
    assert outputs[0]["boxes"].shape[1] == 4 and len(outputs[0]["scores"]) == len(outputs[0]["boxes"])
    assert (outputs[0]["boxes"][:, 2] <= 70 + 1e-3).all() and (outputs[0]["boxes"][:, 3] <= 50 + 1e-3).all()


def test_train_transform_is_dsfd_style_square_output() -> None:
    import numpy as np

    transform = SPEC.build_train_transform({"output_size": 96})
    image = np.full((120, 200, 3), 128, np.uint8)
    boxes = np.array([[50, 40, 90, 90]], np.float32)
    out_image, out_boxes = transform(image, boxes, np.random.default_rng(0))
    assert out_image.shape == (96, 96, 3) and out_image.dtype == np.uint8
    assert out_boxes.shape[1] == 4 and (out_boxes >= 0).all() and (out_boxes <= 96).all()
