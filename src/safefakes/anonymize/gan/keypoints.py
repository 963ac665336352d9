"""The 7 sparse keypoints of DeepPrivacy (nose, eyes, ears, shoulders: the first 7 COCO keypoints).

Where a face's keypoints come from, per face:

1. the dataset's extras (``keypoints7``; the synthetic data carries ground truth) when the method's
   ``dataset_landmarks`` is on and the face has them;
2. else the detector named by ``keypoint_source``:

   * ``rcnn`` (``auto`` means the same: DeepPrivacy's own detector, Hukkelås et al. 2019 Sec. 3.1, "Mask R-CNN
     with a ResNet-50 FPN backbone") — torchvision's Keypoint R-CNN with its COCO weights, read from the local
     weight folders (never downloaded; ``safefakes fetch-weights --only keypointrcnn_coco`` fetches them, checksum
     verified), run on the whole image, people matched to the face boxes;
   * ``mtcnn`` — MTCNN from ``facenet-pytorch`` (weights ship in the package) on each face's context crop: eyes
     and nose, ears and shoulders absent;
   * ``none`` — no detector;

3. else none: the generator runs without pose (Safe Fakes, Sec. III-C).

A detector that cannot run here (Keypoint R-CNN without its weights, MTCNN without facenet-pytorch) is never
replaced silently: ``keypoint_fallback`` says what runs instead — ``error`` (refuse in one line naming
``safefakes fetch-weights``), ``mtcnn`` or ``none``. :func:`choose_keypoint_detector` decides once per run
(:class:`DetectorChoice`); the anonymization manifest records the choice and counts each face's source
(:func:`face_detail`, :func:`landmark_source_counts`).

Keypoint R-CNN's visibility: torchvision always sets ``keypoints[..., 2]`` to 1; its ``keypoints_scores`` are
the heatmap logits at the chosen pixels, and a keypoint counts as visible above :data:`KEYPOINT_VISIBLE_LOGIT`
(:func:`rcnn_people_keypoints`, a pure function of the model's output).

Every source returns, per face, a ``(7, 3)`` array of ``[x, y, visible]`` in image pixels, or None.
Coverage is reported by face size (:func:`size_bin`) in the anonymization manifest.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from safefakes.anonymize.gan.crops import context_square, extract_square
from safefakes.common.errors import SafefakesError
from safefakes.common.weights import WEIGHT_FILES, WEIGHTS_DIR_ENV, fetch_command, locate_weight, torch_hub_checkpoint_dir
from safefakes.data.wider import KEYPOINTS_7, FaceBox, FaceExtras

NUM_KEYPOINTS = len(KEYPOINTS_7)
KeypointSourceName = Literal["auto", "rcnn", "mtcnn", "none"]
KEYPOINT_SOURCES: tuple[str, ...] = ("auto", "rcnn", "mtcnn", "none")
#: ``keypoint_source: auto`` is DeepPrivacy's own detector (no fallback implied: see ``keypoint_fallback``).
AUTO_KEYPOINT_DETECTOR = "rcnn"
#: What runs when the chosen detector cannot run here: refuse (``error``), another detector, or none.
FALLBACK_ERROR = "error"
KEYPOINT_FALLBACKS: tuple[str, ...] = (FALLBACK_ERROR, "mtcnn", "none")
#: Landmark source names recorded per face: the dataset's extras, a detector's name, or none found.
SOURCE_DATASET = "dataset"
SOURCE_NONE = "none"
#: ``safefakes fetch-weights`` key and file name of torchvision's Keypoint R-CNN COCO weights in ``<torch hub>/checkpoints``.
KEYPOINT_RCNN_WEIGHT_KEY = "keypointrcnn_coco"
KEYPOINT_RCNN_WEIGHTS = WEIGHT_FILES[KEYPOINT_RCNN_WEIGHT_KEY].filename
#: Upper edges of the face-size bins (sqrt of box area, px) used to report keypoint coverage.
SIZE_BIN_EDGES: tuple[int, ...] = (10, 20, 50, 100)
#: Keypoint R-CNN people (person box score) and MTCNN faces (detection probability) below these are ignored.
MIN_PERSON_SCORE = 0.5
MIN_MTCNN_PROBABILITY = 0.6
#: Keypoints of the 17 COCO person keypoints that torchvision's Keypoint R-CNN predicts per person.
COCO_PERSON_KEYPOINTS = 17
#: A Keypoint R-CNN keypoint is visible when its score exceeds this. torchvision's ``keypoints_scores`` are the
#: heatmap logits at the chosen pixels (``roi_heads.heatmaps_to_keypoints``; the model's ``keypoints[..., 2]`` is
#: always 1). The threshold is ``kp_thresh=2`` of ``vis_keypoints`` in Detectron and maskrcnn-benchmark (whose
#: keypoint head torchvision's follows), which draws a keypoint only when its logit exceeds 2.
KEYPOINT_VISIBLE_LOGIT = 2.0
MTCNN_PACKAGE_MISSING = "keypoint source mtcnn needs the facenet-pytorch package (pip install --no-deps facenet-pytorch)"
#: Context around a face given to MTCNN (crop side / box side) and the smallest crop it handles well.
MTCNN_CONTEXT = 1.6
MTCNN_MIN_CROP_PX = 48
#: How far outside the face box a person's head keypoints may lie and still match it (fraction of box size).
HEAD_MATCH_MARGIN = 0.25

Keypoints = np.ndarray | None


def size_bin(size: float, edges: Sequence[int] = SIZE_BIN_EDGES) -> str:
    """The face-size bin label of ``size`` px: ``<10``, ``10-20``, ..., ``>=100``."""
    if size < edges[0]:
        return f"<{edges[0]}"
    for low, high in zip(edges, edges[1:]):
        if size < high:
            return f"{low}-{high}"
    return f">={edges[-1]}"


def keypoints_from_extras(extras: FaceExtras | None) -> Keypoints:
    """The dataset's 7 keypoints of one face as a ``(7, 3)`` array, or None when it has none."""
    if extras is None or extras.keypoints7 is None:
        return None
    points = np.asarray(extras.keypoints7, dtype=np.float64)
    if points.shape != (NUM_KEYPOINTS, 3):
        raise SafefakesError(f"keypoints7 must be {NUM_KEYPOINTS} rows of [x, y, visible], got shape {points.shape}")
    return points if points[:, 2].any() else None


class KeypointSource(Protocol):
    """Detects the 7 keypoints of each face of an image (BGR uint8)."""

    name: str

    def detect(self, image: np.ndarray, faces: Sequence[FaceBox]) -> list[Keypoints]:
        """One ``(7, 3)`` array (image pixels) or None per face."""
        ...


class NoKeypoints:
    """The source that finds nothing: the generator runs without pose."""

    name = "none"

    def detect(self, image: np.ndarray, faces: Sequence[FaceBox]) -> list[Keypoints]:
        """None for every face."""
        return [None] * len(faces)


def _head_points_inside(points: np.ndarray, face: FaceBox) -> int:
    """How many of a person's visible head points (nose, eyes, ears) lie in ``face`` grown by the margin."""
    margin_x, margin_y = HEAD_MATCH_MARGIN * face.w, HEAD_MATCH_MARGIN * face.h
    head = points[:5]
    inside = (
        (head[:, 2] > 0)
        & (head[:, 0] >= face.x - margin_x)
        & (head[:, 0] <= face.x + face.w + margin_x)
        & (head[:, 1] >= face.y - margin_y)
        & (head[:, 1] <= face.y + face.h + margin_y)
    )
    return int(inside.sum())


def match_people_to_faces(people: Sequence[np.ndarray], faces: Sequence[FaceBox]) -> list[Keypoints]:
    """Give each face the person whose head points fall most inside it (greedy, each person used once)."""
    pairs = sorted(
        ((_head_points_inside(person, face), -j, i, j) for i, face in enumerate(faces) for j, person in enumerate(people)),
        reverse=True,
    )
    matched: list[Keypoints] = [None] * len(faces)
    used: set[int] = set()
    for count, _, face_index, person_index in pairs:
        if count == 0:
            break
        if matched[face_index] is None and person_index not in used:
            matched[face_index] = people[person_index]
            used.add(person_index)
    return matched


def keypoint_rcnn_weights_path() -> Path:
    """Where torchvision keeps the Keypoint R-CNN COCO weights (``<torch hub dir>/checkpoints``)."""
    return torch_hub_checkpoint_dir() / KEYPOINT_RCNN_WEIGHTS


def keypoint_rcnn_missing_reason() -> str | None:
    """Why Keypoint R-CNN cannot run here (its COCO weights are in no weight folder: one line naming the file and
    ``safefakes fetch-weights``), or None when the weights are there."""
    if locate_weight(KEYPOINT_RCNN_WEIGHT_KEY) is not None:
        return None
    path = keypoint_rcnn_weights_path()
    return (
        f"Keypoint R-CNN weights not found at {path} (never downloaded here): run '{fetch_command(KEYPOINT_RCNN_WEIGHT_KEY, path.parent)}' "
        f"on a machine with internet and copy the file there (or into ${WEIGHTS_DIR_ENV})"
    )


def _to_numpy(value: Any) -> np.ndarray:
    """A torch tensor (any device) or array-like as a float64 numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def rcnn_people_keypoints(
    keypoints: Any,
    keypoint_scores: Any,
    person_scores: Any,
    min_person_score: float = MIN_PERSON_SCORE,
    visible_logit: float = KEYPOINT_VISIBLE_LOGIT,
) -> list[np.ndarray]:
    """DeepPrivacy's 7 keypoints ``(7, 3)`` ``[x, y, visible]`` of each person Keypoint R-CNN scored at least
    ``min_person_score``, in the model's order; a keypoint is visible when its score exceeds ``visible_logit``.

    Inputs as torchvision returns them per image: ``keypoints (P, 17, 3)``, ``keypoints_scores (P, 17)``,
    ``scores (P,)`` (tensors or arrays).
    """
    points, point_scores, scores = _to_numpy(keypoints), _to_numpy(keypoint_scores), _to_numpy(person_scores)
    people = scores.shape[0] if scores.ndim == 1 else -1
    if points.shape != (people, COCO_PERSON_KEYPOINTS, 3) or point_scores.shape != (people, COCO_PERSON_KEYPOINTS):
        raise SafefakesError(
            f"Keypoint R-CNN output: expected keypoints (P, {COCO_PERSON_KEYPOINTS}, 3), keypoints_scores (P, {COCO_PERSON_KEYPOINTS}) "
            f"and scores (P,), got {points.shape}, {point_scores.shape} and {scores.shape}"
        )
    visible = (point_scores[:, :NUM_KEYPOINTS] > visible_logit).astype(np.float64)
    return [
        np.concatenate([person[:NUM_KEYPOINTS, :2], seen[:, None]], axis=1) for person, seen, score in zip(points, visible, scores) if score >= min_person_score
    ]


def keypoints7_from_rcnn_output(output: Mapping[str, Any]) -> list[np.ndarray]:
    """:func:`rcnn_people_keypoints` of one image's torchvision output dict (``keypoints``, ``keypoints_scores``, ``scores``)."""
    missing = [key for key in ("keypoints", "keypoints_scores", "scores") if key not in output]
    if missing:
        raise SafefakesError(f"Keypoint R-CNN output lacks {', '.join(missing)} (got {', '.join(sorted(output))})")
    return rcnn_people_keypoints(output["keypoints"], output["keypoints_scores"], output["scores"])


class KeypointRCNNSource:
    """torchvision Keypoint R-CNN (COCO) from the local weight folders; people matched to face boxes."""

    name = "rcnn"

    def __init__(self, device: str = "cpu") -> None:
        import torch
        from torchvision.models.detection import keypointrcnn_resnet50_fpn

        missing = keypoint_rcnn_missing_reason()
        if missing is not None:
            raise SafefakesError(missing)
        path = locate_weight(KEYPOINT_RCNN_WEIGHT_KEY)
        model = keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.model = model.eval().to(device)
        self.device = device

    def detect(self, image: np.ndarray, faces: Sequence[FaceBox]) -> list[Keypoints]:
        """Run on the whole image, keep confident people, match them to the faces."""
        import torch

        if not faces:
            return []
        tensor = torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1])).permute(2, 0, 1).float().div(255).to(self.device)
        with torch.inference_mode():
            output = self.model([tensor])[0]
        return match_people_to_faces(keypoints7_from_rcnn_output(output), faces)


class MTCNNSource:
    """MTCNN (facenet-pytorch) on each face's context crop: nose and eyes; ears and shoulders absent."""

    name = "mtcnn"

    def __init__(self, device: str = "cpu") -> None:
        try:
            from facenet_pytorch import MTCNN
        except ImportError:
            raise SafefakesError(MTCNN_PACKAGE_MISSING) from None
        self.detector = MTCNN(keep_all=True, device=device)

    def detect(self, image: np.ndarray, faces: Sequence[FaceBox]) -> list[Keypoints]:
        """Per face: MTCNN on its context crop (enlarged to at least ``MTCNN_MIN_CROP_PX``), the detection nearest the box centre."""
        import cv2

        found: list[Keypoints] = []
        for face in faces:
            square = context_square(face, MTCNN_CONTEXT)
            crop = extract_square(image, square)
            scale = max(1.0, MTCNN_MIN_CROP_PX / square.side)
            if scale > 1.0:
                crop = cv2.resize(crop, (int(round(square.side * scale)),) * 2, interpolation=cv2.INTER_LINEAR)
            boxes, probs, landmarks = self.detector.detect(np.ascontiguousarray(crop[:, :, ::-1]), landmarks=True)
            found.append(self._nearest(boxes, probs, landmarks, square, scale))
        return found

    @staticmethod
    def _nearest(boxes: np.ndarray | None, probs: np.ndarray | None, landmarks: np.ndarray | None, square, scale: float) -> Keypoints:
        """The confident detection whose centre is nearest the crop centre, as 7 keypoints in image pixels."""
        if boxes is None or landmarks is None:
            return None
        centre = square.side * scale / 2.0
        best, best_distance = None, np.inf
        for box, prob, points in zip(boxes, probs, landmarks):
            distance = float(np.hypot((box[0] + box[2]) / 2 - centre, (box[1] + box[3]) / 2 - centre))
            if prob is not None and prob >= MIN_MTCNN_PROBABILITY and distance < best_distance:
                best, best_distance = points, distance
        if best is None:
            return None
        image_points = np.asarray(best, dtype=np.float64) / scale + np.array([square.x0, square.y0])
        keypoints = np.zeros((NUM_KEYPOINTS, 3))
        # MTCNN: eye on the image's left (the person's right eye), eye on the image's right, nose, mouth corners.
        for target, source in ((KEYPOINTS_7.index("nose"), 2), (KEYPOINTS_7.index("left_eye"), 1), (KEYPOINTS_7.index("right_eye"), 0)):
            keypoints[target] = (*image_points[source], 1.0)
        return keypoints


@dataclass(frozen=True)
class DetectorChoice:
    """The landmark detector one run uses for faces without dataset landmarks, decided once before any image.

    ``requested``: ``keypoint_source`` as configured; ``primary``: the detector it names (``auto`` resolved);
    ``fallback``: ``keypoint_fallback``; ``detector``: the one that runs; ``reason``: why ``primary`` could not
    run, when the fallback took its place.
    """

    requested: str
    primary: str
    fallback: str
    detector: str
    reason: str = ""

    @property
    def used_fallback(self) -> bool:
        """Whether the fallback runs instead of the detector asked for."""
        return self.detector != self.primary

    def summary(self) -> str:
        """One line for the run's log."""
        asked = f"keypoint_source {self.requested}" + (f" = {self.primary}" if self.requested != self.primary else "")
        if self.used_fallback:
            return f"landmark detector {self.detector} (keypoint_fallback {self.fallback}) instead of {asked}: {self.reason}"
        return f"landmark detector {self.detector} ({asked}, keypoint_fallback {self.fallback})"

    def to_dict(self) -> dict[str, Any]:
        """The record written to the anonymization manifest."""
        return {**dataclasses.asdict(self), "used_fallback": self.used_fallback}


def choose_detector(requested: str, primary: str, fallback: str, fallbacks: Sequence[str], cannot_run: Callable[[str], str | None]) -> DetectorChoice:
    """``primary`` when it can run here (``cannot_run(name)`` is None), else the ``fallback`` detector (one of
    ``fallbacks``), or a one-line :class:`SafefakesError` when the fallback is ``error`` or cannot run either."""
    if fallback not in fallbacks:
        raise SafefakesError(f"keypoint_fallback must be one of {', '.join(fallbacks)}, got {fallback!r}")
    reason = cannot_run(primary)
    if reason is None:
        return DetectorChoice(requested, primary, fallback, primary)
    if fallback == FALLBACK_ERROR:
        others = " or ".join(f for f in fallbacks if f != FALLBACK_ERROR)
        raise SafefakesError(f"keypoint_source {requested}: {reason}; or allow a stand-in with keypoint_fallback {others}")
    fallback_reason = cannot_run(fallback)
    if fallback_reason is not None:
        raise SafefakesError(f"keypoint_source {requested}: {reason}; keypoint_fallback {fallback} cannot run either: {fallback_reason}")
    return DetectorChoice(requested, primary, fallback, fallback, reason)


def keypoint_detector_cannot_run(name: str) -> str | None:
    """Why the 7-keypoint detector ``name`` cannot run here, or None when it can (checks files and packages, loads nothing)."""
    if name == "rcnn":
        return keypoint_rcnn_missing_reason()
    if name == "mtcnn":
        return None if importlib.util.find_spec("facenet_pytorch") is not None else MTCNN_PACKAGE_MISSING
    return None


def choose_keypoint_detector(source: str = "auto", fallback: str = FALLBACK_ERROR) -> DetectorChoice:
    """The 7-keypoint detector of a run: ``source`` (``auto`` = Keypoint R-CNN) when it can run here, else what
    ``fallback`` says (``error``: refuse; ``mtcnn``; ``none``). Never silent: the choice is returned for the log and manifest."""
    if source not in KEYPOINT_SOURCES:
        raise SafefakesError(f"unknown keypoint source {source!r}; expected one of {', '.join(KEYPOINT_SOURCES)}")
    primary = AUTO_KEYPOINT_DETECTOR if source == "auto" else source
    return choose_detector(source, primary, fallback, KEYPOINT_FALLBACKS, keypoint_detector_cannot_run)


def build_keypoint_detector(name: str, device: str = "cpu") -> KeypointSource:
    """The 7-keypoint detector ``name`` itself (``rcnn``, ``mtcnn`` or ``none``): an error when it cannot load."""
    if name == "rcnn":
        return KeypointRCNNSource(device)
    if name == "mtcnn":
        return MTCNNSource(device)
    if name == "none":
        return NoKeypoints()
    raise SafefakesError(f"unknown keypoint detector {name!r}; expected rcnn, mtcnn or none")


def build_keypoint_source(name: str = "auto", device: str = "cpu", fallback: str = FALLBACK_ERROR) -> KeypointSource:
    """The keypoint source ``name`` (``auto`` = Keypoint R-CNN); when it cannot run here, ``fallback``'s (see
    :func:`choose_keypoint_detector`)."""
    return build_keypoint_detector(choose_keypoint_detector(name, fallback).detector, device)


# --------------------------------------------------------------------------------------------------
# Per-face records: the anonymizer's outcome detail and the manifest's counts by source
# --------------------------------------------------------------------------------------------------

#: The detail's marker of a face blacked out for want of landmarks (CIAGAN), and that source's name in the counts.
BLACKOUT_FALLBACK = "blackout"


@dataclass(frozen=True)
class FaceLandmarkDetail:
    """Where one anonymized face's landmarks came from (``dataset``, a detector's name, ``none``), its size bin,
    and whether it was blacked out instead of generated."""

    source: str
    size_bin: str
    blacked_out: bool = False

    def text(self) -> str:
        """The outcome detail counted in the manifest: ``kp=<source>,size=<bin>[,fallback=blackout]``."""
        return f"kp={self.source},size={self.size_bin}" + (f",fallback={BLACKOUT_FALLBACK}" if self.blacked_out else "")

    @property
    def counted_source(self) -> str:
        """The source it is counted under in :func:`landmark_source_counts` (``blackout`` when blacked out)."""
        return BLACKOUT_FALLBACK if self.blacked_out else self.source


def parse_face_detail(detail: str) -> FaceLandmarkDetail:
    """The inverse of :meth:`FaceLandmarkDetail.text`; a clear error for anything else."""
    fields = dict(part.partition("=")[::2] for part in detail.split(","))
    if "kp" not in fields or "size" not in fields:
        raise SafefakesError(f"face detail {detail!r}: expected kp=<source>,size=<bin>[,fallback={BLACKOUT_FALLBACK}]")
    return FaceLandmarkDetail(fields["kp"], fields["size"], fields.get("fallback") == BLACKOUT_FALLBACK)


def landmark_source_counts(face_details: Mapping[str, int]) -> dict[str, int]:
    """Anonymized faces per landmark source (``dataset``, ``rcnn``, ``mtcnn``, ``dlib``, ``none``, ``blackout``) from the
    manifest's ``face_details`` counts; details of other forms are not landmark records and are left out."""
    counts: Counter[str] = Counter()
    for detail, count in face_details.items():
        if detail.startswith("kp="):
            counts[parse_face_detail(detail).counted_source] += int(count)
    return dict(sorted(counts.items()))
