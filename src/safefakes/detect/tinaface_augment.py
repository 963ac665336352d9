"""TinaFace's training augmentation (vedadet's pipeline, in order): random square crop of a fraction of the
short side, photometric distortion, horizontal flip, resize to a fixed square. No explicit scale augmentation:
the only scale change is the crop being resized (at most 1 / 0.3, about 3x; Safe Fakes supplement Sec. B).

Faces cut by the crop: a face is kept (clipped to the crop) when its centre lies strictly inside the crop
and dropped otherwise, as vedadet's ``RandomSquareCrop`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from safefakes.detect.registry import TrainTransform
from safefakes.detect.tinaface_config import TinaFaceAugmentConfig

#: OpenCV's float HSV hue range in degrees.
HUE_FULL_TURN = 360.0
#: Largest 8-bit pixel value.
PIXEL_MAX = 255.0


def drop_small_faces(boxes: np.ndarray, min_size: float) -> np.ndarray:
    """Faces at least ``min_size`` pixels wide and high."""
    sizes = boxes[:, 2:] - boxes[:, :2]
    return boxes[(sizes >= min_size).all(axis=1)]


def centres_inside(boxes: np.ndarray, patch: np.ndarray) -> np.ndarray:
    """Which boxes have their centre strictly inside ``patch`` (``x1 y1 x2 y2``)."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    return (centres > patch[:2]).all(axis=1) & (centres < patch[2:]).all(axis=1)


def choose_square_crop(image_size: tuple[int, int], boxes: np.ndarray, config: TinaFaceAugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """A square patch ``[x1, y1, x2, y2]`` of side ``choice * short side``, retried until it holds a face centre."""
    height, width = image_size
    side = max(1, int(rng.choice(config.crop_choices) * min(height, width)))
    patch = np.zeros(4, dtype=np.int64)
    for _ in range(config.crop_attempts):
        left = int(rng.uniform(0, width - side))
        top = int(rng.uniform(0, height - side))
        patch = np.array([left, top, left + side, top + side], dtype=np.int64)
        if len(boxes) == 0 or centres_inside(boxes, patch).any():
            break
    return patch


def crop_faces(boxes: np.ndarray, patch: np.ndarray) -> np.ndarray:
    """Faces whose centre is inside ``patch``, clipped to it, in the patch's coordinates."""
    kept = boxes[centres_inside(boxes, patch)].copy()
    kept[:, :2] = np.maximum(kept[:, :2], patch[:2])
    kept[:, 2:] = np.minimum(kept[:, 2:], patch[2:])
    return kept - np.tile(patch[:2], 2).astype(kept.dtype)


def photometric_distortion(image: np.ndarray, config: TinaFaceAugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """mmdet-style photometric distortion of a float32 RGB image (0..255), applied with ``photometric_probability``.

    Each step happens with probability 1/2: brightness shift, contrast scaling (randomly before or after the
    colour steps), saturation scaling, hue shift, and a random channel permutation. Values are clipped to 0..255.
    """
    if rng.random() >= config.photometric_probability:
        return image
    image = image.copy()
    if rng.random() < 0.5:
        image = np.clip(image + rng.uniform(-config.brightness_delta, config.brightness_delta), 0, PIXEL_MAX)
    contrast_first = rng.random() < 0.5

    def random_contrast(values: np.ndarray) -> np.ndarray:
        if rng.random() < 0.5:
            values = np.clip(values * rng.uniform(*config.contrast_range), 0, PIXEL_MAX)
        return values

    if contrast_first:
        image = random_contrast(image)
    hsv = cv2.cvtColor(image.astype(np.float32), cv2.COLOR_RGB2HSV)
    if rng.random() < 0.5:
        hsv[..., 1] *= rng.uniform(*config.saturation_range)
    if rng.random() < 0.5:
        hsv[..., 0] = np.mod(hsv[..., 0] + rng.uniform(-config.hue_delta, config.hue_delta), HUE_FULL_TURN)
    image = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0, PIXEL_MAX)
    if not contrast_first:
        image = random_contrast(image)
    if rng.random() < 0.5:
        image = image[..., rng.permutation(3)]
    return image.astype(np.float32)


def horizontal_flip(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror the image left-right and its boxes with it."""
    width = image.shape[1]
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return image[:, ::-1], flipped


def resize_square(image: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize to ``size x size`` (aspect ratio not kept; bilinear) and scale and clip the boxes."""
    height, width = image.shape[:2]
    resized = cv2.resize(np.ascontiguousarray(image), (size, size), interpolation=cv2.INTER_LINEAR)
    scale = np.array([size / width, size / height, size / width, size / height], dtype=np.float32)
    return resized, np.clip(boxes * scale, 0, size)


class TinaFaceTrainTransform:
    """The :data:`~safefakes.detect.registry.TrainTransform` of TinaFace (see the module docstring)."""

    def __init__(self, config: TinaFaceAugmentConfig) -> None:
        self.config = config

    def __call__(self, image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Augment one RGB uint8 image and its ``[N, 4]`` face boxes; returns a square uint8 image and float32 boxes."""
        config = self.config
        faces = drop_small_faces(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), config.min_face_size)
        patch = choose_square_crop(image.shape[:2], faces, config, rng)
        cropped = image[patch[1] : patch[3], patch[0] : patch[2]].astype(np.float32)
        faces = crop_faces(faces, patch)
        cropped = photometric_distortion(cropped, config, rng)
        if rng.random() < config.flip_probability:
            cropped, faces = horizontal_flip(cropped, faces)
        resized, faces = resize_square(cropped, faces, config.output_size)
        output = np.clip(np.rint(resized), 0, PIXEL_MAX).astype(np.uint8)
        return np.ascontiguousarray(output), faces.astype(np.float32).reshape(-1, 4)


def build_tinaface_train_transform(values: Mapping[str, Any] | None) -> TrainTransform:
    """The TinaFace training transform from the ``augment`` config mapping."""
    return TinaFaceTrainTransform(TinaFaceAugmentConfig.from_dict(values))
