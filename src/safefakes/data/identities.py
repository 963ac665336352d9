"""Identity photo sets for the re-identification test and for the anonymizers' training crops: a CSV of
photos and identities, CelebA's identity list, LFW-style folders, or a safefakes synthetic WIDER root."""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from safefakes.common.errors import SafefakesError
from safefakes.data.wider import WiderLayout, load_split

LOG = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
Box = tuple[int, int, int, int]  # x, y, w, h in pixels


@dataclass(frozen=True)
class IdentitySample:
    """One photo of one identity; ``box`` (x, y, w, h) is known for synthetic data, else found by dlib.

    With ``box_is_face`` the box is the face itself (drawn identity photos dlib's detector may miss): the
    descriptor is taken from it directly, aligned by the 5-point predictor, without detection; otherwise a
    given box only bounds the region searched.
    """

    key: str
    path: Path
    identity: str
    box: Box | None = None
    box_is_face: bool = False


def _parse_box(value: str | None, where: str) -> Box | None:
    """An ``x y w h`` cell (pixels); empty is ``None``."""
    if not value or not value.strip():
        return None
    parts = value.split()
    try:
        x, y, w, h = (round(float(part)) for part in parts)
    except ValueError:
        raise SafefakesError(f"{where}: box must be 'x y w h' numbers, got {value!r}") from None
    if w < 1 or h < 1:
        raise SafefakesError(f"{where}: box width and height must be positive, got {value!r}")
    return (x, y, w, h)


def read_identity_csv(root: Path) -> list[IdentitySample]:
    """``identities.csv`` with ``path`` and ``identity`` (or ``identities``, ``;``-separated) columns, and an
    optional ``box`` column (``x y w h``): the known face box, described without detection.

    Photos showing several identities cannot be attributed to one face and are skipped (logged).
    """
    samples, skipped = [], 0
    with open(root / "identities.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        column = "identity" if "identity" in (reader.fieldnames or []) else "identities"
        if "path" not in (reader.fieldnames or []) or column not in (reader.fieldnames or []):
            raise SafefakesError(f"{root / 'identities.csv'}: needs columns path and identity (or identities)")
        for row in reader:
            names = [name for name in row[column].split(";") if name]
            if len(names) != 1:
                skipped += 1
                continue
            box = _parse_box(row.get("box"), f"{root / 'identities.csv'} ({row['path']})")
            samples.append(IdentitySample(row["path"], root / row["path"], names[0], box, box_is_face=box is not None))
    if skipped:
        LOG.info("%s: skipped %d photos with more than one identity", root, skipped)
    return samples


def read_celeba_identities(root: Path) -> list[IdentitySample]:
    """CelebA: ``identity_CelebA.txt`` (``<image> <id>`` lines) beside ``img_align_celeba/``."""
    images = root / "img_align_celeba"
    samples = []
    for line in (root / "identity_CelebA.txt").read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2 and (images / parts[0]).is_file():
            samples.append(IdentitySample(parts[0], images / parts[0], parts[1]))
    return samples


def read_identity_folders(root: Path) -> list[IdentitySample]:
    """LFW style: one sub-folder per identity holding its photos."""
    samples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for image in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            samples.append(IdentitySample(f"{folder.name}/{image.name}", image, folder.name))
    return samples


def read_synthetic_identities(root: Path, split: str = "train") -> list[IdentitySample]:
    """Faces of a safefakes synthetic WIDER-layout dataset that carry an ``identity`` in the extras."""
    annotations, extras = load_split(root, split)
    if extras is None:
        raise SafefakesError(f"{root}: no extras file with identities for split {split}")
    layout = WiderLayout(root)
    samples = []
    for annotation in annotations:
        for index, (face, extra) in enumerate(zip(annotation.faces, extras.get(annotation.name, []))):
            if extra.identity is not None:
                samples.append(
                    IdentitySample(
                        f"{annotation.name}#{index}", layout.image_path(split, annotation.name), str(extra.identity), (face.x, face.y, face.w, face.h)
                    )
                )
    return samples


def load_identities(source: str | os.PathLike[str], split: str = "train") -> list[IdentitySample]:
    """Read an identity set, recognizing its kind; keeps identities with at least two photos."""
    root = Path(source)
    if not root.is_dir():
        raise SafefakesError(f"identity folder not found: {root}")
    if WiderLayout(root).annotation_file(split).is_file():
        samples = read_synthetic_identities(root, split)
    elif (root / "identities.csv").is_file():
        samples = read_identity_csv(root)
    elif (root / "identity_CelebA.txt").is_file():
        samples = read_celeba_identities(root)
    else:
        samples = read_identity_folders(root)
    counts: dict[str, int] = {}
    for sample in samples:
        counts[sample.identity] = counts.get(sample.identity, 0) + 1
    kept = sorted((s for s in samples if counts[s.identity] >= 2), key=lambda s: (s.identity, s.key))
    if len({s.identity for s in kept}) < 2:
        raise SafefakesError(f"{root}: need at least two identities with two or more photos each, found {len({s.identity for s in kept})}")
    return kept
