"""Which ground-truth faces the found boxes cover: the faces a face finder left unprotected.

Faces a finder misses cannot be known without ground truth. When the anonymized folder is a WIDER root
(or ``--ground-truth`` names one), every ground-truth face of an anonymized image is checked against the
boxes that were found and anonymized:

- *found*: some found box overlaps it with IoU >= :data:`IOU_MATCH` (the WIDER evaluation's criterion;
  found / faces is the finder's recall);
- *protected*: some anonymized box overlaps it with IoU >= :data:`IOU_MATCH`, or holds at least
  :data:`MIN_COVERED_FRACTION` of its area; every other face is *unprotected* (left recognisable).

Boxes are pixel sets ``[x, x + w) x [y, y + h)``. With the official ``.mat`` ground truth the counts are
given per evaluation setting (easy, medium, hard: the faces that count in each) besides ``all`` (every
annotated box); with a ``bbx_gt`` text file only ``all``. Images are matched to the ``.mat`` files by
``(event folder, file stem)`` and to a text file by their path relative to the images folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from safefakes.common.errors import SafefakesError
from safefakes.data.ground_truth import ALL_FACES_FILE, load_ground_truth
from safefakes.data.wider import DIFFICULTIES, FaceBox, WiderLayout, read_bbx_gt

#: A found box matches a ground-truth face from this IoU (WIDER FACE's evaluation threshold).
IOU_MATCH = 0.5
#: A face also counts as protected when one anonymized box holds this much of its area (at most a fifth left visible).
MIN_COVERED_FRACTION = 0.8
#: The group of every annotated face, beside the evaluation settings.
ALL_FACES = "all"
#: The evaluation ``.mat`` files exist for this split only.
MAT_SPLIT = "val"


@dataclass(frozen=True)
class GroundTruthFaces:
    """Ground-truth faces of a set of images: per image name, ``x y w h`` boxes and the mask of each group
    (``all`` plus, from the ``.mat`` files, each evaluation setting)."""

    source: Path
    kind: str  # "mat" or "txt"
    boxes: Mapping[str, np.ndarray]
    groups: Mapping[str, Mapping[str, np.ndarray]]

    @property
    def group_names(self) -> tuple[str, ...]:
        """``all``, then the evaluation settings when the ``.mat`` files gave them."""
        return (ALL_FACES, *DIFFICULTIES) if self.kind == "mat" else (ALL_FACES,)


@dataclass
class CoverageCounts:
    """Ground-truth faces of one group: how many, how many a found box matched, how many stayed unprotected."""

    faces: int = 0
    found: int = 0
    unprotected: int = 0

    def add(self, other: CoverageCounts) -> None:
        """Add another count in place."""
        self.faces += other.faces
        self.found += other.found
        self.unprotected += other.unprotected

    def to_dict(self) -> dict[str, float | int | None]:
        """The counts plus the recall ``found / faces`` (None without faces), JSON-ready."""
        return {"faces": self.faces, "found": self.found, "unprotected": self.unprotected, "recall": self.found / self.faces if self.faces else None}


@dataclass
class ImageCoverage:
    """Per group, the coverage counts of one image's ground-truth faces."""

    groups: dict[str, CoverageCounts] = field(default_factory=dict)


def ground_truth_files(path: Path, split: str) -> tuple[Path | None, Path | None]:
    """``(bbx_gt text file, folder of the .mat files)`` that ``path`` offers for ``split``; either may be None.

    ``path`` is a ``bbx_gt`` text file, a folder holding ``wider_face_val.mat`` and the setting files, or a
    WIDER root (its ``wider_face_split/wider_face_{split}_bbx_gt.txt`` and, for val, ``ground_truth/``).
    """
    if path.is_file():
        return path, None
    if not path.is_dir():
        raise SafefakesError(f"ground truth not found: {path}")
    if (path / ALL_FACES_FILE).is_file():
        return None, path
    layout = WiderLayout(path)
    text = layout.annotation_file(split) if layout.annotation_file(split).is_file() else None
    mats = layout.ground_truth_dir if split == MAT_SPLIT and (layout.ground_truth_dir / ALL_FACES_FILE).is_file() else None
    return text, mats


def load_ground_truth_faces(path: Path, split: str, names: Sequence[str]) -> GroundTruthFaces | None:
    """The ground truth ``path`` offers for the images ``names`` (the ``.mat`` files preferred: they give the
    settings); None when ``path`` offers none. Images it does not list are left out of the mapping."""
    text, mats = ground_truth_files(path, split)
    if mats is not None:
        by_key = {image.key: image for image in load_ground_truth(mats).images}
        boxes, groups = {}, {}
        for name in names:
            relative = PurePosixPath(name)
            image = by_key.get((relative.parent.as_posix(), relative.stem))
            if image is None:
                continue
            valid = (image.boxes[:, 2] > 0) & (image.boxes[:, 3] > 0)  # drops the all-zero row of a faceless image
            boxes[name] = image.boxes
            groups[name] = {ALL_FACES: valid, **{setting: image.counted[setting] & valid for setting in DIFFICULTIES}}
        return GroundTruthFaces(mats, "mat", boxes, groups)
    if text is not None:
        listed = {annotation.name: annotation for annotation in read_bbx_gt(text)}
        boxes = {name: _xywh(listed[name].faces) for name in names if name in listed}
        return GroundTruthFaces(text, "txt", boxes, {name: {ALL_FACES: np.ones(len(found), dtype=bool)} for name, found in boxes.items()})
    return None


def _xywh(faces: Sequence[FaceBox]) -> np.ndarray:
    """``(n, 4)`` float ``x y w h`` of boxes."""
    return np.array([[face.x, face.y, face.w, face.h] for face in faces], dtype=np.float64).reshape(-1, 4)


def overlaps(faces_xywh: np.ndarray, boxes_xywh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(IoU, covered)``, both ``(n_faces, n_boxes)``: IoU of each face with each box, and the fraction of each face's area inside each box."""
    faces = np.asarray(faces_xywh, dtype=np.float64).reshape(-1, 4)
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    inter_w = np.minimum(faces[:, None, 0] + faces[:, None, 2], boxes[None, :, 0] + boxes[None, :, 2]) - np.maximum(faces[:, None, 0], boxes[None, :, 0])
    inter_h = np.minimum(faces[:, None, 1] + faces[:, None, 3], boxes[None, :, 1] + boxes[None, :, 3]) - np.maximum(faces[:, None, 1], boxes[None, :, 1])
    intersection = np.clip(inter_w, 0, None) * np.clip(inter_h, 0, None)
    face_area = (faces[:, 2] * faces[:, 3])[:, None]
    box_area = (boxes[:, 2] * boxes[:, 3])[None, :]
    union = face_area + box_area - intersection
    iou = np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)
    covered = np.divide(intersection, face_area, out=np.zeros_like(intersection), where=face_area > 0)
    return iou, covered


def mostly_covered(faces_xywh: np.ndarray, boxes_xywh: np.ndarray) -> np.ndarray:
    """Per face, whether one of the boxes holds at least :data:`MIN_COVERED_FRACTION` of its area."""
    _, covered = overlaps(faces_xywh, boxes_xywh)
    return covered.max(axis=1, initial=0.0) >= MIN_COVERED_FRACTION


def image_coverage(ground_truth: GroundTruthFaces, name: str, found: Sequence[FaceBox], anonymized: Sequence[bool]) -> ImageCoverage:
    """The coverage counts of image ``name``'s ground-truth faces by the ``found`` boxes (``anonymized`` flags, one per box)."""
    if len(anonymized) != len(found):
        raise ValueError(f"{name}: {len(anonymized)} anonymized flags for {len(found)} found boxes")
    faces = ground_truth.boxes[name]
    found_boxes = _xywh(found)
    iou, covered = overlaps(faces, found_boxes)
    done = np.asarray(anonymized, dtype=bool).reshape(-1)
    matched = iou.max(axis=1, initial=0.0) >= IOU_MATCH
    protected = ((iou >= IOU_MATCH) | (covered >= MIN_COVERED_FRACTION))[:, done].any(axis=1)
    counts = {
        group: CoverageCounts(int(mask.sum()), int((matched & mask).sum()), int((~protected & mask).sum())) for group, mask in ground_truth.groups[name].items()
    }
    return ImageCoverage(counts)


def total_coverage(ground_truth: GroundTruthFaces, per_image: Sequence[ImageCoverage]) -> dict[str, CoverageCounts]:
    """The coverage counts of every group summed over images."""
    totals = {group: CoverageCounts() for group in ground_truth.group_names}
    for coverage in per_image:
        for group, counts in coverage.groups.items():
            totals[group].add(counts)
    return totals
