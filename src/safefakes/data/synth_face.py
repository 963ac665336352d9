"""A procedural face: identity parameters, per-appearance pose, the 3-D point model and its OpenCV drawing.

Coordinates: a face lives in a *unit frame* where the head outline is an ellipse of half-width 1 and
half-height ``identity.head_aspect``, x to the image right, y down, z toward the camera. A pose (yaw about
the vertical axis, roll in the image plane) and a placement (centre, pixels per unit) map it to the image.

Landmark order is dlib's iBUG-300W 68 points: jaw 0-16 (image left to right), brows 17-26, nose 27-35,
eyes 36-47 (36-41 the eye on the image left), mouth 48-67. The 7 keypoints follow COCO, whose ``left``
means the subject's left, which is the image right of a frontal face.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

#: Fixed-point bits OpenCV uses for sub-pixel drawing (``shift`` argument).
DRAW_SHIFT_BITS = 4
_DRAW_SCALE = float(1 << DRAW_SHIFT_BITS)

#: Skin tones, light to dark, as RGB anchors; an identity interpolates between neighbours.
SKIN_TONES_RGB = np.array(
    [(255, 224, 200), (241, 194, 160), (224, 172, 130), (198, 134, 90), (160, 102, 62), (112, 70, 44), (72, 46, 32)],
    dtype=np.float64,
)
#: Hair colours (RGB): black, dark brown, brown, auburn, blond, grey, white.
HAIR_COLOURS_RGB = np.array(
    [(18, 16, 16), (48, 34, 26), (96, 64, 40), (140, 62, 30), (212, 178, 112), (150, 150, 150), (232, 232, 228)],
    dtype=np.float64,
)
#: Hair colour probabilities (dark hair is the most common in crowd photos).
HAIR_COLOUR_WEIGHTS = np.array([0.34, 0.24, 0.14, 0.06, 0.1, 0.08, 0.04])
#: Iris colours (RGB): dark brown, brown, hazel, green, blue, grey.
IRIS_COLOURS_RGB = np.array([(40, 26, 20), (82, 52, 30), (120, 96, 50), (70, 110, 70), (60, 100, 160), (110, 120, 130)], dtype=np.float64)
#: Hair styles.
HAIR_STYLES = ("bald", "short", "long", "curly")
HAIR_STYLE_WEIGHTS = np.array([0.08, 0.5, 0.3, 0.12])

#: Unit-frame y of the top edge of the face box (the forehead), as a fraction of the head half-height.
FOREHEAD_FRACTION = 0.82
#: A feature (eye, brow, ear) is drawn only when its surface faces the camera at least this much (cosine).
FACING_THRESHOLD = 0.12


@dataclass(frozen=True)
class Identity:
    """The fixed appearance of one synthetic person; the same identity looks the same under any pose."""

    identity_id: int
    skin_rgb: tuple[float, float, float]
    hair_rgb: tuple[float, float, float]
    hair_style: str
    iris_rgb: tuple[float, float, float]
    head_aspect: float  # head half-height / half-width
    jaw_width: float  # chin narrowing, 1 = no narrowing
    eye_spacing: float  # half distance between eye centres
    eye_width: float  # half width of one eye
    eye_height: float  # unit-frame y of the eye centres
    brow_offset: float  # brow height above the eyes
    brow_thickness: float
    nose_length: float
    nose_width: float
    mouth_width: float  # half width of the mouth
    mouth_y: float
    lip_fullness: float
    ear_size: float
    beard: bool

    @staticmethod
    def sample(identity_id: int, rng: np.random.Generator) -> Identity:
        """Draw the parameters of one identity."""
        tone = rng.uniform(0, len(SKIN_TONES_RGB) - 1)
        low = int(np.floor(tone))
        high = min(low + 1, len(SKIN_TONES_RGB) - 1)
        skin = SKIN_TONES_RGB[low] * (1 - (tone - low)) + SKIN_TONES_RGB[high] * (tone - low)
        hair = HAIR_COLOURS_RGB[rng.choice(len(HAIR_COLOURS_RGB), p=HAIR_COLOUR_WEIGHTS)] * rng.uniform(0.85, 1.1)
        iris = IRIS_COLOURS_RGB[rng.integers(len(IRIS_COLOURS_RGB))]
        head_aspect = rng.uniform(1.18, 1.42)
        return Identity(
            identity_id=identity_id,
            skin_rgb=tuple(float(v) for v in skin),
            hair_rgb=tuple(float(v) for v in np.clip(hair, 0, 255)),
            hair_style=str(HAIR_STYLES[rng.choice(len(HAIR_STYLES), p=HAIR_STYLE_WEIGHTS)]),
            iris_rgb=tuple(float(v) for v in iris),
            head_aspect=head_aspect,
            jaw_width=rng.uniform(0.62, 0.95),
            eye_spacing=rng.uniform(0.34, 0.46),
            eye_width=rng.uniform(0.15, 0.21),
            eye_height=rng.uniform(-0.3, -0.16) * head_aspect,
            brow_offset=rng.uniform(0.17, 0.27),
            brow_thickness=rng.uniform(0.05, 0.1),
            nose_length=rng.uniform(0.42, 0.6),
            nose_width=rng.uniform(0.15, 0.24),
            mouth_width=rng.uniform(0.26, 0.4),
            mouth_y=rng.uniform(0.5, 0.62) * head_aspect,
            lip_fullness=rng.uniform(0.05, 0.11),
            ear_size=rng.uniform(0.2, 0.3),
            beard=bool(rng.random() < 0.12),
        )


@dataclass(frozen=True)
class Appearance:
    """One appearance of an identity: pose, expression, light and clothing."""

    yaw_deg: float
    roll_deg: float
    mouth_open: float  # 0 closed .. ~0.5 wide open
    smile: float  # corner lift, unit frame
    brow_raise: float
    eye_openness: float  # 1 open, 0 closed
    light: float  # colour multiplier; 1 = normal light
    shade: float  # darkening of the face side turned away from the light, 0..1
    clothing_rgb: tuple[float, float, float]
    exaggerated: bool


def sample_appearance(rng: np.random.Generator, *, yaw_sigma_deg: float, roll_sigma_deg: float, p_exaggerated: float, extreme_light: bool) -> Appearance:
    """Draw a pose, an expression and lighting for one face."""
    yaw = float(np.clip(rng.normal(0.0, yaw_sigma_deg), -85.0, 85.0))
    roll = float(np.clip(rng.normal(0.0, roll_sigma_deg), -60.0, 60.0))
    exaggerated = bool(rng.random() < p_exaggerated)
    if exaggerated:
        mouth_open = rng.uniform(0.22, 0.5)
        smile = rng.uniform(-0.05, 0.12)
        brow_raise = rng.uniform(0.05, 0.14)
    else:
        mouth_open = rng.choice([0.0, rng.uniform(0.0, 0.1)], p=[0.6, 0.4])
        smile = rng.uniform(-0.02, 0.08)
        brow_raise = rng.uniform(-0.02, 0.03)
    eye_openness = 0.15 if rng.random() < 0.06 else rng.uniform(0.7, 1.1)
    if extreme_light:
        light = rng.uniform(0.22, 0.42) if rng.random() < 0.7 else rng.uniform(1.6, 2.1)
    else:
        light = rng.uniform(0.72, 1.15)
    clothing = rng.uniform(10, 245, size=3)
    return Appearance(
        yaw_deg=yaw,
        roll_deg=roll,
        mouth_open=float(mouth_open),
        smile=float(smile),
        brow_raise=float(brow_raise),
        eye_openness=float(eye_openness),
        light=float(light),
        shade=float(rng.uniform(0.0, 0.3)),
        clothing_rgb=tuple(float(v) for v in clothing),
        exaggerated=exaggerated,
    )


# ----------------------------------------------------------------------------------------------------------------
# The 3-D point model
# ----------------------------------------------------------------------------------------------------------------


def _surface_depth(x: np.ndarray, y: np.ndarray, head_aspect: float) -> np.ndarray:
    """Depth of the face surface at unit-frame (x, y): an ellipsoid, flattened at the front."""
    inside = 1.0 - x**2 - 0.35 * (y / head_aspect) ** 2
    return 0.95 * np.sqrt(np.clip(inside, 0.0, None))


def _frozen(array: np.ndarray) -> np.ndarray:
    """Mark a cached array read-only so no caller can change the cache."""
    array.setflags(write=False)
    return array


@functools.lru_cache(maxsize=2048)
def head_outline(identity: Identity, n_points: int = 48) -> np.ndarray:
    """The head polygon (n, 3) in the unit frame, clockwise from the image-left ear level; the chin narrows."""
    t = np.linspace(0.0, 2.0 * np.pi, n_points, endpoint=False)
    x = np.cos(t)
    y = identity.head_aspect * np.sin(t)
    lower = np.clip(np.sin(t), 0.0, None)
    x = x * (1.0 - (1.0 - identity.jaw_width) * lower**2)
    return _frozen(np.stack([x, y, np.zeros_like(x)], axis=1))


def _jaw(identity: Identity) -> np.ndarray:
    """Landmarks 0-16: the head outline from the image-left ear level, round the chin, to the image right."""
    overshoot = 0.12
    t = np.linspace(np.pi + overshoot, -overshoot, 17)
    x = np.cos(t)
    y = identity.head_aspect * np.sin(t)
    lower = np.clip(np.sin(t), 0.0, None)
    x = x * (1.0 - (1.0 - identity.jaw_width) * lower**2) * 0.98
    return np.stack([x, y, np.zeros_like(x)], axis=1)


_EYE_X = np.array([-1.0, -0.35, 0.35, 1.0, 0.35, -0.35])
_EYE_Y = np.array([0.0, -1.0, -1.0, 0.0, 0.85, 0.85])
_BROW_T = np.linspace(-1.0, 1.0, 5)


def _eye(centre_x: float, identity: Identity, openness: float) -> np.ndarray:
    """Six eye landmarks in dlib order: left corner, two upper lid, right corner, two lower lid."""
    w = identity.eye_width
    h = w * 0.42 * openness
    return np.stack([centre_x + w * _EYE_X, identity.eye_height + h * _EYE_Y], axis=1)


def _brow(centre_x: float, identity: Identity, raise_by: float, image_left: bool) -> np.ndarray:
    """Five brow landmarks from image left to image right, arched."""
    w = identity.eye_width * 1.25
    xs = centre_x + w * _BROW_T
    arch = 0.06 * (1.0 - _BROW_T**2)
    tilt = -0.03 * _BROW_T * (1 if image_left else -1)
    ys = identity.eye_height - identity.brow_offset - raise_by - arch + tilt
    return np.stack([xs, ys], axis=1)


def _nose(identity: Identity) -> np.ndarray:
    """Landmarks 27-35: bridge top to tip (4), then the lower nose from image left to image right (5)."""
    top = identity.eye_height - 0.02
    bottom = top + identity.nose_length
    bridge = np.stack([np.zeros(4), np.linspace(top, bottom - 0.08, 4)], axis=1)
    xs = identity.nose_width * np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    ys = bottom + np.array([-0.04, 0.0, 0.02, 0.0, -0.04])
    return np.concatenate([bridge, np.stack([xs, ys], axis=1)])


def _mouth(identity: Identity, appearance: Appearance) -> np.ndarray:
    """Landmarks 48-67: outer lip (12, from the left corner clockwise) and inner lip (8)."""
    w, y0, full = identity.mouth_width, identity.mouth_y, identity.lip_fullness
    opening = appearance.mouth_open * 0.45
    lift = appearance.smile
    corner_y = y0 - lift
    outer_upper_x = w * np.array([-1.0, -0.6, -0.22, 0.0, 0.22, 0.6, 1.0])
    outer_upper_y = np.array([corner_y, y0 - full * 0.8, y0 - full * 1.1, y0 - full * 0.85, y0 - full * 1.1, y0 - full * 0.8, corner_y])
    outer_lower_x = w * np.array([0.6, 0.22, 0.0, -0.22, -0.6])
    lower_drop = full * 1.2 + opening
    outer_lower_y = y0 + np.array([0.75, 0.97, 1.0, 0.97, 0.75]) * lower_drop
    inner_w = w * 0.82
    inner_x = np.array([-inner_w, -inner_w * 0.4, 0.0, inner_w * 0.4, inner_w, inner_w * 0.4, 0.0, -inner_w * 0.4])
    inner_upper = y0 - full * 0.15
    inner_lower = y0 + opening * 0.9 + full * 0.05
    inner_y = np.array([corner_y, inner_upper, inner_upper - 0.005, inner_upper, corner_y, inner_lower, inner_lower + 0.005, inner_lower])
    outer = np.stack([np.concatenate([outer_upper_x, outer_lower_x]), np.concatenate([outer_upper_y, outer_lower_y])], axis=1)
    return np.concatenate([outer, np.stack([inner_x, inner_y], axis=1)])


def landmarks_unit(identity: Identity, appearance: Appearance) -> np.ndarray:
    """The 68 landmarks of this face, frontal, as (68, 3) unit-frame points with surface depth."""
    jaw = _jaw_cached(identity)
    spacing = identity.eye_spacing
    brows = np.concatenate([_brow(-spacing, identity, appearance.brow_raise, True), _brow(spacing, identity, appearance.brow_raise, False)])
    nose = _nose(identity)
    eyes = np.concatenate([_eye(-spacing, identity, appearance.eye_openness), _eye(spacing, identity, appearance.eye_openness)])
    mouth = _mouth(identity, appearance)
    face_2d = np.concatenate([brows, nose, eyes, mouth])
    depth = _surface_depth(face_2d[:, 0], face_2d[:, 1], identity.head_aspect)
    nose_rows = slice(27 - 17, 36 - 17)
    bridge_bump = np.array([0.06, 0.14, 0.22, 0.3, 0.12, 0.16, 0.2, 0.16, 0.12]) * (identity.nose_length / 0.5)
    depth[nose_rows] += bridge_bump
    face = np.concatenate([face_2d, depth[:, None]], axis=1)
    return np.concatenate([jaw, face]).astype(np.float64)


# ----------------------------------------------------------------------------------------------------------------
# Projection
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where a face lands in the image: centre of the head ellipse (pixels), pixels per unit, pose."""

    centre_x: float
    centre_y: float
    pixels_per_unit: float
    yaw_rad: float
    roll_rad: float

    def project(self, points: np.ndarray) -> np.ndarray:
        """Map (n, 3) unit-frame points to (n, 2) image pixels (yaw about the vertical axis, then roll)."""
        cos_y, sin_y = np.cos(self.yaw_rad), np.sin(self.yaw_rad)
        x = points[:, 0] * cos_y + points[:, 2] * sin_y
        y = points[:, 1]
        cos_r, sin_r = np.cos(self.roll_rad), np.sin(self.roll_rad)
        xr = x * cos_r - y * sin_r
        yr = x * sin_r + y * cos_r
        return np.stack([self.centre_x + xr * self.pixels_per_unit, self.centre_y + yr * self.pixels_per_unit], axis=1)

    def facing(self, points: np.ndarray) -> np.ndarray:
        """How much each point's surface faces the camera after yaw (>0 visible side)."""
        normal_x = points[:, 0]
        normal_z = np.sqrt(np.clip(1.0 - normal_x**2, 0.0, None))
        return -normal_x * np.sin(self.yaw_rad) + normal_z * np.cos(self.yaw_rad)


@functools.lru_cache(maxsize=2048)
def _jaw_cached(identity: Identity) -> np.ndarray:
    return _frozen(_jaw(identity))


@functools.lru_cache(maxsize=2048)
def _box_outline(identity: Identity) -> np.ndarray:
    """Unit-frame points whose bounds give the face box: the head outline below the forehead line."""
    outline = head_outline(identity, 96)
    forehead = -FOREHEAD_FRACTION * identity.head_aspect
    kept = outline[outline[:, 1] >= forehead]
    half_chord = np.sqrt(1 - FOREHEAD_FRACTION**2)
    cut = np.stack([np.linspace(-half_chord, half_chord, 7), np.full(7, forehead), np.zeros(7)], axis=1)
    return _frozen(np.concatenate([kept, cut]))


def face_box(identity: Identity, placement: Placement) -> tuple[float, float, float, float]:
    """The WIDER-style box (x0, y0, x1, y1): ear to ear, forehead to chin, of the rolled head outline."""
    pts = placement.project(_box_outline(identity))
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


# ----------------------------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------------------------


def _fixed(points: np.ndarray) -> np.ndarray:
    """Pixel points to OpenCV fixed-point int32 (n, 1, 2)."""
    return np.round(points * _DRAW_SCALE).astype(np.int32).reshape(-1, 1, 2)


def _bgr(rgb: tuple[float, float, float] | np.ndarray, light: float = 1.0) -> tuple[float, float, float]:
    """RGB floats to a clipped BGR colour tuple, scaled by ``light``."""
    r, g, b = (min(255.0, max(0.0, float(v) * light)) for v in rgb)
    return (b, g, r)


def fill_polygon(canvas: np.ndarray, points: np.ndarray, colour: tuple[float, ...] | float) -> None:
    """Fill a pixel-space polygon, anti-aliased, with sub-pixel precision."""
    cv2.fillPoly(canvas, [_fixed(points)], colour, lineType=cv2.LINE_AA, shift=DRAW_SHIFT_BITS)


def fill_mask_polygon(mask: np.ndarray, points: np.ndarray, value: int) -> None:
    """Fill a polygon into an integer label map (no anti-aliasing)."""
    cv2.fillPoly(mask, [_fixed(points)], int(value), lineType=cv2.LINE_8, shift=DRAW_SHIFT_BITS)


def draw_polyline(canvas: np.ndarray, points: np.ndarray, colour: tuple[float, ...], thickness: int, closed: bool = False) -> None:
    """Draw an anti-aliased polyline through pixel-space points."""
    cv2.polylines(canvas, [_fixed(points)], closed, colour, thickness=max(1, thickness), lineType=cv2.LINE_AA, shift=DRAW_SHIFT_BITS)


def _ellipse_points(cx: float, cy: float, rx: float, ry: float, z: float = 0.0, n: int = 20) -> np.ndarray:
    """(n, 3) unit-frame points of an axis-aligned ellipse."""
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t), np.full(n, z)], axis=1)


@dataclass
class RenderedFace:
    """What drawing one face produced: its box, 68 landmarks, 7 keypoints (x, y, facing) and head polygon."""

    box: tuple[float, float, float, float]
    landmarks68: np.ndarray
    keypoints7: np.ndarray  # (7, 3): x, y, 1 if the part faces the camera else 0
    head_polygon: np.ndarray
    body_polygon: np.ndarray


@functools.lru_cache(maxsize=2048)
def _torso(identity: Identity) -> np.ndarray:
    return _frozen(_ellipse_points(0.0, identity.head_aspect + 1.9, 2.1, 1.35, z=-0.3, n=32))


def body_polygon(identity: Identity, placement: Placement) -> np.ndarray:
    """Shoulders and upper body (pixels), drawn below the head."""
    return placement.project(_torso(identity))


def shoulder_points(identity: Identity) -> np.ndarray:
    """COCO left (subject's left = +x) and right shoulder in the unit frame."""
    a = identity.head_aspect
    return np.array([[1.5, a + 1.3, -0.3], [-1.5, a + 1.3, -0.3]])


def render_face(canvas: np.ndarray, identity: Identity, appearance: Appearance, placement: Placement) -> RenderedFace:
    """Draw body, neck, hair, head, ears and facial parts of one person onto ``canvas`` (BGR uint8)."""
    unit = placement.pixels_per_unit
    light = appearance.light
    skin = _bgr(identity.skin_rgb, light)
    skin_dark = _bgr(identity.skin_rgb, light * 0.78)
    hair = _bgr(identity.hair_rgb, light)
    line = max(1, int(round(unit * 0.045)))
    a = identity.head_aspect

    torso = body_polygon(identity, placement)
    if identity.hair_style == "long":
        fill_polygon(canvas, placement.project(_long_hair(identity)), hair)
    fill_polygon(canvas, torso, _bgr(appearance.clothing_rgb, light))
    neck = np.array([[-0.42, 0.3 * a, -0.2], [0.42, 0.3 * a, -0.2], [0.46, a + 0.75, -0.2], [-0.46, a + 0.75, -0.2]])
    fill_polygon(canvas, placement.project(neck), skin_dark)

    for side in (-1.0, 1.0):
        ear = _ellipse_points(side * 0.97, -0.05 * a, identity.ear_size * 0.55, identity.ear_size, z=-0.12)
        if placement.facing(np.array([[side * 0.6, 0.0, 0.0]]))[0] > -0.55:
            fill_polygon(canvas, placement.project(ear), skin_dark)

    head = placement.project(head_outline(identity))
    fill_polygon(canvas, head, skin)
    _shade_far_side(canvas, identity, appearance, placement)
    if identity.beard:
        beard = head_outline(identity, 48)
        beard = beard[beard[:, 1] > identity.mouth_y - 0.25]
        fill_polygon(canvas, placement.project(beard), _bgr(identity.hair_rgb, light * 0.9))
    if identity.hair_style != "bald":
        fill_polygon(canvas, placement.project(_hair_cap(identity)), hair)

    landmarks3d = landmarks_unit(identity, appearance)
    landmarks = placement.project(landmarks3d)
    facing = placement.facing(landmarks3d)
    _draw_features(canvas, identity, appearance, landmarks, facing, line, light)

    eyes_visible = [float(facing[42:48].mean() > FACING_THRESHOLD), float(facing[36:42].mean() > FACING_THRESHOLD)]
    ears_unit = np.array([[0.93, -0.05 * a, 0.0], [-0.93, -0.05 * a, 0.0]])
    ear_facing = placement.facing(ears_unit * np.array([0.6, 1.0, 1.0]))
    ears_visible = (ear_facing > -0.55).astype(float)
    shoulders = placement.project(shoulder_points(identity))
    keypoints = np.array(
        [
            [*landmarks[30], float(facing[30] > -0.2)],
            [*landmarks[42:48].mean(axis=0), eyes_visible[0]],
            [*landmarks[36:42].mean(axis=0), eyes_visible[1]],
            [*placement.project(ears_unit[:1] * np.array([1.0, 1.0, 0.0]))[0], ears_visible[0]],
            [*placement.project(ears_unit[1:] * np.array([1.0, 1.0, 0.0]))[0], ears_visible[1]],
            [*shoulders[0], 1.0],
            [*shoulders[1], 1.0],
        ]
    )
    x0, y0, x1, y1 = face_box(identity, placement)
    nose = landmarks[27:36]  # a turned face's nose can stick out of the head outline; the box covers it
    box = (min(x0, float(nose[:, 0].min())), min(y0, float(nose[:, 1].min())), max(x1, float(nose[:, 0].max())), max(y1, float(nose[:, 1].max())))
    return RenderedFace(box=box, landmarks68=landmarks, keypoints7=keypoints, head_polygon=head, body_polygon=torso)


@functools.lru_cache(maxsize=2048)
def _long_hair(identity: Identity) -> np.ndarray:
    """Long hair behind the head: a rounded shape from above the skull to below the chin."""
    a = identity.head_aspect
    top = _ellipse_points(0.0, 0.0, 1.2, a * 1.1, z=-0.4, n=40)
    top = top[top[:, 1] <= 0.0]
    bottom = np.array([[1.25, a * 1.35, -0.4], [-1.25, a * 1.35, -0.4]])
    return _frozen(np.concatenate([top, bottom]))


@functools.lru_cache(maxsize=2048)
def _hair_cap(identity: Identity) -> np.ndarray:
    """Hair on top of the head: the skull outline scaled up, down to a fringe line above the brows."""
    a = identity.head_aspect
    bulk = 1.16 if identity.hair_style == "curly" else 1.06
    t = np.linspace(np.pi * 0.94, np.pi * 2.06, 28)
    skull = np.stack([bulk * np.cos(t), a * bulk * np.sin(t) - (0.12 if identity.hair_style == "curly" else 0.0), np.zeros_like(t)], axis=1)
    fringe_y = identity.eye_height - identity.brow_offset - 0.28
    fringe_x = np.linspace(0.93, -0.93, 9)
    fringe = np.stack([fringe_x, fringe_y - 0.08 * np.cos(fringe_x * np.pi / 2), np.full(9, 0.3)], axis=1)
    return _frozen(np.concatenate([skull, fringe]))


def _shade_far_side(canvas: np.ndarray, identity: Identity, appearance: Appearance, placement: Placement) -> None:
    """Darken the half of the face turned away from the light (a soft illumination cue)."""
    if appearance.shade < 0.08:
        return
    side = 1.0 if appearance.yaw_deg >= 0 else -1.0
    outline = head_outline(identity, 32)
    half = outline[outline[:, 0] * side <= 0.0].copy()
    half = np.concatenate([half, np.array([[0.0, identity.head_aspect, 0.0], [0.0, -identity.head_aspect, 0.0]])])
    half[:, 0] *= 1.0
    shade = _bgr(identity.skin_rgb, appearance.light * (1.0 - appearance.shade))
    pts = placement.project(half)
    hull = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2)
    fill_polygon(canvas, hull, shade)


_UNIT_CIRCLE_12 = np.stack([np.cos(np.linspace(0, 2 * np.pi, 12, endpoint=False)), np.sin(np.linspace(0, 2 * np.pi, 12, endpoint=False))], axis=1)


def _draw_features(canvas: np.ndarray, identity: Identity, appearance: Appearance, lm: np.ndarray, facing: np.ndarray, line: int, light: float) -> None:
    """Eyes, brows, nose and mouth from the projected landmarks; parts turned away are skipped."""
    brow_colour = _bgr(identity.hair_rgb, light * 0.9)
    for eye, brow in ((slice(36, 42), slice(17, 22)), (slice(42, 48), slice(22, 27))):
        if facing[eye].mean() <= FACING_THRESHOLD:
            continue
        eye_pts = lm[eye]
        fill_polygon(canvas, eye_pts, _bgr((236, 236, 230), light))
        centre = eye_pts.mean(axis=0)
        radius = max(0.6, np.linalg.norm(eye_pts[0] - eye_pts[3]) * 0.22 * min(1.0, appearance.eye_openness + 0.2))
        iris = centre + radius * _UNIT_CIRCLE_12
        fill_polygon(canvas, iris, _bgr(identity.iris_rgb, light))
        draw_polyline(canvas, eye_pts, _bgr((30, 22, 20), light), line, closed=True)
        brow_line = max(1, int(round(line * identity.brow_thickness / 0.05)))
        draw_polyline(canvas, lm[brow], brow_colour, brow_line)
    nose_colour = _bgr(identity.skin_rgb, light * 0.6)
    if facing[27:31].mean() > -0.3:
        draw_polyline(canvas, lm[28:31], _bgr(identity.skin_rgb, light * 0.8), line)
        draw_polyline(canvas, lm[31:36], nose_colour, line)
    lip = _bgr(np.array(identity.skin_rgb) * np.array([0.85, 0.55, 0.55]), light)
    if facing[48:60].mean() > -0.2:
        fill_polygon(canvas, lm[48:60], lip)
        if appearance.mouth_open > 0.04:
            fill_polygon(canvas, lm[60:68], _bgr((50, 20, 24), light))
            teeth = lm[60:65].copy()
            teeth[:, 1] += max(0.5, (lm[66, 1] - lm[62, 1]) * 0.25)
            draw_polyline(canvas, teeth, _bgr((230, 230, 220), light), line)
        else:
            draw_polyline(canvas, lm[60:65], _bgr((60, 25, 30), light), line)
