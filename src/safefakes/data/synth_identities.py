"""A synthetic identity-photo set for the re-identification test: several portraits of each drawn identity.

Every identity keeps its face parameters (:class:`~safefakes.data.synth_face.Identity`, the same pool as
``safefakes synth`` with the same seed); each photo varies pose, expression, light, clothing, framing and
background. Faces are large and near-frontal, and their geometry is exaggerated (:func:`distinct_identity`) so
dlib's face descriptor, trained on real faces, tells the drawn identities apart. dlib's HOG detector misses
many such faces, so the set carries each face's box: ``identities.csv`` (``path``, ``identity``, ``box`` = ``x y w h``)
beside one folder per identity, the layout :func:`safefakes.data.identities.load_identities` reads; reid describes
the known box without detection.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from safefakes.common.config import build_config
from safefakes.common.errors import SafefakesError
from safefakes.common.io import atomic_directory
from safefakes.common.progress import progress
from safefakes.data.synth import identity_for
from safefakes.data.synth_face import Appearance, Identity, Placement, render_face, sample_appearance
from safefakes.data.synth_scene import background

#: Random stream of the photos (identities use synth.py's identity stream, so the pools agree).
_PHOTO_STREAM = 7
IDENTITY_CSV = "identities.csv"
#: Ranges of Identity.sample's uniform geometry parameters (synth_face.py); the spread stretches about their middle.
GEOMETRY_RANGES: dict[str, tuple[float, float]] = {
    "head_aspect": (1.18, 1.42),
    "jaw_width": (0.62, 0.95),
    "eye_spacing": (0.34, 0.46),
    "eye_width": (0.15, 0.21),
    "brow_offset": (0.17, 0.27),
    "brow_thickness": (0.05, 0.1),
    "nose_length": (0.42, 0.6),
    "nose_width": (0.15, 0.24),
    "mouth_width": (0.26, 0.4),
    "lip_fullness": (0.05, 0.11),
    "ear_size": (0.2, 0.3),
}
#: Parameters Identity.sample draws relative to the head aspect (value / head_aspect lies in the range).
RELATIVE_GEOMETRY_RANGES: dict[str, tuple[float, float]] = {"eye_height": (-0.3, -0.16), "mouth_y": (0.5, 0.62)}
#: Beyond this spread some ranges leave the plausible (e.g. eyes past the head outline).
MAX_IDENTITY_SPREAD = 2.5
#: Largest jaw width (1 = no chin narrowing; more would bulge the chin).
MAX_JAW_WIDTH = 1.0
#: Smallest gap between the nose bottom and the upper lip, unit frame.
MIN_NOSE_MOUTH_GAP = 0.08
CSV_COLUMNS = ("path", "identity", "box")


@dataclass(frozen=True)
class SynthIdentitiesConfig:
    """How the portraits are framed and varied (choices of this project, not of a paper)."""

    size_px: int = 224  # square portrait side; faces of ~110 px, dlib's aligned chip is 150 px
    identity_spread: float = 2.0  # face geometry spread about the pool's mean; 1 = the synth pool as is (see distinct_identity)
    head_half_width: float = 0.25  # head ellipse half-width as a fraction of the portrait side
    head_centre_y: float = 0.46  # head centre height as a fraction of the side (room for the chin and shoulders)
    centre_jitter: float = 0.04  # random shift of the head centre, fraction of the side
    scale_jitter: float = 0.08  # random relative change of the head size
    yaw_sigma_deg: float = 8.0  # near-frontal, like passport-style identity photos
    roll_sigma_deg: float = 5.0
    p_exaggerated: float = 0.2  # share of photos with an exaggerated expression
    background_light: float = 0.25  # strength of the smooth light field over the background

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> SynthIdentitiesConfig:
        """Build from a plain dict; unknown keys are an error."""
        return build_config(cls, values, "synth-identities")

    def __post_init__(self) -> None:
        if not 1.0 <= self.identity_spread <= MAX_IDENTITY_SPREAD:
            raise SafefakesError(f"identity_spread must lie in [1, {MAX_IDENTITY_SPREAD}], got {self.identity_spread}")
        if self.size_px < 64:
            raise SafefakesError(f"portrait size must be at least 64 px, got {self.size_px}")
        if not 0.05 < self.head_half_width < 0.5 or not 0.0 <= self.scale_jitter < 0.5 or self.centre_jitter < 0:
            raise SafefakesError("synth-identities config: 0.05 < head_half_width < 0.5, 0 <= scale_jitter < 0.5, centre_jitter >= 0")


@dataclass(frozen=True)
class IdentityPhoto:
    """One rendered portrait: the image (BGR uint8), its identity and the WIDER-style face box (x, y, w, h)."""

    identity: Identity
    image: np.ndarray
    box: tuple[int, int, int, int]
    appearance: Appearance


def identity_name(identity_id: int) -> str:
    """Folder and ``identity`` column name of an identity."""
    return f"id{identity_id:04d}"


def distinct_identity(seed: int, identity_id: int, spread: float) -> Identity:
    """Identity ``identity_id`` of the synth pool of ``seed`` with its face geometry pushed ``spread`` times further
    from the pool's mean (colours, hair style and beard unchanged), so a descriptor trained on real faces tells
    identities apart more easily; ``spread=1`` returns the pool identity itself."""
    base = identity_for(seed, identity_id)
    if spread == 1.0:
        return base
    values = {name: _stretch(getattr(base, name), bounds, spread) for name, bounds in GEOMETRY_RANGES.items()}
    values["jaw_width"] = min(values["jaw_width"], MAX_JAW_WIDTH)
    aspect = values["head_aspect"]
    for name, bounds in RELATIVE_GEOMETRY_RANGES.items():
        values[name] = _stretch(getattr(base, name) / base.head_aspect, bounds, spread) * aspect
    nose_bottom = values["eye_height"] + values["nose_length"]
    values["mouth_y"] = max(values["mouth_y"], nose_bottom + MIN_NOSE_MOUTH_GAP + values["lip_fullness"])
    return replace(base, **values)


def _stretch(value: float, bounds: tuple[float, float], spread: float) -> float:
    middle = 0.5 * (bounds[0] + bounds[1])
    return float(middle + spread * (value - middle))


def photo_rng(seed: int, identity_id: int, photo: int) -> np.random.Generator:
    """The random stream of one photo, independent of every other photo."""
    return np.random.default_rng([seed, _PHOTO_STREAM, identity_id, photo])


def render_identity_photo(seed: int, identity_id: int, photo: int, config: SynthIdentitiesConfig | None = None) -> IdentityPhoto:
    """Draw photo number ``photo`` of identity ``identity_id``: same face parameters, new pose, light and scene."""
    config = config or SynthIdentitiesConfig()
    identity = distinct_identity(seed, identity_id, config.identity_spread)
    rng = photo_rng(seed, identity_id, photo)
    side = config.size_px
    canvas = background(side, side, rng, config.background_light)
    appearance = sample_appearance(
        rng, yaw_sigma_deg=config.yaw_sigma_deg, roll_sigma_deg=config.roll_sigma_deg, p_exaggerated=config.p_exaggerated, extreme_light=False
    )
    scale = 1.0 + rng.uniform(-config.scale_jitter, config.scale_jitter)
    centre = side * (np.array([0.5, config.head_centre_y]) + rng.uniform(-config.centre_jitter, config.centre_jitter, size=2))
    placement = Placement(
        float(centre[0]), float(centre[1]), side * config.head_half_width * scale, float(np.radians(appearance.yaw_deg)), float(np.radians(appearance.roll_deg))
    )
    face = render_face(canvas, identity, appearance, placement)
    x0, y0, x1, y1 = (float(v) for v in face.box)
    x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    x1, y1 = min(side, int(np.ceil(x1))), min(side, int(np.ceil(y1)))
    return IdentityPhoto(identity, canvas, (x0, y0, x1 - x0, y1 - y0), appearance)


def _encode_png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise SafefakesError("PNG encoding failed")
    return data.tobytes()


def synthesize_identities(
    out_root: str | os.PathLike[str], n_identities: int, photos_per_identity: int, seed: int, config: SynthIdentitiesConfig | None = None
) -> dict[str, int]:
    """Write ``n_identities`` x ``photos_per_identity`` portraits and ``identities.csv`` into ``out_root`` atomically."""
    config = config or SynthIdentitiesConfig()
    if n_identities < 2 or photos_per_identity < 2:
        raise SafefakesError("need at least 2 identities with at least 2 photos each for re-identification")
    rows = []
    jobs = [(i, k) for i in range(n_identities) for k in range(photos_per_identity)]
    with atomic_directory(out_root) as tmp:
        for identity_id, photo in progress(jobs, desc="identity photos", unit="photo"):
            rendered = render_identity_photo(seed, identity_id, photo, config)
            relative = f"{identity_name(identity_id)}/{photo:03d}.png"
            (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
            (tmp / relative).write_bytes(_encode_png(rendered.image))
            rows.append({"path": relative, "identity": identity_name(identity_id), "box": " ".join(str(v) for v in rendered.box)})
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        (tmp / IDENTITY_CSV).write_text(text.getvalue(), encoding="utf-8")
    return {"identities": n_identities, "photos": len(rows)}


__all__ = [
    "IDENTITY_CSV",
    "IdentityPhoto",
    "SynthIdentitiesConfig",
    "distinct_identity",
    "identity_name",
    "render_identity_photo",
    "synthesize_identities",
]
