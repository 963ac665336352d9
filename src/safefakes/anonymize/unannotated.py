"""Anonymize a folder of images that has no annotations: a face finder gives the boxes, then any method anonymizes them.

Input: every ``.jpg``/``.jpeg``/``.png`` file under ``--images DIR`` (recursively, sorted by path). When DIR
is a WIDER root (it holds ``WIDER_{split}/images``) or such an ``images`` folder itself, only that split's
images are taken and its ground truth is used to count unprotected faces (see :mod:`.coverage`).

Output ``OUT`` (built under a temporary name, renamed only when complete) is a WIDER root:

- ``WIDER_{split}/images/<relative path>``: the anonymized images, same relative paths and formats;
- ``wider_face_split/wider_face_{split}_bbx_gt.txt``: the boxes found and anonymized (score >= threshold),
  readable with :func:`safefakes.data.wider.read_bbx_gt`, so OUT can be scored like any WIDER root;
- ``wider_face_split/wider_face_{split}_review_bbx_gt.txt``: possible faces left untouched, the boxes that
  scored between the review threshold and the threshold and are not mostly inside an anonymized box;
- ``manifest.json``: the manifest of ``safefakes anonymize`` plus the box source, both thresholds, per-image
  counts and, with ground truth, the unprotected faces per evaluation setting.

Bad inputs follow ``safefakes anonymize``: a missing folder, an unknown method or face finder, or bad
parameters stop the run with one line; an unreadable image is skipped and counted (``--on-bad-image skip``)
or stops the run (``error``). Face finding runs single-threaded per process and images are anonymized as
in :mod:`.dataset`, so the output bytes do not depend on ``--workers``.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from safefakes.anonymize.base import build_anonymizer, log_run_record, run_record
from safefakes.anonymize.coverage import (
    ALL_FACES,
    IOU_MATCH,
    MIN_COVERED_FRACTION,
    GroundTruthFaces,
    ImageCoverage,
    image_coverage,
    load_ground_truth_faces,
    mostly_covered,
    total_coverage,
)
from safefakes.anonymize.dataset import (
    MANIFEST_NAME,
    POOL_CHUNK_BATCHES,
    AnonymizeJob,
    BadImagePolicy,
    ImageResult,
    anonymize_listed_images,
    build_manifest,
    check_job,
)
from safefakes.anonymize.face_finders import FaceFinder, build_face_finder, get_face_finder_spec
from safefakes.anonymize.images import DEFAULT_JPEG_QUALITY, IMAGE_FORMATS, BadImageError, read_image
from safefakes.common.errors import SafefakesError
from safefakes.common.io import atomic_directory, atomic_write_json
from safefakes.common.progress import progress
from safefakes.data.wider import SPLITS, FaceBox, ImageAnnotation, WiderLayout, write_bbx_gt

#: Reason of an image whose path cannot be written as a ``bbx_gt`` line (line breaks, leading or trailing spaces).
BAD_NAME = "unsupported_name"
#: Characters a ``bbx_gt`` path line cannot hold (the reader splits lines, and takes a backslash for a folder separator).
UNWRITABLE_NAME_CHARACTERS = "\r\n\\"
#: The split name OUT's layout uses when the input does not tell.
DEFAULT_SPLIT = "val"


@dataclass(frozen=True)
class FoundBoxesJob:
    """Everything one ``safefakes anonymize --boxes-from`` run needs. ``split`` None: detected from the input, else
    ``val``; thresholds None: the finder's defaults; ``ground_truth`` None: the input's own when it is a WIDER root."""

    images: Path
    out: Path
    method: str
    boxes_from: str
    params: Mapping[str, Any] = field(default_factory=dict)
    threshold: float | None = None
    review_threshold: float | None = None
    ground_truth: Path | None = None
    split: str | None = None
    seed: int = 0
    workers: int = 1
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    on_bad_image: BadImagePolicy = "skip"

    def anonymize_job(self, split: str) -> AnonymizeJob:
        """The settings of the anonymization step (the input folder in place of a WIDER root)."""
        return AnonymizeJob(
            wider_root=self.images,
            split=split,
            out=self.out,
            method=self.method,
            params=self.params,
            seed=self.seed,
            workers=self.workers,
            jpeg_quality=self.jpeg_quality,
            on_bad_image=self.on_bad_image,
        )


@dataclass(frozen=True)
class ImageFolder:
    """The images to anonymize: the folder scanned, the WIDER root it belongs to (if any) and the split name of OUT."""

    images_dir: Path
    wider_root: Path | None
    split: str


@dataclass
class FinderResult:
    """What the face finder returned for one image (small, so it travels cheaply between processes)."""

    name: str
    height: int = 0
    width: int = 0
    boxes: np.ndarray | None = None  # x1 y1 x2 y2
    scores: np.ndarray | None = None
    failure_reason: str | None = None  # a bad image: one of the BAD_* reasons (strings: exceptions do not cross processes)
    failure_detail: str = ""


@dataclass(frozen=True)
class FoundFaces:
    """One image's boxes split by the thresholds: ``faces`` to anonymize, ``review`` possible faces left untouched."""

    name: str
    faces: tuple[FaceBox, ...]
    review: tuple[FaceBox, ...]
    degenerate: int  # boxes to anonymize dropped for lying wholly outside the image


# --------------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------------


def resolve_folder(images: Path, split: str | None) -> ImageFolder:
    """Where the images are: a WIDER root's ``WIDER_{split}/images``, such a folder itself, or any folder."""
    if not images.is_dir():
        raise SafefakesError(f"images folder not found: {images}")
    candidates = [split] if split is not None else [DEFAULT_SPLIT, *[s for s in SPLITS if s != DEFAULT_SPLIT]]
    for candidate in candidates:
        if WiderLayout(images).images_dir(candidate).is_dir():
            return ImageFolder(WiderLayout(images).images_dir(candidate), images, candidate)
    resolved = images.resolve()
    for candidate in SPLITS:
        if resolved.name == "images" and resolved.parent.name == f"WIDER_{candidate}":
            if split is not None and split != candidate:
                raise SafefakesError(f"--split {split} contradicts the folder {images} (a WIDER_{candidate} images folder)")
            return ImageFolder(images, resolved.parent.parent, candidate)
    return ImageFolder(images, None, split or DEFAULT_SPLIT)


def list_images(folder: Path) -> tuple[list[str], int]:
    """The POSIX paths (relative to ``folder``, sorted) of its JPEG and PNG files, and how many other files it holds."""
    names: list[str] = []
    ignored = 0
    for directory, subdirs, files in os.walk(folder):
        subdirs.sort()
        for file_name in files:
            relative = (Path(directory) / file_name).relative_to(folder)
            if Path(file_name).suffix.lower() in IMAGE_FORMATS:
                names.append(PurePosixPath(*relative.parts).as_posix())
            else:
                ignored += 1
    return sorted(names), ignored


def _name_problem(name: str) -> str | None:
    """Why ``name`` cannot be one line of a ``bbx_gt`` file, or None."""
    if any(character in name for character in UNWRITABLE_NAME_CHARACTERS) or name != name.strip():
        return "line breaks, backslashes and spaces at either end of a path cannot be written in a bbx_gt file"
    return None


# --------------------------------------------------------------------------------------------------
# Face finding (runs in worker processes; module-level so the spawn start method can import it)
# --------------------------------------------------------------------------------------------------

_FINDER: FaceFinder | None = None
_FINDER_IMAGES: Path | None = None


def _init_finder(name: str, lowest_score: float, images_dir: Path) -> None:
    """Build this process's face finder once (pool initializer, also used in-process); one thread per process."""
    global _FINDER, _FINDER_IMAGES
    cv2.setNumThreads(1)
    _FINDER = build_face_finder(name, lowest_score)
    _FINDER_IMAGES = images_dir


def _find_faces(name: str) -> FinderResult:
    """Read one image and run the face finder on it; a bad image comes back as a failure, not an exception."""
    assert _FINDER is not None and _FINDER_IMAGES is not None, "face finder not initialized"
    problem = _name_problem(name)
    if problem is not None:
        return FinderResult(name, failure_reason=BAD_NAME, failure_detail=problem)
    try:
        _, pixels = read_image(_FINDER_IMAGES / name)
    except BadImageError as error:
        return FinderResult(name, failure_reason=error.reason, failure_detail=error.detail)
    boxes, scores = _FINDER(np.ascontiguousarray(pixels[:, :, ::-1]))
    return FinderResult(name, pixels.shape[0], pixels.shape[1], np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores, dtype=np.float64))


def _run_finder(job: FoundBoxesJob, images_dir: Path, names: Sequence[str], lowest_score: float) -> Iterator[FinderResult]:
    """Finder results in ``names`` order, from this process (``workers == 1``) or a spawn-started pool."""
    init_args = (job.boxes_from, lowest_score, images_dir)
    if job.workers == 1:
        threads = cv2.getNumThreads()
        _init_finder(*init_args)
        try:
            yield from map(_find_faces, names)
        finally:
            cv2.setNumThreads(threads)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(job.workers, initializer=_init_finder, initargs=init_args) as pool:
        yield from pool.imap(_find_faces, names, chunksize=POOL_CHUNK_BATCHES)


def pixel_boxes(boxes_xyxy: np.ndarray, height: int, width: int) -> tuple[list[FaceBox], np.ndarray]:
    """Finder boxes as whole-pixel :class:`FaceBox` es rounded outwards and clipped to the image, and the mask of
    the boxes kept (nothing left inside the image: dropped)."""
    kept: list[FaceBox] = []
    mask = np.zeros(len(boxes_xyxy), dtype=bool)
    for index, (x1, y1, x2, y2) in enumerate(np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)):
        left, top = max(0, math.floor(x1)), max(0, math.floor(y1))
        right, bottom = min(width, math.ceil(x2)), min(height, math.ceil(y2))
        if right > left and bottom > top:
            kept.append(FaceBox(left, top, right - left, bottom - top))
            mask[index] = True
    return kept, mask


def split_by_threshold(result: FinderResult, threshold: float, review_threshold: float) -> FoundFaces:
    """The boxes scoring at least ``threshold`` (to anonymize, best first) and the possible faces scoring from
    ``review_threshold`` up to it that are not mostly inside one of them."""
    assert result.boxes is not None and result.scores is not None
    order = np.argsort(-result.scores, kind="stable")
    boxes, scores = result.boxes[order], result.scores[order]
    faces, kept = pixel_boxes(boxes[scores >= threshold], result.height, result.width)
    candidates, _ = pixel_boxes(boxes[(scores >= review_threshold) & (scores < threshold)], result.height, result.width)
    face_array = np.array([[f.x, f.y, f.w, f.h] for f in faces], dtype=np.float64).reshape(-1, 4)
    candidate_array = np.array([[f.x, f.y, f.w, f.h] for f in candidates], dtype=np.float64).reshape(-1, 4)
    untouched = ~mostly_covered(candidate_array, face_array)
    review = tuple(candidate for candidate, keep in zip(candidates, untouched) if keep)
    return FoundFaces(result.name, tuple(faces), review, int((~kept).sum()))


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def _thresholds(job: FoundBoxesJob) -> tuple[float, float]:
    """The job's threshold and review threshold (the finder's defaults where not given), checked."""
    spec = get_face_finder_spec(job.boxes_from)
    threshold = spec.threshold if job.threshold is None else float(job.threshold)
    review = min(spec.review_threshold, threshold) if job.review_threshold is None else float(job.review_threshold)
    if not (math.isfinite(threshold) and math.isfinite(review)):
        raise SafefakesError(f"--threshold and --review-threshold must be finite numbers, got {threshold} and {review}")
    if review > threshold:
        raise SafefakesError(f"--review-threshold {review} must not exceed --threshold {threshold}")
    return threshold, review


def _check_out(folder: ImageFolder, out: Path) -> None:
    """OUT must not lie inside the folder of images it is made from (a second run would read it back)."""
    images, target = folder.images_dir.resolve(), out.resolve()
    if images == target or images in target.parents:
        raise SafefakesError(f"--out {out} lies inside the images folder {folder.images_dir}; choose a folder outside it")


def _ground_truth(job: FoundBoxesJob, folder: ImageFolder, names: Sequence[str]) -> GroundTruthFaces | None:
    """The ground truth of the images: ``--ground-truth`` (required to match some image), else the input root's own."""
    if job.ground_truth is not None:
        found = load_ground_truth_faces(job.ground_truth, folder.split, names)
        if found is None:
            raise SafefakesError(
                f"no ground truth in {job.ground_truth}: expected a bbx_gt .txt file, a folder of the WIDER .mat files, "
                f"or a WIDER root with wider_face_split/wider_face_{folder.split}_bbx_gt.txt"
            )
        if not found.boxes:
            raise SafefakesError(f"none of the {len(names)} images under {folder.images_dir} is in the ground truth {found.source}")
        return found
    if folder.wider_root is None:
        return None
    found = load_ground_truth_faces(folder.wider_root, folder.split, names)
    return found if found is not None and found.boxes else None


def _find_all(job: FoundBoxesJob, folder: ImageFolder, names: Sequence[str], threshold: float, review: float) -> tuple[list[FoundFaces], list[ImageResult]]:
    """Run the face finder on every image: the found faces of the readable ones, the failures of the others."""
    found: list[FoundFaces] = []
    failures: list[ImageResult] = []
    stream = _run_finder(job, folder.images_dir, names, review)
    try:
        for result in progress(stream, desc=f"find faces {job.boxes_from}", total=len(names), unit="img"):
            if result.failure_reason is not None:
                if job.on_bad_image == "error":
                    detail = f": {result.failure_detail}" if result.failure_detail else ""
                    raise SafefakesError(f"{folder.images_dir / result.name}: {result.failure_reason}{detail} (use --on-bad-image skip to leave it out)")
                failures.append(ImageResult(result.name, written=False, failure_reason=result.failure_reason, failure_detail=result.failure_detail))
            else:
                found.append(split_by_threshold(result, threshold, review))
    finally:
        stream.close()  # stops a worker pool at once when the loop ends early
    return found, failures


def _per_image(found: Sequence[FoundFaces], results: dict[str, ImageResult], coverage: dict[str, ImageCoverage]) -> list[dict[str, Any]]:
    """The per-image counts of the images written, in path order."""
    rows = []
    for faces in found:
        result = results[faces.name]
        if not result.written:
            continue
        row: dict[str, Any] = {
            "image": faces.name,
            "faces_found": len(faces.faces),
            "faces_anonymized": result.faces_anonymized,
            "possible_faces_untouched": len(faces.review),
        }
        if faces.name in coverage:
            all_faces = coverage[faces.name].groups[ALL_FACES]
            row["ground_truth_faces"] = all_faces.faces
            row["unprotected_faces"] = all_faces.unprotected
        rows.append(row)
    return rows


def anonymize_unannotated(job: FoundBoxesJob) -> dict[str, Any]:
    """Find the faces of every image under ``job.images`` with ``job.boxes_from``, anonymize them into ``job.out``
    (atomically) and return the manifest."""
    started = time.perf_counter()
    folder = resolve_folder(job.images, job.split)
    settings = job.anonymize_job(folder.split)
    check_job(settings)
    _check_out(folder, settings.out)
    threshold, review = _thresholds(job)
    anonymizer = build_anonymizer(settings.method, settings.params)  # validates the parameters before any work
    log_run_record(settings.method, run_record(anonymizer))
    names, ignored = list_images(folder.images_dir)
    if not names:
        raise SafefakesError(f"no {'/'.join(sorted(set(IMAGE_FORMATS)))} images under {folder.images_dir}")
    ground_truth = _ground_truth(job, folder, names)
    found, finder_failures = _find_all(job, folder, names, threshold, review)
    if not found:
        raise SafefakesError(f"no image under {folder.images_dir} could be read; first failure: {finder_failures[0].failure_reason}")
    annotations = [ImageAnnotation(faces.name, list(faces.faces), dropped_degenerate=faces.degenerate) for faces in found]
    with atomic_directory(settings.out) as staging:
        target = WiderLayout(staging)
        target.images_dir(folder.split).mkdir(parents=True)
        anonymized = anonymize_listed_images(settings, annotations, None, folder.images_dir, target.images_dir(folder.split), anonymizer.batch_size)
        if all(not result.written for result in anonymized):
            raise SafefakesError(f"no image under {folder.images_dir} could be anonymized; first failure: {anonymized[0].failure_reason}")
        results = {result.name: result for result in [*anonymized, *finder_failures]}
        written = [faces for faces in found if results[faces.name].written]
        write_bbx_gt(target.annotation_file(folder.split), [ImageAnnotation(faces.name, list(faces.faces)) for faces in written])
        write_bbx_gt(review_file(target, folder.split), [ImageAnnotation(faces.name, list(faces.review)) for faces in written])
        coverage = {
            faces.name: image_coverage(ground_truth, faces.name, faces.faces, results[faces.name].face_anonymized)
            for faces in written
            if ground_truth is not None and faces.name in ground_truth.boxes
        }
        all_annotations = sorted([*annotations, *(ImageAnnotation(failure.name) for failure in finder_failures)], key=lambda a: a.name)
        wall_time = time.perf_counter() - started
        manifest = build_manifest(settings, anonymizer, all_annotations, [results[a.name] for a in all_annotations], [], wall_time)
        manifest["counts"]["possible_faces_untouched"] = sum(len(faces.review) for faces in written)
        manifest["counts"]["files_ignored"] = ignored
        manifest.update(
            {
                "boxes_from": job.boxes_from,
                "threshold": threshold,
                "review_threshold": review,
                "images_folder": str(folder.images_dir),
                "images": _per_image(found, results, coverage),
                "ground_truth": _ground_truth_summary(ground_truth, coverage, len(written)),
            }
        )
        atomic_write_json(staging / MANIFEST_NAME, manifest)
    return manifest


def review_file(layout: WiderLayout, split: str) -> Path:
    """``ROOT/wider_face_split/wider_face_{split}_review_bbx_gt.txt``: the possible faces left untouched."""
    return layout.split_dir / f"wider_face_{split}_review_bbx_gt.txt"


def _ground_truth_summary(ground_truth: GroundTruthFaces | None, coverage: dict[str, ImageCoverage], images_written: int) -> dict[str, Any] | None:
    """The manifest's ground-truth section: where it came from, the matching rules, and the counts per group."""
    if ground_truth is None:
        return None
    return {
        "source": str(ground_truth.source),
        "kind": ground_truth.kind,
        "iou_match": IOU_MATCH,
        "min_covered_fraction": MIN_COVERED_FRACTION,
        "images_with_ground_truth": len(coverage),
        "images_without_ground_truth": images_written - len(coverage),
        "coverage": {group: counts.to_dict() for group, counts in total_coverage(ground_truth, list(coverage.values())).items()},
    }


def summary_line(manifest: dict[str, Any], out: Path) -> str:
    """One line about a run: images written, faces found and anonymized, possible faces left, unprotected ground-truth faces."""
    counts = manifest["counts"]
    line = (
        f"{manifest['method']} on {manifest['boxes_from']} boxes (score >= {manifest['threshold']:g}): "
        f"{counts['images_written']}/{counts['images_listed']} images written, "
        f"{counts['faces_anonymized']}/{counts['faces_listed']} found faces anonymized, "
        f"{counts['possible_faces_untouched']} possible faces left untouched (score >= {manifest['review_threshold']:g})"
    )
    ground_truth = manifest["ground_truth"]
    if ground_truth is not None:
        groups = ", ".join(f"{group} {c['unprotected']}/{c['faces']}" for group, c in ground_truth["coverage"].items())
        line += f"; ground truth faces unprotected: {groups}"
    return f"{line} -> {out}"
