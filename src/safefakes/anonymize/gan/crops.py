"""Face crops with context for GAN anonymizers, and pasting generated faces back inside the box.

A face box ``(x, y, w, h)`` is cut out of the image as a square of side ``context_factor * max(w, h)``
centred on the box (DeepPrivacy's FDF crops show the face with about as much context again around
it), padded with black where the square leaves the image, and resized to the model resolution. The
generated crop is resized back to the square's size and only the pixels of the box (clipped to the
image) are written into the image: nothing outside the face boxes ever changes.

Privacy: :func:`block_boxes` paints every face box black *before* any crop is taken, so what the
generator sees of any face is nothing but its position (and keypoints), never its pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from safefakes.anonymize.conventional import clip_box
from safefakes.data.wider import FaceBox

#: Value written into blocked face boxes (DeepPrivacy's and Safe Fakes' "black-out" input blocking).
BLOCKED_VALUE = 0


@dataclass(frozen=True)
class CropSquare:
    """A square region of an image, in image pixels: top-left corner and side (may extend past the border)."""

    x0: int
    y0: int
    side: int

    @property
    def x1(self) -> int:
        """Right edge (exclusive)."""
        return self.x0 + self.side

    @property
    def y1(self) -> int:
        """Bottom edge (exclusive)."""
        return self.y0 + self.side


def context_square(face: FaceBox, context_factor: float) -> CropSquare:
    """The square crop of side ``context_factor * max(w, h)`` (at least 1 px) centred on ``face``."""
    side = max(1, int(round(context_factor * max(face.w, face.h))))
    centre_x = face.x + face.w / 2.0
    centre_y = face.y + face.h / 2.0
    return CropSquare(int(np.floor(centre_x - side / 2.0)), int(np.floor(centre_y - side / 2.0)), side)


def extract_square(image: np.ndarray, square: CropSquare) -> np.ndarray:
    """The pixels of ``square`` (``side x side x C``), black where it leaves the image."""
    height, width = image.shape[:2]
    out = np.full((square.side, square.side, *image.shape[2:]), BLOCKED_VALUE, dtype=image.dtype)
    ix0, iy0 = max(square.x0, 0), max(square.y0, 0)
    ix1, iy1 = min(square.x1, width), min(square.y1, height)
    if ix1 > ix0 and iy1 > iy0:
        out[iy0 - square.y0 : iy1 - square.y0, ix0 - square.x0 : ix1 - square.x0] = image[iy0:iy1, ix0:ix1]
    return out


def resize_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize a square crop to ``size x size`` (area averaging when shrinking, bilinear when enlarging)."""
    if pixels.shape[0] == size:
        return pixels.copy()
    interpolation = cv2.INTER_AREA if pixels.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(pixels, (size, size), interpolation=interpolation)


def box_in_crop(face: FaceBox, square: CropSquare, resolution: int) -> tuple[int, int, int, int]:
    """The face box in crop pixels at ``resolution``: ``(x0, y0, x1, y1)``, grown outward to whole pixels."""
    scale = resolution / square.side
    x0 = int(np.floor((face.x - square.x0) * scale))
    y0 = int(np.floor((face.y - square.y0) * scale))
    x1 = int(np.ceil((face.x + face.w - square.x0) * scale))
    y1 = int(np.ceil((face.y + face.h - square.y0) * scale))
    clip = lambda value: int(min(max(value, 0), resolution))  # noqa: E731 - tiny local helper
    return clip(x0), clip(y0), clip(max(x1, x0 + 1)), clip(max(y1, y0 + 1))


def keypoints_in_crop(keypoints: np.ndarray | None, square: CropSquare) -> np.ndarray | None:
    """Image keypoints ``(K, 3)`` as ``[u, v, visible]`` with ``u, v`` in [0, 1] crop units; points outside are not visible."""
    if keypoints is None:
        return None
    points = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3)
    u = (points[:, 0] - square.x0) / square.side
    v = (points[:, 1] - square.y0) / square.side
    inside = (u >= 0) & (u < 1) & (v >= 0) & (v < 1) & (points[:, 2] > 0)
    return np.stack([np.clip(u, 0, 1), np.clip(v, 0, 1), inside.astype(np.float64)], axis=1)


def block_boxes(image: np.ndarray, faces: Sequence[FaceBox]) -> np.ndarray:
    """A copy of ``image`` with every face box (clipped to the image) painted black."""
    blocked = image.copy()
    height, width = image.shape[:2]
    for face in faces:
        box = clip_box(face, height, width)
        if box is not None:
            box.view(blocked)[...] = BLOCKED_VALUE
    return blocked


def paste_inside_box(image: np.ndarray, generated: np.ndarray, square: CropSquare, face: FaceBox) -> bool:
    """Resize ``generated`` (a crop of ``square``) to the square's size and write only the box's pixels into ``image``.

    Returns False when nothing of the box lies inside the image (the image is then unchanged).
    """
    box = clip_box(face, *image.shape[:2])
    if box is None:
        return False
    full = resize_square(generated, square.side)
    box.view(image)[...] = full[box.y0 - square.y0 : box.y1 - square.y0, box.x0 - square.x0 : box.x1 - square.x0]
    return True


@dataclass
class FaceCrop:
    """One face prepared for a generator: the blocked context crop, its box and keypoints in crop units."""

    pixels: np.ndarray  # (resolution, resolution, 3) uint8 BGR, the box (and any other face) black
    box: tuple[int, int, int, int]  # face box in crop pixels (x0, y0, x1, y1)
    keypoints: np.ndarray | None  # (K, 3) [u, v, visible] in [0, 1] crop units, None when unknown
    square: CropSquare


def make_face_crop(blocked_image: np.ndarray, face: FaceBox, keypoints: np.ndarray | None, context_factor: float, resolution: int) -> FaceCrop:
    """Cut the context crop of ``face`` out of an already blocked image and resize it to ``resolution``."""
    square = context_square(face, context_factor)
    pixels = resize_square(extract_square(blocked_image, square), resolution)
    box = box_in_crop(face, square, resolution)
    bx0, by0, bx1, by1 = box
    pixels[by0:by1, bx0:bx1] = BLOCKED_VALUE  # resizing may have blended border pixels into the box
    return FaceCrop(pixels, box, keypoints_in_crop(keypoints, square), square)
