"""Optional pretrained weights: where they are expected, how to check them, and how to fetch them.

Nothing here downloads at run time. The metrics that need ImageNet/Inception weights (LPIPS, FID)
look for the files in, in order: an explicit folder, ``$SAFEFAKES_WEIGHTS_DIR``, and the torch hub
checkpoint cache (``torch.hub.get_dir()/checkpoints``, where torchvision and pytorch-fid keep them).
``safefakes fetch-weights --out DIR`` downloads and verifies them on a machine with internet access;
copy ``DIR`` to the torch hub cache or point ``$SAFEFAKES_WEIGHTS_DIR`` at it.

The face detectors' ImageNet backbones and the COCO Keypoint R-CNN are looked up the same way. A detector
whose ``model.pretrained`` asks for one refuses to build without it (:func:`resolve_pretrained`: one line
naming the expected file and the ``fetch-weights`` command); ``pretrained: none`` is the one way to train
from random values. :class:`Initialisation` records which file (name and sha256) a network started from.

The dlib face models (face descriptor, landmarks, detectors) ship inside the
``face_recognition_models`` package and are found with :func:`dlib_model_file`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from safefakes.common.config import build_config
from safefakes.common.errors import SafefakesError
from safefakes.common.progress import progress

#: Environment variable naming an extra folder that holds weight files.
WEIGHTS_DIR_ENV = "SAFEFAKES_WEIGHTS_DIR"
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class WeightFile:
    """One pretrained weight file: its expected name, origin and checksum.

    ``sha256`` is the full hex digest where it is published, otherwise the leading hex digits that
    torch hub puts in the file name (``name-<sha256 prefix>.pth``), which ``torch.hub`` itself checks.
    """

    key: str
    filename: str
    url: str
    sha256: str
    purpose: str
    package_subpath: str | None = None  # a copy shipped inside an installed package, "package/relative/path"


#: torchvision's weight files. torchvision publishes no full sha256 for them: each file name ends in the first
#: hex digits of the file's sha256 (``<name>-<prefix>.pth``, the digits ``torch.hub`` checks on download), so
#: these entries verify against that prefix.
TORCHVISION_MODELS_URL = "https://download.pytorch.org/models/"


def sha256_prefix_in_name(filename: str) -> str:
    """The sha256 prefix torch hub puts in a weight file's name: ``vgg16-397923af.pth`` -> ``397923af``."""
    return Path(filename).stem.rsplit("-", 1)[-1]


def _torchvision_weight(key: str, filename: str, purpose: str) -> WeightFile:
    return WeightFile(key=key, filename=filename, url=TORCHVISION_MODELS_URL + filename, sha256=sha256_prefix_in_name(filename), purpose=purpose)


WEIGHT_FILES: dict[str, WeightFile] = {
    "alexnet": WeightFile(
        key="alexnet",
        filename="alexnet-owt-7be5be79.pth",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        sha256="7be5be79",  # torch hub naming convention: leading sha256 digits in the file name
        purpose="torchvision ImageNet AlexNet, the LPIPS feature network",
    ),
    "lpips_alex_linear": WeightFile(
        key="lpips_alex_linear",
        filename="alex.pth",
        url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
        sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",  # lpips 0.1.4 wheel copy
        purpose="LPIPS v0.1 linear calibration layers on top of AlexNet",
        package_subpath="lpips/weights/v0.1/alex.pth",
    ),
    "fid_inception": WeightFile(
        key="fid_inception",
        filename="pt_inception-2015-12-05-6726825d.pth",
        url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
        sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        purpose="pytorch-fid's port of the TensorFlow FID InceptionV3 (2015-12-05)",
    ),
    # DSFD loads torchvision's VGG-16 and subsamples fc6/fc7 itself (SSD's "reduced fc"), so it needs this
    # file, not the DSFD authors' vgg16_reducedfc.pth.
    "vgg16": _torchvision_weight("vgg16", "vgg16-397923af.pth", "torchvision ImageNet VGG-16, DSFD's backbone"),
    "vgg16_bn": _torchvision_weight("vgg16_bn", "vgg16_bn-6c64b313.pth", "torchvision ImageNet VGG-16-BN, DSFD's backbone with model.batch_norm"),
    "resnet18": _torchvision_weight("resnet18", "resnet18-f37072fd.pth", "torchvision ImageNet ResNet-18, a Faster R-CNN backbone option"),
    "resnet34": _torchvision_weight("resnet34", "resnet34-b627a593.pth", "torchvision ImageNet ResNet-34, a Faster R-CNN backbone option"),
    "resnet50": _torchvision_weight(
        "resnet50", "resnet50-0676ba61.pth", "torchvision ImageNet ResNet-50 (IMAGENET1K_V1), TinaFace's and Faster R-CNN's backbone"
    ),
    "resnet101": _torchvision_weight("resnet101", "resnet101-63fe2227.pth", "torchvision ImageNet ResNet-101, a Faster R-CNN backbone option"),
    "fasterrcnn_coco": _torchvision_weight(
        "fasterrcnn_coco", "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth", "torchvision COCO Faster R-CNN (ResNet-50 FPN), model.pretrained: coco"
    ),
    "keypointrcnn_coco": _torchvision_weight(
        "keypointrcnn_coco", "keypointrcnn_resnet50_fpn_coco-fc266e95.pth", "torchvision COCO Keypoint R-CNN, DeepPrivacy's keypoints"
    ),
}

#: ``model.pretrained`` value of a network that starts from random values (the one explicit opt-out).
NO_PRETRAINED = "none"


@dataclass(frozen=True)
class Initialisation:
    """What a network's weights started from: a pretrained weight file (name and sha256), or random values."""

    pretrained: str = NO_PRETRAINED  # the model section's ``pretrained`` value ("none", "imagenet", "coco")
    weights_file: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if (self.pretrained == NO_PRETRAINED) != (self.weights_file is None) or (self.weights_file is None) != (self.sha256 is None):
            raise SafefakesError(f"inconsistent initialisation record {asdict(self)}: a weights file and sha256 exactly when pretrained is not 'none'")

    @property
    def label(self) -> str:
        """``none``, or ``<file name> sha256:<digest>``: the one string tables record and figures compare."""
        return NO_PRETRAINED if self.weights_file is None else f"{self.weights_file} sha256:{self.sha256}"

    def to_dict(self) -> dict[str, str | None]:
        """Plain JSON-ready record."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, str | None]) -> Initialisation:
        """Rebuild from :meth:`to_dict`'s record; a clear error for anything else."""
        return build_config(cls, values, "initialisation record")


#: The initialisation of a result whose evaluation JSON records none (predictions not written by ``safefakes predict``).
UNRECORDED_INITIALISATION = "unrecorded"


def recorded_initialisation(result: Mapping[str, Any]) -> str:
    """The initialisation label an evaluation result (a ``safefakes evaluate`` JSON object) records, else ``unrecorded``."""
    record = result.get("initialisation")
    return UNRECORDED_INITIALISATION if record is None else Initialisation.from_dict(record).label


def require_one_initialisation(starts: Mapping[str, str]) -> None:
    """Refuse to compare results (name -> initialisation label) whose detectors started differently, naming each start."""
    by_start: dict[str, list[str]] = {}
    for name, start in starts.items():
        by_start.setdefault(start, []).append(name)
    if len(by_start) > 1:
        named = "; ".join(f"{start}: {', '.join(names)}" for start, names in by_start.items())
        raise SafefakesError(f"refusing to compare detectors that started differently ({named}); train them with the same model.pretrained and weight file")


def fetch_command(key: str, out_dir: str | os.PathLike[str]) -> str:
    """The command line that downloads and verifies weight ``key`` into ``out_dir``."""
    return f"safefakes fetch-weights --only {key} --out {out_dir}"


def resolve_pretrained(key: str, pretrained: str, owner: str) -> tuple[Path, Initialisation]:
    """The verified file of weight ``key`` that ``owner``'s ``model.pretrained: <pretrained>`` asks for, and its record.

    Absent or corrupt: a one-line :class:`SafefakesError` naming the expected path, the ``fetch-weights``
    command and the ``pretrained: none`` opt-out. Nothing is downloaded.
    """
    spec = _spec(key)
    expected = torch_hub_checkpoint_dir() / spec.filename
    path = locate_weight(key)
    fetch = fetch_command(key, expected.parent)
    if path is None:
        raise SafefakesError(
            f"{owner}: model.pretrained '{pretrained}' needs {expected} ({spec.purpose}), which is missing: run '{fetch}' "
            f"on a machine with internet and copy the file there (or into ${WEIGHTS_DIR_ENV}), or set model.pretrained: none to train from random values"
        )
    digest = sha256_of_file(path)
    if not digest.startswith(spec.sha256.lower()):
        raise SafefakesError(f"{owner}: {path} has sha256 {digest}, not the expected {spec.sha256} of {spec.url} (corrupt or wrong file): run '{fetch}' again")
    return path, Initialisation(pretrained, spec.filename, digest)


#: The weights each optional metric needs.
METRIC_WEIGHTS: dict[str, tuple[str, ...]] = {
    "lpips": ("alexnet", "lpips_alex_linear"),
    "fid": ("fid_inception",),
}


def sha256_of_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_matches(path: str | os.PathLike[str], spec: WeightFile) -> bool:
    """Whether ``path``'s sha256 equals (or, for a published prefix, starts with) ``spec.sha256``."""
    return sha256_of_file(path).startswith(spec.sha256.lower())


def _package_copy(spec: WeightFile) -> Path | None:
    if spec.package_subpath is None:
        return None
    package, _, relative = spec.package_subpath.partition("/")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        return None
    return Path(list(found.submodule_search_locations)[0]) / relative


def torch_hub_checkpoint_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints``: where torchvision and pytorch-fid cache weights."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def weight_search_dirs(weights_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders searched for weight files, in order."""
    dirs = [Path(weights_dir)] if weights_dir else []
    if os.environ.get(WEIGHTS_DIR_ENV):
        dirs.append(Path(os.environ[WEIGHTS_DIR_ENV]))
    dirs.append(torch_hub_checkpoint_dir())
    return dirs


def locate_weight(key: str, weights_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The first existing copy of weight ``key`` (searched folders, then a package copy), or ``None``."""
    spec = _spec(key)
    candidates = [folder / spec.filename for folder in weight_search_dirs(weights_dir)]
    package_copy = _package_copy(spec)
    if package_copy is not None:
        candidates.append(package_copy)
    return next((path for path in candidates if path.is_file()), None)


def missing_weight_message(key: str, weights_dir: str | os.PathLike[str] | None = None) -> str:
    """A one-line explanation naming the file, its URL and where to put it."""
    spec = _spec(key)
    where = ", ".join(str(folder) for folder in weight_search_dirs(weights_dir))
    return (
        f"weight file {spec.filename} ({spec.purpose}) not found; download {spec.url} "
        f"(or run 'safefakes fetch-weights --out DIR' where internet is available) and put it in one of: {where} "
        f"(or set {WEIGHTS_DIR_ENV})"
    )


def require_weight(key: str, weights_dir: str | os.PathLike[str] | None = None, verify: bool = True) -> Path:
    """The path of weight ``key``; :class:`SafefakesError` when absent or when its checksum is wrong."""
    path = locate_weight(key, weights_dir)
    if path is None:
        raise SafefakesError(missing_weight_message(key, weights_dir))
    if verify and not checksum_matches(path, _spec(key)):
        raise SafefakesError(f"{path}: sha256 does not match the expected {_spec(key).sha256} (corrupt or wrong file)")
    return path


def metric_weights_status(metric: str, weights_dir: str | os.PathLike[str] | None = None) -> str | None:
    """``None`` when every weight ``metric`` needs is present, otherwise the reason it is not."""
    for key in METRIC_WEIGHTS.get(metric, ()):
        if locate_weight(key, weights_dir) is None:
            return missing_weight_message(key, weights_dir)
    return None


def dlib_model_file(filename: str) -> Path:
    """A dlib model file shipped in the ``face_recognition_models`` package (``models/<filename>``)."""
    found = importlib.util.find_spec("face_recognition_models")
    if found is None or not found.submodule_search_locations:
        raise SafefakesError("the face_recognition_models package is not installed (pip install face_recognition_models)")
    path = Path(list(found.submodule_search_locations)[0]) / "models" / filename
    if not path.is_file():
        raise SafefakesError(f"dlib model {path} is missing; reinstall face_recognition_models")
    return path


Opener = Callable[[str], BinaryIO]


def fetch_weight(spec: WeightFile, out_dir: str | os.PathLike[str], opener: Opener = urllib.request.urlopen) -> Path:
    """Download one weight file into ``out_dir`` through a temporary file; keep it only if its checksum matches."""
    target = Path(out_dir) / spec.filename
    if target.is_file() and checksum_matches(target, spec):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as sink, opener(spec.url) as source:
            for chunk in iter(lambda: source.read(_CHUNK_BYTES), b""):
                sink.write(chunk)
        if not checksum_matches(tmp, spec):
            raise SafefakesError(f"downloaded {spec.url} but its sha256 does not match {spec.sha256}; not kept")
        os.replace(tmp, target)
    except OSError as error:
        raise SafefakesError(f"could not download {spec.url}: {error}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def fetch_weights(out_dir: str | os.PathLike[str], keys: Iterable[str] | None = None, opener: Opener = urllib.request.urlopen) -> list[Path]:
    """Download and verify the named weights (all by default) into ``out_dir``."""
    specs = [_spec(key) for key in (keys if keys is not None else WEIGHT_FILES)]
    return [fetch_weight(spec, out_dir, opener) for spec in progress(specs, desc="fetch weights", unit="file")]


def _spec(key: str) -> WeightFile:
    try:
        return WEIGHT_FILES[key]
    except KeyError:
        raise SafefakesError(f"unknown weight {key!r}; known: {', '.join(WEIGHT_FILES)}") from None
