"""Shared pytest fixtures: the real fixtures in ../shared/data (skipped when absent) and small synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SAFEFAKES_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))

os.environ.setdefault("SAFEFAKES_NO_PROGRESS", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real fixture folder ``../shared/data``; tests using it skip with a reason when it is absent."""
    if not (SHARED_DATA / "MANIFEST.md").is_file():
        pytest.skip(f"real fixtures not found at {SHARED_DATA} (set SAFEFAKES_SHARED_DATA or place shared/ beside the project)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def wider_fixture_root(shared_data: Path) -> Path:
    """The real WIDER FACE subset: ``WIDER_{train,val}/images`` plus annotation files."""
    return shared_data / "wider_face"


@pytest.fixture(scope="session")
def gan_synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic WIDER FACE root with ground-truth keypoints, 68 landmarks and identities (GAN tests)."""
    from safefakes.data.synth import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("gan_synth") / "wider"
    synthesize(root, 10, seed=4, config=SynthConfig.from_dict({"image_width": 384}))
    return root
