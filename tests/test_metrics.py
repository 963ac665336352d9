"""Image metrics, Fréchet distances, Table II correlations and optional-weight handling."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import scipy.stats

from safefakes.cli import main
from safefakes.common import weights
from safefakes.common.errors import SafefakesError
from safefakes.data.wider import read_bbx_gt, write_bbx_gt
from safefakes.evaluate import correlation, image_metrics
from safefakes.evaluate.image_metrics import (
    MetricsConfig,
    RunningGaussian,
    compute_image_metrics,
    face_ssim,
    frechet_distance,
    pixel_l1,
    pixel_l2,
    resolve_metrics,
)

N_TRAIN_IMAGES = 4  # real WIDER train images used for dataset-level tests (keeps the file fast)


# --- per-face metrics ---------------------------------------------------------------------------


def test_l1_l2_known_values() -> None:
    a = np.zeros((8, 8, 3))
    b = np.full((8, 8, 3), 0.5)
    b[0, 0, 0] = 1.5  # one pixel off by 1.5 instead of 0.5
    n = a.size
    assert pixel_l1(a, b) == pytest.approx(((n - 1) * 0.5 + 1.5) / n)
    assert pixel_l2(a, b) == pytest.approx(((n - 1) * 0.25 + 2.25) / n)


def test_ssim_identical_is_one_and_drops_with_noise() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((64, 64, 3))
    noisy = np.clip(image + rng.normal(0, 0.2, image.shape), 0, 1)
    assert face_ssim(image, image) == pytest.approx(1.0)
    assert face_ssim(image, noisy) < 0.9


def test_ssim_of_constant_images_matches_formula() -> None:
    # Two flat images: SSIM reduces to the luminance term (2 m1 m2 + C1) / (m1^2 + m2^2 + C1), C1 = (0.01 L)^2.
    a, b = np.full((32, 32, 3), 0.2), np.full((32, 32, 3), 0.6)
    c1 = (0.01 * 1.0) ** 2
    assert face_ssim(a, b) == pytest.approx((2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1), rel=1e-6)


def test_running_gaussian_matches_numpy_in_batches() -> None:
    data = np.random.default_rng(1).normal(size=(101, 5))
    stats = RunningGaussian(5)
    for start in range(0, 101, 17):
        stats.update(data[start : start + 17])
    assert stats.count == 101
    np.testing.assert_allclose(stats.mean, data.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(stats.covariance, np.cov(data, rowvar=False), atol=1e-10)


def test_frechet_distance_diagonal_closed_form() -> None:
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected)


def test_frechet_distance_general_matches_eigenvalue_computation() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T + np.eye(6), b @ b.T + np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    # tr sqrt(S1 S2) = sum of square roots of the (real, positive) eigenvalues of S1 S2
    trace_sqrt = np.sum(np.sqrt(np.real(scipy.linalg.eigvals(s1 @ s2))))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)


# --- correlation (Table II) ---------------------------------------------------------------------


def test_pearson_matches_scipy_and_pandas() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.random(9), rng.random(9)
    expected = scipy.stats.pearsonr(x, y)[0]
    assert correlation.pearson(x, y) == pytest.approx(expected)
    assert correlation.pearson(x, y) == pytest.approx(pd.Series(x).corr(pd.Series(y)))


def test_pearson_too_few_points_or_constant_is_nan() -> None:
    assert math.isnan(correlation.pearson([1.0, 2.0], [3.0, 5.0]))
    assert math.isnan(correlation.pearson([1.0, 1.0, 1.0], [3.0, 5.0, 4.0]))
    assert math.isnan(correlation.pearson([1.0, 2.0, math.nan], [3.0, 5.0, 4.0]))  # NaN row dropped -> 2 points


def _write_method_files(folder: Path) -> tuple[list[str], list[Path], list[Path], pd.DataFrame]:
    rng = np.random.default_rng(4)
    methods = ["blur", "pixelate", "blackout", "gan_a", "gan_b", "gan_c", "gan_d"]
    rows = []
    metric_paths, ap_paths = [], []
    for name in methods:
        ap = {"easy": rng.random(), "medium": rng.random(), "hard": rng.random()}
        metrics = {"l1": rng.random(), "ssim": rng.random(), "lpips": None}
        (folder / f"{name}_m.json").write_text(json.dumps({"metrics": metrics}))
        (folder / f"{name}_ap.json").write_text(json.dumps(ap))
        metric_paths.append(folder / f"{name}_m.json")
        ap_paths.append(folder / f"{name}_ap.json")
        rows.append({"method": name, "l1": metrics["l1"], "ssim": metrics["ssim"], "map": np.mean(list(ap.values()))})
    return methods, metric_paths, ap_paths, pd.DataFrame(rows).set_index("method")


def test_correlation_table_groups(tmp_path: Path) -> None:
    methods, metric_paths, ap_paths, expected = _write_method_files(tmp_path)
    table = correlation.build_method_table(methods, [correlation.read_json(p) for p in metric_paths], [correlation.read_json(p) for p in ap_paths])
    gans = ["gan_a", "gan_b", "gan_c", "gan_d"]
    result = correlation.correlation_table(table, gans)
    assert result.loc["l1", "All"] == pytest.approx(expected["l1"].corr(expected["map"]))
    assert result.loc["ssim", "GAN"] == pytest.approx(expected.loc[gans, "ssim"].corr(expected.loc[gans, "map"]))
    conventional = ["blur", "pixelate", "blackout"]
    assert result.loc["l1", "Conventional"] == pytest.approx(expected.loc[conventional, "l1"].corr(expected.loc[conventional, "map"]))
    assert math.isnan(result.loc["lpips", "All"])  # all null
    assert result.loc["l1", "n_GAN"] == 4


def test_table2_cli_writes_csv_and_figures(tmp_path: Path) -> None:
    methods, metric_paths, ap_paths, _expected = _write_method_files(tmp_path)
    out_csv, out_png, scatter = tmp_path / "t2.csv", tmp_path / "t2.png", tmp_path / "scatter.png"
    # Only two GANs: the GAN column must be n/a, not a meaningless +-1.
    inputs = ["--metrics", *map(str, metric_paths), "--ap", *map(str, ap_paths), "--methods", *methods, "--gan-methods", "gan_a", "gan_b"]
    assert main(["table2", *inputs, "--out-csv", str(out_csv)]) == 0
    assert main(["plot-table2", *inputs, "--out-png", str(out_png), "--scatter-png", str(scatter)]) == 0
    frame = pd.read_csv(out_csv, index_col="metric", keep_default_na=False)
    assert list(frame.columns[:3]) == ["All", "GAN", "Conventional"]
    assert frame.loc["l1", "GAN"] == "n/a"
    assert frame.loc["lpips", "All"] == "n/a"
    assert out_png.read_bytes()[:4] == b"\x89PNG" and scatter.stat().st_size > 1000


def test_table2_mismatched_inputs_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    methods, metric_paths, ap_paths, _ = _write_method_files(tmp_path)
    argv = ["table2", "--metrics", *map(str, metric_paths[:2]), "--ap", *map(str, ap_paths), "--methods", *methods]
    assert main(argv + ["--out-csv", str(tmp_path / "x.csv")]) == 1
    assert "one metrics file" in capsys.readouterr().err


# --- optional weights ---------------------------------------------------------------------------


@pytest.fixture
def no_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache and weights folder, whatever this machine has."""
    empty = tmp_path / "hub"
    empty.mkdir()
    monkeypatch.setattr(weights, "torch_hub_checkpoint_dir", lambda: empty)
    monkeypatch.delenv(weights.WEIGHTS_DIR_ENV, raising=False)
    return empty


def test_default_metric_set_records_missing_weights(no_weights: Path) -> None:
    run, skipped = resolve_metrics(None)
    assert "fid" in skipped and "alexnet-owt-7be5be79.pth" in skipped["lpips"]
    assert "pt_inception-2015-12-05-6726825d.pth" in skipped["fid"]
    assert {"l1", "l2", "ssim", "fid_face"} <= set(run)


def test_explicit_metric_without_weights_is_an_error(no_weights: Path) -> None:
    with pytest.raises(SafefakesError, match=r"alexnet-owt-7be5be79\.pth.*download\.pytorch\.org"):
        resolve_metrics(["l1", "lpips"])
    with pytest.raises(SafefakesError, match="unknown metric"):
        resolve_metrics(["psnr"])


def test_lpips_loads_alexnet_from_local_file(tmp_path: Path) -> None:
    """LPIPS mechanics with a locally saved (randomly initialized) AlexNet: no download, 0 for identical images."""
    import torch
    import torchvision

    features = {k: v for k, v in torchvision.models.alexnet(weights=None).state_dict().items() if k.startswith("features.")}
    torch.save(features, tmp_path / weights.WEIGHT_FILES["alexnet"].filename)
    scorer = image_metrics.LpipsScorer(tmp_path, verify=False)
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_allclose(scorer.score(a, a), 0.0, atol=1e-6)
    assert (scorer.score(a, b) > 0).all()
    with pytest.raises(SafefakesError, match="sha256 does not match"):
        image_metrics.LpipsScorer(tmp_path, verify=True)


def test_real_weights_when_present() -> None:
    """With the real weights installed, LPIPS and FID run; skipped where they are absent (no download)."""
    run, skipped = resolve_metrics(None)
    if skipped:
        pytest.skip("LPIPS/FID weights not present: " + "; ".join(skipped.values()))
    rng = np.random.default_rng(6)
    batch = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert image_metrics.LpipsScorer().score(batch, batch) == pytest.approx([0.0, 0.0], abs=1e-6)
    assert image_metrics.InceptionFeatures().features(batch).shape == (2, 2048)


class _FakeResponse(io.BytesIO):
    """Bytes served in place of an HTTP response (the network is not reachable in tests)."""


def test_fetch_weight_verifies_checksum(tmp_path: Path) -> None:
    payload = b"weights" * 100
    good = weights.WeightFile("x", "x.pth", "https://example.invalid/x.pth", weights.hashlib.sha256(payload).hexdigest(), "test")
    path = weights.fetch_weight(good, tmp_path, opener=lambda url: _FakeResponse(payload))
    assert path.read_bytes() == payload
    bad = weights.WeightFile("y", "y.pth", "https://example.invalid/y.pth", "00" * 32, "test")
    with pytest.raises(SafefakesError, match="does not match"):
        weights.fetch_weight(bad, tmp_path, opener=lambda url: _FakeResponse(payload))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pth"]  # nothing half-written kept


def test_dlib_models_are_found() -> None:
    assert weights.dlib_model_file("dlib_face_recognition_resnet_model_v1.dat").stat().st_size > 1_000_000


# --- dataset-level metrics on real WIDER images -------------------------------------------------


def _make_dataset_pair(fixture_root: Path, tmp_path: Path, method: str) -> tuple[Path, Path]:
    from safefakes.anonymize.base import build_anonymizer

    annotations = read_bbx_gt(fixture_root / "train_subset_bbx_gt.txt")[:N_TRAIN_IMAGES]
    roots = {}
    for name in ("original", method):
        root = tmp_path / name
        write_bbx_gt(root / "wider_face_split" / "wider_face_train_bbx_gt.txt", annotations)
        roots[name] = root
    anonymizer = build_anonymizer(method, {})
    for index, annotation in enumerate(annotations):
        image = cv2.imread(str(fixture_root / "WIDER_train" / "images" / annotation.name))
        for name, root in roots.items():
            target = root / "WIDER_train" / "images" / annotation.name
            target.parent.mkdir(parents=True, exist_ok=True)
            out = image if name == "original" else anonymizer.anonymize(image.copy(), annotation.faces, None, np.random.default_rng(index))[0]
            cv2.imwrite(str(target), out, [cv2.IMWRITE_JPEG_QUALITY, 100])
    return roots["original"], roots[method]


def test_metrics_identity_vs_blackout_on_real_faces(wider_fixture_root: Path, tmp_path: Path) -> None:
    original, blackout = _make_dataset_pair(wider_fixture_root, tmp_path, "blackout")
    config = MetricsConfig(min_face_size=20)
    same = compute_image_metrics(original, original, "train", ["l1", "l2", "ssim", "fid_face"], config, max_faces=6)
    anon = compute_image_metrics(original, blackout, "train", ["l1", "l2", "ssim", "fid_face"], config, max_faces=6)
    assert same["faces"]["used"] == anon["faces"]["used"] == 6
    assert same["metrics"]["l1"] == 0.0 and same["metrics"]["ssim"] == pytest.approx(1.0)
    assert same["metrics"]["fid_face"] == pytest.approx(0.0, abs=1e-3)
    assert anon["metrics"]["l1"] > 0.1 and anon["metrics"]["ssim"] < 0.5
    assert anon["metrics"]["fid_face"] > 0.05
    assert "not Inception FID" in anon["labels"]["fid_face"]


def test_metrics_cli_counts_small_faces_and_is_deterministic(wider_fixture_root: Path, tmp_path: Path, no_weights: Path) -> None:
    original, blackout = _make_dataset_pair(wider_fixture_root, tmp_path, "blackout")
    outputs = []
    for attempt in range(2):
        out = tmp_path / f"m{attempt}.json"
        argv = ["metrics", "--original", str(original), "--anonymized", str(blackout), "--out", str(out)]
        assert main(argv + ["--metrics", "l1,l2,ssim", "--config", '{"min_face_size": 40}']) == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    result = json.loads(outputs[0])
    faces = [f for a in read_bbx_gt(original / "wider_face_split" / "wider_face_train_bbx_gt.txt") for f in a.faces]
    small = sum(1 for f in faces if not f.invalid and min(f.w, f.h) < 40)
    assert result["faces"]["excluded_small"] == small
    assert result["faces"]["used"] + small + result["faces"]["excluded_invalid"] == len(faces)
    assert set(result["metrics"]) == {"l1", "l2", "ssim"}


def test_metrics_cli_default_set_nulls_missing_weights(wider_fixture_root: Path, tmp_path: Path, no_weights: Path) -> None:
    original, blackout = _make_dataset_pair(wider_fixture_root, tmp_path, "blackout")
    out = tmp_path / "m.json"
    argv = ["metrics", "--original", str(original), "--anonymized", str(blackout), "--out", str(out), "--max-faces", "3"]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["metrics"]["lpips"] is None and result["metrics"]["fid"] is None
    assert "alexnet" in result["unavailable"]["lpips"]
    assert result["metrics"]["l1"] > 0


def test_metrics_cli_explicit_lpips_fails_clearly(wider_fixture_root: Path, tmp_path: Path, no_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    original, blackout = _make_dataset_pair(wider_fixture_root, tmp_path, "blackout")
    argv = ["metrics", "--original", str(original), "--anonymized", str(blackout), "--out", str(tmp_path / "m.json"), "--metrics", "lpips"]
    assert main(argv) == 1
    assert "alexnet-owt-7be5be79.pth" in capsys.readouterr().err
