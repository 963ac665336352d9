"""Atomic output helpers: complete results or nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
