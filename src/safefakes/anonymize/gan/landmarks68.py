"""dlib's 68 facial landmarks (iBUG-300W order) for CIAGAN and Sun2018, found inside each face box.

As in Safe Fakes, the landmarks come from dlib's frontal face detector and
``shape_predictor_68_face_landmarks.dat`` (shipped by ``face_recognition_models``): the detector runs
on each face's context crop (upsampled once, dlib's usual setting, which finds faces down to about
40-50 px), the detection that overlaps the annotated box most is kept, and the shape predictor places
the 68 points in it. A face the detector misses gets no landmarks: CIAGAN then blacks it out,
Sun2018 generates without them (Safe Fakes Sec. III-C). That is why both are limited to larger faces.

``keypoint_source`` ``auto`` and ``dlib`` both name dlib. When dlib cannot run here (the package or its model
file missing), ``keypoint_fallback`` decides: ``error`` (refuse) or ``none`` (no landmarks), never silently
(:func:`choose_landmark68_detector`, the same rule as :mod:`.keypoints`).

Sources return, per face, a ``(68, 3)`` array of ``[x, y, visible]`` in image pixels, or None.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import numpy as np

from safefakes.anonymize.gan.crops import context_square, extract_square
from safefakes.anonymize.gan.keypoints import FALLBACK_ERROR, DetectorChoice, choose_detector
from safefakes.common.errors import SafefakesError
from safefakes.data.wider import FaceBox

LANDMARK68_SOURCES: tuple[str, ...] = ("auto", "dlib", "none")
#: What runs when dlib cannot: refuse, or no landmarks (CIAGAN then blacks faces out, Sun2018 generates without).
LANDMARK68_FALLBACKS: tuple[str, ...] = (FALLBACK_ERROR, "none")
DLIB_PACKAGE_MISSING = "68-point landmarks need dlib (pip install dlib-bin)"
SHAPE_PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
#: Context around a face given to the detector (crop side / box side).
DLIB_CONTEXT = 1.6
#: Times dlib's HOG detector upsamples its input (1 is dlib's and face_recognition's default).
DLIB_UPSAMPLE = 1
#: A detection must overlap the annotated box at least this much (intersection over union).
MIN_DETECTION_IOU = 0.3


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two ``x0 y0 x1 y1`` boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class NoLandmarks:
    """The source that finds nothing."""

    name = "none"

    def detect(self, image: np.ndarray, faces: Sequence[FaceBox]) -> list[np.ndarray | None]:
        """None for every face."""
        return [None] * len(faces)


class DlibLandmarks68:
    """dlib frontal detector plus the 68-point shape predictor, run inside each face's context crop."""

    name = "dlib"

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError:
            raise SafefakesError(DLIB_PACKAGE_MISSING) from None
        from safefakes.common.weights import dlib_model_file

        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(dlib_model_file(SHAPE_PREDICTOR_68)))

    def detect(self, image: np.ndarray, faces: Sequence[FaceBox]) -> list[np.ndarray | None]:
        """Per face: detect on its context crop, keep the detection best overlapping the box, predict 68 points."""
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        found: list[np.ndarray | None] = []
        for face in faces:
            square = context_square(face, DLIB_CONTEXT)
            crop = np.ascontiguousarray(extract_square(rgb, square))
            box = (face.x - square.x0, face.y - square.y0, face.x + face.w - square.x0, face.y + face.h - square.y0)
            best, best_iou = None, MIN_DETECTION_IOU
            for rect in self.detector(crop, DLIB_UPSAMPLE):
                overlap = _iou(box, (rect.left(), rect.top(), rect.right(), rect.bottom()))
                if overlap >= best_iou:
                    best, best_iou = rect, overlap
            if best is None:
                found.append(None)
                continue
            shape = self.predictor(crop, best)
            points = np.array([[p.x + square.x0, p.y + square.y0, 1.0] for p in shape.parts()], dtype=np.float64)
            found.append(points)
        return found


def dlib_cannot_run(name: str) -> str | None:
    """Why the 68-landmark detector ``name`` cannot run here (dlib or its shape predictor missing), or None."""
    if name != "dlib":
        return None
    if importlib.util.find_spec("dlib") is None:
        return DLIB_PACKAGE_MISSING
    from safefakes.common.weights import dlib_model_file

    try:
        dlib_model_file(SHAPE_PREDICTOR_68)
    except SafefakesError as error:
        return str(error)
    return None


def choose_landmark68_detector(source: str = "auto", fallback: str = FALLBACK_ERROR) -> DetectorChoice:
    """The 68-landmark detector of a run: dlib (``auto``, ``dlib``) when it can run here, else ``fallback``'s
    (``error``: refuse; ``none``), or ``none`` when asked."""
    if source not in LANDMARK68_SOURCES:
        raise SafefakesError(f"unknown 68-landmark source {source!r}; expected one of {', '.join(LANDMARK68_SOURCES)}")
    return choose_detector(source, "none" if source == "none" else "dlib", fallback, LANDMARK68_FALLBACKS, dlib_cannot_run)


def build_landmark68_source(name: str = "auto", fallback: str = FALLBACK_ERROR) -> DlibLandmarks68 | NoLandmarks:
    """The 68-landmark source ``name``: ``auto`` and ``dlib`` use dlib, ``none`` finds nothing; ``fallback`` when dlib cannot run."""
    return NoLandmarks() if choose_landmark68_detector(name, fallback).detector == "none" else DlibLandmarks68()
