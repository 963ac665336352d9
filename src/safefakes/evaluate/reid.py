"""Re-identification privacy test of anonymized faces (Heimes, "Ad-hoc and Deep-Learning based Face
Anonymization Experiments", Sec. 3.3-4).

Each identity photo is described by dlib's face descriptor before and after anonymization, and
descriptors are compared by Euclidean distance (a pair is a *match* when the distance is at most
the threshold). Three scenarios (Newton et al., as used by Heimes):

* ``naive``:   gallery = originals,   probes = anonymized;
* ``reverse``: gallery = anonymized,  probes = originals;
* ``parrot``:  gallery = anonymized,  probes = anonymized.

A photo in which the detector finds no face is a *failure to acquire* (FTA). It is reported per
photo and, by default, every comparison involving it counts as a non-match (distance +inf), so a
method that hides faces from the detector shows a high FNMR rather than vanishing from the numbers.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from safefakes.common.config import build_config
from safefakes.common.errors import SafefakesError
from safefakes.common.io import atomic_write_text
from safefakes.common.progress import progress
from safefakes.data.identities import IdentitySample, load_identities
from safefakes.data.wider import FaceBox
from safefakes.evaluate import NO_ANONYMIZATION, SCENARIOS
from safefakes.evaluate.face_descriptors import (
    Box,
    DescriptorConfig,
    FaceDescriptorModel,
    downscale_to_max_side,
    euclidean_distances,
)

LOG = logging.getLogger(__name__)

#: Strength sweeps of the conventional methods (Heimes, Figs. 4-6).
STRENGTH_SWEEPS: dict[str, tuple[int, ...]] = {
    "blur": (5, 10, 15, 20, 30, 35, 50, 90),
    "noise": (5, 10, 15, 20, 30, 35, 50, 90),
    "pixelate": (10, 15, 20, 30, 35, 50, 90, 99),
}
RESULT_COLUMNS = ("method", "strength", "scenario", "eer", "fmr", "fnmr", "fta", "rank1", "threshold", "n_mated", "n_nonmated", "n_photos", "fta_original")
SCORE_COLUMNS = ("method", "strength", "scenario", "probe", "gallery", "mated", "distance")


@dataclass(frozen=True)
class ReidConfig:
    """Settings of the re-identification test."""

    threshold: float = 0.6  # face_recognition's default tolerance for dlib descriptors
    scenarios: tuple[str, ...] = SCENARIOS  # Heimes Sec. 3.3
    include_same_photo_pairs: bool = True  # Heimes Sec. 3.5 compares every (original, anonymized) pair; parrot never
    failure_as_nonmatch: bool = True  # comparisons with an FTA photo count as non-matches (distance +inf)
    anonymize_box_scale: float = 1.0  # the dlib box is anonymized as found (scaled about its centre)
    context_margin: float = 0.5  # a given face box is searched within this fraction of its size around it
    seed: int = 0  # seeds the anonymizer's random generator, per photo
    descriptor: DescriptorConfig = field(default_factory=DescriptorConfig)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> ReidConfig:
        """Build from a plain dict; ``descriptor`` may be a nested dict, ``scenarios`` a list."""
        return build_config(cls, values, "reid")

    def __post_init__(self) -> None:
        unknown = [s for s in self.scenarios if s not in SCENARIOS]
        if unknown or not self.scenarios:
            raise SafefakesError(f"unknown scenario(s) {', '.join(unknown) or '(none given)'}; expected some of {', '.join(SCENARIOS)}")


# ---------------------------------------------------------------------------------------------
# Identity sets


# ---------------------------------------------------------------------------------------------
# Anonymizing one face and acquiring descriptors

#: ``(image_bgr, faces, rng) -> anonymized image``
AnonymizeFn = Callable[[np.ndarray, list[FaceBox], np.random.Generator], np.ndarray]


def anonymizer_function(method: str, strength: float | None, params: Mapping[str, Any] | None = None) -> AnonymizeFn:
    """An :data:`AnonymizeFn` from ``safefakes.anonymize.base.build_anonymizer`` (``none`` = unchanged);
    ``params`` are the method's other parameters (a GAN's ``checkpoint``)."""
    if method == NO_ANONYMIZATION:
        return lambda image, _faces, _rng: image
    try:
        from safefakes.anonymize.base import build_anonymizer, log_run_record, run_record
    except ImportError as error:
        raise SafefakesError(f"anonymizers are not available ({error})") from None
    values: dict[str, Any] = dict(params or {})
    if strength is not None:
        values["strength"] = strength
    anonymizer = build_anonymizer(method, values)
    log_run_record(method, run_record(anonymizer))  # a GAN's landmark detector, once

    def apply(image: np.ndarray, faces: list[FaceBox], rng: np.random.Generator) -> np.ndarray:
        result, _outcomes = anonymizer.anonymize(image, faces, None, rng)
        return result

    return apply


@dataclass
class Acquisition:
    """A photo's descriptor (``None``: failure to acquire) and the face box found, in working pixels."""

    descriptor: np.ndarray | None
    box: Box | None


def _scale_box(box: Box, factor: float) -> Box:
    x, y, w, h = box
    return (round(x * factor), round(y * factor), max(1, round(w * factor)), max(1, round(h * factor)))


def _grow_box(box: Box, scale: float, shape: tuple[int, ...]) -> Box:
    x, y, w, h = box
    cx, cy, new_w, new_h = x + w / 2, y + h / 2, w * scale, h * scale
    x0, y0 = max(0, round(cx - new_w / 2)), max(0, round(cy - new_h / 2))
    x1, y1 = min(shape[1], round(cx + new_w / 2)), min(shape[0], round(cy + new_h / 2))
    return (x0, y0, max(1, x1 - x0), max(1, y1 - y0))


def load_working_image(sample: IdentitySample, config: ReidConfig) -> tuple[np.ndarray, Box | None]:
    """The photo (BGR, downscaled to the working size) and its given face box in the same pixels."""
    image = cv2.imread(str(sample.path), cv2.IMREAD_COLOR)
    if image is None:
        raise SafefakesError(f"cannot read image {sample.path}")
    image, scale = downscale_to_max_side(image, config.descriptor.max_image_side)
    return image, (None if sample.box is None else _scale_box(sample.box, scale))


def acquire(model: FaceDescriptorModel, image_bgr: np.ndarray, region: Box | None, known_face: Box | None = None) -> Acquisition:
    """Detect the largest face (inside ``region`` if given) and describe it; a ``known_face`` box is described as is."""
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    if known_face is not None:
        return Acquisition(model.describe_box(rgb, known_face), known_face)
    x0, y0 = (region[0], region[1]) if region else (0, 0)
    search = rgb if region is None else rgb[y0 : y0 + region[3], x0 : x0 + region[2]]
    boxes = model.detect(search)
    if not boxes:
        return Acquisition(None, None)
    bx, by, bw, bh = boxes[0]
    box = (bx + x0, by + y0, bw, bh)
    return Acquisition(model.describe_box(rgb, box), box)


def _search_region(given: Box | None, config: ReidConfig, shape: tuple[int, ...]) -> Box | None:
    return None if given is None else _grow_box(given, 1.0 + 2.0 * config.context_margin, shape)


def acquire_originals(samples: Sequence[IdentitySample], model: FaceDescriptorModel, config: ReidConfig) -> list[Acquisition]:
    """Descriptors of the unaltered photos."""
    results = []
    for sample in progress(samples, desc="describe originals", unit="photo"):
        image, given = load_working_image(sample, config)
        results.append(acquire(model, image, _search_region(given, config, image.shape), _known_face(sample, given)))
    return results


def _known_face(sample: IdentitySample, given: Box | None) -> Box | None:
    return given if sample.box_is_face else None


def acquire_anonymized(
    samples: Sequence[IdentitySample],
    originals: Sequence[Acquisition],
    model: FaceDescriptorModel,
    anonymize: AnonymizeFn,
    config: ReidConfig,
) -> list[Acquisition]:
    """Descriptors after anonymizing each photo's face (the given box, else the box dlib found on the original).

    A photo whose face was not found on the original cannot be anonymized and is an FTA here too.
    """
    results = []
    for index, (sample, original) in enumerate(progress(list(zip(samples, originals)), desc="describe anonymized", unit="photo")):
        image, given = load_working_image(sample, config)
        target = given if given is not None else original.box
        if target is None:
            results.append(Acquisition(None, None))
            continue
        x, y, w, h = _grow_box(target, config.anonymize_box_scale, image.shape)
        rng = np.random.default_rng([config.seed, index])
        anonymized = anonymize(image.copy(), [FaceBox(x, y, w, h)], rng)
        results.append(acquire(model, anonymized, _search_region(given, config, image.shape), _known_face(sample, given)))
    return results


# ---------------------------------------------------------------------------------------------
# Scores and error rates


@dataclass
class ScenarioScores:
    """All comparisons of one scenario: distance, whether mated, and the photo keys compared."""

    scenario: str
    distances: np.ndarray
    mated: np.ndarray
    probes: list[str]
    galleries: list[str]
    fta: float  # share of photos on the anonymized side(s) without a descriptor
    rank1: float  # closed-set identification: share of probes whose nearest gallery photo has their identity

    @property
    def mated_scores(self) -> np.ndarray:
        """Distances of same-identity comparisons."""
        return self.distances[self.mated]

    @property
    def nonmated_scores(self) -> np.ndarray:
        """Distances of different-identity comparisons."""
        return self.distances[~self.mated]


def _descriptor_matrix(acquisitions: Sequence[Acquisition]) -> tuple[np.ndarray, np.ndarray]:
    acquired = np.array([a.descriptor is not None for a in acquisitions], dtype=bool)
    matrix = np.zeros((len(acquisitions), 128))
    for row, acquisition in enumerate(acquisitions):
        if acquisition.descriptor is not None:
            matrix[row] = acquisition.descriptor
    return matrix, acquired


def score_scenario(
    scenario: str,
    samples: Sequence[IdentitySample],
    originals: Sequence[Acquisition],
    anonymized: Sequence[Acquisition],
    config: ReidConfig,
) -> ScenarioScores:
    """Compare every probe with every gallery photo of a scenario."""
    gallery, probes = {"naive": (originals, anonymized), "reverse": (anonymized, originals), "parrot": (anonymized, anonymized)}[scenario]
    gallery_matrix, gallery_ok = _descriptor_matrix(gallery)
    probe_matrix, probe_ok = _descriptor_matrix(probes)
    distances = euclidean_distances(probe_matrix, gallery_matrix)
    failed = ~probe_ok[:, None] | ~gallery_ok[None, :]
    distances[failed] = math.inf
    identities = np.array([s.identity for s in samples])
    mated = identities[:, None] == identities[None, :]
    keep = np.ones_like(mated)
    if scenario == "parrot" or not config.include_same_photo_pairs:
        np.fill_diagonal(keep, False)
    if not config.failure_as_nonmatch:
        keep &= ~failed
    rank1 = rank1_identification_rate(distances, mated, keep)
    probe_index, gallery_index = np.nonzero(keep)
    keys = [s.key for s in samples]
    anonymized_ok = _descriptor_matrix(anonymized)[1]
    return ScenarioScores(
        scenario=scenario,
        distances=distances[probe_index, gallery_index],
        mated=mated[probe_index, gallery_index],
        probes=[keys[i] for i in probe_index],
        galleries=[keys[j] for j in gallery_index],
        fta=float(1.0 - anonymized_ok.mean()) if len(anonymized_ok) else math.nan,
        rank1=rank1,
    )


def rank1_identification_rate(distances: np.ndarray, mated: np.ndarray, allowed: np.ndarray) -> float:
    """Share of probes (rows) whose nearest allowed, finite gallery entry is mated; FTA probes count as misses.

    Unlike verification over all pairs, which is symmetric in probe and gallery, this differs
    between the naive and reverse scenarios (the attacker searches a different gallery).
    """
    masked = np.where(allowed & np.isfinite(distances), distances, np.inf)
    if masked.shape[0] == 0:
        return math.nan
    nearest = np.argmin(masked, axis=1)
    rows = np.arange(masked.shape[0])
    hits = np.isfinite(masked[rows, nearest]) & mated[rows, nearest]
    return float(hits.mean())


def det_curve(mated: np.ndarray, nonmated: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(thresholds, fmr, fnmr)`` over every distinct distance, from -inf (reject all) to +inf (accept all).

    A comparison is accepted as a match when its distance is at most the threshold.
    """
    mated_sorted, nonmated_sorted = np.sort(np.asarray(mated, float)), np.sort(np.asarray(nonmated, float))
    finite = np.concatenate([mated_sorted, nonmated_sorted])
    thresholds = np.concatenate([[-math.inf], np.unique(finite[np.isfinite(finite)]), [math.inf]])
    fmr = np.searchsorted(nonmated_sorted, thresholds, side="right") / max(len(nonmated_sorted), 1)
    fnmr = 1.0 - np.searchsorted(mated_sorted, thresholds, side="right") / max(len(mated_sorted), 1)
    return thresholds, fmr, fnmr


def equal_error_rate(mated: np.ndarray, nonmated: np.ndarray) -> float:
    """EER: where FMR and FNMR cross, linearly interpolated between thresholds; NaN without both kinds."""
    if len(mated) == 0 or len(nonmated) == 0:
        return math.nan
    _thresholds, fmr, fnmr = det_curve(mated, nonmated)
    gap = fnmr - fmr  # +1 at -inf, -1 at +inf, never increasing
    crossing = int(np.argmax(gap <= 0))
    before, after = crossing - 1, crossing
    if gap[after] == 0:
        return float(fmr[after])
    share = gap[before] / (gap[before] - gap[after])
    return float(fmr[before] + share * (fmr[after] - fmr[before]))


def rates_at_threshold(mated: np.ndarray, nonmated: np.ndarray, threshold: float) -> tuple[float, float]:
    """``(FMR, FNMR)`` when distances at most ``threshold`` are accepted."""
    fmr = float(np.mean(np.asarray(nonmated) <= threshold)) if len(nonmated) else math.nan
    fnmr = float(np.mean(np.asarray(mated) > threshold)) if len(mated) else math.nan
    return fmr, fnmr


def confusion_matrix(mated: np.ndarray, nonmated: np.ndarray, threshold: float) -> np.ndarray:
    """Percentages as in Heimes Fig. 9: rows predicted (mated, non-mated), columns actual (mated, non-mated)."""
    fmr, fnmr = rates_at_threshold(mated, nonmated, threshold)
    return 100.0 * np.array([[1.0 - fnmr, fmr], [fnmr, 1.0 - fmr]])


# ---------------------------------------------------------------------------------------------
# A whole run


@dataclass
class ReidResult:
    """Scores of every scenario of one (method, strength) plus the per-photo acquisitions."""

    method: str
    strength: float | None
    samples: list[IdentitySample]
    originals: list[Acquisition]
    anonymized: list[Acquisition]
    scenarios: list[ScenarioScores]
    threshold: float

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per scenario with the columns of :data:`RESULT_COLUMNS`."""
        rows = []
        fta_original = float(np.mean([a.descriptor is None for a in self.originals]))
        for scores in self.scenarios:
            fmr, fnmr = rates_at_threshold(scores.mated_scores, scores.nonmated_scores, self.threshold)
            rows.append(
                {
                    "method": self.method,
                    "strength": "" if self.strength is None else _format_number(self.strength),
                    "scenario": scores.scenario,
                    "eer": equal_error_rate(scores.mated_scores, scores.nonmated_scores),
                    "fmr": fmr,
                    "fnmr": fnmr,
                    "fta": scores.fta,
                    "rank1": scores.rank1,
                    "threshold": self.threshold,
                    "n_mated": int(scores.mated.sum()),
                    "n_nonmated": int((~scores.mated).sum()),
                    "n_photos": len(self.samples),
                    "fta_original": fta_original,
                }
            )
        return rows


def evaluate_scenarios(
    method: str,
    strength: float | None,
    samples: Sequence[IdentitySample],
    originals: Sequence[Acquisition],
    anonymized: Sequence[Acquisition],
    config: ReidConfig,
) -> ReidResult:
    """Score every configured scenario from already-acquired descriptors."""
    scenarios = [score_scenario(name, samples, originals, anonymized, config) for name in config.scenarios]
    return ReidResult(method, strength, list(samples), list(originals), list(anonymized), scenarios, config.threshold)


def run_reid(
    identities: str | os.PathLike[str],
    method: str,
    strength: float | None,
    config: ReidConfig | None = None,
    split: str = "train",
    anonymize: AnonymizeFn | None = None,
    params: Mapping[str, Any] | None = None,
) -> ReidResult:
    """Load an identity set, anonymize each photo with ``method`` at ``strength`` (and ``params``), and score all scenarios."""
    config = config or ReidConfig()
    samples = load_identities(identities, split)
    model = FaceDescriptorModel(config.descriptor)
    originals = acquire_originals(samples, model, config)
    if method == NO_ANONYMIZATION and anonymize is None:
        anonymized = list(originals)  # unchanged photos: the same descriptors
    else:
        anonymized = acquire_anonymized(samples, originals, model, anonymize or anonymizer_function(method, strength, params), config)
    return evaluate_scenarios(method, strength, samples, originals, anonymized, config)


def _format_number(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _csv_text(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: (_format_float(value) if isinstance(value, float) else value) for key, value in row.items()})
    return buffer.getvalue()


def _format_float(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if math.isinf(value) else f"{value:.6f}")


def write_summary_csv(path: str | os.PathLike[str], rows: Sequence[dict[str, Any]]) -> None:
    """Write result rows (columns :data:`RESULT_COLUMNS`) atomically."""
    atomic_write_text(path, _csv_text(RESULT_COLUMNS, rows))


def write_scores_csv(path: str | os.PathLike[str], result: ReidResult) -> None:
    """Every comparison of every scenario (columns :data:`SCORE_COLUMNS`), atomically."""
    strength = "" if result.strength is None else _format_number(result.strength)
    rows = []
    for scores in result.scenarios:
        for probe, gallery, is_mated, distance in zip(scores.probes, scores.galleries, scores.mated, scores.distances):
            rows.append(
                {
                    "method": result.method,
                    "strength": strength,
                    "scenario": scores.scenario,
                    "probe": probe,
                    "gallery": gallery,
                    "mated": int(is_mated),
                    "distance": float(distance),
                }
            )
    atomic_write_text(path, _csv_text(SCORE_COLUMNS, rows))


def write_acquisition_csv(path: str | os.PathLike[str], result: ReidResult) -> None:
    """Per photo: identity and whether a face was acquired on the original and on the anonymized image."""
    rows = [
        {"photo": s.key, "identity": s.identity, "original_acquired": int(o.descriptor is not None), "anonymized_acquired": int(a.descriptor is not None)}
        for s, o, a in zip(result.samples, result.originals, result.anonymized)
    ]
    atomic_write_text(path, _csv_text(("photo", "identity", "original_acquired", "anonymized_acquired"), rows))


def read_csv_rows(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """All rows of a CSV file as dicts."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except FileNotFoundError:
        raise SafefakesError(f"file not found: {path}") from None


def gather_summaries(paths: Sequence[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Concatenate per-job summary CSVs, sorted by method, strength and scenario."""
    rows = [row for path in paths for row in read_csv_rows(path)]
    for row in rows:
        if set(RESULT_COLUMNS) - set(row):
            raise SafefakesError(f"a summary row lacks columns {sorted(set(RESULT_COLUMNS) - set(row))}")
    return sorted(rows, key=lambda r: (r["method"], _strength_key(r["strength"]), SCENARIOS.index(r["scenario"]) if r["scenario"] in SCENARIOS else 99))


def _strength_key(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return -math.inf
