"""Run a trained detector checkpoint over a WIDER split and write WIDER-format prediction files.

One file per image (``PRED_DIR/<event>/<stem>.txt``, also for images without faces), boxes in the
original image's pixels, sorted by score. Optional test-time augmentation: several scales and a
horizontal flip, merged with plain NMS. The output folder appears only when complete, with a
``predictions.json`` naming the checkpoint and the initialisation its detector was trained from.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.ops import clip_boxes_to_image, nms, remove_small_boxes

from safefakes.common.errors import SafefakesError
from safefakes.common.io import atomic_directory
from safefakes.common.progress import progress
from safefakes.common.run_state import select_device
from safefakes.common.weights import Initialisation
from safefakes.data.predictions import PredictionMetadata, write_prediction_metadata, write_predictions
from safefakes.data.wider import WiderLayout, load_split
from safefakes.detect.data import read_image_rgb
from safefakes.detect.hparams import PredictConfig, deep_merge
from safefakes.detect.registry import get_detector
from safefakes.detect.train import read_checkpoint
from safefakes.detect.transforms import resize_by_factor

LOGGER = logging.getLogger(__name__)

BOX_DECIMALS = 2  # pixels in the prediction files
SCORE_DECIMALS = 6


@dataclass(frozen=True)
class LoadedDetector:
    """A checkpoint's model (in eval mode, on its device) with its hyper-parameters and what its training started from."""

    name: str
    model: nn.Module
    hparams: dict[str, Any]
    iteration: int
    device: torch.device
    initialisation: Initialisation


def load_detector(checkpoint: str | os.PathLike[str], device: torch.device) -> LoadedDetector:
    """Rebuild the detector of a checkpoint (without its initial pretrained weights, which the checkpoint's replace)
    and load its weights.

    Only BatchNorm ``num_batches_tracked`` counters may be missing or unexpected (a FrozenBatchNorm2d has
    none); any other mismatched tensor is an error.
    """
    saved = read_checkpoint(Path(checkpoint))
    name = saved.detector
    model = get_detector(name).build_model(saved.hparams["model"], load_pretrained=False)
    result = model.load_state_dict(saved.state, strict=False)
    mismatched = [k for k in (*result.missing_keys, *result.unexpected_keys) if not k.endswith("num_batches_tracked")]
    if mismatched:
        raise SafefakesError(f"checkpoint {checkpoint} does not fit the {name} model built from its config: {', '.join(mismatched[:5])}")
    model.to(device).eval()
    return LoadedDetector(name, model, saved.hparams, saved.iteration, device, saved.initialisation)


def _image_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1).float().div_(255.0)


@torch.inference_mode()
def detect(detector: LoadedDetector, image: np.ndarray, config: PredictConfig) -> tuple[np.ndarray, np.ndarray]:
    """Faces in one RGB uint8 image: ``(boxes [K, 4] x1 y1 x2 y2 in its pixels, scores [K])``, best first."""
    height, width = image.shape[:2]
    use_amp = config.amp and detector.device.type == "cuda"
    found_boxes, found_scores = [], []
    for scale in config.test_scales:
        scaled = image if scale == 1.0 else resize_by_factor(image, np.zeros((0, 4), np.float32), scale)[0]
        scale_x, scale_y = scaled.shape[1] / width, scaled.shape[0] / height
        for flipped in (False, True) if config.flip else (False,):
            view = scaled[:, ::-1] if flipped else scaled
            with torch.autocast(device_type=detector.device.type, dtype=torch.float16, enabled=use_amp):
                output = detector.model([_image_tensor(view, detector.device)])[0]
            boxes = output["boxes"].float().cpu()
            if flipped:
                boxes = torch.stack([scaled.shape[1] - boxes[:, 2], boxes[:, 1], scaled.shape[1] - boxes[:, 0], boxes[:, 3]], dim=1)
            found_boxes.append(boxes / torch.tensor([scale_x, scale_y, scale_x, scale_y]))
            found_scores.append(output["scores"].float().cpu())
    boxes = clip_boxes_to_image(torch.cat(found_boxes), (height, width))
    scores = torch.cat(found_scores)
    keep = (scores >= config.score_threshold).nonzero().flatten()
    boxes, scores = boxes[keep], scores[keep]
    keep = remove_small_boxes(boxes, config.min_box_size)
    boxes, scores = boxes[keep], scores[keep]
    if len(found_boxes) > 1:
        keep = nms(boxes, scores, config.nms_iou)  # merge scales/flips; nms returns best first
    else:
        keep = torch.argsort(scores, descending=True, stable=True)
    keep = keep[: config.max_detections]
    return boxes[keep].numpy(), scores[keep].numpy()


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """Corner boxes to ``x y w h``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def predict(
    checkpoint: str | os.PathLike[str],
    wider_root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    split: str = "val",
    device: str = "auto",
    predict_overrides: Mapping[str, Any] | None = None,
) -> int:
    """Write one prediction file per image of ``split``; returns the number of images."""
    detector = load_detector(checkpoint, select_device(device))
    predict_hparams = deep_merge(detector.hparams.get("predict", {}), dict(predict_overrides or {}))
    config = PredictConfig.from_dict(predict_hparams)
    configure_inference = get_detector(detector.name).configure_inference
    if configure_inference is not None:
        configure_inference(detector.model, predict_hparams)
    LOGGER.info(
        "predicting %s images with %s (iteration %d, started from %s) on %s",
        split,
        detector.name,
        detector.iteration,
        detector.initialisation.label,
        detector.device,
    )
    metadata = PredictionMetadata(detector.name, str(checkpoint), detector.iteration, detector.initialisation)
    return predict_split(lambda image: detect(detector, image, config), wider_root, out_dir, split, detector.name, metadata)


def predict_split(
    detect_image: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    wider_root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    split: str,
    name: str,
    metadata: PredictionMetadata | None = None,
) -> int:
    """Run ``detect_image`` (RGB image -> x1 y1 x2 y2 boxes, scores) on every image of ``split`` and write one WIDER
    prediction file per image into ``out_dir`` (replaced atomically), with ``metadata`` beside them when given;
    returns the number of images."""
    layout = WiderLayout(Path(wider_root))
    annotations, _ = load_split(wider_root, split)
    if not annotations:
        raise SafefakesError(f"no images listed in {layout.annotation_file(split)}")
    present = [annotation for annotation in annotations if layout.image_path(split, annotation.name).is_file()]
    if not present:
        raise SafefakesError(f"none of the {len(annotations)} images listed in {layout.annotation_file(split)} is there")
    if len(present) < len(annotations):
        # A partial copy of WIDER FACE (e.g. 115 of its 3,226 validation images): score it with evaluate --images-of.
        LOGGER.warning(
            "%d of %d listed %s images are not in %s: predicting the %d that are",
            len(annotations) - len(present),
            len(annotations),
            split,
            wider_root,
            len(present),
        )
    with atomic_directory(out_dir) as tmp:
        for annotation in progress(present, desc=f"predict {name}", unit="img"):
            boxes, scores = detect_image(read_image_rgb(layout.image_path(split, annotation.name)))
            write_predictions(tmp, annotation.name, np.round(xyxy_to_xywh(boxes), BOX_DECIMALS), np.round(scores.astype(np.float64), SCORE_DECIMALS))
        if metadata is not None:
            write_prediction_metadata(tmp, metadata)
    return len(present)
