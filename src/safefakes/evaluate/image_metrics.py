"""Image metrics between original and anonymized faces (Safe Fakes, Sec. IV-D and Table II).

Every annotated face of a split is cropped from the original and from the anonymized dataset at the
same box, resized to a fixed square, and compared (all usable faces, or a seeded random sample of them
when ``max_faces`` caps the count, see :func:`iter_face_pairs`):

* ``l1`` / ``l2``: mean absolute / mean squared pixel difference, RGB scaled to [0, 1];
* ``ssim``: scikit-image SSIM over the colour crop (data range 1);
* ``lpips``: LPIPS v0.1 with AlexNet (the ``lpips`` package), inputs in [-1, 1];
* ``fid``: Fréchet Inception Distance with pytorch-fid's InceptionV3 (2048-d pool features);
* ``fid_face``: *face-space FID*, the Fréchet distance between dlib ResNet face descriptors of the
  original and anonymized crops. It is not the Inception FID; it works offline with the dlib models.

All running sums are streamed batch by batch, so memory does not grow with the number of faces.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import scipy.linalg
from skimage.metrics import structural_similarity

from safefakes.common.config import build_config
from safefakes.common.errors import SafefakesError
from safefakes.common.progress import progress
from safefakes.common.weights import METRIC_WEIGHTS, metric_weights_status, require_weight
from safefakes.data.wider import FaceBox, ImageAnnotation, WiderLayout, load_split
from safefakes.evaluate import DEFAULT_SAMPLE_SEED
from safefakes.evaluate.face_descriptors import DescriptorConfig, FaceDescriptorModel

ALL_METRICS = ("l1", "l2", "ssim", "fid_face", "lpips", "fid")
#: Metrics whose names in the output need a label so nobody mistakes them for the paper's metric.
METRIC_LABELS = {
    "fid_face": "face-space FID: Fréchet distance between dlib ResNet face descriptors (not Inception FID)",
    "fid": "FID: Fréchet distance between pytorch-fid InceptionV3 pool features",
}


@dataclass(frozen=True)
class MetricsConfig:
    """Settings of the image-metric computation."""

    crop_size: int = 128  # DeepPrivacy and CIAGAN work on 128x128 faces (Safe Fakes, Table I)
    min_face_size: int = 14  # smallest face DeepPrivacy anonymizes, about 14 px wide (Safe Fakes, Sec. V)
    skip_invalid: bool = True  # WIDER's "invalid" faces are not scored by the evaluation either
    batch_size: int = 32  # faces per network batch (memory bound, no effect on results)
    fid_feature_dims: int = 2048  # pytorch-fid's default pool3 features
    verify_weights: bool = True  # check sha256 of LPIPS/FID weights before loading
    descriptor: DescriptorConfig = field(default_factory=DescriptorConfig)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> MetricsConfig:
        """Build from a plain dict; ``descriptor`` may be a nested dict."""
        return build_config(cls, values, "metrics")


# ---------------------------------------------------------------------------------------------
# Per-face metrics and running statistics


def to_unit_float(crop_rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float64 in [0, 1]."""
    return np.asarray(crop_rgb, dtype=np.float64) / 255.0


def pixel_l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two images in the same scale."""
    return float(np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def pixel_l2(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared difference of two images in the same scale."""
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def face_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two colour images in [0, 1] (scikit-image, 7x7 window, channels averaged)."""
    return float(structural_similarity(a, b, channel_axis=-1, data_range=1.0))


class RunningGaussian:
    """Mean and covariance of feature vectors, accumulated batch by batch in float64."""

    def __init__(self, dims: int) -> None:
        self.count = 0
        self._sum = np.zeros(dims)
        self._outer = np.zeros((dims, dims))

    def update(self, features: np.ndarray) -> None:
        """Add a ``(n, dims)`` batch."""
        features = np.asarray(features, dtype=np.float64)
        self.count += features.shape[0]
        self._sum += features.sum(axis=0)
        self._outer += features.T @ features

    @property
    def mean(self) -> np.ndarray:
        """The sample mean."""
        return self._sum / self.count

    @property
    def covariance(self) -> np.ndarray:
        """The unbiased sample covariance (``numpy.cov`` convention); needs two or more vectors."""
        if self.count < 2:
            raise SafefakesError("a covariance needs at least two feature vectors")
        mean = self.mean
        return (self._outer - self.count * np.outer(mean, mean)) / (self.count - 1)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance of two Gaussians: ``|mu1-mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)``.

    ``tr sqrt(S1 S2)`` is computed as the sum of square roots of the eigenvalues of the symmetric
    matrix ``sqrt(S1) S2 sqrt(S1)`` (same spectrum as ``S1 S2``): two symmetric eigendecompositions,
    much faster than a general matrix square root at 2048 dimensions and stable for singular covariances.
    """
    diff = np.asarray(mu1, dtype=np.float64) - np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = _symmetric(sigma1), _symmetric(sigma2)
    values, vectors = scipy.linalg.eigh(sigma1)
    root1 = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    product = _symmetric(root1 @ sigma2 @ root1)
    trace_sqrt = float(np.sum(np.sqrt(np.clip(scipy.linalg.eigvalsh(product), 0.0, None))))
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


def _symmetric(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    return (matrix + matrix.T) / 2.0


# ---------------------------------------------------------------------------------------------
# Networks (optional weights)


class LpipsScorer:
    """LPIPS v0.1 with AlexNet; the AlexNet and linear weights are read from local files only."""

    def __init__(self, weights_dir: str | os.PathLike[str] | None = None, verify: bool = True) -> None:
        import torch

        try:
            import lpips
        except ImportError:
            raise SafefakesError("LPIPS needs the 'lpips' package (pip install lpips)") from None
        alexnet_path = require_weight("alexnet", weights_dir, verify)
        linear_path = require_weight("lpips_alex_linear", weights_dir, verify)
        # pnet_rand: build AlexNet without torchvision's download; the real weights are loaded below.
        model = lpips.LPIPS(net="alex", version="0.1", pretrained=False, pnet_rand=True, verbose=False)
        _load_alexnet_slices(model.net, torch.load(alexnet_path, map_location="cpu", weights_only=True))
        model.load_state_dict(torch.load(linear_path, map_location="cpu", weights_only=True), strict=False)
        self._model = model.eval()

    def score(self, originals: np.ndarray, anonymized: np.ndarray) -> np.ndarray:
        """LPIPS distance of each pair in two ``(n, H, W, 3)`` uint8 RGB batches."""
        import torch

        with torch.inference_mode():
            return self._model(_to_signed_tensor(originals), _to_signed_tensor(anonymized)).reshape(-1).numpy().astype(np.float64)


def _load_alexnet_slices(lpips_alexnet: Any, torchvision_state: dict[str, Any]) -> None:
    """Copy torchvision AlexNet ``features.<i>`` weights into LPIPS' ``slice<k>.<i>`` layers."""
    target: dict[str, Any] = {}
    for name in lpips_alexnet.state_dict():
        _slice, index, param = name.split(".")
        target[name] = torchvision_state[f"features.{index}.{param}"]
    lpips_alexnet.load_state_dict(target, strict=True)


def _to_signed_tensor(batch_rgb: np.ndarray) -> Any:
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(batch_rgb)).permute(0, 3, 1, 2).float()
    return tensor / 127.5 - 1.0


class InceptionFeatures:
    """pytorch-fid's FID InceptionV3, built from a local weight file (never downloaded)."""

    def __init__(self, weights_dir: str | os.PathLike[str] | None = None, verify: bool = True, dims: int = 2048) -> None:
        try:
            from pytorch_fid import inception
        except ImportError:
            raise SafefakesError("FID needs the 'pytorch-fid' package (pip install pytorch-fid)") from None
        path = require_weight("fid_inception", weights_dir, verify)
        block = inception.InceptionV3.BLOCK_INDEX_BY_DIM.get(dims)
        if block is None:
            raise SafefakesError(f"FID feature dims must be one of {sorted(inception.InceptionV3.BLOCK_INDEX_BY_DIM)}")
        with _fid_weights_from_file(inception, path):
            self._model = inception.InceptionV3([block], resize_input=True, normalize_input=True).eval()

    def features(self, batch_rgb: np.ndarray) -> np.ndarray:
        """Pool features of a ``(n, H, W, 3)`` uint8 RGB batch, shape ``(n, dims)``."""
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(batch_rgb)).permute(0, 3, 1, 2).float() / 255.0
        with torch.inference_mode():
            output = self._model(tensor)[0]
        return output.reshape(output.shape[0], -1).numpy().astype(np.float64)


@contextlib.contextmanager
def _fid_weights_from_file(inception_module: Any, path: Path) -> Iterator[None]:
    """Make pytorch-fid read its state dict from ``path`` instead of its download URL."""
    import torch

    original = inception_module.load_state_dict_from_url
    inception_module.load_state_dict_from_url = lambda *_args, **_kwargs: torch.load(path, map_location="cpu", weights_only=True)
    try:
        yield
    finally:
        inception_module.load_state_dict_from_url = original


# ---------------------------------------------------------------------------------------------
# Face pairs of two datasets


@dataclass
class FaceCounts:
    """How many faces were used and why the others were not."""

    used: int = 0
    excluded_small: int = 0
    excluded_invalid: int = 0
    excluded_outside: int = 0
    #: Images the original root lists but does not hold (a partial copy of WIDER FACE): not measured.
    images_absent: int = 0
    #: Usable faces the measured ones are drawn from.
    candidates: int = 0


@dataclass(frozen=True)
class FaceRef:
    """One usable face: the index of its image in the split's annotations, and its box."""

    image_index: int
    face: FaceBox


def crop_face(image_bgr: np.ndarray, face: FaceBox, size: int) -> np.ndarray | None:
    """The face box (clipped to the image) resized to ``size`` x ``size`` RGB; ``None`` if nothing is left."""
    height, width = image_bgr.shape[:2]
    x0, y0 = max(face.x, 0), max(face.y, 0)
    x1, y1 = min(face.x + face.w, width), min(face.y + face.h, height)
    if x1 <= x0 or y1 <= y0:
        return None
    crop = image_bgr[y0:y1, x0:x1]
    interpolation = cv2.INTER_AREA if crop.shape[0] >= size and crop.shape[1] >= size else cv2.INTER_LINEAR
    return cv2.cvtColor(cv2.resize(crop, (size, size), interpolation=interpolation), cv2.COLOR_BGR2RGB)


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SafefakesError(f"cannot read image {path}")
    return image


def usable_faces(annotations: Sequence[ImageAnnotation], original: WiderLayout, split: str, config: MetricsConfig, counts: FaceCounts) -> list[FaceRef]:
    """Every face the metrics may use, in file order: valid (unless configured otherwise), large enough, on an
    image the original root holds. ``counts`` gets the exclusions and the number of candidates."""
    candidates: list[FaceRef] = []
    for image_index, annotation in enumerate(annotations):
        usable = []
        for face in annotation.faces:
            if config.skip_invalid and face.invalid:
                counts.excluded_invalid += 1
            elif min(face.w, face.h) < config.min_face_size:
                counts.excluded_small += 1
            else:
                usable.append(face)
        if not usable:
            continue
        if not original.image_path(split, annotation.name).is_file():
            counts.images_absent += 1
            continue
        candidates += [FaceRef(image_index, face) for face in usable]
    counts.candidates = len(candidates)
    return candidates


def sampling_order(count: int, max_faces: int | None, seed: int) -> np.ndarray:
    """The order in which ``count`` candidate faces are tried: file order when all are used, else a random
    permutation drawn with ``seed`` (its first ``max_faces`` are a uniform sample without replacement)."""
    if max_faces is None or max_faces >= count:
        return np.arange(count)
    return np.random.default_rng(seed).permutation(count)


def iter_face_pairs(
    original_root: str | os.PathLike[str],
    anonymized_root: str | os.PathLike[str],
    split: str,
    config: MetricsConfig,
    counts: FaceCounts,
    max_faces: int | None = None,
    seed: int = DEFAULT_SAMPLE_SEED,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(original_crop, anonymized_crop)`` RGB pairs; ``counts`` is filled in.

    Without ``max_faces`` every usable face is measured. With it, ``max_faces`` faces are drawn at random
    (``seed``) from the usable faces of the whole split, not the first ones in file order, so a capped run
    still spreads over every event folder; the same seed and annotations give the same faces for every
    anonymized dataset. A drawn face whose box lies outside its image is replaced by the next one drawn.
    """
    annotations, _extras = load_split(original_root, split)
    original, anonymized = WiderLayout(Path(original_root)), WiderLayout(Path(anonymized_root))
    candidates = usable_faces(annotations, original, split, config, counts)
    order = sampling_order(len(candidates), max_faces, seed)
    target = len(candidates) if max_faces is None else min(max_faces, len(candidates))
    position = 0
    while counts.used < target and position < len(order):
        # Read each image once per round: the round's faces in file order, grouped by image.
        chosen = np.sort(order[position : position + target - counts.used])
        position += len(chosen)
        by_image: dict[int, list[FaceBox]] = {}
        for candidate in chosen:
            by_image.setdefault(candidates[candidate].image_index, []).append(candidates[candidate].face)
        for image_index, faces in progress(by_image.items(), desc=f"faces ({split})", total=len(by_image), unit="img"):
            name = annotations[image_index].name
            anonymized_path = anonymized.image_path(split, name)
            if not anonymized_path.is_file():
                raise SafefakesError(f"anonymized dataset lacks {anonymized_path} (it must mirror {original.root})")
            image_o, image_a = _read_image(original.image_path(split, name)), _read_image(anonymized_path)
            if image_o.shape != image_a.shape:
                raise SafefakesError(f"{anonymized_path}: size {image_a.shape[:2]} differs from the original's {image_o.shape[:2]}")
            for face in faces:
                crop_o, crop_a = crop_face(image_o, face, config.crop_size), crop_face(image_a, face, config.crop_size)
                if crop_o is None or crop_a is None:
                    counts.excluded_outside += 1
                    continue
                counts.used += 1
                yield crop_o, crop_a


def batched(pairs: Iterator[tuple[np.ndarray, np.ndarray]], size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Group face pairs into ``(n, H, W, 3)`` arrays of at most ``size``."""
    block_o: list[np.ndarray] = []
    block_a: list[np.ndarray] = []
    for crop_o, crop_a in pairs:
        block_o.append(crop_o)
        block_a.append(crop_a)
        if len(block_o) == size:
            yield np.stack(block_o), np.stack(block_a)
            block_o, block_a = [], []
    if block_o:
        yield np.stack(block_o), np.stack(block_a)


# ---------------------------------------------------------------------------------------------
# The metric computation


def resolve_metrics(requested: Sequence[str] | None, weights_dir: str | os.PathLike[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """Metrics to run and those skipped with a reason.

    An explicit request for a metric whose weights are absent is an error; with the default set
    (``requested=None``) such a metric is skipped and its reason recorded.
    """
    names = list(requested) if requested else list(ALL_METRICS)
    unknown = [name for name in names if name not in ALL_METRICS]
    if unknown:
        raise SafefakesError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(ALL_METRICS)}")
    run, skipped = [], {}
    for name in names:
        reason = metric_weights_status(name, weights_dir) if name in METRIC_WEIGHTS else None
        if reason is None:
            reason = _missing_package(name)
        if reason is None:
            run.append(name)
        elif requested:
            raise SafefakesError(f"metric {name} was requested but cannot run: {reason}")
        else:
            skipped[name] = reason
    return run, skipped


def _missing_package(metric: str) -> str | None:
    import importlib.util

    package = {"lpips": "lpips", "fid": "pytorch_fid"}.get(metric)
    if package and importlib.util.find_spec(package) is None:
        return f"the Python package {package} is not installed"
    return None


class _MetricAccumulator:
    """Streams batches of face pairs through the selected metrics."""

    def __init__(self, metrics: Sequence[str], config: MetricsConfig, weights_dir: str | os.PathLike[str] | None) -> None:
        self.metrics = list(metrics)
        self._sums = {name: 0.0 for name in ("l1", "l2", "ssim", "lpips") if name in self.metrics}
        self._count = 0
        self._lpips = LpipsScorer(weights_dir, config.verify_weights) if "lpips" in self.metrics else None
        self._inception = InceptionFeatures(weights_dir, config.verify_weights, config.fid_feature_dims) if "fid" in self.metrics else None
        self._descriptor = FaceDescriptorModel(config.descriptor) if "fid_face" in self.metrics else None
        self._gaussians = {}
        if self._inception is not None:
            self._gaussians["fid"] = (RunningGaussian(config.fid_feature_dims), RunningGaussian(config.fid_feature_dims))
        if self._descriptor is not None:
            self._gaussians["fid_face"] = (RunningGaussian(128), RunningGaussian(128))

    def update(self, originals: np.ndarray, anonymized: np.ndarray) -> None:
        """Add one batch of ``(n, H, W, 3)`` uint8 RGB pairs."""
        self._count += originals.shape[0]
        for crop_o, crop_a in zip(originals, anonymized):
            unit_o, unit_a = to_unit_float(crop_o), to_unit_float(crop_a)
            if "l1" in self._sums:
                self._sums["l1"] += pixel_l1(unit_o, unit_a)
            if "l2" in self._sums:
                self._sums["l2"] += pixel_l2(unit_o, unit_a)
            if "ssim" in self._sums:
                self._sums["ssim"] += face_ssim(unit_o, unit_a)
        if self._lpips is not None:
            self._sums["lpips"] += float(self._lpips.score(originals, anonymized).sum())
        if self._inception is not None:
            self._gaussians["fid"][0].update(self._inception.features(originals))
            self._gaussians["fid"][1].update(self._inception.features(anonymized))
        if self._descriptor is not None:
            whole = (0, 0, originals.shape[2], originals.shape[1])
            self._gaussians["fid_face"][0].update(np.stack([self._descriptor.describe_box(c, whole) for c in originals]))
            self._gaussians["fid_face"][1].update(np.stack([self._descriptor.describe_box(c, whole) for c in anonymized]))

    def results(self) -> dict[str, float | None]:
        """Mean per-face metrics and Fréchet distances (``None`` with fewer than two faces)."""
        out: dict[str, float | None] = {}
        for name in self.metrics:
            if name in self._sums:
                out[name] = self._sums[name] / self._count if self._count else None
            else:
                first, second = self._gaussians[name]
                out[name] = frechet_distance(first.mean, first.covariance, second.mean, second.covariance) if self._count >= 2 else None
        return out


def compute_image_metrics(
    original_root: str | os.PathLike[str],
    anonymized_root: str | os.PathLike[str],
    split: str = "train",
    metrics: Sequence[str] | None = None,
    config: MetricsConfig | None = None,
    max_faces: int | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    seed: int = DEFAULT_SAMPLE_SEED,
) -> dict[str, Any]:
    """Compare the usable faces of ``anonymized_root`` with ``original_root`` (all, or ``max_faces`` drawn at
    random with ``seed``); a JSON-ready summary."""
    config = config or MetricsConfig()
    run, skipped = resolve_metrics(metrics, weights_dir)
    accumulator = _MetricAccumulator(run, config, weights_dir)
    counts = FaceCounts()
    for originals, anonymized in batched(iter_face_pairs(original_root, anonymized_root, split, config, counts, max_faces, seed), config.batch_size):
        accumulator.update(originals, anonymized)
    values: dict[str, float | None] = accumulator.results()
    values.update({name: None for name in skipped})
    return {
        "metrics": {name: values[name] for name in (list(metrics) if metrics else list(ALL_METRICS))},
        "unavailable": skipped,
        "labels": {name: METRIC_LABELS[name] for name in values if name in METRIC_LABELS},
        "faces": {
            "used": counts.used,
            "candidates": counts.candidates,
            "excluded_small": counts.excluded_small,
            "excluded_invalid": counts.excluded_invalid,
            "excluded_outside_image": counts.excluded_outside,
            "images_absent_from_original": counts.images_absent,
        },
        "split": split,
        "crop_size": config.crop_size,
        "min_face_size": config.min_face_size,
        "max_faces": max_faces,
        "sample_seed": seed if max_faces is not None and max_faces < counts.candidates else None,
    }
