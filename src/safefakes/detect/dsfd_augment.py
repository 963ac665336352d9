"""DSFD's training augmentation (Improved Anchor Matching, DSFD Sec. 3.3).

With probability ``data_anchor_sampling_prob`` a random face is rescaled to the size of a randomly chosen
anchor scale (PyramidBox's data-anchor-sampling), otherwise an SSD-style random square crop is taken; the
result is resized to an ``output_size`` square, photometrically distorted and randomly flipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from safefakes.common.config import build_config
from safefakes.common.errors import SafefakesError
from safefakes.detect.transforms import horizontal_flip

HUE_PERIOD_DEGREES = 360.0


@dataclass(frozen=True)
class DSFDAugmentConfig:
    """Hyper-parameters of DSFD's training augmentation (the ``augment`` section)."""

    output_size: int = 640  # training images are 640x640 (DSFD Sec. 4.1)
    data_anchor_sampling_prob: float = 0.4  # IAM: 2/5 data-anchor-sampling, 3/5 SSD-style (DSFD Sec. 3.3)
    anchor_scales: tuple[float, ...] = (16, 32, 64, 128, 256, 512)  # target sizes of data-anchor-sampling (PyramidBox)
    ssd_crop_min_scale: float = 0.3  # SSD-style square crop side, fraction of the short side (DSFD.pytorch samplers)
    ssd_crop_max_scale: float = 1.0
    crop_trials: int = 50  # attempts to find a crop keeping a face centre (DSFD.pytorch 'max_trial')
    min_face_size: float = 6.0  # faces smaller than this (px, after resizing) are dropped (DSFD.pytorch cfg)
    flip_prob: float = 0.5  # horizontal flip
    brightness_prob: float = 0.5  # photometric distortion of DSFD.pytorch cfg: probability and max delta each
    brightness_delta: float = 0.125
    contrast_prob: float = 0.5
    contrast_delta: float = 0.5
    saturation_prob: float = 0.5
    saturation_delta: float = 0.5
    hue_prob: float = 0.5
    hue_delta: float = 18.0  # degrees
    fill_rgb: tuple[int, int, int] = (124, 116, 104)  # ImageNet mean colour for padding outside the image

    def __post_init__(self) -> None:
        if not 0 < self.ssd_crop_min_scale <= self.ssd_crop_max_scale <= 1:
            raise SafefakesError("need 0 < ssd_crop_min_scale <= ssd_crop_max_scale <= 1")
        if self.output_size <= 0 or not self.anchor_scales:
            raise SafefakesError("'output_size' must be positive and 'anchor_scales' non-empty")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> DSFDAugmentConfig:
        """Build from a plain mapping; unknown keys are an error."""
        return build_config(cls, values, "DSFD augment")


@dataclass(frozen=True)
class CropWindow:
    """A square window ``[x0, x0 + side) x [y0, y0 + side)`` in source pixels (may extend past the image)."""

    x0: float
    y0: float
    side: float


@dataclass(frozen=True)
class AnchorSample:
    """What data-anchor-sampling chose: the face, the target anchor index and the face's target size (px)."""

    face_index: int
    anchor_index: int
    target_size: float
    window: CropWindow


def face_sizes(boxes: np.ndarray) -> np.ndarray:
    """``sqrt(width * height)`` of each ``x1 y1 x2 y2`` box."""
    wh = np.clip(boxes[:, 2:4] - boxes[:, 0:2], 0, None)
    return np.sqrt(wh[:, 0] * wh[:, 1])


def crop_and_resize(image: np.ndarray, boxes: np.ndarray, window: CropWindow, output_size: int, fill: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``window`` (padding with ``fill`` outside the image), resize it to ``output_size`` squared, move the boxes.

    Boxes are mapped with the exact transform applied to the pixels; they are not filtered here.
    """
    height, width = image.shape[:2]
    scale = output_size / window.side
    ix0, iy0 = max(0, int(np.floor(window.x0))), max(0, int(np.floor(window.y0)))
    ix1 = min(width, int(np.ceil(window.x0 + window.side)))
    iy1 = min(height, int(np.ceil(window.y0 + window.side)))
    canvas = np.empty((output_size, output_size, 3), dtype=np.uint8)
    canvas[...] = np.asarray(fill, dtype=np.uint8)
    dx0 = max(0, int(round((ix0 - window.x0) * scale)))
    dy0 = max(0, int(round((iy0 - window.y0) * scale)))
    dx1 = min(output_size, int(round((ix1 - window.x0) * scale)))
    dy1 = min(output_size, int(round((iy1 - window.y0) * scale)))
    moved = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    if ix1 <= ix0 or iy1 <= iy0 or dx1 <= dx0 or dy1 <= dy0:  # the window misses the image entirely
        moved[:, 0::2] = (moved[:, 0::2] - window.x0) * scale
        moved[:, 1::2] = (moved[:, 1::2] - window.y0) * scale
        return canvas, moved.astype(np.float32)
    source = image[iy0:iy1, ix0:ix1]
    shrinking = (dx1 - dx0) < source.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    canvas[dy0:dy1, dx0:dx1] = cv2.resize(source, (dx1 - dx0, dy1 - dy0), interpolation=interpolation)
    sx = (dx1 - dx0) / (ix1 - ix0)
    sy = (dy1 - dy0) / (iy1 - iy0)
    moved[:, 0::2] = dx0 + (moved[:, 0::2] - ix0) * sx
    moved[:, 1::2] = dy0 + (moved[:, 1::2] - iy0) * sy
    return canvas, moved.astype(np.float32)


def keep_visible_faces(boxes: np.ndarray, output_size: int, min_face_size: float) -> np.ndarray:
    """Faces whose centre lies inside the output, clipped to it, and at least ``min_face_size`` wide and high."""
    if boxes.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    centres = (boxes[:, 0:2] + boxes[:, 2:4]) / 2
    inside = np.all((centres >= 0) & (centres < output_size), axis=1)
    clipped = np.clip(boxes[inside], 0, output_size)
    wh = clipped[:, 2:4] - clipped[:, 0:2]
    return clipped[np.all(wh >= min_face_size, axis=1)].astype(np.float32)


def window_origin(face_lo: float, face_hi: float, side: float, image_extent: int, rng: np.random.Generator) -> float:
    """Random window start along one axis so the face lies in the window, inside the image when possible."""
    if side >= face_hi - face_lo:
        low, high = face_hi - side, face_lo  # any start keeping the whole face
    else:
        low, high = face_lo, face_hi - side  # the face is larger than the window: stay within the face
    in_image_low, in_image_high = max(low, 0.0), min(high, image_extent - side)
    if in_image_low <= in_image_high:
        low, high = in_image_low, in_image_high
    return float(rng.uniform(low, high)) if high > low else float(low)


def choose_anchor_sample(boxes: np.ndarray, image_shape: tuple[int, int], config: DSFDAugmentConfig, rng: np.random.Generator) -> AnchorSample | None:
    """PyramidBox data-anchor-sampling: pick a face, a target anchor and the window that gives that size.

    With ``i`` the anchor nearest to the face size, the target anchor is uniform over
    ``0 .. min(i + 1, last)`` and the target size uniform in ``[anchor / 2, anchor * 2]``.
    """
    sizes = face_sizes(boxes)
    candidates = np.flatnonzero(sizes > 0)
    if candidates.size == 0:
        return None
    face = int(rng.choice(candidates))
    anchors = np.asarray(config.anchor_scales, dtype=np.float64)
    nearest = int(np.argmin(np.abs(anchors - sizes[face])))
    anchor_index = int(rng.integers(0, min(nearest + 1, len(anchors) - 1) + 1))
    target = float(rng.uniform(anchors[anchor_index] / 2, anchors[anchor_index] * 2))
    side = config.output_size * sizes[face] / target
    x1, y1, x2, y2 = boxes[face]
    window = CropWindow(
        x0=window_origin(float(x1), float(x2), side, image_shape[1], rng),
        y0=window_origin(float(y1), float(y2), side, image_shape[0], rng),
        side=side,
    )
    return AnchorSample(face_index=face, anchor_index=anchor_index, target_size=target, window=window)


def choose_ssd_crop(boxes: np.ndarray, image_shape: tuple[int, int], config: DSFDAugmentConfig, rng: np.random.Generator) -> CropWindow:
    """SSD-style random square crop keeping at least one face centre; the padded whole image if none is found."""
    height, width = image_shape
    short = min(height, width)
    centres = (boxes[:, 0:2] + boxes[:, 2:4]) / 2 if boxes.size else np.zeros((0, 2))
    for _ in range(config.crop_trials):
        side = short * rng.uniform(config.ssd_crop_min_scale, config.ssd_crop_max_scale)
        x0 = rng.uniform(0, width - side)
        y0 = rng.uniform(0, height - side)
        window = CropWindow(float(x0), float(y0), float(side))
        if centres.shape[0] == 0:
            return window
        inside = (centres[:, 0] >= x0) & (centres[:, 0] < x0 + side) & (centres[:, 1] >= y0) & (centres[:, 1] < y0 + side)
        if inside.any():
            return window
    return CropWindow(0.0, 0.0, float(max(height, width)))


def photometric_distort(image: np.ndarray, config: DSFDAugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Random brightness and contrast scaling, saturation and hue shifts, each with its probability.

    Contrast comes first or last at random (SSD). Every draw is made whatever the probabilities, so the
    random stream seen by the later (geometric) steps does not depend on them.
    """
    contrast_first = rng.random() < 0.5
    draws = {
        name: (rng.random() < probability, rng.uniform(-delta, delta))
        for name, probability, delta in (
            ("brightness", config.brightness_prob, config.brightness_delta),
            ("contrast", config.contrast_prob, config.contrast_delta),
            ("saturation", config.saturation_prob, config.saturation_delta),
            ("hue", config.hue_prob, config.hue_delta),
        )
    }
    pixels = image.astype(np.float32)

    def contrast(x: np.ndarray) -> np.ndarray:
        mean = float(cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY).mean())
        return mean + (x - mean) * (1 + draws["contrast"][1])

    apply = {name: flag for name, (flag, _) in draws.items()}
    if apply["brightness"]:
        pixels = pixels * (1 + draws["brightness"][1])
    if contrast_first and apply["contrast"]:
        pixels = contrast(pixels)
    if apply["saturation"]:
        gray = cv2.cvtColor(np.clip(pixels, 0, 255), cv2.COLOR_RGB2GRAY)[..., None]
        pixels = gray + (pixels - gray) * (1 + draws["saturation"][1])
    if apply["hue"]:
        hsv = cv2.cvtColor(np.clip(pixels, 0, 255) / 255.0, cv2.COLOR_RGB2HSV)  # H in degrees
        hsv[..., 0] = np.mod(hsv[..., 0] + draws["hue"][1], HUE_PERIOD_DEGREES)
        pixels = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
    if not contrast_first and apply["contrast"]:
        pixels = contrast(pixels)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


class DSFDTrainTransform:
    """``(image RGB uint8 [H, W, 3], boxes [N, 4], rng) -> (image [S, S, 3], boxes [M, 4])``, picklable."""

    def __init__(self, config: DSFDAugmentConfig) -> None:
        self.config = config

    def choose_window(self, boxes: np.ndarray, image_shape: tuple[int, int], rng: np.random.Generator) -> tuple[CropWindow, AnchorSample | None]:
        """Data-anchor-sampling with its probability (when there is a face), else an SSD-style crop."""
        if rng.random() < self.config.data_anchor_sampling_prob:
            sample = choose_anchor_sample(boxes, image_shape, self.config, rng)
            if sample is not None:
                return sample.window, sample
        return choose_ssd_crop(boxes, image_shape, self.config, rng), None

    def __call__(self, image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Apply the full DSFD augmentation."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise SafefakesError(f"DSFD augmentation expects an RGB uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        window, _ = self.choose_window(boxes, image.shape[:2], rng)
        out, moved = crop_and_resize(image, boxes, window, self.config.output_size, self.config.fill_rgb)
        out = photometric_distort(out, self.config, rng)
        kept = keep_visible_faces(moved, self.config.output_size, self.config.min_face_size)
        if rng.random() < self.config.flip_prob:
            out, kept = horizontal_flip(out, kept)
        return out, kept
