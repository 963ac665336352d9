"""Anonymize every face of one WIDER FACE split and write a new dataset in the same layout.

``OUT`` receives ``WIDER_{split}/images/...`` (the anonymized images, same names, same formats),
``wider_face_split/`` (the annotation files; the processed split's ``bbx_gt`` and extras filtered to
the images written), ``ground_truth/`` when the source has one, and ``manifest.json`` (settings and counts; a GAN method adds what its
landmarks come from and its generator checkpoint (GAN, iteration, training set, training crops), ``method_record``, logged once per run,
and its faces per landmark source, ``counts.landmark_sources``).

Bad-image policy (``on_bad_image``): an image that is missing, empty, truncated or undecodable, or that
the method refuses, is either a hard error naming the file (``error``) or left out of both the image
folder and the ``bbx_gt`` file and counted in the manifest with its reason (``skip``, the default). It
never appears un-anonymized in ``OUT``. Annotation problems (malformed lines, ``..`` or absolute paths,
duplicate images, extras that do not match the boxes) are always errors.

Determinism: each image's random generator is seeded from ``(seed, image name)`` and images are grouped
into batches in annotation order, so the output bytes do not depend on ``workers``. ``OUT`` is built
under a temporary name and renamed only when complete. ``manifest.json`` differs between runs only in
``wall_time_s`` and ``workers``.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from safefakes import __version__
from safefakes.anonymize.base import FaceAnonymizer, build_anonymizer, log_run_record, run_record
from safefakes.anonymize.gan.keypoints import landmark_source_counts
from safefakes.anonymize.images import (
    DEFAULT_JPEG_QUALITY,
    BadImageError,
    check_jpeg_quality,
    decode_image,
    encode_image,
    image_format,
    read_image,
)
from safefakes.common.errors import SafefakesError
from safefakes.common.io import atomic_directory, atomic_write_json
from safefakes.common.progress import progress
from safefakes.data.wider import FaceBox, FaceExtras, ImageAnnotation, WiderLayout, read_bbx_gt, read_extras, write_bbx_gt, write_extras

BadImagePolicy = Literal["skip", "error"]
BAD_IMAGE_POLICIES: tuple[str, ...] = ("skip", "error")
MANIFEST_NAME = "manifest.json"
#: Batches handed to a worker process at a time (amortizes inter-process messages).
POOL_CHUNK_BATCHES = 4


@dataclass(frozen=True)
class AnonymizeJob:
    """Everything one ``safefakes anonymize`` run needs."""

    wider_root: Path
    split: str
    out: Path
    method: str
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    workers: int = 1
    jpeg_quality: int = DEFAULT_JPEG_QUALITY  # see images.DEFAULT_JPEG_QUALITY for the choice of 95
    on_bad_image: BadImagePolicy = "skip"


@dataclass(frozen=True)
class ImageTask:
    """One image to anonymize: its annotation name, boxes and optional per-face extras."""

    name: str
    faces: tuple[FaceBox, ...]
    extras: tuple[FaceExtras, ...] | None


@dataclass
class ImageResult:
    """What happened to one image (small, so it travels cheaply between processes)."""

    name: str
    written: bool
    faces_anonymized: int = 0
    faces_clipped: int = 0
    faces_skipped: dict[str, int] = field(default_factory=dict)
    face_details: dict[str, int] = field(default_factory=dict)
    face_anonymized: list[bool] = field(default_factory=list)  # per face, in box order
    failure_reason: str | None = None
    failure_detail: str = ""


def image_rng(seed: int, name: str) -> np.random.Generator:
    """The random generator of one image, from the run seed and the image name (independent of workers)."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    words = np.frombuffer(digest[:16], dtype="<u4").tolist()
    return np.random.default_rng(np.random.SeedSequence([seed, *words]))


# --------------------------------------------------------------------------------------------------
# Per-image work (runs in worker processes; module-level so the spawn start method can import it)
# --------------------------------------------------------------------------------------------------


@dataclass
class _WorkerState:
    anonymizer: FaceAnonymizer
    source_images: Path
    target_images: Path
    seed: int
    jpeg_quality: int


_STATE: _WorkerState | None = None


def _init_worker(method: str, params: Mapping[str, Any], source_images: Path, target_images: Path, seed: int, jpeg_quality: int, single_thread: bool) -> None:
    """Build this process's anonymizer once (pool initializer, also used in-process)."""
    global _STATE
    if single_thread:
        cv2.setNumThreads(1)
    _STATE = _WorkerState(build_anonymizer(method, params), source_images, target_images, seed, jpeg_quality)


def _failure(name: str, error: BadImageError) -> ImageResult:
    return ImageResult(name=name, written=False, failure_reason=error.reason, failure_detail=error.detail)


def _anonymize_all(state: _WorkerState, loaded: Sequence[tuple[ImageTask, bytes, np.ndarray]]) -> list[tuple[np.ndarray, list[Any]] | BadImageError]:
    """Anonymize decoded images as one batch; if the method rejects the batch, retry image by image
    (from freshly decoded pixels) so only the image it cannot handle fails."""
    try:
        return list(
            state.anonymizer.anonymize_batch(
                [pixels for _, _, pixels in loaded],
                [task.faces for task, _, _ in loaded],
                [task.extras for task, _, _ in loaded],
                [image_rng(state.seed, task.name) for task, _, _ in loaded],
            )
        )
    except BadImageError as error:
        if len(loaded) == 1:
            return [error]
    fresh = [(task, data, decode_image(data, task.name)) for task, data, _ in loaded]
    return [_anonymize_all(state, [item])[0] for item in fresh]


def _process_batch(tasks: Sequence[ImageTask]) -> list[ImageResult]:
    """Read, anonymize and write one batch of images; bad images come back as failures, not exceptions."""
    state = _STATE
    assert state is not None, "worker not initialized"
    results: dict[str, ImageResult] = {}
    loaded: list[tuple[ImageTask, bytes, np.ndarray]] = []
    for task in tasks:
        try:
            image_format(task.name)
            data, pixels = read_image(state.source_images / task.name)
            loaded.append((task, data, pixels))
        except BadImageError as error:
            results[task.name] = _failure(task.name, error)
    for (task, data, _), outcome in zip(loaded, _anonymize_all(state, loaded) if loaded else [], strict=True):
        if isinstance(outcome, BadImageError):
            results[task.name] = _failure(task.name, outcome)
            continue
        pixels, face_outcomes = outcome
        if len(face_outcomes) != len(task.faces):
            raise RuntimeError(f"method {state.anonymizer.name} returned {len(face_outcomes)} outcomes for {len(task.faces)} faces of {task.name}")
        target = state.target_images / task.name
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = encode_image(pixels, image_format(task.name), state.jpeg_quality) if state.anonymizer.changes_pixels else data
        target.write_bytes(payload)
        results[task.name] = _summarize(task.name, face_outcomes)
    return [results[task.name] for task in tasks]


def _summarize(name: str, outcomes: Sequence[Any]) -> ImageResult:
    skipped = Counter(outcome.reason for outcome in outcomes if not outcome.anonymized)
    details = Counter(outcome.detail for outcome in outcomes if outcome.anonymized and outcome.detail)
    return ImageResult(
        name=name,
        written=True,
        faces_anonymized=sum(outcome.anonymized for outcome in outcomes),
        faces_clipped=sum(outcome.anonymized and outcome.clipped for outcome in outcomes),
        faces_skipped=dict(skipped),
        face_details=dict(details),
        face_anonymized=[bool(outcome.anonymized) for outcome in outcomes],
    )


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def check_job(job: AnonymizeJob) -> None:
    """Refuse settings that cannot work or would destroy the input."""
    if job.on_bad_image not in BAD_IMAGE_POLICIES:
        raise SafefakesError(f"--on-bad-image must be one of {', '.join(BAD_IMAGE_POLICIES)}, got {job.on_bad_image!r}")
    if job.workers < 1:
        raise SafefakesError(f"--workers must be >= 1, got {job.workers}")
    if job.seed < 0:
        raise SafefakesError(f"--seed must be >= 0, got {job.seed}")
    check_jpeg_quality(job.jpeg_quality)
    root, out = job.wider_root.resolve(), job.out.resolve()
    if out == root or out in root.parents:
        raise SafefakesError(f"--out {job.out} would replace the input dataset {job.wider_root}; choose another folder")


def _load_tasks(layout: WiderLayout, split: str) -> tuple[list[ImageAnnotation], dict[str, list[FaceExtras]] | None]:
    """The split's annotations and extras, checked: unique names, one extras entry per face."""
    annotations = read_bbx_gt(layout.annotation_file(split))
    seen: set[str] = set()
    for annotation in annotations:
        if annotation.name in seen:
            raise SafefakesError(f"{layout.annotation_file(split)}: image {annotation.name!r} is listed twice")
        seen.add(annotation.name)
    extras_path = layout.extras_file(split)
    extras = read_extras(extras_path) if extras_path.is_file() else None
    for annotation in annotations:
        faces_extras = (extras or {}).get(annotation.name)
        if faces_extras is not None and len(faces_extras) != len(annotation.faces):
            raise SafefakesError(f"{extras_path}: image {annotation.name!r} has {len(faces_extras)} extras entries for {len(annotation.faces)} valid boxes")
    return annotations, extras


def _batches(annotations: Sequence[ImageAnnotation], extras: Mapping[str, list[FaceExtras]] | None, size: int) -> Iterator[list[ImageTask]]:
    """Tasks in annotation order, grouped ``size`` at a time (fixed grouping, whatever the worker count)."""
    batch: list[ImageTask] = []
    for annotation in annotations:
        faces_extras = (extras or {}).get(annotation.name)
        batch.append(ImageTask(annotation.name, tuple(annotation.faces), tuple(faces_extras) if faces_extras is not None else None))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _run_batches(job: AnonymizeJob, init_args: tuple[Any, ...], batches: Iterator[list[ImageTask]]) -> Iterator[ImageResult]:
    """Results in annotation order, from this process (``workers == 1``) or a spawn-started pool."""
    if job.workers == 1:
        threads = cv2.getNumThreads()
        _init_worker(*init_args, True)  # one process, one core: --workers is the only parallelism knob
        try:
            for batch in batches:
                yield from _process_batch(batch)
        finally:
            cv2.setNumThreads(threads)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(job.workers, initializer=_init_worker, initargs=(*init_args, True)) as pool:
        for results in pool.imap(_process_batch, batches, chunksize=POOL_CHUNK_BATCHES):
            yield from results


def _copy_annotation_files(
    layout: WiderLayout, target: WiderLayout, split: str, kept: list[ImageAnnotation], all_kept: bool, extras: Mapping[str, list[FaceExtras]] | None
) -> list[str]:
    """Copy ``wider_face_split/`` and ``ground_truth/``; filter the split's files to the images written.

    Returns the files not copied (the split's ``.mat`` annotation when images were left out, since it
    would list images that are not there).
    """
    not_copied: list[str] = []
    target.split_dir.mkdir(parents=True, exist_ok=True)
    rewritten = {layout.annotation_file(split).name, layout.extras_file(split).name}
    for source in sorted(layout.split_dir.iterdir()):
        if not source.is_file() or source.name in rewritten:
            continue
        if not all_kept and source.name == f"wider_face_{split}.mat":
            not_copied.append(f"{layout.split_dir.name}/{source.name}")
            continue
        shutil.copyfile(source, target.split_dir / source.name)
    if all_kept:
        shutil.copyfile(layout.annotation_file(split), target.annotation_file(split))
        if extras is not None:
            shutil.copyfile(layout.extras_file(split), target.extras_file(split))
    else:
        write_bbx_gt(target.annotation_file(split), kept)
        if extras is not None:
            write_extras(target.extras_file(split), {a.name: extras[a.name] for a in kept if a.name in extras})
    if layout.ground_truth_dir.is_dir():
        shutil.copytree(layout.ground_truth_dir, target.ground_truth_dir)
    return not_copied


def build_manifest(
    job: AnonymizeJob,
    anonymizer: FaceAnonymizer,
    annotations: Sequence[ImageAnnotation],
    results: Sequence[ImageResult],
    not_copied: list[str],
    wall_time: float,
) -> dict[str, Any]:
    """The run's record: settings, counts and per-image failures (in annotation order)."""
    faces_per_image = {a.name: len(a.faces) for a in annotations}
    faces_skipped: Counter[str] = Counter()
    face_details: Counter[str] = Counter()
    for result in results:
        faces_skipped.update(result.faces_skipped)
        face_details.update(result.face_details)
    failures = [r for r in results if not r.written]
    landmark_sources = landmark_source_counts(face_details)
    record = run_record(anonymizer)
    return {
        "method": job.method,
        "params": anonymizer.config.to_dict(),
        **({"method_record": record} if record else {}),
        "seed": job.seed,
        "split": job.split,
        "source": str(job.wider_root),
        "jpeg_quality": job.jpeg_quality,
        "on_bad_image": job.on_bad_image,
        "safefakes_version": __version__,
        "counts": {
            "images_listed": len(annotations),
            "images_written": len(results) - len(failures),
            "images_skipped": dict(sorted(Counter(r.failure_reason for r in failures).items())),
            "faces_listed": sum(faces_per_image.values()),
            "faces_anonymized": sum(r.faces_anonymized for r in results),
            "faces_clipped": sum(r.faces_clipped for r in results),
            "faces_skipped": dict(sorted(faces_skipped.items())),
            "faces_in_skipped_images": sum(faces_per_image[r.name] for r in failures),
            "face_details": dict(sorted(face_details.items())),
            **({"landmark_sources": landmark_sources} if landmark_sources else {}),
            "degenerate_boxes_dropped": sum(a.dropped_degenerate for a in annotations),
        },
        "failures": [{"image": r.name, "reason": r.failure_reason, "detail": r.failure_detail} for r in failures],
        "files_not_copied": not_copied,
        "wall_time_s": round(wall_time, 3),
        "workers": job.workers,
    }


def anonymize_listed_images(
    job: AnonymizeJob,
    annotations: Sequence[ImageAnnotation],
    extras: Mapping[str, list[FaceExtras]] | None,
    source_images: Path,
    target_images: Path,
    batch_size: int,
) -> list[ImageResult]:
    """Anonymize the boxes of ``annotations`` (images under ``source_images``) into ``target_images``, with the job's
    method, seed, workers and bad-image policy; one result per annotation, in order."""
    init_args = (job.method, dict(job.params), source_images, target_images, job.seed, job.jpeg_quality)
    results: list[ImageResult] = []
    stream = _run_batches(job, init_args, _batches(annotations, extras, max(1, int(batch_size))))
    try:
        for result in progress(stream, desc=f"anonymize {job.method}", total=len(annotations), unit="img"):
            if not result.written and job.on_bad_image == "error":
                detail = f": {result.failure_detail}" if result.failure_detail else ""
                raise SafefakesError(f"{source_images / result.name}: {result.failure_reason}{detail} (use --on-bad-image skip to leave it out)")
            results.append(result)
    finally:
        stream.close()  # stops a worker pool at once when the loop ends early
    return results


def anonymize_dataset(job: AnonymizeJob) -> dict[str, Any]:
    """Anonymize one split of ``job.wider_root`` into ``job.out`` (atomically); returns the manifest."""
    check_job(job)
    started = time.perf_counter()
    layout = WiderLayout(job.wider_root)
    anonymizer = build_anonymizer(job.method, job.params)  # validates the parameters before any work
    log_run_record(job.method, run_record(anonymizer))  # once per run (workers build their own, silently)
    annotations, extras = _load_tasks(layout, job.split)
    with atomic_directory(job.out) as staging:
        target = WiderLayout(staging)
        target.images_dir(job.split).mkdir(parents=True)
        results = anonymize_listed_images(job, annotations, extras, layout.images_dir(job.split), target.images_dir(job.split), anonymizer.batch_size)
        if annotations and all(not r.written for r in results):
            raise SafefakesError(f"no image of {layout.annotation_file(job.split)} could be anonymized; first failure: {results[0].failure_reason}")
        written = {r.name for r in results if r.written}
        kept = [a for a in annotations if a.name in written]
        not_copied = _copy_annotation_files(layout, target, job.split, kept, len(kept) == len(annotations), extras)
        manifest = build_manifest(job, anonymizer, annotations, results, not_copied, time.perf_counter() - started)
        atomic_write_json(staging / MANIFEST_NAME, manifest)
    return manifest
