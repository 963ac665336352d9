"""WIDER FACE on disk: the official unpack layout, the ``bbx_gt`` text files and the per-face extras.

Layout (the official archives unpacked side by side)::

    ROOT/WIDER_{split}/images/<event>/<name>.jpg
    ROOT/wider_face_split/wider_face_{split}_bbx_gt.txt
    ROOT/wider_face_split/wider_face_{split}_extras.json   (safefakes only: keypoints, identities)
    ROOT/ground_truth/wider_face_val.mat, wider_{easy,medium,hard}_val.mat   (evaluation ground truth)

The ``bbx_gt`` format: an image path line, a face-count line, then one line per face of
``x y w h blur expression illumination invalid occlusion pose``. Images without faces appear
either as count ``0`` followed by one all-zero line, or as count ``1`` with an all-zero box;
both are read as an image with no faces. Boxes with ``w <= 0`` or ``h <= 0`` are dropped and counted.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from safefakes.common.errors import SafefakesError
from safefakes.common.io import atomic_write_json, atomic_write_text

SPLITS = ("train", "val")
ATTRIBUTE_FIELDS = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
#: The 7 sparse keypoints of DeepPrivacy, the first seven COCO keypoints, in this order.
#: WIDER FACE's evaluation settings, nested easy < medium < hard (one name for them in every stage).
DIFFICULTIES = ("easy", "medium", "hard")
#: Images of WIDER FACE's training split (converts the papers' iteration counts to epochs).
WIDER_TRAIN_IMAGES = 12_880
KEYPOINTS_7 = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder")


@dataclass(frozen=True)
class FaceBox:
    """One annotated face: top-left corner, size in pixels, and the six WIDER attribute codes."""

    x: int
    y: int
    w: int
    h: int
    blur: int = 0
    expression: int = 0
    illumination: int = 0
    invalid: int = 0
    occlusion: int = 0
    pose: int = 0

    @property
    def size(self) -> float:
        """Face size as the paper defines it: the square root of the box area."""
        return float(max(self.w, 0) * max(self.h, 0)) ** 0.5

    def to_line(self) -> str:
        """The box as one ``bbx_gt`` line (with the trailing space the official files carry)."""
        values = (self.x, self.y, self.w, self.h) + tuple(getattr(self, name) for name in ATTRIBUTE_FIELDS)
        return " ".join(str(int(v)) for v in values) + " "


@dataclass
class ImageAnnotation:
    """All faces of one image; ``name`` is the POSIX path relative to ``WIDER_{split}/images``."""

    name: str
    faces: list[FaceBox] = field(default_factory=list)
    dropped_degenerate: int = 0

    @property
    def event(self) -> str:
        """The event folder, e.g. ``0--Parade``."""
        return PurePosixPath(self.name).parent.as_posix()

    @property
    def stem(self) -> str:
        """The image name without folder and extension (the name the evaluation uses)."""
        return PurePosixPath(self.name).stem


@dataclass
class FaceExtras:
    """Per-face information beyond the box: identity and keypoints (``None`` where unknown).

    ``keypoints7`` holds 7 ``[x, y, visible]`` rows in :data:`KEYPOINTS_7` order;
    ``landmarks68`` holds 68 ``[x, y]`` rows in dlib's iBUG-300W order.
    """

    identity: int | None = None
    keypoints7: list[list[float]] | None = None
    landmarks68: list[list[float]] | None = None


@dataclass(frozen=True)
class WiderLayout:
    """Paths of one WIDER FACE root in the official unpack layout."""

    root: Path

    def images_dir(self, split: str) -> Path:
        """``ROOT/WIDER_{split}/images``."""
        _check_split(split)
        return self.root / f"WIDER_{split}" / "images"

    def image_path(self, split: str, name: str) -> Path:
        """The image file of annotation ``name`` (refuses names that escape the images folder)."""
        return self.images_dir(split) / safe_relative_name(name)

    @property
    def split_dir(self) -> Path:
        """``ROOT/wider_face_split``."""
        return self.root / "wider_face_split"

    def annotation_file(self, split: str) -> Path:
        """``ROOT/wider_face_split/wider_face_{split}_bbx_gt.txt``."""
        _check_split(split)
        return self.split_dir / f"wider_face_{split}_bbx_gt.txt"

    def extras_file(self, split: str) -> Path:
        """``ROOT/wider_face_split/wider_face_{split}_extras.json`` (keypoints and identities)."""
        _check_split(split)
        return self.split_dir / f"wider_face_{split}_extras.json"

    @property
    def ground_truth_dir(self) -> Path:
        """``ROOT/ground_truth``: the four evaluation ``.mat`` files."""
        return self.root / "ground_truth"


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise SafefakesError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def safe_relative_name(name: str) -> PurePosixPath:
    """Validate an annotation's image path: relative, no ``..``, no empty parts."""
    path = PurePosixPath(name.replace("\\", "/"))
    if not name or path.is_absolute() or os.path.isabs(name) or any(part in ("..", "") for part in path.parts):
        raise SafefakesError(f"refusing image path {name!r}: annotation paths must be relative and stay inside the images folder")
    return path


def _parse_ints(fields: list[str], source: str, line_number: int) -> list[int]:
    try:
        return [int(round(float(value))) for value in fields]
    except ValueError:
        raise SafefakesError(f"{source}:{line_number}: expected numbers, got {' '.join(fields)!r}") from None


def parse_bbx_gt(text: str, source: str = "<text>") -> list[ImageAnnotation]:
    """Parse the content of a ``bbx_gt`` file; errors name ``source`` and the line number."""
    lines = text.splitlines()
    annotations: list[ImageAnnotation] = []
    index = 0
    while index < len(lines):
        name = lines[index].strip()
        if not name:
            index += 1
            continue
        name_line = index + 1
        try:
            safe_relative_name(name)
        except SafefakesError as error:
            raise SafefakesError(f"{source}:{name_line}: {error}") from None
        if not name.lower().endswith((".jpg", ".jpeg", ".png")):
            raise SafefakesError(f"{source}:{name_line}: expected an image path, got {name!r}")
        if index + 1 >= len(lines):
            raise SafefakesError(f"{source}:{name_line}: image {name!r} has no face-count line")
        count_fields = lines[index + 1].split()
        if len(count_fields) != 1 or not count_fields[0].isdigit():
            raise SafefakesError(f"{source}:{index + 2}: expected a face count, got {lines[index + 1].strip()!r}")
        count = int(count_fields[0])
        # Count 0 is followed by one placeholder line; count 1 may be an all-zero placeholder box.
        rows = max(count, 1)
        if index + 2 + rows > len(lines):
            raise SafefakesError(f"{source}:{index + 2}: image {name!r} announces {count} faces but the file ends early")
        annotation = ImageAnnotation(name=name)
        for offset in range(rows):
            line_number = index + 3 + offset
            fields = lines[index + 2 + offset].split()
            if count == 0:
                continue
            if len(fields) < 4 or len(fields) > 10:
                raise SafefakesError(f"{source}:{line_number}: expected 4 to 10 numbers per face, got {len(fields)}")
            values = _parse_ints(fields, source, line_number) + [0] * (10 - len(fields))
            box = FaceBox(*values)
            if box.w <= 0 or box.h <= 0:
                if any(values):
                    annotation.dropped_degenerate += 1
                continue
            annotation.faces.append(box)
        annotations.append(annotation)
        index += 2 + rows
    return annotations


def read_bbx_gt(path: str | os.PathLike[str]) -> list[ImageAnnotation]:
    """Read a ``wider_face_*_bbx_gt.txt`` file."""
    path = Path(path)
    if not path.is_file():
        raise SafefakesError(f"annotation file not found: {path}")
    return parse_bbx_gt(path.read_text(encoding="utf-8", errors="strict"), source=str(path))


def format_bbx_gt(annotations: list[ImageAnnotation]) -> str:
    """Render annotations in the official ``bbx_gt`` format (count 0 plus a zero line for empty images)."""
    out: list[str] = []
    for annotation in annotations:
        out.append(annotation.name)
        out.append(str(len(annotation.faces)))
        if annotation.faces:
            out.extend(face.to_line() for face in annotation.faces)
        else:
            out.append("0 0 0 0 0 0 0 0 0 0 ")
    return "\n".join(out) + "\n"


def write_bbx_gt(path: str | os.PathLike[str], annotations: list[ImageAnnotation]) -> None:
    """Write annotations atomically in the official ``bbx_gt`` format."""
    atomic_write_text(path, format_bbx_gt(annotations))


def read_extras(path: str | os.PathLike[str]) -> dict[str, list[FaceExtras]]:
    """Read the extras JSON: image name -> one :class:`FaceExtras` per face, in ``bbx_gt`` order."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SafefakesError(f"extras file not found: {path}") from None
    except json.JSONDecodeError as error:
        raise SafefakesError(f"{path}: not valid JSON ({error})") from None
    return {name: [FaceExtras(**face) for face in faces] for name, faces in raw.items()}


def write_extras(path: str | os.PathLike[str], extras: dict[str, list[FaceExtras]]) -> None:
    """Write the extras JSON atomically."""
    atomic_write_json(path, {name: [asdict(face) for face in faces] for name, faces in extras.items()})


def load_split(root: str | os.PathLike[str], split: str) -> tuple[list[ImageAnnotation], dict[str, list[FaceExtras]] | None]:
    """Annotations of one split, and its extras when the dataset carries them (synthetic data does)."""
    layout = WiderLayout(Path(root))
    annotations = read_bbx_gt(layout.annotation_file(split))
    extras_path = layout.extras_file(split)
    extras = read_extras(extras_path) if extras_path.is_file() else None
    return annotations, extras
