"""Robust image reading and deterministic writing for the anonymize stage.

Reading never returns a silently damaged picture: a missing or empty file, bytes no decoder accepts,
a JPEG cut off before its end-of-image marker and a PNG without its ``IEND`` chunk all raise
:class:`BadImageError` naming the file and a short machine-readable ``reason``. Grayscale, RGBA and
16-bit images decode to 3-channel 8-bit BGR (alpha dropped, colour values kept); EXIF orientation is
ignored, so pixels stay in the stored order the annotation boxes refer to.

Writing keeps the file's own format, chosen by its extension, with fixed encoder settings so the
same pixels always give the same bytes: baseline (non-progressive, non-optimized) JPEG with 4:2:0
chroma subsampling at a fixed quality, or PNG at a fixed compression level.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from safefakes.common.errors import SafefakesError

#: JPEG quality of re-encoded images. WIDER FACE's own files are web JPEGs of roughly quality 75-90; 95
#: adds little error of its own next to that (and next to any anonymization), at about half the size of 100.
DEFAULT_JPEG_QUALITY = 95
#: zlib level of re-encoded PNG files (OpenCV's default; lossless at any level).
PNG_COMPRESSION_LEVEL = 3

#: File extension -> format written back.
IMAGE_FORMATS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png"}

#: Reasons an image cannot be used.
BAD_MISSING = "missing"
BAD_EMPTY = "empty_file"
BAD_UNREADABLE = "unreadable"
BAD_UNSUPPORTED = "unsupported_format"
BAD_TRUNCATED = "truncated"
BAD_UNDECODABLE = "undecodable"

_JPEG_START = b"\xff\xd8"
_JPEG_START_OF_SCAN = b"\xff\xda"
_JPEG_END = b"\xff\xd9"
#: Fast path: a file ending in the end-of-image marker (after optional padding) is complete; a cut
#: can end there only right after an embedded thumbnail, before the main image, which then fails to decode.
_JPEG_TAIL_BYTES = 64
_JPEG_PADDING = b"\x00\r\n\t "
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END_CHUNK = b"IEND"
#: The IEND chunk is 12 bytes (length, type, CRC); look for it in the file's last bytes.
_PNG_TAIL_BYTES = 12
_DECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


class BadImageError(SafefakesError):
    """An image that cannot be anonymized; ``reason`` is one of the ``BAD_*`` constants (or a method's own)."""

    def __init__(self, path: str | os.PathLike[str], reason: str, detail: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}{': ' + detail if detail else ''}")


def image_format(path: str | os.PathLike[str]) -> str:
    """The format an image path is written in (``jpeg`` or ``png``), from its extension."""
    suffix = Path(path).suffix.lower()
    try:
        return IMAGE_FORMATS[suffix]
    except KeyError:
        raise BadImageError(path, BAD_UNSUPPORTED, f"extension {suffix or '(none)'!r} is not one of {', '.join(IMAGE_FORMATS)}") from None


def read_image_bytes(path: str | os.PathLike[str]) -> bytes:
    """The raw bytes of an image file; missing, empty or unreadable files raise :class:`BadImageError`."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BadImageError(path, BAD_MISSING, "file listed in the annotations does not exist") from None
    except OSError as error:
        raise BadImageError(path, BAD_UNREADABLE, error.strerror or str(error)) from None
    if not data:
        raise BadImageError(path, BAD_EMPTY)
    return data


def is_complete(data: bytes) -> bool:
    """Whether a JPEG or PNG byte string reaches its end marker (other formats: True).

    JPEG: an end-of-image marker must follow the last start-of-scan marker; 0xFF bytes inside the
    compressed data are always stuffed, so a marker found there is real, and an embedded EXIF
    thumbnail (which carries its own markers) sits before the main image's scans.
    """
    if data.startswith(_JPEG_START):
        if data[-_JPEG_TAIL_BYTES:].rstrip(_JPEG_PADDING).endswith(_JPEG_END):
            return True  # the usual case, checked without scanning the whole file
        last_scan = data.rfind(_JPEG_START_OF_SCAN)
        return last_scan >= 0 and data.find(_JPEG_END, last_scan) >= 0
    if data.startswith(_PNG_SIGNATURE):
        return _PNG_END_CHUNK in data[-_PNG_TAIL_BYTES:]
    return True


def decode_image(data: bytes, source: str | os.PathLike[str]) -> np.ndarray:
    """Decode to ``(H, W, 3)`` uint8 BGR; damaged data raises :class:`BadImageError` naming ``source``."""
    if not is_complete(data):
        raise BadImageError(source, BAD_TRUNCATED, "the file ends before the image's end marker")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _DECODE_FLAGS)
    if image is None or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise BadImageError(source, BAD_UNDECODABLE, "not a JPEG/PNG image OpenCV can decode")
    return image


def read_image(path: str | os.PathLike[str]) -> tuple[bytes, np.ndarray]:
    """Read and decode one image file: its bytes and its BGR pixels."""
    data = read_image_bytes(path)
    return data, decode_image(data, path)


def encoder_params(fmt: str, jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> list[int]:
    """The fixed OpenCV encoder settings for ``fmt`` (deterministic output)."""
    if fmt == "jpeg":
        return [
            cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality),
            cv2.IMWRITE_JPEG_PROGRESSIVE, 0,
            cv2.IMWRITE_JPEG_OPTIMIZE, 0,
            cv2.IMWRITE_JPEG_RST_INTERVAL, 0,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
        ]  # fmt: skip
    if fmt == "png":
        return [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION_LEVEL]
    raise SafefakesError(f"unknown image format {fmt!r}")


def encode_image(image: np.ndarray, fmt: str, jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """Encode BGR pixels as ``fmt`` (``jpeg`` or ``png``) with the fixed settings."""
    ok, buffer = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", image, encoder_params(fmt, jpeg_quality))
    if not ok:
        raise SafefakesError(f"OpenCV could not encode a {image.shape} image as {fmt}")
    return buffer.tobytes()


def check_jpeg_quality(quality: int) -> int:
    """Validate a JPEG quality (1..100)."""
    if not 1 <= int(quality) <= 100:
        raise SafefakesError(f"--jpeg-quality must be in 1..100, got {quality}")
    return int(quality)
