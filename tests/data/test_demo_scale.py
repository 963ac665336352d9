"""The demo's faces have WIDER FACE's absolute pixel sizes, and the face-size figure shows it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from safefakes.data.synth import SynthConfig, render_image, synthesize
from safefakes.data.wider import DIFFICULTIES
from safefakes.plots.face_sizes import WIDER_VAL_MEDIAN_FACE_PX, face_size_table, plot_face_sizes

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED_GT = PROJECT_ROOT.parent / "shared" / "data" / "wider_face" / "ground_truth"
#: Largest relative distance between a demo median face size and WIDER val's (issue: within 15%).
MEDIAN_TOLERANCE = 0.15


def _demo_synthetic() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text())["dataset"]["synthetic"]


def _demo_face_sizes() -> dict[str, list[float]]:
    """Face sizes per difficulty of every image the demo preset draws (train and val)."""
    demo = _demo_synthetic()
    config = SynthConfig(image_width=demo["image_width"], crop_full_scene=demo.get("crop_full_scene", False))
    sizes: dict[str, list[float]] = {name: [] for name in DIFFICULTIES}
    for split, count in (("train", demo["train_images"]), ("val", demo["val_images"])):
        for index in range(count):
            for face in render_image(demo["seed"], split, index, config).faces:
                for name in face.difficulty:
                    sizes[name].append(face.box.size)
    return sizes


def test_demo_face_sizes_match_wider() -> None:
    sizes = _demo_face_sizes()
    for name in DIFFICULTIES:
        median = float(np.median(sizes[name]))
        wider = WIDER_VAL_MEDIAN_FACE_PX[name]
        assert abs(median / wider - 1) <= MEDIAN_TOLERANCE, f"{name}: demo median {median:.1f} px, WIDER val {wider} px"


def test_scene_crops_keep_face_sizes_and_whole_scenes_shrink_them() -> None:
    """The same seed: a whole 384-px scene has faces 384/1024 the size of a crop's; crops hold fewer faces."""
    crops = [render_image(3, "val", i, SynthConfig(image_width=384, crop_full_scene=True)) for i in range(60)]
    shrunk = [render_image(3, "val", i, SynthConfig(image_width=384)) for i in range(60)]
    crop_median = np.median([face.box.size for image in crops for face in image.faces])
    shrunk_median = np.median([face.box.size for image in shrunk for face in image.faces])
    assert crop_median > 2 * shrunk_median
    assert all(image.faces for image in crops)
    assert sum(len(image.faces) for image in crops) < sum(len(image.faces) for image in shrunk)
    assert SynthConfig(image_width=384, crop_full_scene=True).scale == 1.0


def test_face_size_figure_on_synthetic_ground_truth(tmp_path: Path) -> None:
    root = tmp_path / "synth"
    synthesize(root, 40, seed=2, val_images=30, config=SynthConfig(image_width=384, crop_full_scene=True))
    png, csv = tmp_path / "face_sizes.png", tmp_path / "face_sizes.csv"
    table = plot_face_sizes({"synthetic": root / "ground_truth"}, png, csv)
    assert png.stat().st_size > 0
    written = pd.read_csv(csv)
    assert list(written["difficulty"]) == list(DIFFICULTIES)
    assert (written["faces"].diff().dropna() >= 0).all()  # the settings are nested: easy <= medium <= hard
    assert written["median_px"].is_monotonic_decreasing
    assert np.allclose(written["median_px"], table["median_px"])


@pytest.mark.skipif(not SHARED_GT.is_dir(), reason="../shared/data/wider_face/ground_truth is absent (real WIDER val ground truth)")
def test_face_size_table_of_real_wider_val_gives_the_published_medians() -> None:
    table = face_size_table({"WIDER val": SHARED_GT}).set_index("difficulty")
    assert table.loc["hard", "faces"] == 31958 and table.loc["easy", "faces"] == 7211
    for name in DIFFICULTIES:
        assert table.loc[name, "median_px"] == pytest.approx(WIDER_VAL_MEDIAN_FACE_PX[name], abs=0.05)
