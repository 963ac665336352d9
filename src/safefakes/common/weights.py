"""Optional pretrained weights: where they are expected, how to check them, and how to fetch them.

Nothing here downloads at run time. The metrics that need ImageNet/Inception weights (LPIPS, FID)
look for the files in, in order: an explicit folder, ``$SAFEFAKES_WEIGHTS_DIR``, and the torch hub
checkpoint cache (``torch.hub.get_dir()/checkpoints``, where torchvision and pytorch-fid keep them).
``safefakes fetch-weights --out DIR`` downloads and verifies them on a machine with internet access;
copy ``DIR`` to the torch hub cache or point ``$SAFEFAKES_WEIGHTS_DIR`` at it.

The dlib face models (face descriptor, landmarks, detectors) ship inside the
``face_recognition_models`` package and are found with :func:`dlib_model_file`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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
}

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
