"""dlib's ResNet face descriptor, the model the ``face_recognition`` package uses (Heimes, Sec. 3.2).

A face is located by dlib's HOG frontal detector (or the CNN MMOD detector), aligned with the
5-point shape predictor, and described by a 128-d vector; two faces of one person lie closer than
about 0.6 in Euclidean distance (the ``face_recognition`` default tolerance).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from safefakes.common.config import build_config
from safefakes.common.errors import SafefakesError
from safefakes.common.weights import dlib_model_file
from safefakes.data.identities import Box

DESCRIPTOR_DIM = 128
DETECTORS = ("hog", "cnn")


@dataclass(frozen=True)
class DescriptorConfig:
    """How faces are found and described."""

    detector: str = "hog"  # dlib HOG frontal detector, face_recognition's default model
    upsample: int = 1  # face_recognition's default number_of_times_to_upsample
    num_jitters: int = 1  # face_recognition's default: no re-sampling
    chip_padding: float = 0.25  # dlib compute_face_descriptor default padding around the aligned chip
    max_image_side: int = 800  # images are downscaled so their longer side is at most this (detection cost)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> DescriptorConfig:
        """Build from a plain dict (the config.yaml section); unknown keys are an error."""
        return build_config(cls, values, "descriptor")

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise SafefakesError(f"unknown face detector {self.detector!r}; expected one of {', '.join(DETECTORS)}")
        if self.upsample < 0 or self.num_jitters < 1 or self.max_image_side < 32:
            raise SafefakesError("descriptor config: upsample >= 0, num_jitters >= 1, max_image_side >= 32 required")


class FaceDescriptorModel:
    """dlib detector + 5-point aligner + ResNet descriptor, loaded once."""

    def __init__(self, config: DescriptorConfig | None = None) -> None:
        import dlib

        self.config = config or DescriptorConfig()
        self._dlib = dlib
        self._detector, self._shape_predictor, self._encoder = _load_dlib_models(self.config.detector)

    def detect(self, image_rgb: np.ndarray) -> list[Box]:
        """Face boxes found in an RGB uint8 image, largest first."""
        found = self._detector(np.ascontiguousarray(image_rgb), self.config.upsample)
        rects = [item.rect if hasattr(item, "rect") else item for item in found]
        boxes = [(r.left(), r.top(), r.width(), r.height()) for r in rects]
        return sorted(boxes, key=lambda b: (-b[2] * b[3], b[0], b[1]))

    def describe_box(self, image_rgb: np.ndarray, box: Box) -> np.ndarray:
        """The 128-d descriptor of the face in ``box`` (aligned with the 5-point predictor)."""
        image = np.ascontiguousarray(image_rgb)
        x, y, w, h = (int(v) for v in box)
        rect = self._dlib.rectangle(x, y, x + max(w, 1) - 1, y + max(h, 1) - 1)
        shape = self._shape_predictor(image, rect)
        vector = self._encoder.compute_face_descriptor(image, shape, self.config.num_jitters, self.config.chip_padding)
        return np.asarray(vector, dtype=np.float64)

    def describe_boxes(self, image_rgb: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """Descriptors of several boxes of one image, shape ``(len(boxes), 128)``."""
        if not boxes:
            return np.zeros((0, DESCRIPTOR_DIM))
        return np.stack([self.describe_box(image_rgb, box) for box in boxes])

    def describe_largest_face(self, image_rgb: np.ndarray) -> tuple[np.ndarray | None, Box | None]:
        """Descriptor and box of the largest detected face; ``(None, None)`` is a failure to acquire."""
        boxes = self.detect(image_rgb)
        if not boxes:
            return None, None
        return self.describe_box(image_rgb, boxes[0]), boxes[0]


@functools.lru_cache(maxsize=len(DETECTORS))
def _load_dlib_models(detector: str) -> tuple[Any, Any, Any]:
    """The detector, 5-point shape predictor and ResNet encoder, read from disk once per process."""
    import dlib

    if detector == "hog":
        face_detector = dlib.get_frontal_face_detector()
    else:
        face_detector = dlib.cnn_face_detection_model_v1(str(dlib_model_file("mmod_human_face_detector.dat")))
    shape_predictor = dlib.shape_predictor(str(dlib_model_file("shape_predictor_5_face_landmarks.dat")))
    encoder = dlib.face_recognition_model_v1(str(dlib_model_file("dlib_face_recognition_resnet_model_v1.dat")))
    return face_detector, shape_predictor, encoder


def downscale_to_max_side(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink ``image`` so its longer side is at most ``max_side``; returns the image and the scale applied."""
    longer = max(image.shape[:2])
    if longer <= max_side:
        return image, 1.0
    scale = max_side / longer
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def euclidean_distances(probes: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """All pairwise Euclidean distances, shape ``(len(probes), len(gallery))``."""
    probes = np.asarray(probes, dtype=np.float64).reshape(-1, DESCRIPTOR_DIM)
    gallery = np.asarray(gallery, dtype=np.float64).reshape(-1, DESCRIPTOR_DIM)
    return np.linalg.norm(probes[:, None, :] - gallery[None, :, :], axis=-1)
