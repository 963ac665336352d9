"""Fetch the real WIDER FACE: download archives, verify checksums, unpack atomically into the official layout.

Each archive is an :class:`ArchiveSpec` (name, URL, optional ``algo:hex`` checksum, optional member mapping).
``fetch_archives`` downloads it to ``ROOT/.downloads/<name>`` (with a progress bar), verifies the checksum,
unpacks it into a temporary folder beside ``ROOT`` and moves the unpacked top-level entries into ``ROOT`` only
when everything succeeded; then it writes ``ROOT/.fetched/<name>.json``. An archive whose marker is present
(and whose checksum matches the requested one) is skipped without touching the network.

URLs may be ``http(s)://``, ``file://`` or a plain local path. Member paths that are absolute or contain
``..`` are refused (no writing outside ``ROOT``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm.auto import tqdm

from safefakes.common.config import build_config
from safefakes.common.errors import SafefakesError
from safefakes.common.io import atomic_write_json

LOG = logging.getLogger(__name__)

SUPPORTED_ALGORITHMS = ("md5", "sha1", "sha256")
#: Bytes read per chunk when downloading and hashing.
CHUNK_BYTES = 1 << 20
#: Seconds before a stalled connection fails.
NETWORK_TIMEOUT_S = 60.0
DOWNLOAD_DIR = ".downloads"
MARKER_DIR = ".fetched"


@dataclass(frozen=True)
class Checksum:
    """An expected digest: ``algorithm`` is md5, sha1 or sha256; ``hexdigest`` lower-case hex."""

    algorithm: str
    hexdigest: str

    @staticmethod
    def parse(text: str) -> Checksum:
        """Parse ``ALGO:HEX`` (e.g. ``md5:3fedf70d...``)."""
        algorithm, sep, digest = text.strip().partition(":")
        algorithm, digest = algorithm.lower(), digest.lower()
        if not sep or algorithm not in SUPPORTED_ALGORITHMS:
            raise SafefakesError(f"checksum {text!r}: expected ALGO:HEX with ALGO one of {', '.join(SUPPORTED_ALGORITHMS)}")
        expected_length = hashlib.new(algorithm).digest_size * 2
        if len(digest) != expected_length or any(c not in "0123456789abcdef" for c in digest):
            raise SafefakesError(f"checksum {text!r}: a {algorithm} digest is {expected_length} hex digits")
        return Checksum(algorithm, digest)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"


@dataclass(frozen=True)
class ArchiveSpec:
    """One archive to fetch. ``members``: archive folder -> folder under ROOT (empty: unpack everything as is)."""

    name: str
    url: str
    checksum: Checksum | None = None
    members: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        self.validate()

    @staticmethod
    def from_dict(values: Mapping[str, Any]) -> ArchiveSpec:
        """Build from ``{"name", "url", "checksum": "ALGO:HEX", "members": {"src/": "dest/"}}``."""
        values = dict(values)
        if "checksum" in values:
            values["checksum"] = Checksum.parse(values["checksum"]) if values["checksum"] else None
        if "members" in values:
            values["members"] = tuple((str(src), str(dest)) for src, dest in dict(values["members"] or {}).items())
        return build_config(ArchiveSpec, values, "archive spec")

    def validate(self) -> None:
        """Refuse names that are not plain file names and member mappings that leave ROOT."""
        if not self.name or "/" in self.name or "\\" in self.name or self.name in (".", ".."):
            raise SafefakesError(f"archive name {self.name!r} must be a plain file name, e.g. WIDER_train.zip")
        for src, dest in self.members:
            for path in (src, dest):
                if path.strip("/"):
                    _safe_member(path)


def _safe_member(name: str) -> PurePosixPath:
    """A member path that stays inside the destination: relative, no ``..``."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and path.parts[0].endswith(":")):
        raise SafefakesError(f"refusing archive member {name!r}: it would be written outside the output folder")
    return path


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path, checksum: Checksum) -> None:
    """Raise :class:`SafefakesError` when ``path`` does not have the expected digest."""
    actual = file_digest(path, checksum.algorithm)
    if actual != checksum.hexdigest:
        raise SafefakesError(f"{path.name}: {checksum.algorithm} mismatch: expected {checksum.hexdigest}, got {actual}")


def _local_source(url: str) -> Path | None:
    """The local file a ``file://`` URL or a plain path names; ``None`` for network URLs."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in ("",) or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(url)
    return None


def download(url: str, destination: Path, *, desc: str) -> None:
    """Copy ``url`` to ``destination`` through a ``.part`` file, with a byte progress bar."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    disable = os.environ.get("SAFEFAKES_NO_PROGRESS", "") not in ("", "0")
    local = _local_source(url)
    try:
        if local is not None:
            if not local.is_file():
                raise SafefakesError(f"archive not found: {local}")
            source = open(local, "rb")
            total: int | None = local.stat().st_size
        else:
            try:
                source = urllib.request.urlopen(url, timeout=NETWORK_TIMEOUT_S)  # noqa: S310 (http/https only)
            except (OSError, ValueError) as error:
                raise SafefakesError(f"cannot download {url}: {error}") from None
            length = source.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        with source, open(partial, "wb") as out, tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=disable, mininterval=1.0) as bar:
            try:
                for chunk in iter(lambda: source.read(CHUNK_BYTES), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
            except OSError as error:
                raise SafefakesError(f"download of {url} failed: {error}") from None
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)


def _archive_members(archive: Path) -> list[str]:
    """Names of the regular files (and folders) inside a zip or tar archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as handle:
            return handle.namelist()
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as handle:
            return [member.name for member in handle.getmembers() if member.isfile() or member.isdir()]
    raise SafefakesError(f"{archive.name}: not a zip or tar archive")


def _map_member(name: str, members: Sequence[tuple[str, str]]) -> PurePosixPath | None:
    """Where member ``name`` goes under ROOT (``None``: not wanted)."""
    path = _safe_member(name)
    if not members:
        return path
    text = path.as_posix()
    for src, dest in members:
        prefix = src.strip("/")
        if text == prefix or text.startswith(prefix + "/") or not prefix:
            rest = text[len(prefix) :].lstrip("/") if prefix else text
            return PurePosixPath(dest.strip("/")) / rest if rest else PurePosixPath(dest.strip("/"))
    return None


def unpack(archive: Path, destination: Path, members: Sequence[tuple[str, str]] = ()) -> int:
    """Extract ``archive`` into the (empty) folder ``destination``, applying the member mapping. Returns files written."""
    written = 0
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as handle:
            for info in handle.infolist():
                target = _map_member(info.filename, members)
                if target is None or info.is_dir():
                    continue
                out = destination / target
                out.parent.mkdir(parents=True, exist_ok=True)
                with handle.open(info) as source, open(out, "wb") as sink:
                    shutil.copyfileobj(source, sink, CHUNK_BYTES)
                written += 1
        return written
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as handle:
            for member in handle.getmembers():
                target = _map_member(member.name, members)
                if target is None or not member.isfile():
                    continue
                out = destination / target
                out.parent.mkdir(parents=True, exist_ok=True)
                source = handle.extractfile(member)
                if source is None:
                    continue
                with source, open(out, "wb") as sink:
                    shutil.copyfileobj(source, sink, CHUNK_BYTES)
                written += 1
        return written
    raise SafefakesError(f"{archive.name}: not a zip or tar archive")


def _marker_path(root: Path, spec: ArchiveSpec) -> Path:
    return root / MARKER_DIR / f"{spec.name}.json"


def is_fetched(root: Path, spec: ArchiveSpec) -> bool:
    """True when ``spec`` was unpacked into ``root`` before (same checksum, its entries still there)."""
    marker = _marker_path(root, spec)
    if not marker.is_file():
        return False
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if spec.checksum is not None and record.get("checksum") != str(spec.checksum):
        return False
    return all((root / entry).exists() for entry in record.get("entries", []))


def _move_into(staging: Path, root: Path) -> list[str]:
    """Move the top-level entries of ``staging`` into ``root``, merging folders that exist already."""
    entries = []
    for entry in sorted(staging.iterdir()):
        target = root / entry.name
        if entry.is_dir() and target.is_dir():
            _move_into(entry, target)
        else:
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
        entries.append(entry.name)
    return entries


def fetch_archive(root: Path, spec: ArchiveSpec, *, keep_archive: bool = False) -> bool:
    """Download, verify and unpack one archive into ``root``. Returns False when it was already there."""
    if is_fetched(root, spec):
        LOG.info("%s: already unpacked in %s, skipped", spec.name, root)
        return False
    root.mkdir(parents=True, exist_ok=True)
    archive = root / DOWNLOAD_DIR / spec.name
    if archive.is_file() and spec.checksum is not None and file_digest(archive, spec.checksum.algorithm) == spec.checksum.hexdigest:
        LOG.info("%s: using the verified download in %s", spec.name, archive)
    else:
        download(spec.url, archive, desc=spec.name)
        if spec.checksum is not None:
            try:
                verify_checksum(archive, spec.checksum)
            except SafefakesError:
                archive.unlink(missing_ok=True)
                raise
        else:
            LOG.warning("%s: no checksum given; sha256 is %s (pin it in the config)", spec.name, file_digest(archive, "sha256"))
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", suffix=".tmp", dir=root))
    try:
        count = unpack(archive, staging, spec.members)
        if count == 0:
            raise SafefakesError(f"{spec.name}: no files matched {dict(spec.members)}" if spec.members else f"{spec.name}: empty archive")
        entries = _move_into(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    record = {"url": spec.url, "checksum": str(spec.checksum) if spec.checksum else None, "files": count, "entries": entries}
    atomic_write_json(_marker_path(root, spec), record)
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return True


def fetch_archives(root: str | os.PathLike[str], specs: Iterable[ArchiveSpec], *, keep_archives: bool = False) -> dict[str, bool]:
    """Fetch every archive into ``root``; returns name -> True if unpacked now, False if it was already there."""
    root = Path(root)
    specs = list(specs)
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise SafefakesError(f"archive names must be unique, got {', '.join(names)}")
    return {spec.name: fetch_archive(root, spec, keep_archive=keep_archives) for spec in specs}


def specs_from_arguments(archives: Sequence[str], checksums: Sequence[str], members: Sequence[str]) -> list[ArchiveSpec]:
    """Build specs from ``NAME=URL``, ``NAME=ALGO:HEX`` and ``NAME=SRC:DEST`` command-line values."""

    def split(value: str, what: str) -> tuple[str, str]:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise SafefakesError(f"{what} {value!r}: expected NAME=...")
        return name, rest

    urls: dict[str, str] = {}
    for value in archives:
        name, url = split(value, "--archive")
        if name in urls:
            raise SafefakesError(f"--archive {name} given twice")
        urls[name] = url
    sums: dict[str, Checksum] = {}
    for value in checksums:
        name, text = split(value, "--checksum")
        if name not in urls:
            raise SafefakesError(f"--checksum for unknown archive {name!r}")
        sums[name] = Checksum.parse(text)
    mapping: dict[str, list[tuple[str, str]]] = {}
    for value in members:
        name, text = split(value, "--member")
        if name not in urls:
            raise SafefakesError(f"--member for unknown archive {name!r}")
        src, sep, dest = text.partition(":")
        if not sep:
            raise SafefakesError(f"--member {value!r}: expected NAME=SRC:DEST")
        mapping.setdefault(name, []).append((src, dest))
    return [ArchiveSpec(name=name, url=url, checksum=sums.get(name), members=tuple(mapping.get(name, ()))) for name, url in urls.items()]


def specs_from_json(path: str | os.PathLike[str]) -> list[ArchiveSpec]:
    """Read a JSON list of archive specs (see :meth:`ArchiveSpec.from_dict`)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SafefakesError(f"archive spec file not found: {path}") from None
    except json.JSONDecodeError as error:
        raise SafefakesError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(raw, list):
        raise SafefakesError(f"{path}: expected a JSON list of archives")
    return [ArchiveSpec.from_dict(item) for item in raw]


def spec_as_dict(spec: ArchiveSpec) -> dict[str, Any]:
    """The JSON form of a spec (inverse of :meth:`ArchiveSpec.from_dict`)."""
    values = asdict(spec)
    values["checksum"] = str(spec.checksum) if spec.checksum else None
    values["members"] = dict(spec.members)
    return values
