"""Training-set readers for real face data: PIPA and identity folders (CelebA style), as :class:`CropSet`.

Layouts read by :func:`read_crop_folder`:

* **PIPA** (Zhang et al. 2015, People In Photo Albums; Safe Fakes trains Sun2018 and DeepPrivacy on it, Sec. IV-A),
  as released: ``ROOT/annotations/index.txt`` with one head per line,
  ``photoset_id photo_id xmin ymin width height identity_id subset_id`` (pixels; subset 0 = leftover, 1 = train,
  2 = val, 3 = test), and the photos as ``ROOT/<train|val|test|leftover>/<photoset_id>_<photo_id>.jpg``. The path
  may also be the annotation file itself (its folder's parent, or its folder, is then the root). Safe Fakes uses
  the training and validation heads; only those are read.
* **CelebA** (official): ``ROOT/img_align_celeba/<file>`` and ``ROOT/identity_CelebA.txt`` (``<file> <identity>``).
* **identities.csv** (as written by :mod:`safefakes.data.synth_identities`): ``path``, ``identity`` and an optional
  ``box`` (``x y w h``) column; the layout read by the re-identification test.
* **identity folders**: ``ROOT/<identity>/<image>``, one folder per identity.

Identity folders are numbered 0..C-1 in sorted order of their names (numeric names in numeric order); PIPA keeps
its ``identity_id``. An identity set may be cut to its best-represented identities first (:class:`IdentitySelection`:
CIAGAN trains on the 1,200 CelebA identities with at least 30 faces, about 40,000 faces; Safe Fakes Sec. III-B).
A photo's face box is the given one (PIPA heads, the ``box`` column), else the largest face dlib's frontal detector
finds, else the whole image (CelebA's aligned photos are faces). Every face gets dlib's 68 landmarks
(:class:`~safefakes.anonymize.gan.landmarks68.DlibLandmarks68`, inside its box); a face dlib finds nothing in keeps
absent points.

DeepPrivacy's 7 keypoints come from where ``keypoints7`` says (:data:`CROP_KEYPOINT_CHOICES`, chosen explicitly:
``safefakes train-gan --keypoints7``, a workflow training set's ``keypoints7``), never switched silently:

* ``rcnn`` (DeepPrivacy's own source; the default of ``train-gan`` and of a training run) — Keypoint R-CNN on the
  photo, people matched to the face boxes (:class:`~safefakes.anonymize.gan.keypoints.KeypointRCNNSource`, visibility from its keypoint scores);
  without its COCO weights the reader refuses in one line naming ``safefakes fetch-weights``;
* ``dlib`` — derived from the face's dlib 68 landmarks (:func:`keypoints7_from_landmarks68`: nose tip, eye
  centres, jaw ends for the ears, no shoulders); the readers' own default (CIAGAN and Sun2018 do not read the 7
  keypoints; a DeepPrivacy run passes its choice);
* ``rcnn_or_dlib`` — Keypoint R-CNN when its weights are present, else derived from dlib's 68 (logged).

Each crop records its keypoints' source (``rcnn``, ``dlib-derived``, ``none`` where the source found nothing), and
the crop set counts them (:meth:`~safefakes.anonymize.gan.cropsets.CropSet.keypoint_source_counts`; ``train-gan``
logs the counts and stores them in its checkpoints).
"""

from __future__ import annotations

import collections
import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from safefakes.anonymize.gan.crops import box_in_crop, context_square, extract_square, keypoints_in_crop, resize_square
from safefakes.anonymize.gan.cropsets import (
    CROP_KEYPOINT_CHOICES,
    CROP_KEYPOINTS_DLIB,
    CROP_KEYPOINTS_RCNN,
    CROP_KEYPOINTS_RCNN_OR_DLIB,
    NUM_LANDMARKS,
    SOURCE_DLIB_DERIVED,
    CropSet,
    landmarks_with_visibility,
)
from safefakes.anonymize.gan.keypoints import NUM_KEYPOINTS, SOURCE_NONE, KeypointRCNNSource, KeypointSource, keypoint_rcnn_missing_reason
from safefakes.anonymize.gan.landmarks68 import DLIB_UPSAMPLE, DlibLandmarks68, NoLandmarks
from safefakes.common.errors import SafefakesError
from safefakes.common.progress import progress
from safefakes.data.identities import IMAGE_SUFFIXES, IdentitySample, read_celeba_identities, read_identity_csv, read_identity_folders
from safefakes.data.wider import KEYPOINTS_7, FaceBox

LOG = logging.getLogger(__name__)

LandmarkSource = DlibLandmarks68 | NoLandmarks

# --- PIPA release layout (Zhang et al. 2015) ---------------------------------------------------------------------
PIPA_ANNOTATION_FILE = Path("annotations") / "index.txt"
PIPA_COLUMNS = ("photoset_id", "photo_id", "xmin", "ymin", "width", "height", "identity_id", "subset_id")
#: ``subset_id`` -> the folder holding that subset's photos.
PIPA_SUBSET_FOLDERS: dict[int, str] = {0: "leftover", 1: "train", 2: "val", 3: "test"}
#: Safe Fakes Sec. IV-A: "we only use faces from the training and validation set" (PIPA subsets 1 and 2).
PIPA_TRAINING_SUBSETS: tuple[int, ...] = (1, 2)
PIPA_IMAGE_SUFFIX = ".jpg"

# --- CelebA / identity folders ------------------------------------------------------------------------------------
CELEBA_IDENTITY_FILE = "identity_CelebA.txt"
CELEBA_IMAGE_FOLDER = "img_align_celeba"
IDENTITY_CSV = "identities.csv"
#: Photos are shrunk to at most this side before dlib's detector looks for the largest face (a choice of this
#: project: keeps detection fast on multi-megapixel photos; dlib, upsampling once, still finds faces of ~20 px here).
DETECTION_MAX_SIDE = 640

# --- Deriving DeepPrivacy's 7 keypoints from dlib's 68 (iBUG-300W indices, image left = the person's right) ------
LANDMARK_NOSE_TIP = 30
LANDMARKS_RIGHT_EYE = tuple(range(36, 42))  # the person's right eye, on the image's left
LANDMARKS_LEFT_EYE = tuple(range(42, 48))  # the person's left eye, on the image's right
#: The 68 points have no ears; the jaw line's ends (at ear height, just in front of the ear) stand in for them.
LANDMARK_RIGHT_JAW_END = 0
LANDMARK_LEFT_JAW_END = 16
#: Which of the 68 points each of the 7 keypoints is the mean of (shoulders: none, always absent).
KEYPOINT7_SOURCES: dict[str, tuple[int, ...]] = {
    "nose": (LANDMARK_NOSE_TIP,),
    "left_eye": LANDMARKS_LEFT_EYE,
    "right_eye": LANDMARKS_RIGHT_EYE,
    "left_ear": (LANDMARK_LEFT_JAW_END,),
    "right_ear": (LANDMARK_RIGHT_JAW_END,),
    "left_shoulder": (),
    "right_shoulder": (),
}


def keypoints7_from_landmarks68(points68: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """DeepPrivacy's 7 keypoints ``(7, 3)`` ``[x, y, visible]`` from 68 dlib points (``(68, 2)`` or ``(68, 3)``,
    any units; the result is in the same units).

    Nose = nose tip (30); each eye = mean of its six points (36-41 the person's right eye, 42-47 the left);
    ears ~ the jaw line's ends (0 right, 16 left: the 68-point scheme has no ears); shoulders absent. A keypoint
    is visible only when every point it comes from is.
    """
    points = landmarks_with_visibility(points68)
    keypoints = np.zeros((NUM_KEYPOINTS, 3), dtype=np.float64)
    for name, indices in KEYPOINT7_SOURCES.items():
        if not indices:
            continue
        chosen = points[list(indices)]
        if (chosen[:, 2] > 0).all():
            keypoints[KEYPOINTS_7.index(name)] = (*chosen[:, :2].mean(axis=0), 1.0)
    return keypoints


@dataclass(frozen=True)
class CropKeypoints:
    """Where a crop set's 7 keypoints come from: Keypoint R-CNN on the photo (``detector``), or derived from each
    face's dlib 68 landmarks (``detector`` None). ``label`` is the source recorded per crop."""

    label: str
    detector: KeypointSource | None = None

    def detect(self, image_bgr: np.ndarray, faces: Sequence[FaceBox], landmarks68: Sequence[np.ndarray | None]) -> list[np.ndarray | None]:
        """The 7 keypoints ``(7, 3)`` in image pixels of each face (None where the source finds none)."""
        if self.detector is not None:
            return self.detector.detect(image_bgr, faces)
        return [keypoints7_from_landmarks68(points) if points is not None else None for points in landmarks68]


def crop_keypoints(choice: str, device: str = "cpu") -> CropKeypoints:
    """The 7-keypoint source of ``choice`` (:data:`CROP_KEYPOINT_CHOICES`), decided once per crop set and logged:
    ``rcnn`` refuses in one line when Keypoint R-CNN's weights are missing, ``rcnn_or_dlib`` then derives them from dlib."""
    if choice not in CROP_KEYPOINT_CHOICES:
        raise SafefakesError(f"keypoints7 must be one of {', '.join(CROP_KEYPOINT_CHOICES)}, got {choice!r}")
    if choice == CROP_KEYPOINTS_DLIB:
        LOG.info("training crops: 7 keypoints derived from dlib's 68 landmarks (keypoints7: %s)", choice)
        return CropKeypoints(SOURCE_DLIB_DERIVED)
    missing = keypoint_rcnn_missing_reason()
    if missing is None:
        LOG.info("training crops: 7 keypoints from Keypoint R-CNN (keypoints7: %s)", choice)
        return CropKeypoints(CROP_KEYPOINTS_RCNN, KeypointRCNNSource(device))
    if choice == CROP_KEYPOINTS_RCNN:
        raise SafefakesError(
            f"keypoints7 {choice}: {missing}; or choose keypoints7 {CROP_KEYPOINTS_RCNN_OR_DLIB} or {CROP_KEYPOINTS_DLIB} "
            "(train-gan --keypoints7, a training set's keypoints7) to derive them from dlib's 68 landmarks"
        )
    LOG.warning("training crops: 7 keypoints derived from dlib's 68 landmarks instead of Keypoint R-CNN (keypoints7: %s): %s", choice, missing)
    return CropKeypoints(SOURCE_DLIB_DERIVED)


@dataclass
class _CropCollector:
    """Cuts face crops with context out of images and gathers them into a :class:`CropSet`."""

    resolution: int
    context_factor: float
    images: list[np.ndarray] = field(default_factory=list)
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    keypoints: list[np.ndarray] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)
    identities: list[int] = field(default_factory=list)
    keypoint_sources: list[str] = field(default_factory=list)

    def add(self, image_bgr: np.ndarray, face: FaceBox, points68: np.ndarray | None, identity: int, points7: np.ndarray | None, keypoint_source: str) -> None:
        """One face: its RGB context crop, box in crop pixels, 68 landmarks and 7 keypoints in crop units, and where the
        keypoints came from (``keypoint_source``, recorded as ``none`` when no keypoint is visible in the crop)."""
        square = context_square(face, self.context_factor)
        self.images.append(resize_square(extract_square(image_bgr, square), self.resolution)[:, :, ::-1])
        self.boxes.append(box_in_crop(face, square, self.resolution))
        self.landmarks.append(keypoints_in_crop(points68, square) if points68 is not None else np.zeros((NUM_LANDMARKS, 3)))
        keypoints = keypoints_in_crop(points7, square) if points7 is not None else np.zeros((NUM_KEYPOINTS, 3))
        self.keypoints.append(keypoints)
        self.keypoint_sources.append(keypoint_source if keypoints[:, 2].any() else SOURCE_NONE)
        self.identities.append(int(identity))

    def build(self, source: str) -> CropSet:
        """The gathered crops as a :class:`CropSet` (error when there are none)."""
        if not self.images:
            raise SafefakesError(f"{source}: no face to train on")
        return CropSet(
            np.ascontiguousarray(np.stack(self.images)),
            np.asarray(self.boxes, dtype=np.int64),
            np.asarray(self.keypoints, dtype=np.float32),
            np.asarray(self.landmarks, dtype=np.float32),
            np.asarray(self.identities, dtype=np.int64),
            source,
            np.asarray(self.keypoint_sources, dtype=str),
        )


@functools.lru_cache(maxsize=1)
def shared_dlib_landmarks() -> DlibLandmarks68:
    """One :class:`DlibLandmarks68` per process (loading the 68-point predictor takes seconds)."""
    return DlibLandmarks68()


def _read_image(path: Path) -> np.ndarray:
    """A colour image (BGR uint8) or a clear error."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SafefakesError(f"cannot read image {path}")
    return image


# ---------------------------------------------------------------------------------------------------------------
# PIPA


@dataclass(frozen=True)
class PipaHead:
    """One annotated PIPA head: its photo, box (pixels), identity and subset."""

    photoset_id: str
    photo_id: str
    face: FaceBox
    identity_id: int
    subset_id: int

    @property
    def image_name(self) -> str:
        """The photo's file name, ``<photoset_id>_<photo_id>.jpg``."""
        return f"{self.photoset_id}_{self.photo_id}{PIPA_IMAGE_SUFFIX}"


def read_pipa_annotations(annotation_file: Path) -> list[PipaHead]:
    """Every head of a PIPA ``index.txt`` (columns :data:`PIPA_COLUMNS`, whitespace separated)."""
    if not annotation_file.is_file():
        raise SafefakesError(f"PIPA annotation file not found: {annotation_file}")
    heads = []
    for number, line in enumerate(annotation_file.read_text(encoding="utf-8").splitlines(), start=1):
        columns = line.split()
        if not columns:
            continue
        if len(columns) != len(PIPA_COLUMNS):
            raise SafefakesError(f"{annotation_file}:{number}: expected {len(PIPA_COLUMNS)} columns ({' '.join(PIPA_COLUMNS)}), got {len(columns)}")
        try:
            x, y, w, h = (float(value) for value in columns[2:6])
            identity, subset = int(columns[6]), int(columns[7])
        except ValueError:
            raise SafefakesError(f"{annotation_file}:{number}: box, identity_id and subset_id must be numbers: {line.strip()!r}") from None
        if subset not in PIPA_SUBSET_FOLDERS:
            raise SafefakesError(f"{annotation_file}:{number}: subset_id must be one of {sorted(PIPA_SUBSET_FOLDERS)}, got {subset}")
        face = FaceBox(int(np.floor(x)), int(np.floor(y)), int(round(w)), int(round(h)))
        heads.append(PipaHead(columns[0], columns[1], face, identity, subset))
    return heads


def pipa_image_path(root: Path, head: PipaHead) -> Path:
    """Where ``head``'s photo lies: its subset's folder, else any other split folder that has it."""
    folders = [PIPA_SUBSET_FOLDERS[head.subset_id]] + [f for s, f in PIPA_SUBSET_FOLDERS.items() if s != head.subset_id]
    for folder in folders:
        candidate = root / folder / head.image_name
        if candidate.is_file():
            return candidate
    raise SafefakesError(
        f"PIPA photo {head.image_name} not found in {root}/{{{','.join(PIPA_SUBSET_FOLDERS.values())}}} "
        f"(expected <split folder>/<photoset_id>_<photo_id>{PIPA_IMAGE_SUFFIX})"
    )


def _pipa_paths(path: Path, annotation_file: Path | None) -> tuple[Path, Path]:
    """The PIPA root and annotation file for a root folder or an annotation file."""
    if annotation_file is not None:
        return path, annotation_file
    if path.is_file():
        root = path.parent.parent if path.parent.name == PIPA_ANNOTATION_FILE.parent.name else path.parent
        return root, path
    return path, path / PIPA_ANNOTATION_FILE


def pipa_crop_set(
    path: Path,
    resolution: int,
    context_factor: float,
    min_face_size: float,
    annotation_file: Path | None = None,
    landmark_source: LandmarkSource | None = None,
    subsets: Sequence[int] = PIPA_TRAINING_SUBSETS,
    keypoints7: CropKeypoints | str = CROP_KEYPOINTS_DLIB,
) -> CropSet:
    """Crops of the PIPA heads of ``subsets`` at least ``min_face_size`` px (sqrt of the box area), with dlib's 68
    landmarks found inside each head box on the full photo and the 7 keypoints from ``keypoints7`` (a choice of
    :data:`CROP_KEYPOINT_CHOICES`, resolved on the CPU, or a resolved :class:`CropKeypoints`)."""
    points7_source = crop_keypoints(keypoints7) if isinstance(keypoints7, str) else keypoints7
    root, annotation_file = _pipa_paths(Path(path), annotation_file)
    heads = [h for h in read_pipa_annotations(annotation_file) if h.subset_id in subsets and h.face.w > 0 and h.face.h > 0 and h.face.size >= min_face_size]
    if not heads:
        raise SafefakesError(f"{annotation_file}: no head of subset {', '.join(map(str, subsets))} of at least {min_face_size} px")
    by_photo: dict[tuple[str, str], list[PipaHead]] = {}
    for head in heads:
        by_photo.setdefault((head.photoset_id, head.photo_id), []).append(head)
    source = landmark_source if landmark_source is not None else shared_dlib_landmarks()
    collector = _CropCollector(resolution, context_factor)
    for photo_heads in progress(list(by_photo.values()), desc="PIPA crops", unit="img"):
        image = _read_image(pipa_image_path(root, photo_heads[0]))
        faces = [head.face for head in photo_heads]
        found = source.detect(image, faces)
        for head, points68, points7 in zip(photo_heads, found, points7_source.detect(image, faces, found)):
            collector.add(image, head.face, points68, head.identity_id, points7, points7_source.label)
    return collector.build(f"pipa:{root}")


# ---------------------------------------------------------------------------------------------------------------
# Identity folders (CelebA style)


def identity_name_order(name: str) -> tuple[int, int, str]:
    """Sort key of identity names: numeric names in numeric order, before the others in text order."""
    return (0, int(name), name) if name.isdigit() else (1, 0, name)


def identity_numbers(names: Sequence[str]) -> dict[str, int]:
    """Identity name -> 0..C-1 in sorted order of the names (numeric names in numeric order, before others)."""
    return {name: index for index, name in enumerate(sorted(set(names), key=identity_name_order))}


@dataclass(frozen=True)
class IdentitySelection:
    """Which identities of an identity set (CelebA, ``identities.csv``, identity folders) a GAN trains on.

    CIAGAN (Safe Fakes Sec. III-B) trains on "a CelebA subset of 1,200 identities with at least 30 faces each"
    (about 40,000 faces): ``min_faces_per_identity=30, max_identities=1200``. Faces are counted as the set's
    photos per identity, as listed (before face detection and the ``min_face_size`` cut). The identities with at
    least ``min_faces_per_identity`` photos are ranked most photos first, ties by identity name
    (:func:`identity_name_order`: numeric names, such as CelebA's, in numeric order), and the first
    ``max_identities`` are kept: the same identities on every run.
    """

    min_faces_per_identity: int = 1  # 1: every identity
    max_identities: int | None = None  # None: no cap

    def __post_init__(self) -> None:
        if self.min_faces_per_identity < 1:
            raise SafefakesError(f"min_faces_per_identity must be >= 1, got {self.min_faces_per_identity}")
        if self.max_identities is not None and self.max_identities < 1:
            raise SafefakesError(f"max_identities must be >= 1, got {self.max_identities}")

    @property
    def selects(self) -> bool:
        """Whether it leaves any identity out (else every photo is kept)."""
        return self.min_faces_per_identity > 1 or self.max_identities is not None

    def describe(self) -> str:
        """The selection in words, for logs and errors."""
        cap = "" if self.max_identities is None else f", at most {self.max_identities} identities (most photos first, ties by name)"
        return f"identities with at least {self.min_faces_per_identity} photos{cap}"


def select_identities(samples: Sequence[IdentitySample], selection: IdentitySelection) -> list[IdentitySample]:
    """The photos of the identities ``selection`` keeps, in their listed order (see :class:`IdentitySelection`)."""
    photos = collections.Counter(sample.identity for sample in samples)
    eligible = [name for name, count in photos.items() if count >= selection.min_faces_per_identity]
    ranked = sorted(eligible, key=lambda name: (-photos[name], identity_name_order(name)))
    kept = set(ranked[: selection.max_identities])
    return [sample for sample in samples if sample.identity in kept]


def identity_samples(root: Path) -> tuple[list[IdentitySample], str]:
    """The photos of an identity set (CelebA, ``identities.csv`` or one folder per identity) and the layout's name."""
    if (root / CELEBA_IDENTITY_FILE).is_file():
        if not (root / CELEBA_IMAGE_FOLDER).is_dir():
            raise SafefakesError(f"{root}: CelebA needs {CELEBA_IMAGE_FOLDER}/ beside {CELEBA_IDENTITY_FILE}")
        return read_celeba_identities(root), "celeba"
    if (root / IDENTITY_CSV).is_file():
        return read_identity_csv(root), "identities"
    return read_identity_folders(root), "identity-folders"


def largest_dlib_face(detector: Callable[[np.ndarray, int], Iterable], image_bgr: np.ndarray, max_side: int = DETECTION_MAX_SIDE) -> FaceBox | None:
    """The largest face dlib's frontal ``detector`` (``dlib.get_frontal_face_detector()``) finds in the photo
    (shrunk to at most ``max_side`` px to detect), in the photo's pixels, or None."""
    height, width = image_bgr.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    small = image_bgr
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
    rects = list(detector(np.ascontiguousarray(small[:, :, ::-1]), DLIB_UPSAMPLE))
    if not rects:
        return None
    best = max(rects, key=lambda r: r.width() * r.height())
    x0, y0 = max(0, int(np.floor(best.left() / scale))), max(0, int(np.floor(best.top() / scale)))
    x1, y1 = min(width, int(np.ceil((best.right() + 1) / scale))), min(height, int(np.ceil((best.bottom() + 1) / scale)))
    if x1 <= x0 or y1 <= y0:
        return None
    return FaceBox(x0, y0, x1 - x0, y1 - y0)


def identity_crop_set(
    root: Path,
    resolution: int,
    context_factor: float,
    min_face_size: float,
    landmark_source: LandmarkSource | None = None,
    selection: IdentitySelection | None = None,
    keypoints7: CropKeypoints | str = CROP_KEYPOINTS_DLIB,
) -> CropSet:
    """Crops of an identity set (one face per photo: the given box, else dlib's largest face, else the whole photo),
    identities numbered by :func:`identity_numbers`, landmarks by dlib inside the box, keypoints derived; with a
    ``selection``, only the photos of the identities it keeps (:class:`IdentitySelection`), numbered among themselves.
    The 7 keypoints come from ``keypoints7`` (as in :func:`pipa_crop_set`)."""
    root = Path(root)
    points7_source = crop_keypoints(keypoints7) if isinstance(keypoints7, str) else keypoints7
    samples, layout = identity_samples(root)
    if not samples:
        raise SafefakesError(
            f"{root}: no identity photo found (expected {CELEBA_IDENTITY_FILE}, {IDENTITY_CSV} or <identity>/<image> with {', '.join(IMAGE_SUFFIXES)})"
        )
    if selection is not None and selection.selects:
        listed = len({sample.identity for sample in samples})
        samples = select_identities(samples, selection)
        if not samples:
            raise SafefakesError(f"{root}: none of its {listed} identities is kept: {selection.describe()}")
        kept = len({sample.identity for sample in samples})
        LOG.info("%s: %d of %d identities kept (%s), %d photos", root, kept, listed, selection.describe(), len(samples))
        layout = f"{layout}[{kept} identities]"
    numbers = identity_numbers([sample.identity for sample in samples])
    source = landmark_source if landmark_source is not None else shared_dlib_landmarks()
    detector = source.detector if isinstance(source, DlibLandmarks68) else None
    collector = _CropCollector(resolution, context_factor)
    whole_image_faces = 0
    for sample in progress(samples, desc="identity crops", unit="img"):
        image = _read_image(sample.path)
        face = FaceBox(*sample.box) if sample.box is not None else None
        if face is None and detector is not None:
            face = largest_dlib_face(detector, image)
        if face is None:
            whole_image_faces += 1
            face = FaceBox(0, 0, image.shape[1], image.shape[0])
        if face.size < min_face_size:
            continue
        points68 = source.detect(image, [face])
        collector.add(image, face, points68[0], numbers[sample.identity], points7_source.detect(image, [face], points68)[0], points7_source.label)
    if whole_image_faces:
        LOG.info("%s: %d of %d photos without a given or detected face box used the whole photo", root, whole_image_faces, len(samples))
    return collector.build(f"{layout}:{root}")


# ---------------------------------------------------------------------------------------------------------------


def read_crop_folder(
    path: Path,
    resolution: int,
    context_factor: float,
    min_face_size: float,
    identity_selection: IdentitySelection | None = None,
    keypoints7: str = CROP_KEYPOINTS_DLIB,
    keypoint_device: str = "cpu",
) -> CropSet:
    """The training crops of a PIPA release (root or annotation file), a CelebA root, an ``identities.csv`` set or
    identity folders (see the module docstring for the layouts); ``identity_selection`` cuts an identity set to the
    identities it keeps (refused for PIPA). The 7 keypoints come from ``keypoints7`` (:func:`crop_keypoints`, decided
    before any photo is read; Keypoint R-CNN runs on ``keypoint_device``)."""
    path = Path(path)

    def points7() -> CropKeypoints:
        return crop_keypoints(keypoints7, keypoint_device)

    if not path.exists():
        raise SafefakesError(f"training set not found: {path}")
    if path.is_file() or (path / PIPA_ANNOTATION_FILE).is_file():
        if identity_selection is not None and identity_selection.selects:
            raise SafefakesError(f"{path}: a PIPA release; the identity selection ({identity_selection.describe()}) applies to identity sets only")
        return pipa_crop_set(path, resolution, context_factor, min_face_size, keypoints7=points7())
    if (path / CELEBA_IDENTITY_FILE).is_file() or (path / IDENTITY_CSV).is_file():
        return identity_crop_set(path, resolution, context_factor, min_face_size, selection=identity_selection, keypoints7=points7())
    if (path / PIPA_ANNOTATION_FILE.parent).is_dir() or all((path / PIPA_SUBSET_FOLDERS[s]).is_dir() for s in PIPA_TRAINING_SUBSETS):
        # PIPA's train/ and val/ photo folders would otherwise be read as two identity folders
        raise SafefakesError(f"{path}: looks like PIPA but has no {PIPA_ANNOTATION_FILE} (pass the annotation file itself if it lies elsewhere)")
    if any(child.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in child.iterdir()) for child in path.iterdir()):
        return identity_crop_set(path, resolution, context_factor, min_face_size, selection=identity_selection, keypoints7=points7())
    raise SafefakesError(
        f"{path}: not a known training set; expected a synthetic WIDER root, FDF (images/<R>/, landmarks.npy), "
        f"PIPA ({PIPA_ANNOTATION_FILE} + train/ val/ photos), CelebA ({CELEBA_IDENTITY_FILE} + {CELEBA_IMAGE_FOLDER}/), "
        f"{IDENTITY_CSV} or one folder of images per identity"
    )
