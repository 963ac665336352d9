"""``safefakes evaluate`` end to end on a small written ground truth, and the PR-curve plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from safefakes.cli import main
from safefakes.data.ground_truth import load_ground_truth, write_ground_truth
from safefakes.data.predictions import read_predictions, write_predictions
from safefakes.data.wider import FaceBox, ImageAnnotation
from safefakes.evaluate.wider_eval import evaluate
from safefakes.plots.pr_curves import curve_ap, plot_pr_curves, read_curves_csv


@pytest.fixture()
def small_benchmark(tmp_path: Path) -> tuple[Path, Path]:
    """Three images, a few faces, imperfect detections (one image has no prediction file)."""
    annotations = [
        ImageAnnotation("0--Parade/a.jpg", [FaceBox(10, 10, 40, 40), FaceBox(100, 100, 12, 12), FaceBox(300, 50, 6, 6)]),
        ImageAnnotation("0--Parade/b.jpg", [FaceBox(50, 60, 80, 90)]),
        ImageAnnotation("4--Dancing/c.jpg", [FaceBox(20, 20, 30, 30), FaceBox(70, 20, 30, 30)]),
    ]
    difficulty = {"easy": [[0], [0], [0]], "medium": [[0, 1], [0], [0, 1]], "hard": [[0, 1], [0], [0, 1]]}
    gt_dir = tmp_path / "gt"
    write_ground_truth(gt_dir, annotations, difficulty)
    pred_dir = tmp_path / "pred"
    write_predictions(
        pred_dir, "0--Parade/a.jpg", np.array([[11, 10, 40, 41], [400, 400, 20, 20], [100, 101, 12, 12], [300, 50, 6, 6]]), np.array([0.9, 0.8, 0.3, 0.95])
    )
    write_predictions(pred_dir, "0--Parade/b.jpg", np.array([[52, 60, 80, 88]]), np.array([0.6]))
    return gt_dir, pred_dir


def test_cli_prints_json_last_and_writes_outputs(small_benchmark, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt_dir, pred_dir = small_benchmark
    out, curves, plot = tmp_path / "r/ap.json", tmp_path / "r/curves.csv", tmp_path / "r/pr.png"
    status = main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--out", str(out), "--curves", str(curves)])
    assert main(["plot-pr", "--curves", f"small={curves}", "--out", str(plot)]) == 0
    assert status == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    ground_truth = load_ground_truth(gt_dir)
    expected = evaluate(ground_truth, read_predictions(pred_dir, ground_truth.keys()))
    assert printed == expected.summary() == json.loads(out.read_text())
    assert list(printed) == ["easy", "medium", "hard"]
    assert 0.0 < printed["hard"] < printed["easy"] <= 1.0
    table = read_curves_csv(curves)
    assert list(table.columns) == ["setting", "threshold", "precision", "recall"] and len(table) == 3000
    for setting in ("easy", "medium", "hard"):
        assert curve_ap(table, setting) == printed[setting]  # the CSV holds the exact curve
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_config_and_errors(small_benchmark, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt_dir, pred_dir = small_benchmark
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--config-json", '{"iou_threshold": 0.99}']) == 0
    strict = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert strict["easy"] < 1.0
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(tmp_path / "missing")]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("error: ground-truth file not found")
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--config-json", '{"iou": 1}']) == 1
    assert "unknown evaluation setting" in capsys.readouterr().err
    (pred_dir / "0--Parade" / "b.txt").write_text("b.jpg\n1\n1 2 3\n")
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir)]) == 1
    assert capsys.readouterr().err.strip().endswith("b.txt:3: expected 'x y w h score', got '1 2 3'")


def test_plot_several_methods(tmp_path: Path) -> None:
    thresholds = 1.0 - np.arange(1, 11) / 10
    frames = {}
    for label, scale in (("original", 1.0), ("blurred", 0.6)):
        rows = [
            pd.DataFrame({"setting": s, "threshold": thresholds, "precision": np.linspace(1, 0.5, 10), "recall": np.linspace(0.1, 0.9, 10) * scale})
            for s in ("easy", "medium", "hard")
        ]
        frames[label] = pd.concat(rows, ignore_index=True)
    plot_pr_curves(frames, tmp_path / "pr.png", title="test")
    assert (tmp_path / "pr.png").stat().st_size > 10_000


def test_cli_ap_matches_a_hand_computed_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One image, three faces: a 40 px face counted in every setting, a 20 px face counted from medium on, and a
    10 px face counted only in hard. Detections, best score first: a hit on the 40 px face, a false positive, a
    hit on the 20 px face; the 10 px face is missed.

    Scores 0.9, 0.5, 0.1 normalize to 1, 0.5, 0; the thresholds 1 - k/1000 (k = 1..1000) take the detections in
    that order, so the PR points are (recall, precision):
      easy   (1 face; the hit on the medium face is no proposal): (1, 1), (1, 1/2)         -> AP = 1
      medium (2 faces): (1/2, 1), (1/2, 1/2), (1, 2/3)          -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
      hard   (3 faces): (1/3, 1), (1/3, 1/2), (2/3, 2/3)        -> AP = 1/3 * 1 + 1/3 * 2/3 = 5/9
    (VOC AP: precision made monotone from the right, summed over the recall steps; recall never reaches 1 in hard.)
    """
    faces = [FaceBox(20, 20, 40, 40), FaceBox(120, 30, 20, 20), FaceBox(200, 150, 10, 10)]
    gt_dir, pred_dir, out = tmp_path / "gt", tmp_path / "pred", tmp_path / "ap.json"
    write_ground_truth(gt_dir, [ImageAnnotation("0--Parade/a.jpg", faces)], {"easy": [[0]], "medium": [[0, 1]], "hard": [[0, 1, 2]]})
    detections = np.array([[20, 20, 40, 40], [300, 200, 30, 30], [120, 30, 20, 20]])
    write_predictions(pred_dir, "0--Parade/a.jpg", detections, np.array([0.9, 0.5, 0.1]))
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == json.loads(out.read_text())
    assert printed["easy"] == pytest.approx(1.0, abs=1e-12)
    assert printed["medium"] == pytest.approx(5 / 6, abs=1e-12)
    assert printed["hard"] == pytest.approx(5 / 9, abs=1e-12)
    # Ranking the false positive first costs precision at the top of every setting: easy drops to 1/2.
    write_predictions(pred_dir, "0--Parade/a.jpg", detections, np.array([0.5, 0.9, 0.1]))
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir)]) == 0
    swapped = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # easy: (1, 1/2) -> 1/2; medium: (1/2, 1/2), (1, 2/3) -> 2/3; hard: (1/3, 1/2), (2/3, 2/3) -> 1/3 * 2/3 * 2 = 4/9
    assert swapped == pytest.approx({"easy": 1 / 2, "medium": 2 / 3, "hard": 4 / 9}, abs=1e-12)
