"""Training augmentation building blocks shared by the detectors.

Every block works on ``(image RGB uint8 [H, W, 3], boxes float32 [N, 4] x1 y1 x2 y2)`` and draws its
randomness only from the ``np.random.Generator`` it is given, so a sample's augmentation is fixed
by its seed whatever the number of data-loader workers. :func:`build_ssd_style_transform` chains
them into the SSD/DSFD-style pipeline (photometric distortion, zoom-out, random square crop,
resize, horizontal flip) that the paper's Faster R-CNN uses ("the same data augmentation as DSFD").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from safefakes.common.config import build_config

#: One augmentation step: ``(image, boxes, rng) -> (image, boxes)``.
Step = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def as_boxes(boxes: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """``boxes`` as a float32 ``[N, 4]`` array (an empty input gives ``[0, 4]``)."""
    array = np.asarray(boxes, dtype=np.float32)
    return array.reshape(-1, 4)


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes clipped to the image rectangle ``[0, width] x [0, height]``."""
    clipped = as_boxes(boxes).copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, width)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, height)
    return clipped


def box_keep_mask(boxes: np.ndarray, min_size: float) -> np.ndarray:
    """True for boxes whose width and height are both at least ``min_size`` pixels."""
    boxes = as_boxes(boxes)
    return ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)


def filter_boxes(boxes: np.ndarray, min_size: float) -> np.ndarray:
    """Only the boxes at least ``min_size`` pixels wide and high."""
    boxes = as_boxes(boxes)
    return boxes[box_keep_mask(boxes, min_size)]


def horizontal_flip(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror the image left-right and its boxes with it."""
    width = image.shape[1]
    flipped = as_boxes(boxes).copy()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return np.ascontiguousarray(image[:, ::-1]), flipped


def random_horizontal_flip(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, probability: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Flip with the given probability."""
    if rng.random() < probability:
        return horizontal_flip(image, as_boxes(boxes))
    return image, as_boxes(boxes)


def resize(image: np.ndarray, boxes: np.ndarray, width: int, height: int, interpolation: int = cv2.INTER_LINEAR) -> tuple[np.ndarray, np.ndarray]:
    """Resize the image to ``width x height`` pixels and scale the boxes accordingly."""
    source_height, source_width = image.shape[:2]
    resized = cv2.resize(image, (int(width), int(height)), interpolation=interpolation)
    scaled = as_boxes(boxes) * np.array([width / source_width, height / source_height, width / source_width, height / source_height], dtype=np.float32)
    return resized, scaled


def resize_by_factor(image: np.ndarray, boxes: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize the image by ``factor`` (at least one pixel per side) and scale the boxes."""
    height, width = image.shape[:2]
    return resize(image, boxes, max(1, round(width * factor)), max(1, round(height * factor)))


def photometric_distortion(
    image: np.ndarray,
    rng: np.random.Generator,
    brightness_delta: float = 32.0,
    contrast_range: tuple[float, float] = (0.5, 1.5),
    saturation_range: tuple[float, float] = (0.5, 1.5),
    hue_delta: float = 18.0,
) -> np.ndarray:
    """SSD-style colour jitter, each part applied with probability 1/2.

    Brightness shift, contrast (before or after the HSV changes, at random), saturation scale and
    hue shift (degrees). Returns a new uint8 image.
    """
    out = image.astype(np.float32)
    if rng.random() < 0.5:
        out += rng.uniform(-brightness_delta, brightness_delta)
    contrast_first = rng.random() < 0.5
    contrast = rng.uniform(*contrast_range) if rng.random() < 0.5 else None
    if contrast_first and contrast is not None:
        out *= contrast
    saturation = rng.uniform(*saturation_range) if rng.random() < 0.5 else None
    hue = rng.uniform(-hue_delta, hue_delta) if rng.random() < 0.5 else None
    if saturation is not None or hue is not None:
        hsv = cv2.cvtColor(np.clip(out, 0, 255) / 255.0, cv2.COLOR_RGB2HSV)  # H in [0, 360), S and V in [0, 1]
        if saturation is not None:
            hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 1)
        if hue is not None:
            hsv[..., 0] = np.mod(hsv[..., 0] + hue, 360.0)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
    if not contrast_first and contrast is not None:
        out *= contrast
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def expand(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, max_ratio: float, fill: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Zoom out: place the image at a random spot of a canvas up to ``max_ratio`` times larger, filled with ``fill``."""
    height, width = image.shape[:2]
    ratio = rng.uniform(1.0, max_ratio)
    canvas_height, canvas_width = int(height * ratio), int(width * ratio)
    left = int(rng.uniform(0, canvas_width - width))
    top = int(rng.uniform(0, canvas_height - height))
    canvas = np.empty((canvas_height, canvas_width, 3), dtype=np.uint8)
    canvas[...] = np.asarray(fill, dtype=np.float32).round().astype(np.uint8)
    canvas[top : top + height, left : left + width] = image
    shifted = as_boxes(boxes) + np.array([left, top, left, top], dtype=np.float32)
    return canvas, shifted


def crop(image: np.ndarray, boxes: np.ndarray, window: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``window`` (x1, y1, x2, y2) out of the image; keep boxes whose centre lies inside, clipped to it."""
    x1, y1, x2, y2 = window
    boxes = as_boxes(boxes)
    centers_x = (boxes[:, 0] + boxes[:, 2]) / 2
    centers_y = (boxes[:, 1] + boxes[:, 3]) / 2
    inside = (centers_x >= x1) & (centers_x < x2) & (centers_y >= y1) & (centers_y < y2)
    kept = boxes[inside] - np.array([x1, y1, x1, y1], dtype=np.float32)
    return np.ascontiguousarray(image[y1:y2, x1:x2]), clip_boxes(kept, x2 - x1, y2 - y1)


def random_square_crop(
    image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, min_scale: float, max_scale: float, max_trials: int
) -> tuple[np.ndarray, np.ndarray]:
    """A random square crop whose side is ``[min_scale, max_scale]`` of the short side and holds at least one face centre.

    Falls back to the uncropped image when no trial keeps a face (or the image has none).
    """
    height, width = image.shape[:2]
    boxes = as_boxes(boxes)
    short_side = min(height, width)
    for _ in range(max_trials):
        side = max(1, int(short_side * rng.uniform(min_scale, max_scale)))
        left = int(rng.integers(0, width - side + 1))
        top = int(rng.integers(0, height - side + 1))
        cropped, kept = crop(image, boxes, (left, top, left + side, top + side))
        if len(kept):
            return cropped, kept
    return image, boxes


@dataclass(frozen=True)
class SsdStyleAugmentConfig:
    """The SSD/DSFD-style training augmentation (the ``augment`` section of a detector).

    Values follow the SSD/DSFD training ports (yxlijun/DSFD.pytorch ``data/config.py``): 640 px
    square output, colour jitter, zoom-out up to 4x, square crops of 0.3-1 of the short side.
    """

    output_size: int = 640  # DSFD trains on 640x640 crops
    photometric_probability: float = 1.0
    brightness_delta: float = 32.0
    contrast_range: tuple[float, float] = (0.5, 1.5)
    saturation_range: tuple[float, float] = (0.5, 1.5)
    hue_delta: float = 18.0
    expand_probability: float = 0.5
    expand_max_ratio: float = 4.0
    fill_rgb: tuple[float, float, float] = (123.675, 116.28, 103.53)  # ImageNet mean in 0-255
    crop_probability: float = 1.0
    crop_min_scale: float = 0.3
    crop_max_scale: float = 1.0
    crop_max_trials: int = 50
    flip_probability: float = 0.5
    min_face_size: float = 2.0  # faces smaller than this after resizing are dropped (pixels)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> SsdStyleAugmentConfig:
        """Build from an ``augment`` mapping; list values become tuples."""
        return build_config(cls, raw, "augment")


def build_ssd_style_transform(config: SsdStyleAugmentConfig) -> Step:
    """The augmentation pipeline described by ``config`` as one :data:`Step`."""

    def transform(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        boxes = as_boxes(boxes)
        if rng.random() < config.photometric_probability:
            image = photometric_distortion(image, rng, config.brightness_delta, config.contrast_range, config.saturation_range, config.hue_delta)
        if rng.random() < config.expand_probability:
            image, boxes = expand(image, boxes, rng, config.expand_max_ratio, config.fill_rgb)
        if rng.random() < config.crop_probability:
            image, boxes = random_square_crop(image, boxes, rng, config.crop_min_scale, config.crop_max_scale, config.crop_max_trials)
        image, boxes = resize(image, boxes, config.output_size, config.output_size)
        image, boxes = random_horizontal_flip(image, boxes, rng, config.flip_probability)
        boxes = clip_boxes(boxes, image.shape[1], image.shape[0])
        return image, filter_boxes(boxes, config.min_face_size)

    return transform
