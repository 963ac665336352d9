"""Face-crop training sets of the GAN anonymizers, in one in-memory form (:class:`CropSet`).

Every GAN trains on square face crops with context: the image, the face box in crop pixels, the 7
sparse keypoints (DeepPrivacy), the 68 dlib landmarks (CIAGAN, Sun2018) and an identity label
(CIAGAN); what a source does not provide is marked absent (visibility 0, identity -1).

Readers (:func:`load_crop_set` picks one from the folder's content):

* **synthetic** — a synthetic WIDER FACE root (``safefakes synth``): every face of the split at least
  ``min_face_size`` px is cut out with context (:mod:`.crops`), with its ground-truth keypoints,
  landmarks and identity.
* **FDF** (Hukkelås et al.'s released format, as read by DeepPrivacy's own loader): ``DIR/images/<R>/<i>.png``
  (R x R face crops numbered from 0), ``DIR/bounding_box/<R>.torch`` or ``.npy`` (``N x 4`` boxes
  ``x0 y0 x1 y1`` in pixels of the R x R crop) and ``DIR/landmarks.npy`` (``N x 7 x 2``, or flat, the 7
  keypoints in COCO order in [0, 1] crop units). FDF has no visibility flags; a keypoint is taken as
  present when it lies inside the crop. Crops at another resolution than the model's are resized.
* **PIPA** and **identity folders** (CelebA style) — :mod:`.crop_readers`.

Training-set size sweeps (Fig. 7) take a seeded subset with :meth:`CropSet.subset`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

from safefakes.anonymize.gan.crops import box_in_crop, context_square, extract_square, keypoints_in_crop, resize_square
from safefakes.anonymize.gan.keypoints import NUM_KEYPOINTS, SOURCE_DATASET, SOURCE_NONE, keypoints_from_extras
from safefakes.common.errors import SafefakesError
from safefakes.common.progress import progress
from safefakes.data.wider import KEYPOINTS_7, WiderLayout, load_split

if TYPE_CHECKING:  # crop_readers imports this module: import it here only for the type
    from safefakes.anonymize.gan.crop_readers import IdentitySelection

NUM_LANDMARKS = 68
#: The keypoint source recorded for crops built without one (hand-made crop sets).
SOURCE_UNRECORDED = "unrecorded"
#: Where PIPA and identity-set crops get DeepPrivacy's 7 keypoints (``keypoints7``; :mod:`.crop_readers`): Keypoint
#: R-CNN (refused without its weights), derived from dlib's 68 landmarks, or the first when its weights are present.
#: Synthetic and FDF sets carry their own (source ``dataset``).
CROP_KEYPOINTS_RCNN = "rcnn"
CROP_KEYPOINTS_DLIB = "dlib"
CROP_KEYPOINTS_RCNN_OR_DLIB = "rcnn_or_dlib"
CROP_KEYPOINT_CHOICES: tuple[str, ...] = (CROP_KEYPOINTS_RCNN, CROP_KEYPOINTS_DLIB, CROP_KEYPOINTS_RCNN_OR_DLIB)
#: A DeepPrivacy training run's default (``train-gan --keypoints7``): its own source (Hukkelås et al. 2019 Sec. 3.1,
#: Mask R-CNN keypoints), refused without the weights rather than replaced.
DEFAULT_CROP_KEYPOINTS = CROP_KEYPOINTS_RCNN
#: A crop's recorded keypoint source when derived from dlib's 68 landmarks (Keypoint R-CNN's is ``rcnn``).
SOURCE_DLIB_DERIVED = "dlib-derived"
#: What a GAN needs of every training face; faces without it are left out of its crop set.
Requirement = Literal["keypoints7", "landmarks68", "identity"]
REQUIREMENTS: tuple[str, ...] = ("keypoints7", "landmarks68", "identity")
#: Horizontal flip swaps these pairs of the 7 keypoints (left/right eye, ear, shoulder).
KEYPOINTS7_FLIP = tuple((KEYPOINTS_7.index(f"left_{part}"), KEYPOINTS_7.index(f"right_{part}")) for part in ("eye", "ear", "shoulder"))
#: Horizontal flip of dlib's 68 iBUG-300W landmarks: ``LANDMARKS68_FLIP[i]`` is the mirror of point i
#: (jaw, brows, nose base, eyes and mouth mirror; the nose bridge and mouth centre line map to themselves).
LANDMARKS68_FLIP: tuple[int, ...] = tuple(
    list(range(16, -1, -1))  # jaw 0-16
    + list(range(26, 21, -1))  # right brow 17-21 <-> left brow 22-26
    + list(range(21, 16, -1))
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nose base
    + [45, 44, 43, 42, 47, 46]  # right eye 36-41 <-> left eye 42-47
    + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48]  # outer lips 48-54 ...
    + [59, 58, 57, 56, 55]  # ... 55-59
    + [64, 63, 62, 61, 60]  # inner lips 60-64 ...
    + [67, 66, 65]  # ... 65-67
)


@dataclass
class CropSet:
    """Face crops for training.

    ``images (N, R, R, 3)`` uint8 RGB; ``boxes (N, 4)`` x0 y0 x1 y1 in crop pixels; ``keypoints (N, 7, 3)``
    and ``landmarks (N, 68, 3)`` as ``[u, v, visible]`` in [0, 1] crop units (visible 0 = absent);
    ``identities (N,)`` int64, -1 where unknown; ``keypoint_sources (N,)`` where each crop's 7 keypoints came from
    (``dataset``, ``rcnn``, ``dlib-derived``, ``none``; ``unrecorded`` when not given).
    """

    images: np.ndarray
    boxes: np.ndarray
    keypoints: np.ndarray
    landmarks: np.ndarray
    identities: np.ndarray
    source: str
    keypoint_sources: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.keypoint_sources is None:
            self.keypoint_sources = np.full(n, SOURCE_UNRECORDED)
        self.keypoint_sources = np.asarray(self.keypoint_sources, dtype=str)
        shapes = {"boxes": (n, 4), "keypoints": (n, NUM_KEYPOINTS, 3), "landmarks": (n, NUM_LANDMARKS, 3), "identities": (n,), "keypoint_sources": (n,)}
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise SafefakesError(f"crop set {self.source}: {name} has shape {getattr(self, name).shape}, expected {shape}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def resolution(self) -> int:
        """Side of the crops in pixels."""
        return int(self.images.shape[1])

    def keypoint_source_counts(self) -> dict[str, int]:
        """Crops per keypoint source (see the class docstring), for the training log and checkpoints."""
        names, counts = np.unique(self.keypoint_sources, return_counts=True)
        return {str(name): int(count) for name, count in zip(names, counts)}

    def digest(self) -> str:
        """SHA-256 of the content (identifies the training data in a run's fingerprint; the keypoints themselves are
        hashed, their source labels are not)."""
        hasher = hashlib.sha256()
        for array in (self.images, self.boxes, self.keypoints, self.landmarks, self.identities):
            hasher.update(str(array.shape).encode())
            hasher.update(np.ascontiguousarray(array).tobytes())
        return hasher.hexdigest()

    def take(self, indices: np.ndarray, source: str | None = None) -> CropSet:
        """The crops at ``indices`` (a copy)."""
        return CropSet(
            self.images[indices],
            self.boxes[indices],
            self.keypoints[indices],
            self.landmarks[indices],
            self.identities[indices],
            source or self.source,
            self.keypoint_sources[indices],
        )

    def subset(self, max_faces: int | None, seed: int = 0) -> CropSet:
        """At most ``max_faces`` crops, a seeded random choice kept in their original order (all when None)."""
        if max_faces is None or max_faces >= len(self):
            return self
        if max_faces < 1:
            raise SafefakesError(f"max_faces must be >= 1, got {max_faces}")
        chosen = np.sort(np.random.default_rng(seed).permutation(len(self))[:max_faces])
        return self.take(chosen, f"{self.source}[{max_faces} of {len(self)}]")

    def require(self, requirement: str) -> CropSet:
        """Only the crops that have ``requirement`` (all 7 keypoints absent, no landmark, or no identity drop a crop)."""
        if requirement not in REQUIREMENTS:
            raise SafefakesError(f"unknown crop requirement {requirement!r}; expected one of {', '.join(REQUIREMENTS)}")
        if requirement == "keypoints7":
            keep = self.keypoints[:, :, 2].any(axis=1)
        elif requirement == "landmarks68":
            keep = self.landmarks[:, :, 2].any(axis=1)
        else:
            keep = self.identities >= 0
        if keep.all():
            return self
        if not keep.any():
            raise SafefakesError(f"crop set {self.source}: no crop has {requirement}")
        return self.take(np.flatnonzero(keep))

    def identity_classes(self) -> tuple[np.ndarray, int]:
        """Identity labels renumbered 0..C-1 in sorted order of the original labels (unknown stays -1), and C."""
        known = np.unique(self.identities[self.identities >= 0])
        classes = np.full(len(self), -1, dtype=np.int64)
        mask = self.identities >= 0
        classes[mask] = np.searchsorted(known, self.identities[mask])
        return classes, int(len(known))


@dataclass
class CropSelection:
    """A batch of crops picked from a :class:`CropSet`, horizontally flipped where asked (numpy, full resolution)."""

    images: np.ndarray
    boxes: np.ndarray
    keypoints: np.ndarray
    landmarks: np.ndarray
    identities: np.ndarray


def _flip_points(points: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Mirror ``[u, v, visible]`` points horizontally and reorder them so left stays left."""
    flipped = points.copy()
    flipped[:, 0] = np.where(points[:, 2] > 0, np.clip(1.0 - points[:, 0], 0, np.nextafter(1, 0)), points[:, 0])
    return flipped[mirror]


_KEYPOINTS7_MIRROR = np.arange(NUM_KEYPOINTS)
for _left, _right in KEYPOINTS7_FLIP:
    _KEYPOINTS7_MIRROR[[_left, _right]] = [_right, _left]
_LANDMARKS68_MIRROR = np.asarray(LANDMARKS68_FLIP)


def select_crops(crops: CropSet, indices: np.ndarray, flips: np.ndarray) -> CropSelection:
    """The crops at ``indices``, the ones with ``flips`` true mirrored (images, boxes, keypoints, landmarks)."""
    images = crops.images[indices].copy()
    boxes = crops.boxes[indices].copy()
    keypoints = crops.keypoints[indices].copy()
    landmarks = crops.landmarks[indices].copy()
    full = crops.resolution
    for i in np.flatnonzero(flips):
        images[i] = images[i, :, ::-1]
        boxes[i, [0, 2]] = full - boxes[i, [2, 0]]
        keypoints[i] = _flip_points(keypoints[i], _KEYPOINTS7_MIRROR)
        landmarks[i] = _flip_points(landmarks[i], _LANDMARKS68_MIRROR)
    return CropSelection(images, boxes, keypoints, landmarks, crops.identities[indices].copy())


def absent_points(count: int, points: int) -> np.ndarray:
    """``(count, points, 3)`` zeros: every point absent."""
    return np.zeros((count, points, 3), dtype=np.float32)


def landmarks_with_visibility(landmarks: Sequence[Sequence[float]] | np.ndarray | None) -> np.ndarray | None:
    """68 ``[x, y]`` (or ``[x, y, visible]``) image points as ``(68, 3)`` with visibility, or None."""
    if landmarks is None:
        return None
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape == (NUM_LANDMARKS, 2):
        points = np.concatenate([points, np.ones((NUM_LANDMARKS, 1))], axis=1)
    if points.shape != (NUM_LANDMARKS, 3):
        raise SafefakesError(f"landmarks68 must be 68 rows of [x, y] or [x, y, visible], got shape {points.shape}")
    return points


def synthetic_crop_set(wider_root: Path, resolution: int, context_factor: float, min_face_size: float, split: str = "train") -> CropSet:
    """Crops of every face of a (synthetic) WIDER split at least ``min_face_size`` px, with whatever extras it carries."""
    annotations, extras = load_split(wider_root, split)
    layout = WiderLayout(Path(wider_root))
    images, boxes, keypoints, landmarks, identities, keypoint_sources = [], [], [], [], [], []
    for annotation in progress(annotations, desc="face crops", unit="img"):
        faces_extras = (extras or {}).get(annotation.name) or [None] * len(annotation.faces)
        chosen = [(face, extra) for face, extra in zip(annotation.faces, faces_extras) if face.size >= min_face_size]
        if not chosen:
            continue
        image = cv2.imread(str(layout.image_path(split, annotation.name)), cv2.IMREAD_COLOR)
        if image is None:
            raise SafefakesError(f"cannot read {layout.image_path(split, annotation.name)}")
        for face, extra in chosen:
            square = context_square(face, context_factor)
            images.append(resize_square(extract_square(image, square), resolution)[:, :, ::-1])
            boxes.append(box_in_crop(face, square, resolution))
            points7 = keypoints_in_crop(keypoints_from_extras(extra), square)
            points68 = keypoints_in_crop(landmarks_with_visibility(extra.landmarks68 if extra else None), square)
            keypoints.append(points7 if points7 is not None else np.zeros((NUM_KEYPOINTS, 3)))
            keypoint_sources.append(SOURCE_DATASET if points7 is not None and points7[:, 2].any() else SOURCE_NONE)
            landmarks.append(points68 if points68 is not None else np.zeros((NUM_LANDMARKS, 3)))
            identities.append(extra.identity if extra is not None and extra.identity is not None else -1)
    if not images:
        raise SafefakesError(f"{wider_root}: no {split} face of at least {min_face_size} px to train on")
    return CropSet(
        np.ascontiguousarray(np.stack(images)),
        np.asarray(boxes, dtype=np.int64),
        np.asarray(keypoints, dtype=np.float32),
        np.asarray(landmarks, dtype=np.float32),
        np.asarray(identities, dtype=np.int64),
        f"synthetic:{wider_root}",
        np.asarray(keypoint_sources, dtype=str),
    )


def _load_array(path: Path) -> np.ndarray:
    """A ``.npy`` array or a tensor saved with ``torch.save`` (``.torch``)."""
    if path.suffix == ".npy":
        return np.load(path)
    import torch

    value = torch.load(path, map_location="cpu", weights_only=True)
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def fdf_crop_set(folder: Path, resolution: int) -> CropSet:
    """Read an FDF folder (format in the module docstring) at ``resolution``, resizing crops of another size."""
    image_root = folder / "images"
    sizes = sorted(int(p.name) for p in image_root.iterdir() if p.is_dir() and p.name.isdigit()) if image_root.is_dir() else []
    if not sizes:
        raise SafefakesError(f"{folder}: not an FDF folder (expected images/<resolution>/<index>.png)")
    size = resolution if resolution in sizes else max(sizes)
    paths = sorted((image_root / str(size)).glob("*.png"), key=lambda p: int(p.stem))
    box_file = next((folder / "bounding_box" / f"{size}{ext}" for ext in (".torch", ".npy") if (folder / "bounding_box" / f"{size}{ext}").is_file()), None)
    if box_file is None or not (folder / "landmarks.npy").is_file():
        raise SafefakesError(f"{folder}: FDF needs bounding_box/{size}.torch (or .npy) and landmarks.npy")
    boxes = _load_array(box_file).reshape(-1, 4).astype(np.float64)[: len(paths)]
    landmarks = np.load(folder / "landmarks.npy").reshape(-1, NUM_KEYPOINTS, 2).astype(np.float64)[: len(paths)]
    if not (len(boxes) == len(landmarks) == len(paths)):
        raise SafefakesError(f"{folder}: {len(paths)} images, {len(boxes)} boxes, {len(landmarks)} landmark sets")
    images = []
    for path in progress(paths, desc="FDF crops", unit="img"):
        pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if pixels is None:
            raise SafefakesError(f"cannot read {path}")
        images.append(resize_square(pixels, resolution)[:, :, ::-1])
    scale = resolution / size
    scaled = np.stack([np.floor(boxes[:, 0] * scale), np.floor(boxes[:, 1] * scale), np.ceil(boxes[:, 2] * scale), np.ceil(boxes[:, 3] * scale)], axis=1)
    inside = ((landmarks >= 0) & (landmarks <= 1)).all(axis=2, keepdims=True).astype(np.float64)
    keypoints = np.concatenate([np.clip(landmarks, 0, 1), inside], axis=2)
    count = len(images)
    return CropSet(
        np.ascontiguousarray(np.stack(images)),
        np.clip(scaled, 0, resolution).astype(np.int64),
        keypoints.astype(np.float32),
        absent_points(count, NUM_LANDMARKS),
        np.full(count, -1, dtype=np.int64),
        f"fdf:{folder}",
        np.where(inside[:, :, 0].any(axis=1), SOURCE_DATASET, SOURCE_NONE),
    )


def load_crop_set(
    path: Path,
    resolution: int,
    context_factor: float,
    min_face_size: float,
    requirements: Sequence[str] = (),
    max_faces: int | None = None,
    seed: int = 0,
    identity_selection: IdentitySelection | None = None,
    keypoints7: str = CROP_KEYPOINTS_DLIB,
    keypoint_device: str = "cpu",
) -> CropSet:
    """The training crops at ``path`` (synthetic WIDER root, FDF, PIPA or identity folders), keeping the crops
    that have every one of ``requirements``, then at most ``max_faces`` of them (seeded choice).
    ``identity_selection`` first cuts an identity set (CelebA style) to the identities it keeps; other layouts refuse it.
    ``keypoints7`` (:data:`CROP_KEYPOINT_CHOICES`) says where PIPA and identity-set crops get their 7 keypoints
    (Keypoint R-CNN on ``keypoint_device``; default: derived from dlib's 68, what the GANs without 7 keypoints keep, while
    a DeepPrivacy run passes its own choice, :data:`DEFAULT_CROP_KEYPOINTS` unless told); synthetic and FDF sets carry
    their own and ignore it."""
    path = Path(path)
    selects = identity_selection is not None and identity_selection.selects
    if WiderLayout(path).annotation_file("train").is_file() or ((path / "images").is_dir() and (path / "landmarks.npy").is_file()):
        if selects:
            raise SafefakesError(f"{path}: the identity selection ({identity_selection.describe()}) applies to identity sets (CelebA style) only")
    if WiderLayout(path).annotation_file("train").is_file():
        crops = synthetic_crop_set(path, resolution, context_factor, min_face_size)
    elif (path / "images").is_dir() and (path / "landmarks.npy").is_file():
        crops = fdf_crop_set(path, resolution)
    else:
        from safefakes.anonymize.gan.crop_readers import read_crop_folder

        crops = read_crop_folder(path, resolution, context_factor, min_face_size, identity_selection, keypoints7, keypoint_device)
    for requirement in requirements:
        crops = crops.require(requirement)
    return crops.subset(max_faces, seed)
