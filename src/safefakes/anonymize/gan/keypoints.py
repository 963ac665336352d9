"""The 7 sparse keypoints of DeepPrivacy (nose, eyes, ears, shoulders: the first 7 COCO keypoints).

Sources, in the order ``auto`` tries them:

1. the dataset's extras (``keypoints7``; the synthetic data carries ground truth) — always preferred
   per face by the anonymizer when present;
2. torchvision's Keypoint R-CNN, when its COCO weights are already in the torch hub cache (never
   downloaded; ``safefakes fetch-weights --only keypointrcnn_coco`` fetches them, checksum verified):
   person keypoints matched to the face boxes;
3. MTCNN from ``facenet-pytorch`` (weights ship in the package), run on each face's context crop:
   it gives eyes and nose, the ears and shoulders are marked absent;
4. none: the generator runs without pose (Safe Fakes, Sec. III-C).

Every source returns, per face, a ``(7, 3)`` array of ``[x, y, visible]`` in image pixels, or None.
Coverage is reported by face size (:func:`size_bin`) in the anonymization manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from safefakes.anonymize.gan.crops import context_square, extract_square
from safefakes.common.errors import SafefakesError
from safefakes.common.weights import WEIGHT_FILES, fetch_command, torch_hub_checkpoint_dir
from safefakes.data.wider import KEYPOINTS_7, FaceBox, FaceExtras

LOGGER = logging.getLogger(__name__)

NUM_KEYPOINTS = len(KEYPOINTS_7)
KeypointSourceName = Literal["auto", "rcnn", "mtcnn", "none"]
KEYPOINT_SOURCES: tuple[str, ...] = ("auto", "rcnn", "mtcnn", "none")
#: ``safefakes fetch-weights`` key and file name of torchvision's Keypoint R-CNN COCO weights in ``<torch hub>/checkpoints``.
KEYPOINT_RCNN_WEIGHT_KEY = "keypointrcnn_coco"
KEYPOINT_RCNN_WEIGHTS = WEIGHT_FILES[KEYPOINT_RCNN_WEIGHT_KEY].filename
#: Upper edges of the face-size bins (sqrt of box area, px) used to report keypoint coverage.
SIZE_BIN_EDGES: tuple[int, ...] = (10, 20, 50, 100)
#: A detected point counts as visible above this score (Keypoint R-CNN) / detection probability (MTCNN).
MIN_PERSON_SCORE = 0.5
MIN_MTCNN_PROBABILITY = 0.6
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


class KeypointRCNNSource:
    """torchvision Keypoint R-CNN (COCO) from the local hub cache; people matched to face boxes."""

    name = "rcnn"

    def __init__(self, device: str = "cpu") -> None:
        import torch
        from torchvision.models.detection import keypointrcnn_resnet50_fpn

        path = keypoint_rcnn_weights_path()
        if not path.is_file():
            raise SafefakesError(
                f"Keypoint R-CNN weights not found at {path} (never downloaded here): run '{fetch_command(KEYPOINT_RCNN_WEIGHT_KEY, path.parent)}' "
                "on a machine with internet and copy the file there"
            )
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
        people = [
            np.concatenate([kp[:NUM_KEYPOINTS, :2], (kp[:NUM_KEYPOINTS, 2:3] > 0).astype(np.float64)], axis=1)
            for kp, score in zip(output["keypoints"].cpu().numpy().astype(np.float64), output["scores"].cpu().numpy())
            if score >= MIN_PERSON_SCORE
        ]
        return match_people_to_faces(people, faces)


class MTCNNSource:
    """MTCNN (facenet-pytorch) on each face's context crop: nose and eyes; ears and shoulders absent."""

    name = "mtcnn"

    def __init__(self, device: str = "cpu") -> None:
        try:
            from facenet_pytorch import MTCNN
        except ImportError:
            raise SafefakesError("keypoint source mtcnn needs the facenet-pytorch package (pip install --no-deps facenet-pytorch)") from None
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


def build_keypoint_source(name: str = "auto", device: str = "cpu") -> KeypointSource:
    """The keypoint source ``name``; ``auto`` takes the first of rcnn (weights cached), mtcnn (installed), none."""
    if name not in KEYPOINT_SOURCES:
        raise SafefakesError(f"unknown keypoint source {name!r}; expected one of {', '.join(KEYPOINT_SOURCES)}")
    if name == "rcnn":
        return KeypointRCNNSource(device)
    if name == "mtcnn":
        return MTCNNSource(device)
    if name == "none":
        return NoKeypoints()
    if keypoint_rcnn_weights_path().is_file():
        return KeypointRCNNSource(device)
    try:
        return MTCNNSource(device)
    except SafefakesError:
        LOGGER.warning(
            "no keypoint detector available (no Keypoint R-CNN weights in the hub cache, no facenet-pytorch): faces without dataset keypoints get no pose"
        )
        return NoKeypoints()
