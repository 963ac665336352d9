"""Robust image reading and deterministic writing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from safefakes.anonymize.images import (
    BAD_EMPTY,
    BAD_MISSING,
    BAD_TRUNCATED,
    BAD_UNDECODABLE,
    BAD_UNSUPPORTED,
    BadImageError,
    encode_image,
    image_format,
    is_complete,
    read_image,
)


def picture(channels: int = 3, size: tuple[int, int] = (40, 50)) -> np.ndarray:
    shape = size if channels == 1 else (*size, channels)
    return np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)


def write(path: Path, image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(buffer.tobytes())
    return buffer.tobytes()


def test_color_jpeg_and_png_read_back(tmp_path: Path) -> None:
    image = picture()
    write(tmp_path / "a.png", image)
    data, pixels = read_image(tmp_path / "a.png")
    assert np.array_equal(pixels, image) and data.startswith(b"\x89PNG")
    write(tmp_path / "a.jpg", image)
    assert read_image(tmp_path / "a.jpg")[1].shape == image.shape


@pytest.mark.parametrize(("channels", "suffix"), [(1, ".jpg"), (1, ".png"), (4, ".png")])
def test_grayscale_and_rgba_become_three_channels(tmp_path: Path, channels: int, suffix: str) -> None:
    image = picture(channels)
    write(tmp_path / f"x{suffix}", image)
    _, pixels = read_image(tmp_path / f"x{suffix}")
    assert pixels.shape == (40, 50, 3) and pixels.dtype == np.uint8
    if channels == 4:
        assert np.array_equal(pixels, image[:, :, :3])  # alpha dropped, colours kept
    if channels == 1 and suffix == ".png":
        assert all(np.array_equal(pixels[:, :, c], image) for c in range(3))


def test_bad_files_raise_with_reason_and_name(tmp_path: Path) -> None:
    data = write(tmp_path / "good.jpg", picture())
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"this is not an image at all")
    png = write(tmp_path / "good.png", picture())
    (tmp_path / "cut.png").write_bytes(png[:-20])
    cases = {"cut.jpg": BAD_TRUNCATED, "empty.jpg": BAD_EMPTY, "junk.jpg": BAD_UNDECODABLE, "cut.png": BAD_TRUNCATED, "absent.jpg": BAD_MISSING}
    for name, reason in cases.items():
        with pytest.raises(BadImageError) as caught:
            read_image(tmp_path / name)
        assert caught.value.reason == reason and name in str(caught.value)


def test_jpeg_completeness_ignores_markers_before_the_last_scan() -> None:
    data = encode_image(picture(), "jpeg")
    assert is_complete(data)
    assert not is_complete(data[:-2])
    assert is_complete(data + b"\x00\x00") and is_complete(data + b"trailing bytes after the end marker")
    thumbnail_like = data[:2] + b"\xff\xda\x00\x00\xff\xd9" + data[2:-2]  # an early EOI must not count
    assert not is_complete(thumbnail_like)


def test_encoding_is_deterministic_and_keeps_format() -> None:
    image = picture()
    assert encode_image(image, "jpeg", 95) == encode_image(image.copy(), "jpeg", 95)
    assert encode_image(image, "jpeg", 95) != encode_image(image, "jpeg", 80)
    assert encode_image(image, "jpeg").startswith(b"\xff\xd8")
    assert np.array_equal(cv2.imdecode(np.frombuffer(encode_image(image, "png"), np.uint8), cv2.IMREAD_COLOR), image)
    assert image_format("a/b.JPEG") == "jpeg" and image_format("c.png") == "png"
    with pytest.raises(BadImageError) as caught:
        image_format("d.bmp")
    assert caught.value.reason == BAD_UNSUPPORTED
