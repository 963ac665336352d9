"""Atomic output helpers: complete results or nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from safefakes.common import io as io_module
from safefakes.common.io import atomic_directory, atomic_write_json, atomic_write_text


def test_atomic_write_text_replaces_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "out" / "file.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_atomic_write_json_is_sorted_and_stable(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic_write_json(target, {"b": 1, "a": [1, 2]})
    first = target.read_bytes()
    atomic_write_json(target, {"a": [1, 2], "b": 1})
    assert target.read_bytes() == first
    assert json.loads(first) == {"a": [1, 2], "b": 1}


def test_atomic_directory_appears_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "dataset"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as building:
            (building / "half.txt").write_text("partial")
            raise RuntimeError("killed mid-way")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(target) as building:
        (building / "done.txt").write_text("complete")
        assert not target.exists()
    assert (target / "done.txt").read_text() == "complete"


def test_atomic_directory_replaces_an_existing_folder(tmp_path: Path) -> None:
    target = tmp_path / "dataset"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_directory(target) as building:
        (building / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]


def test_atomic_directory_keeps_the_old_folder_when_the_new_one_cannot_move_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safefakes.common import io as common_io

    target = tmp_path / "dataset"
    target.mkdir()
    (target / "old.txt").write_text("old")
    real_replace = os.replace
    moves: list[str] = []

    def failing_replace(source, destination) -> None:
        moves.append(Path(source).name)
        if Path(source).name.endswith(".tmp"):  # the new folder moving in
            raise OSError("disk detached")
        real_replace(source, destination)

    monkeypatch.setattr(common_io.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk detached"):
        with atomic_directory(target) as building:
            (building / "new.txt").write_text("new")
    assert len(moves) == 3  # old aside, new in (fails), old back
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["dataset"]  # no temporary or set-aside folder left


# --- failures half-way ----------------------------------------------------------------------------


class _DiskFull(OSError):
    """Raised by the patched file handle after it wrote part of the data."""


class _HalfWritingFile:
    """A real file handle whose ``write`` puts the first half of the data on disk, then fails."""

    def __init__(self, handle) -> None:
        self._handle = handle

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()

    def write(self, data) -> int:
        self._handle.write(data[: len(data) // 2])
        self._handle.flush()
        raise _DiskFull("no space left on device (test)")

    def __getattr__(self, name):
        return getattr(self._handle, name)


def _fail_half_way(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Make every file the io module opens for writing fail after half its data; returns the paths it opened."""
    opened: list[Path] = []

    def half_writing_open(path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)
        if "w" not in mode:
            return handle
        opened.append(Path(path))
        return _HalfWritingFile(handle)

    monkeypatch.setattr(io_module, "open", half_writing_open, raising=False)
    return opened


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


WRITERS = {
    "bytes": (io_module.atomic_write_bytes, b"old content\n", b"new content, much longer than the old one\n"),
    "text": (atomic_write_text, "old content\n", "new content, much longer than the old one\n"),
    "json": (atomic_write_json, {"old": 1}, {"new": list(range(50))}),
}


def _read(path: Path, kind: str) -> object:
    return path.read_bytes() if kind == "bytes" else json.loads(path.read_text()) if kind == "json" else path.read_text()


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_writer_failing_mid_write_keeps_the_old_file_and_no_temporary(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write, old, new = WRITERS[kind]
    target = tmp_path / "out" / "result.txt"
    write(target, old)
    before = target.read_bytes()
    opened = _fail_half_way(monkeypatch)
    with pytest.raises(_DiskFull):
        write(target, new)
    assert opened and all(path != target for path in opened), "the data went to the target itself, not a temporary file"
    assert target.read_bytes() == before and _read(target, kind) == old
    assert _listing(target.parent) == ["result.txt"], "a half-written temporary file was left behind"
    monkeypatch.undo()
    write(target, new)
    assert _read(target, kind) == new and _listing(target.parent) == ["result.txt"]


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_writer_failing_mid_write_creates_no_target(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write, _, new = WRITERS[kind]
    target = tmp_path / "out" / "result.txt"
    _fail_half_way(monkeypatch)
    with pytest.raises(_DiskFull):
        write(target, new)
    assert not target.exists() and _listing(target.parent) == []


@pytest.mark.parametrize("failure", [OSError("rename failed (test)"), KeyboardInterrupt()], ids=["oserror", "killed"])
def test_writer_failing_at_the_rename_keeps_the_old_file_and_no_temporary(failure: BaseException, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "result.json"
    atomic_write_json(target, {"old": 1})
    renamed: list[tuple[str, str]] = []

    def failing_replace(source, destination) -> None:
        renamed.append((str(source), str(destination)))
        assert Path(source).read_text() == json.dumps({"new": 2}, indent=2, sort_keys=True) + "\n"  # complete before the rename
        raise failure

    monkeypatch.setattr(io_module.os, "replace", failing_replace)
    with pytest.raises(type(failure)):
        atomic_write_json(target, {"new": 2})
    assert renamed and renamed[0][1] == str(target) and renamed[0][0] != str(target)
    assert json.loads(target.read_text()) == {"old": 1} and _listing(tmp_path) == ["result.json"]


def test_atomic_directory_failing_at_the_rename_leaves_no_partial_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Old content or no folder at all, never a half-built one, and no temporary folder left."""
    fresh, existing = tmp_path / "fresh", tmp_path / "existing"
    existing.mkdir()
    (existing / "old.txt").write_text("old")

    def failing_replace(source, destination) -> None:
        raise OSError("rename failed (test)")

    monkeypatch.setattr(io_module.os, "replace", failing_replace)
    for target in (fresh, existing):
        with pytest.raises(OSError, match="rename failed"):
            with atomic_directory(target) as building:
                (building / "half.txt").write_text("complete but never published")
        assert not target.exists() or _listing(target) == ["old.txt"]
        assert not (target.exists() and (target / "half.txt").exists())
    assert [name for name in _listing(tmp_path) if name.endswith(".tmp")] == []
