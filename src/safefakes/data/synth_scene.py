"""Backgrounds for synthetic WIDER images: gradients, smooth noise, stripes and checks, and non-face clutter."""

from __future__ import annotations

import cv2
import numpy as np

from safefakes.data.synth_face import draw_polyline, fill_polygon

BACKGROUND_KINDS = ("gradient", "noise", "stripes", "checks")


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=3)


def gradient_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A linear gradient between two colours at a random angle (float32 BGR)."""
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (xs * np.cos(angle) + ys * np.sin(angle)) / max(height, width)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    start, end = _random_colour(rng).astype(np.float32), _random_colour(rng).astype(np.float32)
    return start + t[..., None] * (end - start)


def noise_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth colour noise: a coarse random grid upsampled with cubic interpolation (float32 BGR)."""
    cells = int(rng.integers(3, 24))
    coarse = rng.uniform(0, 255, size=(cells, max(2, int(cells * width / height)), 3)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def stripes_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Soft stripes at a random angle and period (float32 BGR)."""
    period = rng.uniform(0.02, 0.2) * width
    angle = rng.uniform(0, np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = (xs * np.cos(angle) + ys * np.sin(angle)) * (2 * np.pi / period)
    t = 0.5 + 0.5 * np.sin(phase)
    a, b = _random_colour(rng).astype(np.float32), _random_colour(rng).astype(np.float32)
    return a + t[..., None] * (b - a)


def checks_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A tiled floor/wall pattern of two colours, slightly blurred (float32 BGR)."""
    tile = max(2, int(rng.uniform(0.04, 0.15) * width))
    ys, xs = np.mgrid[0:height, 0:width]
    t = (((xs // tile) + (ys // tile)) % 2).astype(np.float32)
    a, b = _random_colour(rng).astype(np.float32), _random_colour(rng).astype(np.float32)
    image = a + t[..., None] * (b - a)
    return cv2.GaussianBlur(image, (0, 0), max(0.5, tile * 0.05))


_BACKGROUNDS = {
    "gradient": gradient_background,
    "noise": noise_background,
    "stripes": stripes_background,
    "checks": checks_background,
}

#: Backgrounds are drawn at this fraction of the image size and upsampled (they are smooth; this is 16x cheaper).
BACKGROUND_SCALE = 0.25


def background(height: int, width: int, rng: np.random.Generator, light_strength: float = 0.0) -> np.ndarray:
    """A random background (uint8 BGR): one base pattern, sometimes mixed with smooth noise, under a smooth light field."""
    small_h, small_w = max(2, int(round(height * BACKGROUND_SCALE))), max(2, int(round(width * BACKGROUND_SCALE)))
    kind = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
    image = _BACKGROUNDS[kind](small_h, small_w, rng)
    if kind != "noise" and rng.random() < 0.5:
        mix = rng.uniform(0.15, 0.5)
        image = (1 - mix) * image + mix * noise_background(small_h, small_w, rng)
    if light_strength > 0:
        image = image * light_field(small_h, small_w, rng, light_strength)[..., None]
    small = np.clip(image, 0, 255).astype(np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def draw_clutter(canvas: np.ndarray, rng: np.random.Generator, count: int, max_size: float) -> None:
    """Draw ``count`` non-face shapes: rectangles, polygons, thick lines and plain (featureless) discs."""
    height, width = canvas.shape[:2]
    for _ in range(count):
        kind = int(rng.integers(4))
        size = rng.uniform(0.05, 1.0) * max_size
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        colour = tuple(float(v) for v in _random_colour(rng))
        if kind == 0:
            angle = rng.uniform(0, np.pi)
            w, h = size * rng.uniform(0.3, 1.5), size * rng.uniform(0.3, 1.5)
            corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
            rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            fill_polygon(canvas, corners @ rot.T + (cx, cy), colour)
        elif kind == 1:
            n = int(rng.integers(3, 8))
            angles = np.sort(rng.uniform(0, 2 * np.pi, n))
            radii = size * rng.uniform(0.3, 0.7, n)
            fill_polygon(canvas, np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1), colour)
        elif kind == 2:
            end = (cx + rng.uniform(-2, 2) * size, cy + rng.uniform(-2, 2) * size)
            draw_polyline(canvas, np.array([[cx, cy], end]), colour, int(max(1, size * rng.uniform(0.03, 0.15))))
        else:
            t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
            rx, ry = size * rng.uniform(0.2, 0.6), size * rng.uniform(0.2, 0.6)
            fill_polygon(canvas, np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1), colour)


def light_field(height: int, width: int, rng: np.random.Generator, strength: float) -> np.ndarray:
    """A smooth multiplicative light field in [1 - strength, 1 + strength] (float32, height x width)."""
    coarse = rng.uniform(1.0 - strength, 1.0 + strength, size=(3, 3)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
