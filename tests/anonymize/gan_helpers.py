"""Helpers shared by the GAN anonymizer tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from safefakes.data.wider import FaceBox


def inside_boxes(faces: Sequence[FaceBox], shape: tuple[int, ...]) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the pixels inside any of the face boxes (clipped to the image)."""
    mask = np.zeros(shape[:2], bool)
    for face in faces:
        mask[max(face.y, 0) : face.y + face.h, max(face.x, 0) : face.x + face.w] = True
    return mask
