"""Reading and writing WIDER FACE prediction files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from safefakes.common.errors import SafefakesError
from safefakes.data.predictions import format_predictions, read_prediction_file, read_predictions, write_predictions


def test_write_sorts_by_score_and_reads_back_exactly(tmp_path: Path) -> None:
    boxes = np.array([[1.5, 2.0, 10.0, 12.0], [100.125, 7.0, 30.0, 31.0], [5.0, 6.0, 7.0, 8.0], [0.1, 0.2, 0.3, 0.4]])
    scores = np.array([0.2, 0.97, 0.2, 1 / 3])
    path = write_predictions(tmp_path, "0--Parade/0_Parade_x_1.jpg", boxes, scores)
    assert path == tmp_path / "0--Parade" / "0_Parade_x_1.txt"
    lines = path.read_text().splitlines()
    assert lines[:2] == ["0_Parade_x_1.jpg", "4"]
    assert lines[2] == "100.125 7.0 30.0 31.0 0.97"
    predictions = read_prediction_file(path)
    order = [1, 3, 0, 2]  # descending score, ties kept in input order
    np.testing.assert_array_equal(predictions.boxes, boxes[order])
    np.testing.assert_array_equal(predictions.scores, scores[order])  # bit-exact round trip


def test_writer_is_atomic_and_deterministic(tmp_path: Path) -> None:
    write_predictions(tmp_path / "a", "1--E/img.jpg", np.zeros((0, 4)), np.zeros(0))
    write_predictions(tmp_path / "b", "1--E/img.jpg", np.zeros((0, 4)), np.zeros(0))
    assert (tmp_path / "a/1--E/img.txt").read_bytes() == (tmp_path / "b/1--E/img.txt").read_bytes() == b"img.jpg\n0\n"
    assert [p.name for p in (tmp_path / "a/1--E").iterdir()] == ["img.txt"]


@pytest.mark.parametrize(
    "name, boxes, scores, message",
    [
        ("img.jpg", np.zeros((1, 4)), np.ones(1), "event folder"),
        ("../x/img.jpg", np.zeros((1, 4)), np.ones(1), "refusing"),
        ("0--E/img.jpg", np.zeros((2, 4)), np.ones(1), "2 boxes but 1 scores"),
        ("0--E/img.jpg", np.zeros((1, 4)), np.array([np.nan]), "finite"),
    ],
)
def test_writer_rejects_bad_input(tmp_path: Path, name: str, boxes: np.ndarray, scores: np.ndarray, message: str) -> None:
    with pytest.raises(SafefakesError, match=message):
        write_predictions(tmp_path, name, boxes, scores)


def test_reader_accepts_blank_lines_integers_and_extra_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("some/dir/x.jpg\n2\n1 2 3 4 0.5\n\n  10\t20 30 40 0.25  \n\n")
    predictions = read_prediction_file(path)
    np.testing.assert_array_equal(predictions.boxes, [[1, 2, 3, 4], [10, 20, 30, 40]])
    np.testing.assert_array_equal(predictions.scores, [0.5, 0.25])
    path.write_text("x\n0\n")
    assert len(read_prediction_file(path)) == 0


@pytest.mark.parametrize(
    "text, where",
    [
        ("x\n", "got 1 line"),
        ("x\nthree\n1 2 3 4 0.5\n", ":2: expected the number of boxes"),
        ("x\n1.5\n1 2 3 4 0.5\n", ":2: expected a non-negative whole number"),
        ("x\n2\n1 2 3 4 0.5\n", ":2: announces 2 boxes but 1"),
        ("x\n2\n1 2 3 4 0.5\n1 2 3 0.5\n", ":4: expected 'x y w h score'"),
        ("x\n2\n1 2 3 4 0.5\n1 2 3 4 0.5 7\n", ":4: expected 'x y w h score'"),
        ("x\n2\n1 2 3 4 0.5\n1 2 3 4 high\n", ":4: not a number"),
        ("x\n2\n1 2 3 4 0.5\n1 2 nan 4 0.5\n", ":4: non-finite"),
        ("x\n3\n\n1 2 3 4 0.5\n\n1 2 3 4 0.5\n1 2 3 4 inf\n", ":7: non-finite"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(SafefakesError) as error:
        read_prediction_file(path)
    assert str(path) in str(error.value) and where in str(error.value)


def test_missing_files_are_empty_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_predictions(tmp_path, "0--E/present.jpg", np.array([[1.0, 2.0, 3.0, 4.0]]), np.array([0.5]))
    keys = [("0--E", "present")] + [("0--E", f"gone{i}") for i in range(7)]
    with caplog.at_level(logging.WARNING):
        predictions = read_predictions(tmp_path, keys)
    assert len(predictions[("0--E", "present")]) == 1
    assert all(len(predictions[key]) == 0 for key in keys[1:])
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "7 of 8 prediction files missing" in message and "0--E/gone0.txt" in message and "and 2 more" in message


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SafefakesError, match="prediction folder not found"):
        read_predictions(tmp_path / "nope", [("0--E", "a")])


def test_format_predictions_uses_the_image_file_name() -> None:
    assert format_predictions("3--Riot/3_Riot_9.jpg", np.array([[1, 2, 3, 4]]), np.array([1])).splitlines()[0] == "3_Riot_9.jpg"
