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
from safefakes.data.wider import FaceBox, ImageAnnotation, read_bbx_gt, write_bbx_gt
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


def _write_method_files(folder: Path, methods: list[str] | None = None) -> tuple[list[str], list[Path], list[Path], pd.DataFrame]:
    rng = np.random.default_rng(4)
    methods = methods or ["blur", "pixelate", "blackout", "gan_a", "gan_b", "gan_c", "gan_d"]
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


def _method_table(folder: Path, methods: list[str] | None = None, gan_methods: tuple[str, ...] = (), ap_iterations: list[int] | None = None) -> pd.DataFrame:
    names, metric_paths, ap_paths, _ = _write_method_files(folder, methods)
    metrics, aps = [correlation.read_json(p) for p in metric_paths], [correlation.read_json(p) for p in ap_paths]
    return correlation.build_method_table(names, metrics, aps, gan_methods, ap_iterations)


def _cell(result: pd.DataFrame, metric: str, group: str, column: str = "r") -> object:
    return result.set_index(["metric", "group"]).loc[(metric, group), column]


def test_correlation_table_groups(tmp_path: Path) -> None:
    methods, _metric_paths, _ap_paths, expected = _write_method_files(tmp_path)
    gans = ["gan_a", "gan_b", "gan_c", "gan_d"]
    result = correlation.correlation_table(_method_table(tmp_path, methods, tuple(gans), [400]))
    assert _cell(result, "l1", "All") == pytest.approx(expected["l1"].corr(expected["map"]))
    assert _cell(result, "ssim", "GAN") == pytest.approx(expected.loc[gans, "ssim"].corr(expected.loc[gans, "map"]))
    conventional = ["blur", "pixelate", "blackout"]
    assert _cell(result, "l1", "Conventional") == pytest.approx(expected.loc[conventional, "l1"].corr(expected.loc[conventional, "map"]))
    assert math.isnan(_cell(result, "lpips", "All"))  # all null
    assert "0 point(s)" in _cell(result, "lpips", "All", "note")
    assert _cell(result, "l1", "GAN", "n") == 4
    assert set(result["map_iteration"]) == {400}
    assert "Other" not in set(result["group"])  # no method beyond the paper's: no empty column


def test_conventional_column_holds_only_the_papers_conventional_methods(tmp_path: Path) -> None:
    """Noise, eyes and heavyblur are not the paper's conventional methods: they go to Other, never into Conventional or All."""
    paper_conventional = ["blur", "fullblur", "pixelate", "blackout"]
    others = ["noise", "eyes", "heavyblur"]
    gans = ["deepprivacy", "ciagan", "sun2018", "deepprivacy-synth_quarter-400"]
    table = _method_table(tmp_path, paper_conventional + others + gans, tuple(gans))
    assert list(table.loc[paper_conventional, "group"].unique()) == ["Conventional"]
    assert list(table.loc[others, "group"].unique()) == ["Other"]
    result = correlation.correlation_table(table)
    assert _cell(result, "l1", "Conventional", "datasets").split() == paper_conventional
    assert _cell(result, "l1", "Other", "datasets").split() == others
    assert sorted(_cell(result, "l1", "All", "datasets").split()) == sorted(paper_conventional + gans)
    assert _cell(result, "l1", "Conventional") == pytest.approx(table.loc[paper_conventional, "l1"].corr(table.loc[paper_conventional, "map"]))
    assert _cell(result, "l1", "Other") == pytest.approx(table.loc[others, "l1"].corr(table.loc[others, "map"]))


def test_fisher_interval_matches_hand_computation() -> None:
    x, y = [1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5]
    # By hand: r = 14.5 / 17.5; z = atanh(r); half-width 1.959964 / sqrt(6 - 3); back with tanh.
    r = 14.5 / 17.5
    half = 1.959964 / math.sqrt(3)
    result = correlation.pearson_with_ci(x, y)
    assert (result.r, result.n) == (pytest.approx(r), 6)
    assert result.ci_low == pytest.approx(math.tanh(math.atanh(r) - half), abs=1e-6) == pytest.approx(0.0519, abs=1e-4)
    assert result.ci_high == pytest.approx(math.tanh(math.atanh(r) + half), abs=1e-6) == pytest.approx(0.9807, abs=1e-4)
    assert result.note == "" and result.warning == ""


def test_fisher_interval_undefined_for_three_points_and_warning_below_five() -> None:
    three = correlation.pearson_with_ci([1.0, 2.0, 3.0], [2.0, 1.0, 4.0])
    assert math.isfinite(three.r) and math.isnan(three.ci_low) and math.isnan(three.ci_high)
    assert "Fisher" in three.note and "n = 3" in three.note
    assert "only 3 points" in three.warning
    four = correlation.pearson_with_ci([1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 4.0, 3.0])
    assert -1 < four.ci_low < four.r < four.ci_high < 1 and "only 4 points" in four.warning
    assert correlation.pearson_with_ci(range(5), [2.0, 1.0, 4.0, 3.0, 6.0]).warning == ""


def test_mixed_detector_iterations_are_refused(tmp_path: Path) -> None:
    table = _method_table(tmp_path, ["blur", "pixelate", "blackout", "fullblur"], (), [1000, 1000, 1000, 400])
    with pytest.raises(SafefakesError, match="one detector iteration.*400: fullblur"):
        correlation.correlation_table(table)


def test_table2_cli_writes_csv_and_figures(tmp_path: Path) -> None:
    methods, metric_paths, ap_paths, _expected = _write_method_files(tmp_path)
    out_csv, points, out_png, scatter = tmp_path / "t2.csv", tmp_path / "points.csv", tmp_path / "t2.png", tmp_path / "scatter.png"
    # Only two GANs: the GAN column must be n/a, not a meaningless +-1.
    inputs = ["--metrics", *map(str, metric_paths), "--ap", *map(str, ap_paths), "--methods", *methods, "--gan-methods", "gan_a", "gan_b"]
    inputs += ["--ap-iterations", "400"]
    assert main(["table2", *inputs, "--out-csv", str(out_csv), "--out-points", str(points)]) == 0
    assert main(["plot-table2", *inputs, "--out-png", str(out_png), "--scatter-png", str(scatter)]) == 0
    frame = pd.read_csv(out_csv, keep_default_na=False).set_index(["metric", "group"])
    assert {"r", "n", "ci_low", "ci_high", "map_iteration", "warning", "note"} <= set(frame.columns)
    assert list(dict.fromkeys(frame.index.get_level_values("group"))) == ["All", "GAN", "Conventional", "Other"]  # gan_c, gan_d: Other
    assert frame.loc[("l1", "GAN"), "r"] == "n/a" and frame.loc[("l1", "GAN"), "n"] == 2
    assert frame.loc[("lpips", "All"), "r"] == "n/a"
    assert frame.loc[("l1", "Conventional"), "ci_low"] == "n/a" and "Fisher" in frame.loc[("l1", "Conventional"), "note"]
    assert "only 3 points" in frame.loc[("l1", "Conventional"), "warning"]
    assert frame.loc[("l1", "All"), "n"] == 5 and float(frame.loc[("l1", "All"), "ci_low"]) < float(frame.loc[("l1", "All"), "r"])
    assert set(frame["map_iteration"]) == {400}
    point_rows = pd.read_csv(points, index_col="dataset")
    assert list(point_rows.index) == methods and set(point_rows["map_iteration"]) == {400}
    assert point_rows.loc["gan_a", "group"] == "GAN" and point_rows.loc["blur", "group"] == "Conventional"
    assert out_png.read_bytes()[:4] == b"\x89PNG" and scatter.stat().st_size > 1000


#: Table II inputs with literal numbers: (method, l1, easy AP, medium AP, hard AP). mAP is the mean of the three
#: APs: easy and hard lie +-d around medium, with d varying per method, so a table built from one AP alone
#: would give other r values. Conventional: l1 = 1..4 (x 0.1), mAP = 0.3 0.2 0.5 0.4; GAN: l1 = 5..7, mAP = 0.8 0.6 0.7.
LITERAL_TABLE2 = [
    ("blur", 0.1, 0.4, 0.3, 0.2),
    ("pixelate", 0.2, 0.35, 0.2, 0.05),
    ("blackout", 0.3, 0.5, 0.5, 0.5),
    ("fullblur", 0.4, 0.6, 0.4, 0.2),
    ("gan_a", 0.5, 0.85, 0.8, 0.75),
    ("gan_b", 0.6, 0.8, 0.6, 0.4),
    ("gan_c", 0.7, 0.8, 0.7, 0.6),
]
#: By hand, from mAP x 10 against l1 x 10 (deviations from the means, Pearson r = sum(dx dy) / sqrt(sum dx^2 sum dy^2)):
#:   Conventional: dx = -1.5 -.5 .5 1.5, dy = -.5 -1.5 1.5 .5: r = 3 / 5 = 0.6;
#:   GAN:          dx = -1 0 1,          dy = 1 -1 0:          r = -1 / 2 = -0.5;
#:   All:          dx = -3..3,           dy = -2 -3 0 -1 3 1 2: r = (6 + 6 + 0 + 0 + 3 + 2 + 6) / 28 = 23/28 = 0.821;
#: intervals tanh(atanh(r) -+ 1.96 / sqrt(n - 3)): All [0.179, 0.973], Conventional [-0.853, 0.990]; GAN n = 3 has none.
#: ssim = 1 - l1 flips every sign.
LITERAL_R = {"All": "0.821", "GAN": "-0.500", "Conventional": "0.600"}
LITERAL_CI = {"All": ("0.179", "0.973"), "GAN": ("n/a", "n/a"), "Conventional": ("-0.853", "0.990")}


def _write_literal_table2_inputs(folder: Path) -> list[str]:
    metric_paths, ap_paths, methods = [], [], []
    for name, l1, easy, medium, hard in LITERAL_TABLE2:
        (folder / f"{name}_m.json").write_text(json.dumps({"metrics": {"l1": l1, "ssim": round(1 - l1, 10)}}))
        (folder / f"{name}_ap.json").write_text(json.dumps({"easy": easy, "medium": medium, "hard": hard}))
        metric_paths.append(str(folder / f"{name}_m.json"))
        ap_paths.append(str(folder / f"{name}_ap.json"))
        methods.append(name)
    return ["--metrics", *metric_paths, "--ap", *ap_paths, "--methods", *methods, "--gan-methods", "gan_a", "gan_b", "gan_c"]


def test_table2_cli_gives_the_hand_computed_correlations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = _write_literal_table2_inputs(tmp_path)
    out_csv, points = tmp_path / "t2.csv", tmp_path / "points.csv"
    assert main(["table2", *inputs, "--out-csv", str(out_csv), "--out-points", str(points)]) == 0
    frame = pd.read_csv(out_csv, keep_default_na=False, dtype=str).set_index(["metric", "group"])
    for group, r in LITERAL_R.items():
        assert frame.loc[("l1", group), "r"] == r, group
        assert frame.loc[("ssim", group), "r"] == ("-" + r if not r.startswith("-") else r[1:]), group
        assert (frame.loc[("l1", group), "ci_low"], frame.loc[("l1", group), "ci_high"]) == LITERAL_CI[group], group
    assert [frame.loc[("l1", group), "n"] for group in ("All", "GAN", "Conventional")] == ["7", "3", "4"]
    assert pd.read_csv(points, index_col="dataset")["map"].round(12).tolist() == [0.3, 0.2, 0.5, 0.4, 0.8, 0.6, 0.7]
    # The rendered table shows the same numbers.
    from safefakes.plots import privacy

    drawn: list[str] = []

    def keep_cells(figure, path) -> None:
        for axis in figure.axes:
            for table in axis.tables:
                drawn.extend(cell.get_text().get_text() for cell in table.get_celld().values())

    monkeypatch.setattr(privacy, "save_figure", keep_cells)
    assert main(["plot-table2", *inputs, "--out-png", str(tmp_path / "t2.png")]) == 0
    assert "0.821 [0.179, 0.973]\nn=7" in drawn and "-0.821 [-0.973, -0.179]\nn=7" in drawn
    assert any(cell.startswith("0.600 [-0.853, 0.990]\nn=4") for cell in drawn)
    assert any(cell.startswith("-0.500\nn=3") for cell in drawn) and any(cell.startswith("0.500\nn=3") for cell in drawn)


def test_table2_figure_shows_the_few_points_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safefakes.plots import privacy

    drawn: list[str] = []

    def keep_text(figure, path) -> None:
        for axis in figure.axes:
            drawn.append(axis.get_title())
            for table in axis.tables:
                drawn.extend(cell.get_text().get_text() for cell in table.get_celld().values())
        drawn.extend(text.get_text() for text in figure.texts)

    monkeypatch.setattr(privacy, "save_figure", keep_text)
    table = _method_table(tmp_path, ["blur", "pixelate", "blackout", "fullblur", "gan_a", "gan_b", "gan_c"], ("gan_a", "gan_b", "gan_c"), [400])
    correlations = correlation.correlation_table(table)
    privacy.render_correlation_table(correlations, tmp_path / "t.png")
    assert any("WARNING" in text and "fewer than 5 points" in text for text in drawn)
    gan_l1 = privacy.correlation_cell(correlations.set_index(["metric", "group"]).loc[("l1", "GAN")])
    assert gan_l1.endswith("n=3*") and gan_l1 in drawn
    assert any("detector iteration 400" in text for text in drawn)
    drawn.clear()
    privacy.plot_metric_scatter(table, tmp_path / "s.png", correlations)
    assert any("WARNING" in text for text in drawn) and any("GAN" in text and "n=3*" in text for text in drawn)


def test_table2_scatter_says_when_a_metric_has_no_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safefakes.plots import privacy

    panels: dict[str, tuple[bool, list[str], bool]] = {}

    def keep_panels(figure, path) -> None:
        for axis in figure.axes:
            panels[axis.get_title().split("\n")[0]] = (axis.axison, [text.get_text() for text in axis.texts], axis.get_legend() is not None)

    monkeypatch.setattr(privacy, "save_figure", keep_panels)
    table = _method_table(tmp_path, ["blur", "pixelate", "blackout", "fullblur", "gan_a", "gan_b", "gan_c"], ("gan_a", "gan_b", "gan_c"), [400])
    table.pop("lpips")
    table.insert(0, "lpips", float("nan"))  # no values, and the first panel: the one that used to carry the legend
    privacy.plot_metric_scatter(table, tmp_path / "s.png", correlation.correlation_table(table))
    shown, texts, legend = panels["lpips"]
    assert not shown and any("no values" in text for text in texts) and not legend
    assert panels["l1"][0] and any(legend for _, _, legend in panels.values())


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


def _grid_dataset(root: Path, images: int, faces_per_image: int, face_size: int = 32) -> list[tuple[int, int]]:
    """A WIDER-layout train split of noise images, each with a row of faces and its index in its top-left pixel;
    the faces' (image, column) in file order."""
    rng = np.random.default_rng(7)
    annotations = []
    for index in range(images):
        name = f"0--Parade/{index:02d}.png"
        faces = [FaceBox(column * face_size, 0, face_size, face_size) for column in range(faces_per_image)]
        annotations.append(ImageAnnotation(name, faces))
        target = root / "WIDER_train" / "images" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        image = rng.integers(0, 256, (face_size, face_size * faces_per_image, 3), dtype=np.uint8)
        image[0, 0] = index
        cv2.imwrite(str(target), image)
    write_bbx_gt(root / "wider_face_split" / "wider_face_train_bbx_gt.txt", annotations)
    return [(index, column) for index in range(images) for column in range(faces_per_image)]


def _measured_faces(root: Path, max_faces: int | None, seed: int, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The (image, column) of every face ``compute_image_metrics`` crops, in the order it crops them."""
    seen: list[tuple[int, int]] = []
    crop = image_metrics.crop_face

    def recording_crop(image_bgr: np.ndarray, face: FaceBox, size: int) -> np.ndarray | None:
        seen.append((int(image_bgr[0, 0, 0]), face.x // face.w))
        return crop(image_bgr, face, size)

    monkeypatch.setattr(image_metrics, "crop_face", recording_crop)
    result = compute_image_metrics(root, root, "train", ["l1"], MetricsConfig(min_face_size=8), max_faces=max_faces, seed=seed)
    faces = seen[::2]  # the original's and the anonymized image's crop of each face come in pairs
    assert result["faces"]["used"] == len(faces)
    return faces


def test_capped_faces_are_a_seeded_random_sample_not_the_first_in_file_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_file_order = _grid_dataset(tmp_path, images=6, faces_per_image=4)
    everything = _measured_faces(tmp_path, None, 0, monkeypatch)
    assert everything == in_file_order
    first = _measured_faces(tmp_path, 6, 0, monkeypatch)
    again = _measured_faces(tmp_path, 6, 0, monkeypatch)
    other_seed = _measured_faces(tmp_path, 6, 1, monkeypatch)
    assert first == again and len(set(first)) == 6  # same seed, same faces, none twice
    assert set(first) != set(in_file_order[:6])  # not the first six in file order
    assert set(other_seed) != set(first)
    permutation = np.random.default_rng(0).permutation(len(in_file_order))[:6]
    assert set(first) == {in_file_order[i] for i in permutation}  # a uniform draw without replacement
    result = compute_image_metrics(tmp_path, tmp_path, "train", ["l1"], MetricsConfig(min_face_size=8), max_faces=6, seed=0)
    assert result["faces"]["candidates"] == 24 and result["sample_seed"] == 0


def test_metrics_cli_counts_small_faces_and_is_deterministic(wider_fixture_root: Path, tmp_path: Path, no_weights: Path) -> None:
    original, blackout = _make_dataset_pair(wider_fixture_root, tmp_path, "blackout")
    outputs = []
    for attempt in range(2):
        out = tmp_path / f"m{attempt}.json"
        argv = ["metrics", "--original", str(original), "--anonymized", str(blackout), "--out", str(out)]
        assert main(argv + ["--metrics", "l1,l2,ssim", "--config-json", '{"min_face_size": 40}']) == 0
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
