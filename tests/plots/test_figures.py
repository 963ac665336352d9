"""Fig. 4 and Fig. 6: tables and images from evaluation files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from safefakes.cli import main
from safefakes.common.errors import SafefakesError
from safefakes.plots.figures import method_order, parse_result_arguments, results_table


def _write_ap(path: Path, easy: float, medium: float, hard: float) -> str:
    path.write_text(json.dumps({"easy": easy, "medium": medium, "hard": hard}))
    return str(path)


def test_results_table_orders_methods_and_averages(tmp_path: Path) -> None:
    results = {
        ("pixelate", 10): _write_ap(tmp_path / "p.json", 0.3, 0.2, 0.1),
        ("original", 10): _write_ap(tmp_path / "o.json", 0.9, 0.6, 0.3),
        ("zzz_custom", 10): _write_ap(tmp_path / "z.json", 0.0, 0.0, 0.0),
    }
    table = results_table(results)
    assert list(table["method"]) == ["original", "pixelate", "zzz_custom"]
    assert table.loc[0, "mAP"] == pytest.approx(0.6)
    assert table.loc[1, "mAP"] == pytest.approx(0.2)


def test_method_order_puts_unknown_methods_last() -> None:
    assert method_order(["b_new", "blur", "original", "a_new"]) == ["original", "blur", "a_new", "b_new"]


def test_parse_result_arguments() -> None:
    assert parse_result_arguments(["blur@30=a.json", "blur@60=b.json"]) == {("blur", 30): "a.json", ("blur", 60): "b.json"}
    assert parse_result_arguments(["blur=a.json"], default_iterations=5) == {("blur", 5): "a.json"}
    with pytest.raises(SafefakesError):
        parse_result_arguments(["blur=a.json"])
    with pytest.raises(SafefakesError):
        parse_result_arguments(["blur@x=a.json"])
    with pytest.raises(SafefakesError):
        parse_result_arguments(["no-path"])


def test_bad_evaluation_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"easy": 0.5}')
    with pytest.raises(SafefakesError, match="easy, medium and hard"):
        results_table({("blur", 1): str(bad)})


def test_plot_commands_write_png_and_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args6 = []
    for method, base in (("original", 0.8), ("blur", 0.5)):
        for iterations in (10, 20):
            path = _write_ap(tmp_path / f"{method}{iterations}.json", base, base - 0.1, base - 0.2 + iterations / 100)
            args6 += ["--result", f"{method}@{iterations}={path}"]
    fig6_png, fig6_csv = tmp_path / "fig6.png", tmp_path / "fig6.csv"
    assert main(["plot-fig6", "--detector", "dsfd", *args6, "--out-png", str(fig6_png), "--out-csv", str(fig6_csv)]) == 0
    table6 = pd.read_csv(fig6_csv)
    assert len(table6) == 4 and set(table6["iterations"]) == {10, 20}
    assert fig6_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    fig4_png, fig4_csv = tmp_path / "fig4.png", tmp_path / "fig4.csv"
    args4 = ["--result", f"original={tmp_path / 'original20.json'}", "--result", f"blur={tmp_path / 'blur20.json'}"]
    assert main(["plot-fig4", "--detector", "faster_rcnn", "--iterations", "20", *args4, "--out-png", str(fig4_png), "--out-csv", str(fig4_csv)]) == 0
    table4 = pd.read_csv(fig4_csv)
    assert list(table4["method"]) == ["original", "blur"]
    assert table4.loc[0, "hard"] == pytest.approx(0.8)
    assert fig4_png.stat().st_size > 10_000

    assert (
        main(
            [
                "plot-fig4",
                "--detector",
                "dsfd",
                "--result",
                f"blur={tmp_path / 'missing.json'}",
                "--iterations",
                "1",
                "--out-png",
                str(fig4_png),
                "--out-csv",
                str(fig4_csv),
            ]
        )
        == 1
    )
    assert "evaluation result not found" in capsys.readouterr().err


def test_figures_of_a_detector_that_has_not_learned_say_so() -> None:
    import matplotlib.pyplot as plt

    from safefakes.plots.figures import LEARNED_EASY_AP, mark_if_not_learned, not_learned_warning

    def table(original_easy_by_iteration: dict[int, float]) -> pd.DataFrame:
        rows = [{"method": "original", "iterations": it, "easy": easy, "medium": easy, "hard": easy} for it, easy in original_easy_by_iteration.items()]
        rows.append({"method": "blur", "iterations": 10, "easy": 0.9, "medium": 0.9, "hard": 0.9})
        return pd.DataFrame(rows)

    # The last iteration of the original decides: learned late is learned, forgotten late is not.
    assert not_learned_warning(table({10: 0.0, 20: LEARNED_EASY_AP + 0.01})) is None
    warning = not_learned_warning(table({10: 0.8, 20: 0.004}))
    assert warning is not None and "NOT A RESULT" in warning and "0.4%" in warning
    assert not_learned_warning(pd.DataFrame([{"method": "blur", "iterations": 1, "easy": 0.0}])) is None

    figure = plt.figure()
    mark_if_not_learned(figure, table({20: 0.0}))
    assert [text.get_text() for text in figure.texts] == [not_learned_warning(table({20: 0.0}))]
    assert figure.texts[0].get_color() == "red"
    learned = plt.figure()
    mark_if_not_learned(learned, table({20: 0.5}))
    assert learned.texts == []
    plt.close("all")


def _label_offsets(xs: list[float], ys: list[float], labels: list[str] | None = None) -> dict[str, tuple[float, float]]:
    import matplotlib.pyplot as plt

    from safefakes.plots.figures import annotate_points

    figure, axis = plt.subplots()
    labels = labels or [f"p{i}" for i in range(len(xs))]
    axis.scatter(xs, ys)
    annotate_points(axis, xs, ys, labels)
    offsets = {text.get_text(): tuple(text.xyann) for text in axis.texts}
    plt.close(figure)
    return offsets


def test_scatter_labels_of_close_points_are_stacked_apart() -> None:
    # The frontier's DeepPrivacy and Sun2018 labels printed over each other; black-out and original are far from both.
    labels = ["blackout", "deepprivacy", "sun2018", "original"]
    offsets = _label_offsets([0.05, 0.316, 0.353, 0.46], [0.51, 0.460, 0.459, 0.05], labels)
    assert offsets["deepprivacy"] != offsets["sun2018"]
    assert offsets["deepprivacy"][0] == offsets["sun2018"][0]  # same side, moved vertically
    assert offsets["blackout"] == offsets["deepprivacy"] == offsets["original"]


def test_scatter_labels_skip_missing_values() -> None:
    offsets = _label_offsets([0.1, float("nan"), 0.9], [0.2, 0.5, float("nan")])
    assert list(offsets) == ["p0"]


def test_scatter_labels_do_not_overlap_when_drawn() -> None:
    import matplotlib.pyplot as plt

    from safefakes.plots.figures import annotate_points

    # Table II's L2 panel: blur and sun2018 sat close enough that their labels printed as one line.
    xs = [0.003, 0.010, 0.026, 0.033, 0.054, 0.080, 0.141, 0.016, 0.187]
    ys = [0.505, 0.333, 0.353, 0.316, 0.277, 0.097, 0.134, 0.090, 0.055]
    labels = ["pixelate", "blur", "sun2018", "deepprivacy", "deepprivacy-synth_large_quarter-400", "deepprivacy-synth_large-400"]
    labels += ["ciagan", "fullblur", "blackout"]
    figure, axis = plt.subplots(figsize=(4.6, 3.8))
    axis.scatter(xs, ys)
    annotate_points(axis, xs, ys, labels)
    renderer = figure.canvas.get_renderer()
    boxes = [text.get_window_extent(renderer) for text in axis.texts]
    plt.close(figure)
    assert len(boxes) == len(labels)
    overlapping = [(a, b) for i, a in enumerate(labels) for j, b in enumerate(labels) if i < j and boxes[i].overlaps(boxes[j])]
    assert overlapping == []
