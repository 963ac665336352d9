"""Synthetic identity photos: layout, determinism, identity parameters, and a real re-identification check
(dlib descriptors of the known face boxes: originals match, blackout does not)."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from safefakes.cli import main
from safefakes.common.errors import SafefakesError
from safefakes.data.synth import identity_for
from safefakes.data.synth_identities import (
    SynthIdentitiesConfig,
    distinct_identity,
    identity_name,
    render_identity_photo,
    synthesize_identities,
)
from safefakes.evaluate import reid
from safefakes.evaluate.reid import ReidConfig

SMALL = SynthIdentitiesConfig(size_px=96)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_cli_writes_folder_per_identity_and_csv(tmp_path: Path) -> None:
    out = tmp_path / "ids"
    assert main(["synth-identities", "--out", str(out), "--identities", "3", "--photos", "2", "--seed", "5", "--size", "96"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["id0000", "id0001", "id0002", "identities.csv"]
    with open(out / "identities.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["path"] for r in rows] == [f"id000{i}/00{k}.png" for i in range(3) for k in range(2)]
    assert all(r["identity"] == r["path"].split("/")[0] for r in rows)
    for row in rows:
        image = cv2.imread(str(out / row["path"]))
        assert image.shape == (96, 96, 3)
        x, y, w, h = (int(v) for v in row["box"].split())
        assert 0 <= x and 0 <= y and x + w <= 96 and y + h <= 96 and w > 30 and h > 30
    samples = reid.load_identities(out)
    assert len(samples) == 6 and all(s.box_is_face and s.box is not None for s in samples)
    assert {s.identity for s in samples} == {"id0000", "id0001", "id0002"}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    synthesize_identities(tmp_path / "a", 2, 2, seed=3, config=SMALL)
    synthesize_identities(tmp_path / "b", 2, 2, seed=3, config=SMALL)
    synthesize_identities(tmp_path / "c", 2, 2, seed=4, config=SMALL)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert _files(tmp_path / "a")["id0000/000.png"] != _files(tmp_path / "c")["id0000/000.png"]


def test_photos_of_one_identity_share_parameters_and_vary_appearance() -> None:
    photos = [render_identity_photo(1, identity, photo, SMALL) for identity in range(3) for photo in range(3)]
    for identity in range(3):
        own = photos[identity * 3 : identity * 3 + 3]
        assert all(p.identity == own[0].identity == distinct_identity(1, identity, SMALL.identity_spread) for p in own)
        assert len({p.appearance for p in own}) == 3
        assert not np.array_equal(own[0].image, own[1].image)
    assert len({p.identity for p in photos}) == 3
    assert distinct_identity(1, 2, 1.0) == identity_for(1, 2)  # spread 1: the synth pool itself


def test_spread_pushes_geometry_apart_and_keeps_faces_plausible() -> None:
    pool = [identity_for(0, i) for i in range(60)]
    spread = [distinct_identity(0, i, 2.0) for i in range(60)]
    assert np.std([p.eye_spacing for p in spread]) > 1.8 * np.std([p.eye_spacing for p in pool])
    for face in spread:
        assert face.eye_spacing + face.eye_width < 1.0  # eyes inside the head outline
        assert face.mouth_y - face.lip_fullness > face.eye_height + face.nose_length  # mouth below the nose
        assert face.jaw_width <= 1.0
        assert (face.skin_rgb, face.hair_style, face.beard) == (
            pool[face.identity_id].skin_rgb,
            pool[face.identity_id].hair_style,
            pool[face.identity_id].beard,
        )


def test_bad_arguments_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(SafefakesError):
        synthesize_identities(tmp_path / "x", 1, 3, seed=0)
    with pytest.raises(SafefakesError):
        SynthIdentitiesConfig.from_dict({"size": 100})
    with pytest.raises(SafefakesError):
        replace(SMALL, identity_spread=0.5)
    assert not (tmp_path / "x").exists()


def test_bad_box_column_is_a_user_error(tmp_path: Path) -> None:
    synthesize_identities(tmp_path / "ids", 2, 2, seed=0, config=SMALL)
    csv_path = tmp_path / "ids" / "identities.csv"
    csv_path.write_text(csv_path.read_text().replace(csv_path.read_text().splitlines()[1].split(",")[2], "1 2 three 4"))
    with pytest.raises(SafefakesError, match="box"):
        reid.load_identities(tmp_path / "ids")


def test_originals_reidentify_and_blackout_destroys_matching(tmp_path: Path) -> None:
    """A real measurement with dlib's descriptor on 4 identities x 3 photos."""
    root = tmp_path / "ids"
    synthesize_identities(root, 4, 3, seed=0)
    config = ReidConfig()
    samples = reid.load_identities(root)
    model = reid.FaceDescriptorModel(config.descriptor)
    originals = reid.acquire_originals(samples, model, config)
    blackout = reid.acquire_anonymized(samples, originals, model, reid.anonymizer_function("blackout", None), config)
    plain = {r["scenario"]: r for r in reid.evaluate_scenarios("none", None, samples, originals, originals, config).summary_rows()}
    hidden = {r["scenario"]: r for r in reid.evaluate_scenarios("blackout", None, samples, originals, blackout, config).summary_rows()}
    assert plain["naive"]["fta"] == 0.0 and plain["parrot"]["eer"] < 0.2
    assert plain["naive"]["rank1"] == 1.0
    assert hidden["naive"]["eer"] > 0.35 and hidden["naive"]["eer"] > plain["naive"]["eer"] + 0.25
    assert hidden["naive"]["rank1"] < 0.6


def test_identity_names_sort_in_order() -> None:
    assert [identity_name(i) for i in (2, 10, 1)] == ["id0002", "id0010", "id0001"]
    assert sorted(identity_name(i) for i in range(12)) == [identity_name(i) for i in range(12)]
