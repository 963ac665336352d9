"""Faster R-CNN: paper length and schedule (10 epochs, decays at 3, 6, 9), DSFD's augmentation, anchors (incl. size 16),
pretrained-weight handling, one real training step and prediction."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import FrozenBatchNorm2d

from safefakes.common import weights
from safefakes.common.errors import SafefakesError
from safefakes.data.wider import WIDER_TRAIN_IMAGES
from safefakes.detect.dsfd_augment import DSFDAugmentConfig, DSFDTrainTransform
from safefakes.detect.faster_rcnn import IMAGENET_WEIGHTS, SPEC, FasterRcnnConfig, build_faster_rcnn
from safefakes.detect.hparams import TrainConfig, iterations_for_epochs, resolve_hparams
from safefakes.detect.registry import DETECTOR_SPECS, check_hparams, get_detector
from safefakes.detect.train import LearningRateFactor

SMALL = {"min_size": 64, "max_size": 64, "backbone": "resnet18", "pretrained": "none"}


def test_registered_with_paper_hparams() -> None:
    spec = get_detector("faster_rcnn")
    assert spec is SPEC
    train, model = spec.paper_hparams["train"], spec.paper_hparams["model"]
    assert train["batch_size"] == 4 and train["optimizer"] == {"name": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False}
    assert train["schedule"]["name"] == "step" and train["schedule"]["step_epochs"] == 3 and train["schedule"]["gamma"] == 0.1
    assert model["backbone"] == "resnet50" and model["num_classes"] == 2


#: Supplement Sec. III-A: Faster R-CNN trains 10 epochs, the learning rate x0.1 every 3 epochs.
PAPER_EPOCHS = 10
PAPER_DECAY_EPOCHS = (3, 6, 9)
#: The demo's (config.yaml) Faster R-CNN augmentation override.
DEMO_OUTPUT_SIZE = 256


def test_paper_length_is_ten_epochs_with_decays_at_epochs_3_6_9() -> None:
    train = TrainConfig.from_dict(resolve_hparams(SPEC.paper_hparams, {})["train"])
    per_epoch = train.iterations_per_epoch(WIDER_TRAIN_IMAGES)
    total = iterations_for_epochs(train.epochs, WIDER_TRAIN_IMAGES, train.batch_size)
    assert train.epochs == PAPER_EPOCHS and per_epoch == 3_220 and total == PAPER_EPOCHS * per_epoch == 32_200
    factor = LearningRateFactor(train.schedule, iterations_per_epoch=per_epoch, total_iterations=total)
    decays = [iteration for iteration in range(1, total) if factor(iteration) < factor(iteration - 1)]
    assert decays == [epoch * per_epoch for epoch in PAPER_DECAY_EPOCHS]
    assert factor(0) == 1.0 and factor(total - 1) == pytest.approx(train.schedule.gamma ** len(PAPER_DECAY_EPOCHS))


def test_epochs_convert_to_iterations_as_training_counts_them() -> None:
    assert iterations_for_epochs(1, 10, 4) == 3 and iterations_for_epochs(2.5, 10, 4) == 8  # ceil(10 / 4) = 3 per epoch
    with pytest.raises(SafefakesError, match="epochs must be positive"):
        iterations_for_epochs(0, 10, 4)


def test_every_detector_trains_at_the_batch_size_the_workflow_converts_epochs_with() -> None:
    """`detectors.NAME.epochs` is converted at train.batch_size, default the shared TrainConfig's (config.smk)."""
    for name in DETECTOR_SPECS:
        assert resolve_hparams(get_detector(name).paper_hparams, {})["train"]["batch_size"] == TrainConfig().batch_size, name


def test_paper_augmentation_is_dsfds_with_data_anchor_sampling() -> None:
    augment = resolve_hparams(SPEC.paper_hparams, {})["augment"]
    assert augment["pipeline"] == "dsfd"
    transform = SPEC.build_train_transform(augment)
    assert isinstance(transform, DSFDTrainTransform) and transform.config == DSFDAugmentConfig()
    assert transform.config.data_anchor_sampling_prob == 0.4  # DSFD Sec. 3.3: 2/5 data-anchor-sampling
    boxes = np.array([[40, 40, 80, 80], [150, 60, 170, 80]], np.float32)
    samples = [transform.choose_window(boxes, (240, 320), np.random.default_rng(seed))[1] for seed in range(40)]
    assert any(sample is not None for sample in samples) and any(sample is None for sample in samples)
    image = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    out, kept = transform(image, boxes, np.random.default_rng(1))
    assert out.shape == (DSFDAugmentConfig().output_size,) * 2 + (3,) and kept.shape[1] == 4


def test_demo_override_keeps_the_dsfd_pipeline_and_the_ssd_pipeline_stays_selectable() -> None:
    demo = check_hparams("faster_rcnn", {"augment": {"output_size": DEMO_OUTPUT_SIZE}})
    assert demo["augment"]["pipeline"] == "dsfd" and demo["augment"]["data_anchor_sampling_prob"] == 0.4
    assert SPEC.build_train_transform(demo["augment"]).config.output_size == DEMO_OUTPUT_SIZE
    ssd = check_hparams("faster_rcnn", {"augment": {"pipeline": "ssd", "output_size": DEMO_OUTPUT_SIZE}})
    assert ssd["augment"] == {"pipeline": "ssd", "output_size": DEMO_OUTPUT_SIZE}  # the SSD pipeline's own defaults fill the rest
    transform = SPEC.build_train_transform(ssd["augment"])
    assert not isinstance(transform, DSFDTrainTransform)
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    assert transform(image, np.array([[40, 40, 80, 80]], np.float32), np.random.default_rng(0))[0].shape == (DEMO_OUTPUT_SIZE, DEMO_OUTPUT_SIZE, 3)
    with pytest.raises(SafefakesError, match="data_anchor_sampling_prob"):  # a DSFD-only key is refused by the SSD pipeline
        check_hparams("faster_rcnn", {"augment": {"pipeline": "ssd", "data_anchor_sampling_prob": 0.4}})
    with pytest.raises(SafefakesError, match="augment.pipeline must be one of dsfd, ssd"):
        check_hparams("faster_rcnn", {"augment": {"pipeline": "yolo"}})


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
