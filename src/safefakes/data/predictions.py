"""WIDER FACE prediction files: ``<pred_dir>/<event>/<stem>.txt``, one per image.

Format (the official submission format)::

    <image name>
    <number of boxes>
    x y w h score
    ...

``(x, y)`` is the top-left corner and ``w, h`` the size in pixels of the original image. A missing
file means "no detections" (as in the official MATLAB code), reported in one warning.

``safefakes predict`` also writes ``<pred_dir>/predictions.json`` (:class:`PredictionMetadata`): the
detector, checkpoint and iteration the files came from and the detector's initialisation, which
``safefakes evaluate`` carries into its result.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from safefakes.common.errors import SafefakesError
from safefakes.common.io import atomic_write_json, atomic_write_text
from safefakes.common.progress import progress
from safefakes.common.weights import Initialisation
from safefakes.data.wider import safe_relative_name

LOGGER = logging.getLogger(__name__)
#: Values per detection line: ``x y w h score``.
FIELDS_PER_BOX = 5
#: How many missing files the warning names before summarising.
MISSING_NAMES_SHOWN = 5
#: A prediction folder's record of what made it, beside the event folders.
METADATA_FILE_NAME = "predictions.json"
METADATA_FORMAT = "safefakes-predictions/1"


@dataclass(frozen=True)
class ImagePredictions:
    """The detections of one image: ``boxes`` (m, 4) ``x y w h`` and ``scores`` (m,), both float64."""

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if self.boxes.shape != (self.scores.shape[0], 4):
            raise ValueError(f"boxes must be ({self.scores.shape[0]}, 4), got {self.boxes.shape}")

    @classmethod
    def empty(cls) -> ImagePredictions:
        """No detections."""
        return cls(np.zeros((0, 4), dtype=np.float64), np.zeros(0, dtype=np.float64))

    def __len__(self) -> int:
        return int(self.scores.shape[0])


#: Predictions of a set of images, keyed by ``(event, stem)``.
Predictions = Mapping[tuple[str, str], ImagePredictions]


def prediction_path(pred_dir: str | os.PathLike[str], event: str, stem: str) -> Path:
    """``<pred_dir>/<event>/<stem>.txt``."""
    return Path(pred_dir) / safe_relative_name(f"{event}/{stem}.txt")


def _bad_line(path: Path, lines: list[str], skip: int) -> SafefakesError:
    """The error for the first detection line of ``lines[skip:]`` that is not five finite numbers."""
    for number, line in enumerate(lines[skip:], start=skip + 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != FIELDS_PER_BOX:
            return SafefakesError(f"{path}:{number}: expected 'x y w h score', got {line.strip()!r}")
        try:
            values = [float(field) for field in fields]
        except ValueError:
            return SafefakesError(f"{path}:{number}: not a number in {line.strip()!r}")
        if not all(math.isfinite(value) for value in values):
            return SafefakesError(f"{path}:{number}: non-finite value in {line.strip()!r}")
    return SafefakesError(f"{path}: malformed detection lines")


def parse_prediction_text(text: str, path: Path) -> ImagePredictions:
    """Parse one prediction file's content; errors name ``path`` and the line number."""
    lines = text.splitlines()
    if len(lines) < 2:
        raise SafefakesError(f"{path}: expected an image-name line and a box-count line, got {len(lines)} line(s)")
    count_text = lines[1].strip()
    try:
        count = int(float(count_text))
    except (ValueError, OverflowError):
        raise SafefakesError(f"{path}:2: expected the number of boxes, got {count_text!r}") from None
    if count < 0 or float(count_text) != count:
        raise SafefakesError(f"{path}:2: expected a non-negative whole number of boxes, got {count_text!r}")
    box_lines = [line for line in lines[2:] if line.strip()]
    if len(box_lines) != count:
        raise SafefakesError(f"{path}:2: announces {count} boxes but {len(box_lines)} box line(s) follow")
    if not count:
        return ImagePredictions.empty()
    fields = " ".join(box_lines).split()
    if len(fields) != count * FIELDS_PER_BOX:
        raise _bad_line(path, lines, 2)
    try:
        values = np.array(fields, dtype=np.float64).reshape(count, FIELDS_PER_BOX)
    except ValueError:
        raise _bad_line(path, lines, 2) from None
    if not np.isfinite(values).all():
        raise _bad_line(path, lines, 2)
    return ImagePredictions(boxes=values[:, :4].copy(), scores=values[:, 4].copy())


def read_prediction_file(path: str | os.PathLike[str]) -> ImagePredictions:
    """Read one ``<stem>.txt`` prediction file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SafefakesError(f"{path}: not a UTF-8 text file") from None
    return parse_prediction_text(text, path)


def _warn_missing(pred_dir: Path, missing: list[tuple[str, str]], total: int) -> None:
    shown = ", ".join(f"{event}/{stem}.txt" for event, stem in missing[:MISSING_NAMES_SHOWN])
    more = f" and {len(missing) - MISSING_NAMES_SHOWN} more" if len(missing) > MISSING_NAMES_SHOWN else ""
    LOGGER.warning(
        "%d of %d prediction files missing under %s (counted as no detections): %s%s",
        len(missing),
        total,
        pred_dir,
        shown,
        more,
    )


def read_predictions(pred_dir: str | os.PathLike[str], images: Iterable[tuple[str, str]]) -> dict[tuple[str, str], ImagePredictions]:
    """Read the predictions of the ``(event, stem)`` images from ``pred_dir``.

    A missing file counts as no detections; all missing files are reported in one warning.
    Files for images not asked for are not read.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise SafefakesError(f"prediction folder not found: {pred_dir}")
    keys = list(images)
    result: dict[tuple[str, str], ImagePredictions] = {}
    missing: list[tuple[str, str]] = []
    for event, stem in progress(keys, desc="read predictions", unit="img"):
        path = prediction_path(pred_dir, event, stem)
        if not path.is_file():
            missing.append((event, stem))
            result[(event, stem)] = ImagePredictions.empty()
            continue
        result[(event, stem)] = read_prediction_file(path)
    if missing:
        _warn_missing(pred_dir, missing, len(keys))
    return result


def format_predictions(image_name: str, boxes_xywh: np.ndarray, scores: np.ndarray) -> str:
    """The text of one prediction file, detections sorted by descending score (stable for ties)."""
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if boxes.shape[0] != values.shape[0]:
        raise SafefakesError(f"{image_name}: {boxes.shape[0]} boxes but {values.shape[0]} scores")
    if not (np.isfinite(boxes).all() and np.isfinite(values).all()):
        raise SafefakesError(f"{image_name}: boxes and scores must be finite numbers")
    order = np.argsort(-values, kind="stable")
    lines = [PurePosixPath(image_name).name, str(values.shape[0])]
    # repr of a Python float is the shortest text that reads back to the same double.
    lines.extend(" ".join(repr(float(v)) for v in (*boxes[i], values[i])) for i in order)
    return "\n".join(lines) + "\n"


def write_predictions(pred_dir: str | os.PathLike[str], image_name: str, boxes_xywh: np.ndarray, scores: np.ndarray) -> Path:
    """Write ``<pred_dir>/<event>/<stem>.txt`` for ``image_name`` (``event/stem.jpg``) atomically; return its path."""
    name = safe_relative_name(image_name)
    if len(name.parts) < 2:
        raise SafefakesError(f"image name {image_name!r} must include its event folder, e.g. 0--Parade/x.jpg")
    path = prediction_path(pred_dir, name.parent.as_posix(), name.stem)
    atomic_write_text(path, format_predictions(image_name, boxes_xywh, scores))
    return path


@dataclass(frozen=True)
class PredictionMetadata:
    """What a prediction folder's files came from: a detector checkpoint and the initialisation it was trained from."""

    detector: str
    checkpoint: str
    iteration: int
    initialisation: Initialisation

    def to_dict(self) -> dict[str, Any]:
        """The JSON record, with its format tag."""
        return {
            "format": METADATA_FORMAT,
            "detector": self.detector,
            "checkpoint": self.checkpoint,
            "iteration": self.iteration,
            "initialisation": self.initialisation.to_dict(),
        }


def write_prediction_metadata(pred_dir: str | os.PathLike[str], metadata: PredictionMetadata) -> Path:
    """Write ``<pred_dir>/predictions.json`` atomically; return its path."""
    path = Path(pred_dir) / METADATA_FILE_NAME
    atomic_write_json(path, metadata.to_dict())
    return path


def read_prediction_metadata(pred_dir: str | os.PathLike[str]) -> PredictionMetadata | None:
    """The record ``safefakes predict`` left in ``pred_dir``, or ``None`` for a folder without one (other tools' predictions)."""
    path = Path(pred_dir) / METADATA_FILE_NAME
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        if values.get("format") != METADATA_FORMAT:
            raise SafefakesError(f"{path}: not a {METADATA_FORMAT} record")
        return PredictionMetadata(
            detector=str(values["detector"]),
            checkpoint=str(values["checkpoint"]),
            iteration=int(values["iteration"]),
            initialisation=Initialisation.from_dict(values["initialisation"]),
        )
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
        raise SafefakesError(f"{path}: not a readable prediction record") from None
