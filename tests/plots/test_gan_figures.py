"""GAN figures (Fig. 1, Fig. 7, Fig. 9) and the landmark-coverage figure, from small real inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from safefakes.anonymize.dataset import AnonymizeJob, anonymize_dataset
from safefakes.cli import main
from safefakes.common.errors import SafefakesError
from safefakes.data.synth import SynthConfig, synthesize
from safefakes.data.wider import FaceBox, ImageAnnotation, WiderLayout, load_split
from safefakes.plots.gan_figures import (
    Fig1Config,
    choose_example_image,
    coverage_table,
    fig1_panels,
    format_count,
    largest_faces,
    parse_count,
    parse_face_detail,
    parse_key_values,
    plot_keypoint_coverage,
    size_bin_order,
    use_log_axis,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _write_ap(path: Path, easy: float, medium: float, hard: float) -> str:
    path.write_text(json.dumps({"easy": easy, "medium": medium, "hard": hard}))
    return str(path)


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny synthetic WIDER root and two anonymized copies of its training split (real anonymizers)."""
    base = tmp_path_factory.mktemp("fig1")
    original = base / "original"
    synthesize(original, 4, seed=3, val_images=1, config=SynthConfig.from_dict({"image_width": 192}))
    out = {"original": original}
    for method in ("blackout", "pixelate"):
        anonymize_dataset(AnonymizeJob(wider_root=original, split="train", out=base / method, method=method))
        out[method] = base / method
    return out


def test_parse_key_values_and_counts() -> None:
    assert parse_key_values(["PIPA 38k=a.json", "original=b.json"], "--result") == [("PIPA 38k", "a.json"), ("original", "b.json")]
    with pytest.raises(SafefakesError, match="expected LABEL=EVAL_JSON"):
        parse_key_values(["no-value"], "--result", "LABEL", "EVAL_JSON")
    with pytest.raises(SafefakesError, match="given twice"):
        parse_key_values(["a=1", "a=2"], "--result")
    assert [parse_count(text) for text in ("60000", "38k", "1.47M", "40M", "800k")] == [60_000, 38_000, 1_470_000, 40_000_000, 800_000]
    with pytest.raises(SafefakesError):
        parse_count("lots")
    with pytest.raises(SafefakesError):
        parse_count("1.5")
    assert [format_count(n) for n in (950, 38_000, 1_470_000, 40_000_000)] == ["950", "38k", "1.47M", "40M"]


def test_example_image_choice_and_largest_faces() -> None:
    big, small = FaceBox(0, 0, 50, 50), FaceBox(0, 0, 12, 12)
    annotations = [
        ImageAnnotation("a/many_small.jpg", [small] * 6),
        ImageAnnotation("a/two_big.jpg", [big, big, small]),
        ImageAnnotation("a/two_big_more.jpg", [big, small, big, small]),
    ]
    assert choose_example_image(annotations, 40.0) == "a/two_big_more.jpg"
    assert choose_example_image(annotations, 40.0, available=["a/two_big.jpg", "a/many_small.jpg"]) == "a/two_big.jpg"
    assert choose_example_image(annotations, 100.0) == "a/many_small.jpg"
    with pytest.raises(SafefakesError, match="every anonymized root"):
        choose_example_image(annotations, 40.0, available=[])
    faces = [small, FaceBox(5, 5, 30, 30), big, FaceBox(0, 0, 0, 9)]
    assert largest_faces(faces, 2) == [big, FaceBox(5, 5, 30, 30)]
    assert largest_faces(faces, 10) == [big, FaceBox(5, 5, 30, 30), small]


def test_fig1_panels_show_each_method(roots: dict[str, Path]) -> None:
    results = [("pixelate", str(roots["pixelate"])), ("blackout", str(roots["blackout"]))]
    image, faces, panels = fig1_panels(roots["original"], results, "train", None, Fig1Config(faces=2))
    annotations, _ = load_split(roots["original"], "train")
    assert image == choose_example_image(annotations, Fig1Config().min_face_px)
    assert [method for method, _ in panels] == ["original", "pixelate", "blackout"]  # the paper's order
    assert 1 <= len(faces) <= 2
    face = faces[0]
    centre = (face.y + face.h // 2, face.x + face.w // 2)
    pixels = dict(panels)
    assert pixels["blackout"][centre].max() == 0 and pixels["original"][centre].max() > 0
    assert not np.array_equal(pixels["pixelate"], pixels["original"])


def test_plot_fig1_command(roots: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fig1.png"
    args = [
        "plot-fig1",
        "--original",
        str(roots["original"]),
        "--result",
        f"blackout={roots['blackout']}",
        "--result",
        f"pixelate={roots['pixelate']}",
        "--faces",
        "2",
        "--out-png",
        str(out),
    ]
    assert main(args) == 0
    assert out.read_bytes()[:8] == PNG_SIGNATURE and out.stat().st_size > 10_000

    annotations, _ = load_split(roots["original"], "train")
    name = annotations[0].name
    assert main([*args[:-2], "--image", "no/such.jpg", "--out-png", str(out)]) == 1
    assert "no/such.jpg" in capsys.readouterr().err

    broken = tmp_path / "broken"
    shutil.copytree(roots["blackout"], broken)
    WiderLayout(broken).image_path("train", name).unlink()
    assert main(["plot-fig1", "--original", str(roots["original"]), "--result", f"blackout={broken}", "--image", name, "--out-png", str(out)]) == 1
    error = capsys.readouterr().err
    assert "blackout: image not found" in error and name in error

    assert main(["plot-fig1", "--original", str(roots["original"]), "--result", str(broken), "--out-png", str(out)]) == 1
    assert "expected METHOD=ANON_ROOT" in capsys.readouterr().err


def _anonymized_root(path: Path, train_crops: object = None, *, generator: bool = True) -> str:
    """An anonymized training set whose manifest.json is shaped as `safefakes anonymize` writes it for a GAN: its
    method_record's generator block records ``train_crops``; without ``generator``, the manifest of data anonymized
    before the generator was recorded (the landmarks block only)."""
    path.mkdir(parents=True)
    record: dict = {"landmarks": {"detector": "none", "summary": "no landmark detector"}}
    if generator:
        record["generator"] = {"gan": "deepprivacy", "iteration": 400, "resolution": 32, "train_set": path.name, "train_crops": train_crops}
    manifest = {"method": "deepprivacy", "params": {}, "method_record": record, "counts": {"faces_anonymized": 3}}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return str(path)


def test_plot_fig7_command_reads_training_faces_from_the_anonymized_manifests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "plot-fig7",
        "--detector",
        "dsfd",
        "--result",
        f"original={_write_ap(tmp_path / 'o.json', 0.95, 0.93, 0.85)}",
        "--result",
        f"PIPA 38k={_write_ap(tmp_path / 'p.json', 0.87, 0.85, 0.80)}",
        "--result",
        f"FDF 100k={_write_ap(tmp_path / 'f.json', 0.90, 0.89, 0.83)}",
        "--result",
        f"old={_write_ap(tmp_path / 'x.json', 0.80, 0.79, 0.70)}",
        "--anonymized",
        f"PIPA 38k={_anonymized_root(tmp_path / 'pipa', 38_123)}",
        "--anonymized",
        f"FDF 100k={_anonymized_root(tmp_path / 'fdf', 100_000)}",
        "--anonymized",
        f"old={_anonymized_root(tmp_path / 'old', generator=False)}",
    ]
    png, csv = tmp_path / "fig7.png", tmp_path / "fig7.csv"
    assert main([*args, "--out-png", str(png), "--out-csv", str(csv)]) == 0
    table = pd.read_csv(csv)
    assert list(table["label"]) == ["original", "PIPA 38k", "FDF 100k", "old"]
    # the counts the generators trained on; none for the original data and for data anonymized before they were recorded
    assert pd.isna(table.loc[0, "training_faces"]) and list(table["training_faces"][1:3]) == [38_123, 100_000] and pd.isna(table.loc[3, "training_faces"])
    assert table.loc[1, "mAP"] == pytest.approx((0.87 + 0.85 + 0.80) / 3)
    assert table.loc[2, "hard"] == pytest.approx(0.83)
    assert png.read_bytes()[:8] == PNG_SIGNATURE

    out = ["--out-png", str(png), "--out-csv", str(csv)]
    assert main([*args, "--anonymized", f"FDF 1.47M={_anonymized_root(tmp_path / 'fdf_full', 1_470_000)}", *out]) == 1
    assert "FDF 1.47M, which has no --result" in capsys.readouterr().err
    assert main([*args[:-6], "--anonymized", "PIPA 38k", *out]) == 1
    assert "expected LABEL=ANON_DIR" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([*args[:-6], "--anonymized", f"PIPA 38k={tmp_path / 'empty'}", *out]) == 1
    assert f"PIPA 38k: manifest not found: {tmp_path / 'empty' / 'manifest.json'}" in capsys.readouterr().err
    for bad in (0, "38k", True):
        root = _anonymized_root(tmp_path / f"bad_{bad}", bad)
        assert main([*args[:-6], "--anonymized", f"PIPA 38k={root}", *out]) == 1
        assert "train_crops must be a positive whole number" in capsys.readouterr().err
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "manifest.json").write_text("[]")
    assert main([*args[:-6], "--anonymized", f"PIPA 38k={tmp_path / 'foreign'}", *out]) == 1
    assert "not an anonymization manifest" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the config-derived count is gone: the manifest is the one source
        main([*args[:-6], "--faces", "PIPA 38k=38k", *out])
    assert "unrecognized arguments: --faces" in capsys.readouterr().err


def test_fig7_draws_an_external_checkpoints_bar_labelled_fdf_star(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Safe Fakes' Fig. 7 bars: original, PIPA, FDF-100k, FDF (4M images each) and FDF* (the released 40M-image model, an
    externally supplied checkpoint: gans.fig7.external), in the workflow's order."""
    from safefakes.plots import gan_figures

    aps = {"original": (0.95, 0.93, 0.85), "pipa": (0.87, 0.85, 0.80), "fdf_100k": (0.90, 0.89, 0.83), "fdf": (0.90, 0.89, 0.84), "FDF*": (0.93, 0.91, 0.84)}
    results = [(label, _write_ap(tmp_path / f"{index}.json", *values)) for index, (label, values) in enumerate(aps.items())]
    anonymized = [("fdf_100k", _anonymized_root(tmp_path / "fdf_100k", 100_000)), ("FDF*", _anonymized_root(tmp_path / "fdf_star", None))]
    figures = []
    monkeypatch.setattr(gan_figures, "save_figure", lambda figure, path: figures.append(figure))
    gan_figures.plot_fig7(gan_figures.training_set_table(results, anonymized), "dsfd", tmp_path / "fig7.png", tmp_path / "fig7.csv")
    (figure,) = figures
    axis = figure.axes[0]
    assert [tick.get_text() for tick in axis.get_xticklabels()] == ["original", "pipa", "fdf_100k\n(100k faces)", "fdf", "FDF*"]
    easy_bars = axis.containers[0]
    assert easy_bars[-1].get_height() == pytest.approx(93.0)  # FDF*'s easy AP, in percent
    assert list(pd.read_csv(tmp_path / "fig7.csv")["label"]) == list(aps)
    gan_figures.plt.close(figure)
    # The workflow passes the label quoted on the command line: `--result 'FDF*=...'`, `--anonymized 'FDF*=...'`.
    args = ["plot-fig7", "--detector", "dsfd", *[item for label, path in results for item in ("--result", f"{label}={path}")]]
    args += [item for label, root in anonymized for item in ("--anonymized", f"{label}={root}")]
    assert main([*args, "--out-png", str(tmp_path / "cli.png"), "--out-csv", str(tmp_path / "cli.csv")]) == 0
    table = pd.read_csv(tmp_path / "cli.csv")
    assert table["label"].iloc[-1] == "FDF*" and table["training_faces"].iloc[2] == 100_000 and pd.isna(table["training_faces"].iloc[-1])


def test_plot_fig9_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png, csv = tmp_path / "fig9.png", tmp_path / "fig9.csv"
    args = [
        "plot-fig9",
        "--detector",
        "dsfd",
        "--result",
        f"40M={_write_ap(tmp_path / 'd40.json', 0.93, 0.91, 0.82)}",
        "--result",
        f"800k={_write_ap(tmp_path / 'd08.json', 0.70, 0.75, 0.72)}",
        "--result",
        f"4M={_write_ap(tmp_path / 'd4.json', 0.85, 0.86, 0.79)}",
        "--reference",
        f"original={_write_ap(tmp_path / 'o.json', 0.95, 0.93, 0.85)}",
        "--out-png",
        str(png),
        "--out-csv",
        str(csv),
    ]
    assert main(args) == 0
    table = pd.read_csv(csv)
    assert list(table["iterations"]) == [800_000, 4_000_000, 40_000_000]
    assert list(table.columns) == ["iterations", "initialisation", "easy", "medium", "hard", "mAP"]
    assert set(table["initialisation"]) == {"unrecorded"}  # hand-written AP files carry no initialisation record
    assert table.loc[0, "easy"] == pytest.approx(0.70) and table.loc[2, "mAP"] == pytest.approx((0.93 + 0.91 + 0.82) / 3)
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert use_log_axis([800_000, 4_000_000, 40_000_000]) and not use_log_axis([10_000, 60_000])

    assert main([*args[:3], "--result", "many=x.json", *args[-4:]]) == 1
    assert "'many' is not a count" in capsys.readouterr().err
    assert main([*args[:3], "--result", f"4M={tmp_path / 'missing.json'}", *args[-4:]]) == 1
    assert "evaluation result not found" in capsys.readouterr().err


def _write_manifest(path: Path, details: dict[str, int], skipped: dict[str, int], min_face_size: float = 10.0) -> str:
    counts = {"face_details": details, "faces_skipped": skipped, "faces_anonymized": sum(details.values())}
    path.write_text(json.dumps({"method": "x", "params": {"min_face_size": min_face_size}, "counts": counts}))
    return str(path)


def test_face_detail_parsing_and_bins() -> None:
    assert size_bin_order() == ["<10", "10-20", "20-50", "50-100", ">=100"]
    assert parse_face_detail("kp=dataset,size=20-50") == ("dataset", "20-50", "dataset")
    assert parse_face_detail("kp=dlib,size=50-100") == ("dlib", "50-100", "dlib")
    assert parse_face_detail("kp=rcnn,size=10-20") == ("rcnn", "10-20", "rcnn")
    assert parse_face_detail("kp=mtcnn,size=10-20") == ("mtcnn", "10-20", "mtcnn")
    with pytest.raises(SafefakesError, match="unknown landmark source 'sonar'"):
        parse_face_detail("kp=sonar,size=10-20")
    assert parse_face_detail("kp=none,size=>=100") == ("none", ">=100", "none")
    assert parse_face_detail("kp=none,size=50-100,fallback=blackout") == ("blackout", "50-100", "none")
    with pytest.raises(SafefakesError, match="kp=<source>"):
        parse_face_detail("eyes=dataset")


def test_keypoint_coverage_table(tmp_path: Path) -> None:
    ciagan = _write_manifest(
        tmp_path / "c.json",
        {
            "kp=dataset,size=20-50": 3,
            "kp=dlib,size=20-50": 1,
            "kp=none,size=>=100": 2,
            "kp=none,size=50-100,fallback=blackout": 1,
            "kp=dlib,size=50-100": 3,
        },
        {"below_min_face_size": 4, "outside_image": 1},
    )
    deepprivacy = _write_manifest(tmp_path / "d.json", {"kp=dataset,size=10-20": 5}, {"below_min_face_size": 2}, min_face_size=15)
    table = coverage_table([("ciagan", ciagan), ("deepprivacy", deepprivacy)])
    assert list(table.columns) == ["method", "size_bin", "source", "faces", "share", "kp_sources"]
    indexed = table.set_index(["method", "size_bin", "source"])
    assert list(dict.fromkeys(table.loc[table["method"] == "ciagan", "size_bin"])) == ["<10", "20-50", "50-100", ">=100"]
    assert indexed.loc[("ciagan", "20-50", "dataset"), "share"] == pytest.approx(0.75)
    assert indexed.loc[("ciagan", "20-50", "dlib"), "kp_sources"] == "dlib"
    assert indexed.loc[("ciagan", "50-100", "blackout"), "faces"] == 1
    assert indexed.loc[("ciagan", "50-100", "dlib"), "share"] == pytest.approx(0.75)
    assert indexed.loc[("ciagan", ">=100", "none"), "share"] == pytest.approx(1.0)
    assert indexed.loc[("ciagan", "<10", "skipped_small"), "faces"] == 4
    # a min_face_size above the first bin edge gets its own bin for the skipped faces
    assert indexed.loc[("deepprivacy", "<15", "skipped_small"), "faces"] == 2
    assert table.groupby(["method", "size_bin"])["share"].sum().to_numpy() == pytest.approx(1.0)


def test_plot_keypoint_coverage_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _write_manifest(tmp_path / "m.json", {"kp=dataset,size=20-50": 2, "kp=none,size=>=100": 1}, {})
    png, csv = tmp_path / "cov.png", tmp_path / "cov.csv"
    assert main(["plot-keypoint-coverage", "--manifest", f"deepprivacy={manifest}", "--out-png", str(png), "--out-csv", str(csv)]) == 0
    table = pd.read_csv(csv, keep_default_na=False)
    assert set(table["size_bin"]) == {"20-50", ">=100"} and table["faces"].sum() == 3
    assert png.read_bytes()[:8] == PNG_SIGNATURE

    conventional = tmp_path / "blur.json"
    conventional.write_text(json.dumps({"method": "blur", "params": {}, "counts": {"face_details": {}, "faces_skipped": {}}}))
    assert main(["plot-keypoint-coverage", "--manifest", f"blur={conventional}", "--out-png", str(png), "--out-csv", str(csv)]) == 1
    assert "no counts.face_details" in capsys.readouterr().err
    assert main(["plot-keypoint-coverage", "--manifest", f"x={tmp_path / 'none.json'}", "--out-png", str(png), "--out-csv", str(csv)]) == 1
    assert "manifest not found" in capsys.readouterr().err


def test_keypoint_coverage_has_a_category_per_landmark_source(tmp_path: Path) -> None:
    details = {"kp=dataset,size=20-50": 2, "kp=rcnn,size=20-50": 3, "kp=mtcnn,size=20-50": 1, "kp=none,size=20-50": 4}
    table = coverage_table([("deepprivacy", _write_manifest(tmp_path / "d.json", details, {}))])
    faces = table.set_index("source")["faces"]
    assert {source: int(faces[source]) for source in ("dataset", "rcnn", "mtcnn", "dlib", "none", "blackout")} == {
        "dataset": 2,
        "rcnn": 3,
        "mtcnn": 1,
        "dlib": 0,
        "none": 4,
        "blackout": 0,
    }
    assert table["share"].sum() == pytest.approx(1.0)
    plot_keypoint_coverage(table, tmp_path / "cov.png", tmp_path / "cov.csv")
    assert (tmp_path / "cov.png").read_bytes()[:8] == PNG_SIGNATURE
