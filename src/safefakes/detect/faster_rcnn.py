"""Faster R-CNN face detector: torchvision's ``fasterrcnn_resnet50_fpn`` with two classes and size-16 anchors.

Paper (supplementary material, Sec. III-A): torchvision implementation with FPN and an
ImageNet-pretrained ResNet-50, anchors of size 16 added, SGD lr 1e-3, momentum 0.9, weight decay
1e-4, lr x0.1 every 3 epochs, 10 epochs, batch 4, DSFD's data augmentation, the first three layers
of the pretrained backbone frozen.

Augmentation (the ``augment`` section). ``pipeline: dsfd`` (the paper's, the default) is DSFD's own training
augmentation, :class:`~safefakes.detect.dsfd_augment.DSFDTrainTransform` with data-anchor-sampling included, and
takes :class:`~safefakes.detect.dsfd_augment.DSFDAugmentConfig`'s keys; ``pipeline: ssd`` is the plain SSD-style
pipeline (photometric distortion, zoom-out, random square crop, flip; no data-anchor-sampling) and takes
:class:`~safefakes.detect.transforms.SsdStyleAugmentConfig`'s keys. Naming the other pipeline in an override
starts from that pipeline's defaults (:func:`~safefakes.detect.hparams.resolve_hparams`).

Anchor mapping. torchvision's RPN head shares one convolution over all FPN levels, so every level
needs the same number of anchors per location. The six sizes 16..512 are spread over the five
levels as two sizes per level, each level's pair being its stride-matched size and twice that::

    P2 (stride 4)  -> 16, 32        P3 (stride 8)  -> 32, 64       P4 (stride 16) -> 64, 128
    P5 (stride 32) -> 128, 256      pool (stride 64) -> 256, 512

with aspect ratios 0.5, 1, 2 (torchvision's) at every size: 6 anchors per location. The union is
exactly torchvision's default set (32..512, one per level) plus 16 on the finest level.

Pretrained weights (``model.pretrained``: ``imagenet`` or ``coco``) are loaded only from the torch hub
cache (``$TORCH_HOME/hub/checkpoints``) or ``$SAFEFAKES_WEIGHTS_DIR``, never downloaded: a missing file
stops the build with the command that fetches it. ``pretrained: none`` trains the backbone from random
values with ordinary BatchNorm (a FrozenBatchNorm2d without ImageNet statistics would be a fixed
identity-like affine and the deep, un-normalized ResNet would train poorly) and no frozen layer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet as torchvision_resnet
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from safefakes.common.config import build_config
from safefakes.common.errors import SafefakesError
from safefakes.common.weights import NO_PRETRAINED, Initialisation, resolve_pretrained
from safefakes.detect.dsfd_augment import DSFDAugmentConfig, DSFDTrainTransform
from safefakes.detect.hparams import AUGMENT_PIPELINE_KEY, PredictConfig, TrainConfig
from safefakes.detect.registry import DetectorSpec, TrainTransform
from safefakes.detect.transforms import SsdStyleAugmentConfig, build_ssd_style_transform

LOGGER = logging.getLogger(__name__)

#: torchvision FPN on a ResNet: levels '0', '1', '2', '3' (strides 4..32) and 'pool' (stride 64).
FPN_LEVELS = 5
NORM_LAYERS = {"frozen_batch_norm": FrozenBatchNorm2d, "batch_norm": nn.BatchNorm2d}
PRETRAINED_CHOICES = ("imagenet", "coco", NO_PRETRAINED)
#: ``safefakes fetch-weights`` key of torchvision's ImageNet weights per backbone name.
IMAGENET_WEIGHTS = {"resnet18": "resnet18", "resnet34": "resnet34", "resnet50": "resnet50", "resnet101": "resnet101"}
#: ``safefakes fetch-weights`` key of torchvision's COCO Faster R-CNN (ResNet-50 FPN), ``model.pretrained: coco``.
COCO_WEIGHTS = "fasterrcnn_coco"
#: torchvision's ResNet bottleneck width, the one the pretrained files have.
PRETRAINED_WIDTH_PER_GROUP = 64
#: ``augment.pipeline`` values: DSFD's augmentation with data-anchor-sampling (paper: "the same data augmentation as
#: DSFD"), or the plain SSD-style pipeline without it.
DSFD_PIPELINE = "dsfd"
SSD_PIPELINE = "ssd"
AUGMENT_PIPELINES = (DSFD_PIPELINE, SSD_PIPELINE)
PAPER_AUGMENT_PIPELINE = DSFD_PIPELINE


@dataclass(frozen=True)
class FasterRcnnConfig:
    """Every model hyper-parameter of the Faster R-CNN face detector (the ``model`` section).

    Values not set by the paper are torchvision's ``FasterRCNN`` defaults, except the detection
    output (``box_score_thresh``, ``box_detections_per_img``), which WIDER's PR curve needs low/large.
    """

    backbone: str = "resnet50"  # paper: ResNet-50 with FPN
    width_per_group: int = 64  # ResNet bottleneck width (torchvision's 64); the CPU demo may shrink it
    fpn_channels: int = 256  # FPN output channels (torchvision's 256)
    box_representation_size: int = 1024  # TwoMLPHead width (torchvision's 1024)
    pretrained: str = "imagenet"  # paper: ImageNet backbone (required); "coco" = torchvision's COCO detector; "none": random
    trainable_backbone_layers: int = 2  # paper: first three of conv1, layer1..4 frozen; used only with pretrained weights
    norm_layer_pretrained: str = "frozen_batch_norm"  # torchvision's choice for a pretrained backbone
    norm_layer_from_scratch: str = "batch_norm"  # learnable BN when no ImageNet statistics exist
    num_classes: int = 2  # background + face
    anchor_sizes: tuple[tuple[int, ...], ...] = ((16, 32), (32, 64), (64, 128), (128, 256), (256, 512))  # paper: + size 16
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # torchvision default, at every level
    min_size: int = 800  # GeneralizedRCNNTransform: shorter side resized to this
    max_size: int = 1333  # GeneralizedRCNNTransform: longer side capped at this
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # ImageNet
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)  # ImageNet
    rpn_pre_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_test: int = 1000
    rpn_nms_thresh: float = 0.7
    rpn_fg_iou_thresh: float = 0.7
    rpn_bg_iou_thresh: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    box_score_thresh: float = 0.01  # low: the WIDER evaluation sweeps all thresholds (torchvision: 0.05)
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 750  # WIDER images hold up to ~1000 faces (torchvision: 100)
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    box_batch_size_per_image: int = 512
    box_positive_fraction: float = 0.25

    def __post_init__(self) -> None:
        if len(self.anchor_sizes) != FPN_LEVELS:
            raise SafefakesError(f"model.anchor_sizes needs one list per FPN level ({FPN_LEVELS}), got {len(self.anchor_sizes)}")
        if len({len(sizes) for sizes in self.anchor_sizes}) != 1:
            raise SafefakesError("model.anchor_sizes: every FPN level needs the same number of sizes (the RPN head is shared)")
        if self.pretrained not in PRETRAINED_CHOICES:
            raise SafefakesError(f"model.pretrained must be one of {', '.join(PRETRAINED_CHOICES)}, got {self.pretrained!r}")
        if self.backbone not in IMAGENET_WEIGHTS:
            raise SafefakesError(f"model.backbone must be one of {', '.join(IMAGENET_WEIGHTS)}, got {self.backbone!r}")
        if self.pretrained == "coco" and self.backbone != "resnet50":
            raise SafefakesError("model.pretrained 'coco' exists only for backbone resnet50")
        if self.pretrained != NO_PRETRAINED and self.width_per_group != PRETRAINED_WIDTH_PER_GROUP:
            raise SafefakesError(
                f"model.pretrained '{self.pretrained}' needs width_per_group {PRETRAINED_WIDTH_PER_GROUP} (the pretrained ResNet's), "
                f"got {self.width_per_group}; set pretrained: none to train a narrower network from random values"
            )
        for key in (self.norm_layer_pretrained, self.norm_layer_from_scratch):
            if key not in NORM_LAYERS:
                raise SafefakesError(f"model norm layer must be one of {', '.join(NORM_LAYERS)}, got {key!r}")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> FasterRcnnConfig:
        """Build from the ``model`` mapping (lists become tuples)."""
        return build_config(cls, raw, "Faster R-CNN model")


def pretrained_state(config: FasterRcnnConfig) -> tuple[dict[str, torch.Tensor], Initialisation]:
    """The model-named tensors of the weights ``config.pretrained`` asks for, and the record of the file they came from.

    Never downloads: a missing or corrupt file is a :class:`SafefakesError` naming it and the command that fetches it.
    """
    key = COCO_WEIGHTS if config.pretrained == "coco" else IMAGENET_WEIGHTS[config.backbone]
    path, initialisation = resolve_pretrained(key, config.pretrained, "faster_rcnn")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if config.pretrained == "imagenet":
        state = {f"backbone.body.{k}": v for k, v in state.items() if not k.startswith("fc.")}
    return state, initialisation


def _load_matching(model: nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[int, list[str]]:
    """Copy the tensors of ``state`` whose name and shape match the model; returns how many, and the names of the rest."""
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(matching, strict=False)
    return len(matching), [k for k in state if k not in matching]


#: torchvision's MultiScaleRoIAlign output size in the Faster R-CNN box head.
ROI_POOL_SIZE = 7
#: ResNet stages from the input side; a pretrained backbone keeps the first ones frozen.
RESNET_STAGES = ("layer4", "layer3", "layer2", "layer1", "conv1")


def build_resnet_fpn(config: FasterRcnnConfig, norm_layer: type[nn.Module], trainable_layers: int) -> BackboneWithFPN:
    """ResNet body (bottleneck width from the config) with an FPN of ``config.fpn_channels`` over layer1..layer4."""
    kwargs: dict[str, Any] = {"weights": None, "norm_layer": norm_layer}
    if config.width_per_group != 64:
        if config.backbone in ("resnet18", "resnet34"):
            raise SafefakesError("model.width_per_group applies to bottleneck ResNets (resnet50, resnet101) only")
        kwargs["width_per_group"] = config.width_per_group
    body = getattr(torchvision_resnet, config.backbone)(**kwargs)
    trainable = RESNET_STAGES[:trainable_layers] + (("bn1",) if trainable_layers == len(RESNET_STAGES) else ())
    for name, parameter in body.named_parameters():
        if not name.startswith(trainable):
            parameter.requires_grad_(False)
    stage_channels = body.inplanes // 8  # layer1's output channels: 64 (basic block) or 256 (bottleneck)
    return BackboneWithFPN(
        body,
        return_layers={f"layer{index}": str(index - 1) for index in range(1, 5)},
        in_channels_list=[stage_channels * 2**index for index in range(4)],
        out_channels=config.fpn_channels,
        extra_blocks=LastLevelMaxPool(),
        norm_layer=None,
    )


def build_faster_rcnn(raw_config: Mapping[str, Any], load_pretrained: bool = True) -> FasterRCNN:
    """Build the face Faster R-CNN described by the ``model`` mapping (see :class:`FasterRcnnConfig`).

    The model's ``initialisation`` records what it started from; ``load_pretrained=False`` builds the same
    network (frozen norms and stages included) without its initial weights, for a checkpoint's to replace.
    """
    config = FasterRcnnConfig.from_dict(raw_config)
    pretrained = config.pretrained != NO_PRETRAINED
    norm_name = config.norm_layer_pretrained if pretrained else config.norm_layer_from_scratch
    trainable_layers = config.trainable_backbone_layers if pretrained else len(RESNET_STAGES)
    backbone = build_resnet_fpn(config, NORM_LAYERS[norm_name], trainable_layers)
    anchors = AnchorGenerator(sizes=config.anchor_sizes, aspect_ratios=(config.aspect_ratios,) * FPN_LEVELS)
    model = FasterRCNN(
        backbone,
        num_classes=None,  # given by the box predictor
        min_size=config.min_size,
        max_size=config.max_size,
        image_mean=list(config.image_mean),
        image_std=list(config.image_std),
        rpn_anchor_generator=anchors,
        box_head=TwoMLPHead(config.fpn_channels * ROI_POOL_SIZE**2, config.box_representation_size),
        box_predictor=FastRCNNPredictor(config.box_representation_size, config.num_classes),
        rpn_pre_nms_top_n_train=config.rpn_pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=config.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=config.rpn_post_nms_top_n_train,
        rpn_post_nms_top_n_test=config.rpn_post_nms_top_n_test,
        rpn_nms_thresh=config.rpn_nms_thresh,
        rpn_fg_iou_thresh=config.rpn_fg_iou_thresh,
        rpn_bg_iou_thresh=config.rpn_bg_iou_thresh,
        rpn_batch_size_per_image=config.rpn_batch_size_per_image,
        rpn_positive_fraction=config.rpn_positive_fraction,
        box_score_thresh=config.box_score_thresh,
        box_nms_thresh=config.box_nms_thresh,
        box_detections_per_img=config.box_detections_per_img,
        box_fg_iou_thresh=config.box_fg_iou_thresh,
        box_bg_iou_thresh=config.box_bg_iou_thresh,
        box_batch_size_per_image=config.box_batch_size_per_image,
        box_positive_fraction=config.box_positive_fraction,
    )
    if not load_pretrained:
        model.initialisation = None
        return model
    if not pretrained:
        model.initialisation = Initialisation()
        LOGGER.info("faster_rcnn: model.pretrained none: backbone from random values with %s, all layers trainable", norm_name)
        return model
    state, model.initialisation = pretrained_state(config)
    loaded, skipped = _load_matching(model, state)
    # BatchNorm step counters have no place in a FrozenBatchNorm2d; every other backbone tensor must fit.
    unfitting = [name for name in skipped if name.startswith("backbone.") and not name.endswith("num_batches_tracked")]
    if unfitting:
        raise SafefakesError(
            f"faster_rcnn: {len(unfitting)} backbone tensors of {model.initialisation.weights_file} do not fit the model (first: {unfitting[0]})"
        )
    LOGGER.info(
        "faster_rcnn: %s weights %s (%d tensors loaded, %d skipped), %s, %d trainable backbone layers",
        config.pretrained,
        model.initialisation.weights_file,
        loaded,
        len(skipped),
        norm_name,
        trainable_layers,
    )
    return model


def build_faster_rcnn_transform(raw_augment: Mapping[str, Any]) -> TrainTransform:
    """The training augmentation the ``augment`` section's ``pipeline`` names: DSFD's with data-anchor-sampling
    (``dsfd``, the paper's "same data augmentation as DSFD"), or the SSD-style one (``ssd``); the other keys are
    that pipeline's settings (unknown ones refused)."""
    settings = dict(raw_augment or {})
    pipeline = settings.pop(AUGMENT_PIPELINE_KEY, PAPER_AUGMENT_PIPELINE)
    if pipeline == DSFD_PIPELINE:
        return DSFDTrainTransform(DSFDAugmentConfig.from_dict(settings))
    if pipeline == SSD_PIPELINE:
        return build_ssd_style_transform(SsdStyleAugmentConfig.from_dict(settings))
    raise SafefakesError(f"augment.{AUGMENT_PIPELINE_KEY} must be one of {', '.join(AUGMENT_PIPELINES)}, got {pipeline!r}")


def _plain(obj: Any) -> Any:
    """A dataclass as JSON-ready nested dicts and lists."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))


SPEC = DetectorSpec(
    name="faster_rcnn",
    build_model=build_faster_rcnn,
    build_train_transform=build_faster_rcnn_transform,
    paper_hparams={
        "model": _plain(FasterRcnnConfig()),
        "augment": {AUGMENT_PIPELINE_KEY: PAPER_AUGMENT_PIPELINE, **_plain(DSFDAugmentConfig())},
        "train": _plain(TrainConfig()),
        "predict": _plain(PredictConfig()),
    },
    check_model=FasterRcnnConfig.from_dict,
)
