"""The GPU check (benchmarks/gpu_check.sh) at its small CPU sizes: every detector and GAN reported, with finite numbers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safefakes.anonymize.gan.recipe import GAN_RECIPES
from safefakes.detect.registry import DETECTOR_SPECS

PROJECT_ROOT = Path(__file__).resolve().parents[2]
GPU_CHECK = PROJECT_ROOT / "benchmarks" / "gpu_check.sh"
#: The small check takes about 10 s on one idle core; generous for a loaded machine.
TIMEOUT_S = 600
#: The small check's timed iterations and CPU-reference iterations (its defaults).
SMALL_ITERATIONS = 2
SMALL_REFERENCE_ITERATIONS = 2


def numbers(value: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """Every number of a JSON value with its path (booleans are not numbers here)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from numbers(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from numbers(item, f"{path}[{index}]")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield path, float(value)


def test_small_cpu_check_reports_every_model(tmp_path: Path) -> None:
    """``gpu_check.sh --device cpu --small`` writes a report with every detector and GAN: speeds, memory, losses, reference."""
    out = tmp_path / "gpu_check.json"
    result = subprocess.run(
        ["bash", str(GPU_CHECK), "--device", "cpu", "--small", "--out", str(out)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHON": sys.executable},  # the interpreter running the tests, with its packages
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())

    assert set(report["detectors"]) == set(DETECTOR_SPECS)
    assert set(report["gans"]) == set(GAN_RECIPES)
    assert report["sizes"]["name"] == "small" and report["sizes"]["iterations"] == SMALL_ITERATIONS
    assert "max RSS" in report["peak_memory"]
    entries = {**report["detectors"], **report["gans"]}
    for name, entry in entries.items():
        speed = entry["inference"] if name in DETECTOR_SPECS else entry["generation"]
        for figure in (entry["train"]["items_per_s"], entry["train"]["peak_memory_mib"], speed["items_per_s"], speed["peak_memory_mib"]):
            assert figure > 0, name
        reference = entry["reference"]
        assert reference["iterations"] == SMALL_REFERENCE_ITERATIONS
        assert len(reference["run_losses"]) == len(reference["cpu_losses"]) == SMALL_REFERENCE_ITERATIONS
        # On the CPU the reference repeats the run: same seed, same data, same float32 arithmetic.
        assert reference["relative_difference_last"] == 0.0 and reference["verdict"] == "ok", name
    found = list(numbers(report))
    not_finite = [(path, value) for path, value in found if not math.isfinite(value)]
    assert found and not not_finite

    for name in entries:  # the readable table names every model
        assert any(line.startswith(name) for line in result.stdout.splitlines()), name
