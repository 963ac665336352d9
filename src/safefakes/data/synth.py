"""Synthetic WIDER FACE: procedurally drawn faces on varied backgrounds, in the official on-disk layout.

``synthesize(out_root, n_images, seed)`` writes ``WIDER_{train,val}/images/<event>/<name>.jpg``, the two
``wider_face_split/wider_face_{split}_bbx_gt.txt`` files, the per-face extras (identity, 7 keypoints,
68 landmarks) and, for validation, the four evaluation ``.mat`` files in ``ground_truth/``.

Every image is drawn from its own ``numpy`` generator seeded with ``(seed, split, index)`` and every identity
from ``(seed, identity)``, so the output does not depend on the order of work and the same seed gives the
same bytes. Face sizes, attribute rates and the easy/medium/hard split are calibrated on the official
validation annotations (numbers in :class:`SynthConfig`).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from safefakes.common.config import build_config
from safefakes.common.errors import SafefakesError
from safefakes.common.io import atomic_directory
from safefakes.common.progress import progress
from safefakes.data.synth_face import (
    FOREHEAD_FRACTION,
    Appearance,
    Identity,
    Placement,
    RenderedFace,
    face_box,
    fill_mask_polygon,
    fill_polygon,
    render_face,
    sample_appearance,
)
from safefakes.data.synth_scene import background, draw_clutter
from safefakes.data.wider import DIFFICULTIES, FaceBox, FaceExtras, ImageAnnotation, WiderLayout, write_bbx_gt, write_extras

#: Stream tags that keep the per-image and per-identity random streams apart.
_SPLIT_STREAM = {"train": 1, "val": 2}
_IDENTITY_STREAM = 7
#: Owner-map value of objects that belong to no person (occluders).
_OCCLUDER_OWNER = np.iinfo(np.int32).max


@dataclass(frozen=True)
class EventStyle:
    """A WIDER-like event folder and how many people its images show."""

    folder: str
    min_faces: int
    max_faces: int


#: Event folders named like WIDER's (``<id>--<Name>``), from portraits to crowds.
DEFAULT_EVENTS = (
    EventStyle("0--Parade", 6, 40),
    EventStyle("2--Demonstration", 8, 40),
    EventStyle("4--Dancing", 2, 10),
    EventStyle("9--Press_Conference", 1, 6),
    EventStyle("12--Group", 4, 20),
    EventStyle("13--Interview", 1, 3),
    EventStyle("19--Couple", 2, 2),
    EventStyle("20--Family_Group", 3, 9),
    EventStyle("28--Sports_Fan", 5, 30),
    EventStyle("51--Dresses", 1, 4),
)


@dataclass(frozen=True)
class SynthConfig:
    """Every knob of the synthetic data set. Sizes in pixels are given at ``reference_width`` and scale with ``image_width``.

    Rates and size statistics marked "WIDER val" were measured on the official
    ``wider_face_val_bbx_gt.txt`` (3,226 images, 39,697 non-degenerate faces).
    """

    image_width: int = 1024  # WIDER images are 1024 px wide
    reference_width: int = 1024  # the width at which every pixel size below is given
    # False: the whole scene is drawn at image_width, so faces shrink with the image. True: each image is a
    # crop (image_width wide) of a reference_width scene: faces keep their absolute WIDER sizes, and a
    # face of the full scene is kept with the probability crop area / scene area (at least one face).
    crop_full_scene: bool = False
    min_aspect: float = 0.6  # image height / width, lower end
    max_aspect: float = 1.1  # image height / width, upper end
    val_fraction: float = 0.2  # WIDER: 3,226 val of 16,106 train+val images
    jpeg_quality: int = 92
    identity_pool: int = 400  # identities shared by train and val
    events: tuple[EventStyle, ...] = DEFAULT_EVENTS
    # Face sizes (sqrt of box area): log-normal per image, smaller in crowded images.
    portrait_face_px: float = 150.0  # median face size in an image with one face
    crowd_exponent: float = 0.7  # the image median falls as n_faces ** -crowd_exponent
    image_size_log_sigma: float = 0.45  # spread of the image median between images
    face_size_log_sigma: float = 0.35  # spread of face sizes inside one image
    min_face_px: float = 7.0  # WIDER val: 5th percentile 6 px
    max_face_px: float = 320.0  # WIDER val: 99th percentile 269 px
    placement_tries: int = 15
    max_overlap: float = 0.2  # largest part of a face box another face box may cover
    # Attribute rates.
    p_invalid: float = 0.015  # WIDER val: 585 / 39,697 invalid
    p_occluder: float = 0.3  # faces given an occluding object (WIDER val: 40% occluded, many by other people)
    partial_occlusion: float = 0.05  # occluded fraction from which a face counts as partially occluded (code 1)
    heavy_occlusion: float = 0.3  # WIDER readme: heavy occlusion is more than 30% covered (code 2)
    p_extreme_light: float = 0.06  # WIDER val: 2,298 / 39,697 extreme illumination
    p_exaggerated: float = 0.03  # WIDER val: 400 / 39,697 exaggerated expression (raised for variety)
    yaw_sigma_deg: float = 22.0
    roll_sigma_deg: float = 7.0
    p_profile: float = 0.03  # faces turned 60-85 degrees
    p_tilted: float = 0.015  # faces rolled 30-55 degrees
    atypical_yaw_deg: float = 60.0  # pose code 1 from this yaw
    atypical_roll_deg: float = 30.0  # pose code 1 from this roll
    blur_small_px: float = 20.0  # below: mostly heavy blur (WIDER val: 60% of faces are blur 2, most of them tiny)
    blur_large_px: float = 60.0  # above: mostly clear
    blur_probs_small: tuple[float, float, float] = (0.05, 0.25, 0.7)
    blur_probs_medium: tuple[float, float, float] = (0.2, 0.4, 0.4)
    blur_probs_large: tuple[float, float, float] = (0.5, 0.38, 0.12)
    blur_sigma_normal: float = 0.025  # Gaussian sigma as a fraction of face size, blur code 1
    blur_sigma_heavy: float = 0.06  # blur code 2
    scene_light_strength: float = 0.25  # amplitude of the smooth light field over the image
    clutter_min: int = 3
    clutter_max: int = 25
    # Difficulty (our rule, calibrated so the median face size of each setting matches WIDER val:
    # easy 71.8, medium 46.8, hard 22.2 px). Hard: every valid face from hard_min_px on (WIDER val: every
    # valid face >= 11 px tall is hard). Easy and medium use an effective size, size * occlusion factor *
    # blur factor * pose factor, because WIDER's two upper settings also drop occluded and blurred faces.
    occlusion_factors: tuple[float, float, float] = (1.0, 0.85, 0.7)
    blur_factors: tuple[float, float, float] = (1.0, 1.0, 0.9)
    atypical_pose_factor: float = 0.85
    easy_min_px: float = 40.0
    medium_min_px: float = 24.0
    hard_min_px: float = 9.0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> SynthConfig:
        """Build from a plain dict (the config.yaml section; an event as a mapping or a list); unknown keys are an error."""
        return build_config(cls, values, "synth")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`SafefakesError` on settings that cannot work."""
        if self.image_width < 32:
            raise SafefakesError(f"image width must be at least 32 px, got {self.image_width}")
        if not 0 < self.min_aspect <= self.max_aspect:
            raise SafefakesError("image aspect range must satisfy 0 < min_aspect <= max_aspect")
        if not 0 <= self.val_fraction < 1:
            raise SafefakesError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.identity_pool < 1:
            raise SafefakesError("identity_pool must be at least 1")
        if not self.events:
            raise SafefakesError("at least one event style is needed")
        if not 0 < self.min_face_px <= self.max_face_px:
            raise SafefakesError("face size range must satisfy 0 < min_face_px <= max_face_px")
        if not self.easy_min_px >= self.medium_min_px >= self.hard_min_px:
            raise SafefakesError("difficulty thresholds must satisfy easy_min_px >= medium_min_px >= hard_min_px (nested settings)")

    @property
    def scale(self) -> float:
        """Pixels of this data set per reference pixel (1 when images are crops of full-size scenes)."""
        return 1.0 if self.crop_full_scene else self.image_width / self.reference_width

    @property
    def scene_area_fraction(self) -> float:
        """Part of a full reference scene one image shows (1 unless images are crops)."""
        return min(1.0, (self.image_width / self.reference_width) ** 2) if self.crop_full_scene else 1.0


@dataclass
class SynthFace:
    """One synthesized face: the annotation, its extras and its difficulty settings."""

    box: FaceBox
    extras: FaceExtras
    difficulty: tuple[str, ...] = field(default_factory=tuple)


@dataclass
class SynthImage:
    """One synthesized image (BGR uint8) and its faces in drawing order."""

    name: str
    pixels: np.ndarray
    faces: list[SynthFace]


# ----------------------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def identity_for(seed: int, identity_id: int) -> Identity:
    """The identity ``identity_id`` of the pool of ``seed`` (same parameters wherever it reappears)."""
    return Identity.sample(identity_id, np.random.default_rng([seed, _IDENTITY_STREAM, identity_id]))


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of one image, independent of every other image."""
    return np.random.default_rng([seed, _SPLIT_STREAM[split], index])


def sample_face_sizes(rng: np.random.Generator, n_faces: int, config: SynthConfig) -> np.ndarray:
    """Face sizes (reference px) of one image: a log-normal around a median that shrinks with the crowd."""
    log_median = np.log(config.portrait_face_px) - config.crowd_exponent * np.log(n_faces) + rng.normal(0.0, config.image_size_log_sigma)
    sizes = np.exp(log_median + rng.normal(0.0, config.face_size_log_sigma, size=n_faces))
    return np.clip(sizes, config.min_face_px, config.max_face_px)


def _sample_blur(rng: np.random.Generator, size_px: float, config: SynthConfig) -> int:
    if size_px < config.blur_small_px:
        probs = config.blur_probs_small
    elif size_px < config.blur_large_px:
        probs = config.blur_probs_medium
    else:
        probs = config.blur_probs_large
    return int(rng.choice(3, p=np.asarray(probs) / np.sum(probs)))


def _sample_pose(rng: np.random.Generator, config: SynthConfig, appearance: Appearance) -> Appearance:
    """Turn some faces to profile or tilt them strongly (the atypical poses)."""
    yaw, roll = appearance.yaw_deg, appearance.roll_deg
    if rng.random() < config.p_profile:
        yaw = float(rng.choice([-1.0, 1.0]) * rng.uniform(60.0, 85.0))
    if rng.random() < config.p_tilted:
        roll = float(rng.choice([-1.0, 1.0]) * rng.uniform(30.0, 55.0))
    return Appearance(**{**appearance.__dict__, "yaw_deg": yaw, "roll_deg": roll})


def pixels_per_unit(identity: Identity, size_px: float) -> float:
    """Unit-frame scale that gives a face box of about ``size_px`` (sqrt of area) when frontal."""
    box_height_units = identity.head_aspect * (1.0 + FOREHEAD_FRACTION)
    return size_px / np.sqrt(2.0 * box_height_units)


def _overlap(box: tuple[float, float, float, float], others: Sequence[tuple[float, float, float, float]]) -> float:
    """The largest part of ``box`` or of another box that the two share."""
    worst = 0.0
    x0, y0, x1, y1 = box
    area = max((x1 - x0) * (y1 - y0), 1e-6)
    for ox0, oy0, ox1, oy1 in others:
        iw = min(x1, ox1) - max(x0, ox0)
        ih = min(y1, oy1) - max(y0, oy0)
        if iw > 0 and ih > 0:
            other_area = max((ox1 - ox0) * (oy1 - oy0), 1e-6)
            worst = max(worst, iw * ih / min(area, other_area))
    return worst


# ----------------------------------------------------------------------------------------------------------------
# Drawing one image
# ----------------------------------------------------------------------------------------------------------------


def _scene_face_sizes(rng: np.random.Generator, event: EventStyle, config: SynthConfig) -> tuple[EventStyle, np.ndarray]:
    """The event and the sorted face sizes (reference px) of one image.

    For a crop of a full scene, the scene is drawn whole and each face kept with the crop's area fraction.
    A crop without faces is drawn again, event included (WIDER images show at least one face), so sparse
    events become rarer as in random face-holding crops, and the face sizes do not favour portraits.
    """
    for _ in range(config.placement_tries * 10):
        n_faces = int(rng.integers(event.min_faces, event.max_faces + 1))
        sizes = np.sort(sample_face_sizes(rng, n_faces, config))
        if not config.crop_full_scene:
            return event, sizes
        kept = sizes[rng.random(n_faces) < config.scene_area_fraction]
        if kept.size:
            return event, kept
        event = config.events[int(rng.integers(len(config.events)))]
    return event, sizes[:1]


@dataclass
class _Person:
    identity: Identity
    appearance: Appearance
    placement: Placement
    box: tuple[float, float, float, float]
    blur: int
    invalid: bool
    occluder: bool


def _plan_people(rng: np.random.Generator, seed: int, event: EventStyle, width: int, height: int, config: SynthConfig) -> tuple[EventStyle, list[_Person]]:
    """Choose identities, poses, sizes and non-overlapping positions, smallest (farthest) first.

    Sizes follow the full scene's crowd; a crop keeps a random part of its faces (see ``crop_full_scene``).
    """
    event, sizes = _scene_face_sizes(rng, event, config)
    people: list[_Person] = []
    boxes: list[tuple[float, float, float, float]] = []
    for size_ref in sizes:
        identity = identity_for(seed, int(rng.integers(config.identity_pool)))
        appearance = sample_appearance(
            rng,
            yaw_sigma_deg=config.yaw_sigma_deg,
            roll_sigma_deg=config.roll_sigma_deg,
            p_exaggerated=config.p_exaggerated,
            extreme_light=bool(rng.random() < config.p_extreme_light),
        )
        appearance = _sample_pose(rng, config, appearance)
        unit = pixels_per_unit(identity, float(size_ref) * config.scale)
        invalid = bool(rng.random() < config.p_invalid)
        blur = 2 if invalid else _sample_blur(rng, float(size_ref), config)
        occluder = invalid or bool(rng.random() < config.p_occluder)
        for _ in range(config.placement_tries):
            placement = Placement(
                centre_x=float(rng.uniform(0, width)),
                centre_y=float(rng.uniform(0, height)),
                pixels_per_unit=unit,
                yaw_rad=float(np.deg2rad(appearance.yaw_deg)),
                roll_rad=float(np.deg2rad(appearance.roll_deg)),
            )
            box = face_box(identity, placement)
            inside = box[0] >= 0 and box[1] >= 0 and box[2] <= width - 1 and box[3] <= height - 1
            if inside and _overlap(box, boxes) <= config.max_overlap:
                people.append(_Person(identity, appearance, placement, box, blur, invalid, occluder))
                boxes.append(box)
                break
    return event, people


def _draw_occluder(canvas: np.ndarray, owner: np.ndarray, person: _Person, rng: np.random.Generator) -> None:
    """Cover part of the face with an object: a band from one side, a mask, dark glasses or a hand."""
    x0, y0, x1, y1 = person.box
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    kind = int(rng.integers(4))
    cover = rng.uniform(0.9, 1.6) if person.invalid else rng.uniform(0.15, 0.8)
    if kind == 0:  # a band entering from one side (a sign, a shoulder, a microphone)
        side = int(rng.integers(4))
        if side == 0:
            poly = [[x0 - w, y0 - h * 0.2], [x0 + w * cover, y0 - h * 0.2], [x0 + w * cover, y1 + h * 0.2], [x0 - w, y1 + h * 0.2]]
        elif side == 1:
            poly = [[x1 - w * cover, y0 - h * 0.2], [x1 + w, y0 - h * 0.2], [x1 + w, y1 + h * 0.2], [x1 - w * cover, y1 + h * 0.2]]
        elif side == 2:
            poly = [[x0 - w * 0.2, y1 - h * cover], [x1 + w * 0.2, y1 - h * cover], [x1 + w * 0.2, y1 + h], [x0 - w * 0.2, y1 + h]]
        else:
            poly = [[x0 - w * 0.2, y0 - h], [x1 + w * 0.2, y0 - h], [x1 + w * 0.2, y0 + h * cover], [x0 - w * 0.2, y0 + h * cover]]
        points = np.array(poly, dtype=np.float64)
        colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
    elif kind == 1:  # a face mask over mouth and nose
        top = cy + h * rng.uniform(-0.1, 0.15)
        points = np.array([[x0 + w * 0.05, top], [x1 - w * 0.05, top], [x1 - w * 0.15, y1 + h * 0.02], [x0 + w * 0.15, y1 + h * 0.02]])
        colour = tuple(float(v) for v in rng.choice([[230, 230, 230], [200, 160, 90], [40, 40, 40]]))
    elif kind == 2:  # dark glasses
        band = h * rng.uniform(0.12, 0.22)
        top = person.placement.project(np.array([[0.0, person.identity.eye_height, 0.0]]))[0, 1] - band / 2
        points = np.array([[x0, top], [x1, top], [x1, top + band], [x0, top + band]])
        colour = (20.0, 20.0, 25.0)
    else:  # a hand or a held object: an ellipse near the face
        radius_x, radius_y = w * cover * 0.6, h * cover * 0.5
        ox, oy = cx + rng.uniform(-0.5, 0.5) * w, cy + rng.uniform(-0.3, 0.6) * h
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        points = np.stack([ox + radius_x * np.cos(t), oy + radius_y * np.sin(t)], axis=1)
        colour = tuple(float(v) for v in rng.uniform(40, 240, 3))
    fill_polygon(canvas, points, colour)
    fill_mask_polygon(owner, points, _OCCLUDER_OWNER)


def _blur_region(canvas: np.ndarray, person: _Person, sigma: float) -> None:
    """Blur the person's head region in place, blending through a feathered mask (no visible seams)."""
    height, width = canvas.shape[:2]
    x0, y0, x1, y1 = person.box
    margin = 0.4 * max(x1 - x0, y1 - y0) + 2 * sigma
    rx0, ry0 = max(0, int(x0 - margin)), max(0, int(y0 - margin))
    rx1, ry1 = min(width, int(np.ceil(x1 + margin))), min(height, int(np.ceil(y1 + margin)))
    if rx1 <= rx0 or ry1 <= ry0:
        return
    roi = canvas[ry0:ry1, rx0:rx1].astype(np.float32)
    blurred = cv2.GaussianBlur(roi, (0, 0), sigma)
    half_w, half_h = (x1 - x0) * 0.75 + sigma, (y1 - y0) * 0.8 + sigma
    xs = (np.arange(rx0, rx1, dtype=np.float32) + 0.5 - (x0 + x1) / 2) / half_w
    ys = (np.arange(ry0, ry1, dtype=np.float32) + 0.5 - (y0 + y1) / 2) / half_h
    radius2 = ys[:, None] ** 2 + xs[None, :] ** 2
    mask = np.clip((1.3 - radius2) / 0.6, 0.0, 1.0)[..., None]
    canvas[ry0:ry1, rx0:rx1] = np.clip(roi + (blurred - roi) * mask, 0, 255).astype(np.uint8)


def _occluded_fraction(owner: np.ndarray, head_polygon: np.ndarray, label: int) -> float:
    """Part of the head polygon no longer owned by its person (covered by later people or objects)."""
    height, width = owner.shape
    x0, y0 = np.floor(head_polygon.min(axis=0)).astype(int)
    x1, y1 = np.ceil(head_polygon.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x1 <= x0 or y1 <= y0:
        return 1.0
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    fill_mask_polygon(mask, head_polygon - (x0, y0), 1)
    area = int(mask.sum())
    if area == 0:
        return 0.0
    visible = int(np.count_nonzero((owner[y0:y1, x0:x1] == label) & (mask == 1)))
    return 1.0 - visible / area


def _visible(owner: np.ndarray, point: np.ndarray, label: int) -> bool:
    x, y = int(round(float(point[0]))), int(round(float(point[1])))  # OpenCV pixel centres are at integers
    return 0 <= x < owner.shape[1] and 0 <= y < owner.shape[0] and owner[y, x] == label


def occlusion_code(fraction: float, config: SynthConfig) -> int:
    """WIDER occlusion code from the covered part of the head: 0 none, 1 partial, 2 heavy."""
    if fraction >= config.heavy_occlusion:
        return 2
    return 1 if fraction >= config.partial_occlusion else 0


def difficulty_of(box: FaceBox, config: SynthConfig) -> tuple[str, ...]:
    """The settings a face counts in (nested easy ⊂ medium ⊂ hard; invalid faces in none)."""
    if box.invalid:
        return ()
    size = box.size / config.scale
    if size < config.hard_min_px:
        return ()
    effective = size * config.occlusion_factors[box.occlusion] * config.blur_factors[box.blur]
    if box.pose:
        effective *= config.atypical_pose_factor
    upper = tuple(name for name, minimum in (("easy", config.easy_min_px), ("medium", config.medium_min_px)) if effective >= minimum)
    return upper + ("hard",)


def render_image(seed: int, split: str, index: int, config: SynthConfig) -> SynthImage:
    """Draw one synthetic image with all its faces and annotations (pure function of its arguments)."""
    rng = image_rng(seed, split, index)
    width = config.image_width
    height = int(round(width * rng.uniform(config.min_aspect, config.max_aspect)))
    canvas = background(height, width, rng, config.scene_light_strength)
    draw_clutter(canvas, rng, int(rng.integers(config.clutter_min, config.clutter_max + 1)), 0.25 * width)
    event = config.events[int(rng.integers(len(config.events)))]
    event, people = _plan_people(rng, seed, event, width, height, config)
    owner = np.zeros((height, width), np.int32)
    rendered: list[RenderedFace] = []
    for label, person in enumerate(people, start=1):
        face = render_face(canvas, person.identity, person.appearance, person.placement)
        fill_mask_polygon(owner, face.body_polygon, label)
        fill_mask_polygon(owner, face.head_polygon, label)
        if person.occluder:
            _draw_occluder(canvas, owner, person, rng)
        size = np.sqrt((person.box[2] - person.box[0]) * (person.box[3] - person.box[1]))
        if person.blur:
            fraction = config.blur_sigma_heavy if person.blur == 2 else config.blur_sigma_normal
            _blur_region(canvas, person, max(0.5, fraction * size * (2.0 if person.invalid else 1.0)))
        rendered.append(face)

    faces = [_annotate(person, face, owner, label, config) for label, (person, face) in enumerate(zip(people, rendered), start=1)]
    event_id, event_name = event.folder.split("--", 1)
    name = f"{event.folder}/{event_id}_{event_name}_synth_{split}_{index}.jpg"
    return SynthImage(name=name, pixels=canvas, faces=faces)


def _annotate(person: _Person, face: RenderedFace, owner: np.ndarray, label: int, config: SynthConfig) -> SynthFace:
    """Box, attribute codes, keypoints with visibility, and difficulty of one drawn face."""
    height, width = owner.shape
    x0, y0 = max(0.0, face.box[0]), max(0.0, face.box[1])
    x1, y1 = min(float(width), face.box[2]), min(float(height), face.box[3])
    occlusion = occlusion_code(_occluded_fraction(owner, face.head_polygon, label), config)
    if person.invalid:
        occlusion = max(occlusion, 1)
    pose = int(abs(person.appearance.yaw_deg) >= config.atypical_yaw_deg or abs(person.appearance.roll_deg) >= config.atypical_roll_deg)
    box = FaceBox(
        x=int(np.floor(x0)),
        y=int(np.floor(y0)),
        w=max(1, int(np.ceil(x1)) - int(np.floor(x0))),
        h=max(1, int(np.ceil(y1)) - int(np.floor(y0))),
        blur=person.blur,
        expression=int(person.appearance.exaggerated),
        illumination=int(abs(person.appearance.light - 1.0) > 0.5),
        invalid=int(person.invalid),
        occlusion=occlusion,
        pose=pose,
    )
    rounded = np.round(face.keypoints7[:, :2], 2).tolist()
    keypoints = [[x, y, int(v > 0 and _visible(owner, point, label))] for (x, y), v, point in zip(rounded, face.keypoints7[:, 2], face.keypoints7[:, :2])]
    landmarks = np.round(face.landmarks68, 2).tolist()
    extras = FaceExtras(identity=person.identity.identity_id, keypoints7=keypoints, landmarks68=landmarks)
    return SynthFace(box=box, extras=extras, difficulty=difficulty_of(box, config))


# ----------------------------------------------------------------------------------------------------------------
# The data set
# ----------------------------------------------------------------------------------------------------------------


def split_counts(n_images: int, val_images: int | None, config: SynthConfig) -> tuple[int, int]:
    """(train, val) image counts: ``val_images`` if given, else ``val_fraction`` of the total (at least one each)."""
    if n_images < 2:
        raise SafefakesError(f"need at least 2 images (one train, one val), got {n_images}")
    if val_images is None:
        val_images = max(1, int(round(n_images * config.val_fraction)))
    if not 1 <= val_images < n_images:
        raise SafefakesError(f"--val-images must be between 1 and {n_images - 1} for {n_images} images, got {val_images}")
    return n_images - val_images, val_images


def _render_and_write(root: Path, split: str, index: int, seed: int, config: SynthConfig) -> SynthImage:
    """Render image ``index`` of ``split``, write it as JPEG, and return it without pixels."""
    image = render_image(seed, split, index, config)
    ok, data = cv2.imencode(".jpg", image.pixels, [int(cv2.IMWRITE_JPEG_QUALITY), config.jpeg_quality])
    if not ok:
        raise SafefakesError(f"could not encode {image.name}")
    path = WiderLayout(root).image_path(split, image.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.tobytes())
    return SynthImage(name=image.name, pixels=np.empty(0, np.uint8), faces=image.faces)


def _write_split(root: Path, split: str, n_images: int, seed: int, config: SynthConfig, workers: int = 1) -> list[SynthImage]:
    """Render and write one split's images (in ``workers`` processes); returns them without pixels.

    Every image depends only on ``(seed, split, index)``, so the bytes are the same for any ``workers``.
    """
    render = functools.partial(_render_and_write, root, split, seed=seed, config=config)
    indices = range(n_images)
    if workers <= 1:
        return list(progress(map(render, indices), desc=f"synth {split}", total=n_images, unit="img"))
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        chunk = max(1, n_images // (4 * workers))
        return list(progress(pool.map(render, indices, chunksize=chunk), desc=f"synth {split}", total=n_images, unit="img"))


def _annotations(images: Sequence[SynthImage]) -> list[ImageAnnotation]:
    return [ImageAnnotation(name=image.name, faces=[face.box for face in image.faces]) for image in images]


def difficulty_lists(images: Sequence[SynthImage]) -> dict[str, list[list[int]]]:
    """For each setting, per image, the 0-based indices of the faces that count in it."""
    return {name: [[i for i, face in enumerate(image.faces) if name in face.difficulty] for image in images] for name in DIFFICULTIES}


def write_dataset_files(root: Path, split: str, images: Sequence[SynthImage]) -> None:
    """The ``bbx_gt`` txt and the extras JSON of one split (images sorted by name, like WIDER's files)."""
    layout = WiderLayout(root)
    write_bbx_gt(layout.annotation_file(split), _annotations(images))
    write_extras(layout.extras_file(split), {image.name: [face.extras for face in image.faces] for image in images})


def _write_ground_truth(root: Path, images: Sequence[SynthImage]) -> None:
    """The four evaluation ``.mat`` files of the validation split."""
    from safefakes.data.ground_truth import write_ground_truth  # imported here: scipy only when writing

    write_ground_truth(WiderLayout(root).ground_truth_dir, _annotations(images), difficulty_lists(images))


def synthesize(
    out_root: str | os.PathLike[str], n_images: int, seed: int, *, val_images: int | None = None, config: SynthConfig | None = None, workers: int = 1
) -> dict[str, int]:
    """Write a complete synthetic WIDER FACE at ``out_root`` (replaced atomically). Returns image and face counts.

    ``workers`` processes render in parallel; the output does not depend on their number.
    """
    config = config or SynthConfig()
    config.validate()
    n_train, n_val = split_counts(n_images, val_images, config)
    with atomic_directory(out_root) as tmp:
        splits = {split: _write_split(tmp, split, count, seed, config, workers) for split, count in (("train", n_train), ("val", n_val))}
        for split, images in splits.items():
            images.sort(key=lambda image: image.name)
            write_dataset_files(tmp, split, images)
        _write_ground_truth(tmp, splits["val"])
    return {
        "train_images": n_train,
        "val_images": n_val,
        "train_faces": sum(len(image.faces) for image in splits["train"]),
        "val_faces": sum(len(image.faces) for image in splits["val"]),
    }
