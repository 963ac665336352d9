"""The WIDER FACE evaluation ground truth: the four official ``.mat`` files, read and written.

``wider_face_val.mat`` holds every annotated box; ``wider_{easy,medium,hard}_val.mat`` repeat those
boxes and add ``gt_list``: the 1-based rows of each image's boxes that count in that setting. Every
other box is *ignored* (a detection on it is neither rewarded nor punished).

Layout of every key (MATLAB v5, read with :func:`scipy.io.loadmat`): a ``(n_events, 1)`` cell array,
one cell per event; ``event_list[i, 0]`` is the event name; the other keys hold a ``(n_images, 1)``
cell per event: ``file_list`` (image stem), ``face_bbx_list`` (int32 ``(n, 4)`` of ``x y w h``),
six ``<attribute>_label_list`` (uint8 ``(n, 1)``) and ``gt_list`` (``(k, 1)`` unsigned integers).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.io

from safefakes.common.errors import SafefakesError
from safefakes.common.io import atomic_write_bytes
from safefakes.data.wider import ATTRIBUTE_FIELDS, DIFFICULTIES, ImageAnnotation

#: The three nested evaluation settings, in the order the paper reports them.
#: The file with every box (no ``gt_list``).
ALL_FACES_FILE = "wider_face_val.mat"
#: Attribute label keys in the official files, in :data:`ATTRIBUTE_FIELDS` order.
LABEL_KEYS = tuple(f"{name}_label_list" for name in ATTRIBUTE_FIELDS)
#: A MAT v5 file starts with 116 bytes of descriptive text; we write a fixed one so output bytes are reproducible.
MAT_HEADER_TEXT_BYTES = 116
MAT_HEADER_TEXT = "MATLAB 5.0 MAT-file, Platform: safefakes, Created by: safefakes.data.ground_truth"


def setting_file(setting: str) -> str:
    """The file name of one setting's ground truth, e.g. ``wider_easy_val.mat``."""
    if setting not in DIFFICULTIES:
        raise SafefakesError(f"unknown setting {setting!r}; expected one of {', '.join(DIFFICULTIES)}")
    return f"wider_{setting}_val.mat"


@dataclass(frozen=True)
class GroundTruthImage:
    """One validation image: its boxes (``x y w h`` as stored) and, per setting, which boxes count."""

    event: str
    stem: str
    boxes: np.ndarray
    counted: Mapping[str, np.ndarray]

    @property
    def key(self) -> tuple[str, str]:
        """``(event, stem)``: how predictions are looked up (``<pred_dir>/<event>/<stem>.txt``)."""
        return (self.event, self.stem)


@dataclass(frozen=True)
class StackedGroundTruth:
    """All boxes of a :class:`GroundTruth` in one array: image ``i`` owns rows ``offsets[i]:offsets[i + 1]``."""

    boxes: np.ndarray
    offsets: np.ndarray
    counted: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class GroundTruth:
    """The evaluation ground truth of a set of images, in the official file order."""

    images: tuple[GroundTruthImage, ...]

    def __len__(self) -> int:
        return len(self.images)

    @cached_property
    def stacked(self) -> StackedGroundTruth:
        """Every image's boxes and counted masks concatenated (computed once, for vectorized evaluation)."""
        sizes = [image.boxes.shape[0] for image in self.images]
        offsets = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64))).astype(np.int64)
        boxes = np.concatenate([image.boxes for image in self.images]) if self.images else np.zeros((0, 4))
        counted = {
            setting: (np.concatenate([image.counted[setting] for image in self.images]) if self.images else np.zeros(0, dtype=bool)) for setting in DIFFICULTIES
        }
        return StackedGroundTruth(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), offsets, counted)

    def keys(self) -> list[tuple[str, str]]:
        """``(event, stem)`` of every image, in order."""
        return [image.key for image in self.images]

    def face_counts(self) -> dict[str, int]:
        """Number of counted faces per setting (the recall denominators)."""
        return {setting: int(self.stacked.counted[setting].sum()) for setting in DIFFICULTIES}

    def subset(self, keys: Iterable[tuple[str, str]]) -> GroundTruth:
        """The images whose ``(event, stem)`` is in ``keys`` (file order kept); unknown keys are an error."""
        wanted = set(keys)
        known = set(self.keys())
        unknown = sorted(wanted - known)
        if unknown:
            raise SafefakesError(f"{len(unknown)} image(s) not in the ground truth, e.g. {'/'.join(unknown[0])}")
        return GroundTruth(tuple(image for image in self.images if image.key in wanted))


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def _load_mat(path: Path) -> dict:
    if not path.is_file():
        raise SafefakesError(f"ground-truth file not found: {path}")
    try:
        return scipy.io.loadmat(str(path))
    except Exception as error:  # scipy raises several types for damaged files
        raise SafefakesError(f"{path}: not a readable MATLAB v5 file ({error})") from None


def _cell_string(cell: np.ndarray) -> str:
    """A MATLAB char array loaded by scipy (``array(['name'])``) as a Python string."""
    values = np.asarray(cell).ravel()
    return str(values[0]) if values.size else ""


def _require_keys(mat: dict, keys: Sequence[str], path: Path) -> None:
    missing = [key for key in keys if key not in mat]
    if missing:
        raise SafefakesError(f"{path}: missing key(s) {', '.join(missing)}; not a WIDER FACE ground-truth file")


def _read_all_faces(path: Path) -> tuple[list[str], list[str], list[np.ndarray]]:
    """Event names, image stems and boxes of every image, in file order."""
    mat = _load_mat(path)
    _require_keys(mat, ("event_list", "file_list", "face_bbx_list"), path)
    events, stems, boxes = [], [], []
    for event_index in range(mat["event_list"].shape[0]):
        event = _cell_string(mat["event_list"][event_index, 0])
        files = mat["file_list"][event_index, 0]
        box_cells = mat["face_bbx_list"][event_index, 0]
        for image_index in range(files.shape[0]):
            events.append(event)
            stems.append(_cell_string(files[image_index, 0]))
            image_boxes = np.asarray(box_cells[image_index, 0], dtype=np.float64).reshape(-1, 4)
            boxes.append(image_boxes)
    return events, stems, boxes


def _read_setting_masks(path: Path, boxes: Sequence[np.ndarray], stems: Sequence[str]) -> list[np.ndarray]:
    """Per image, the boolean mask of boxes listed in this setting's ``gt_list``."""
    mat = _load_mat(path)
    _require_keys(mat, ("file_list", "gt_list"), path)
    masks: list[np.ndarray] = []
    for event_index in range(mat["gt_list"].shape[0]):
        files = mat["file_list"][event_index, 0]
        cells = mat["gt_list"][event_index, 0]
        for image_index in range(cells.shape[0]):
            position = len(masks)
            if position >= len(boxes) or _cell_string(files[image_index, 0]) != stems[position]:
                raise SafefakesError(f"{path}: image list differs from {ALL_FACES_FILE} at image {position + 1}")
            # gt_list is 1-based and stored as uint8/uint16: cast before subtracting (uint8 arithmetic wraps).
            rows = np.asarray(cells[image_index, 0]).astype(np.int64).ravel() - 1
            n_boxes = boxes[position].shape[0]
            if rows.size and (rows.min() < 0 or rows.max() >= n_boxes):
                raise SafefakesError(f"{path}: gt_list of image {stems[position]} points outside its {n_boxes} boxes")
            mask = np.zeros(n_boxes, dtype=bool)
            mask[rows] = True
            masks.append(mask)
    if len(masks) != len(boxes):
        raise SafefakesError(f"{path}: {len(masks)} images, but {ALL_FACES_FILE} has {len(boxes)}")
    return masks


def load_ground_truth(gt_dir: str | os.PathLike[str]) -> GroundTruth:
    """Read ``wider_face_val.mat`` and the three setting files from ``gt_dir``."""
    gt_dir = Path(gt_dir)
    events, stems, boxes = _read_all_faces(gt_dir / ALL_FACES_FILE)
    masks = {setting: _read_setting_masks(gt_dir / setting_file(setting), boxes, stems) for setting in DIFFICULTIES}
    images = tuple(
        GroundTruthImage(
            event=events[i],
            stem=stems[i],
            boxes=boxes[i],
            counted={setting: masks[setting][i] for setting in DIFFICULTIES},
        )
        for i in range(len(stems))
    )
    if len(set(image.key for image in images)) != len(images):
        raise SafefakesError(f"{gt_dir}: the ground truth lists an image twice")
    return GroundTruth(images)


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def _column_cells(items: Sequence[object]) -> np.ndarray:
    """A ``(len(items), 1)`` object array: how scipy writes a MATLAB column cell array."""
    cells = np.empty((len(items), 1), dtype=object)
    for index, item in enumerate(items):
        cells[index, 0] = item
    return cells


def _smallest_unsigned(values: np.ndarray) -> np.dtype:
    """The narrowest unsigned type holding ``values`` (the official files store indices this way)."""
    top = int(values.max()) if values.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise SafefakesError(f"face index {top} too large for a ground-truth file")


def _group_by_event(annotations: Sequence[ImageAnnotation]) -> dict[str, list[int]]:
    """Event name -> indices into ``annotations``, events in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for index, annotation in enumerate(annotations):
        groups.setdefault(annotation.event, []).append(index)
    return groups


def _image_boxes(annotation: ImageAnnotation) -> np.ndarray:
    """int32 ``(n, 4)`` boxes; an image without faces gets the official all-zero placeholder row."""
    if not annotation.faces:
        return np.zeros((1, 4), dtype=np.int32)
    return np.array([[face.x, face.y, face.w, face.h] for face in annotation.faces], dtype=np.int32)


def _image_labels(annotation: ImageAnnotation, attribute: str) -> np.ndarray:
    """uint8 ``(n, 1)`` attribute codes (one zero row for an image without faces, as officially)."""
    if not annotation.faces:
        return np.zeros((1, 1), dtype=np.uint8)
    return np.array([[getattr(face, attribute)] for face in annotation.faces], dtype=np.uint8)


def _image_gt_list(annotation: ImageAnnotation, rows: Sequence[int], setting: str) -> np.ndarray:
    """The 1-based, ascending ``(k, 1)`` index column; ``(0, 0)`` for an image without faces (as officially)."""
    indices = np.asarray(list(rows), dtype=np.int64).ravel()
    n_faces = len(annotation.faces)
    if indices.size and (indices.min() < 0 or indices.max() >= n_faces):
        raise SafefakesError(f"{setting} face indices of {annotation.name} must lie in 0..{n_faces - 1}, got {indices.tolist()}")
    if np.unique(indices).size != indices.size:
        raise SafefakesError(f"{setting} face indices of {annotation.name} repeat a face: {indices.tolist()}")
    if n_faces == 0:
        return np.zeros((0, 0), dtype=np.uint8)
    one_based = np.sort(indices) + 1
    return one_based.astype(_smallest_unsigned(one_based)).reshape(-1, 1)


def _common_variables(annotations: Sequence[ImageAnnotation], groups: Mapping[str, list[int]]) -> dict[str, np.ndarray]:
    """The keys every ground-truth file has, as scipy object arrays."""
    events = list(groups)
    variables: dict[str, np.ndarray] = {
        "event_list": _column_cells([np.array([event]) for event in events]),
        "file_list": _column_cells([_column_cells([np.array([annotations[i].stem]) for i in groups[e]]) for e in events]),
        "face_bbx_list": _column_cells([_column_cells([_image_boxes(annotations[i]) for i in groups[e]]) for e in events]),
    }
    for attribute, key in zip(ATTRIBUTE_FIELDS, LABEL_KEYS):
        variables[key] = _column_cells([_column_cells([_image_labels(annotations[i], attribute) for i in groups[e]]) for e in events])
    return variables


#: A MAT v5 file is a 128-byte header followed by one self-contained record per variable.
MAT_HEADER_BYTES = 128


def _variable_record(name: str, value: np.ndarray) -> bytes:
    """One variable as a compressed MAT v5 record (without the file header), so it can be reused across files."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {name: value}, format="5", do_compression=True, oned_as="column")
    return buffer.getvalue()[MAT_HEADER_BYTES:]


def _mat_file_header() -> bytes:
    """scipy's MAT v5 header with a fixed descriptive text instead of the creation time (reproducible bytes)."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {}, format="5")
    header = bytearray(buffer.getvalue()[:MAT_HEADER_BYTES])
    header[:MAT_HEADER_TEXT_BYTES] = MAT_HEADER_TEXT.ljust(MAT_HEADER_TEXT_BYTES).encode("ascii")
    return bytes(header)


def _mat_bytes(records: Mapping[str, bytes]) -> bytes:
    """A MAT v5 file holding ``records`` (name -> record bytes) in sorted name order, as the official files are."""
    return _mat_file_header() + b"".join(records[name] for name in sorted(records))


def write_ground_truth(
    gt_dir: Path,
    annotations: Sequence[ImageAnnotation],
    difficulty: Mapping[str, Sequence[Sequence[int]]],
) -> None:
    """Write ``wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat`` into ``gt_dir``, atomically.

    ``difficulty[setting][i]`` lists the 0-based indices of the faces of ``annotations[i]`` that count
    in that setting. Images are grouped by event in order of first appearance, keeping their order.
    The layout is that of the official files; ``gt_list`` is stored as uint8/uint16 (what scipy reads
    from the official files, whose MATLAB class is double).
    """
    gt_dir = Path(gt_dir)
    missing = [setting for setting in DIFFICULTIES if setting not in difficulty]
    if missing:
        raise SafefakesError(f"difficulty lacks setting(s) {', '.join(missing)}")
    for setting in DIFFICULTIES:
        if len(difficulty[setting]) != len(annotations):
            raise SafefakesError(f"difficulty[{setting!r}] has {len(difficulty[setting])} entries for {len(annotations)} images")
    stems = [(a.event, a.stem) for a in annotations]
    if len(set(stems)) != len(stems):
        raise SafefakesError("two annotations share the same event and image name")
    groups = _group_by_event(annotations)
    common = {name: _variable_record(name, value) for name, value in _common_variables(annotations, groups).items()}
    files = {ALL_FACES_FILE: _mat_bytes(common)}
    for setting in DIFFICULTIES:
        gt_list = _column_cells([_column_cells([_image_gt_list(annotations[i], difficulty[setting][i], setting) for i in groups[event]]) for event in groups])
        files[setting_file(setting)] = _mat_bytes({**common, "gt_list": _variable_record("gt_list", gt_list)})
    gt_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        atomic_write_bytes(gt_dir / name, data)
