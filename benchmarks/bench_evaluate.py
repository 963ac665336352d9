"""Time the WIDER FACE evaluation on the full validation set with about 100k noisy detections.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_evaluate.py [--gt GT_DIR] [--boxes 100000] [--repeat 5]
        [--port PORT_DIR] [--keep-predictions DIR]

Reports (JSON on the last stdout line): the compute time of ``evaluate`` (median of ``--repeat`` runs,
ground truth and predictions already in memory), the time of reading the ground truth and the
prediction files, and, with ``--port``, the wall time of the public Python port
(``python evaluation.py -p PRED -g GT`` run inside PORT_DIR, which must hold its ``evaluation.py``
and a built ``bbox`` module) on the same files, with its printed APs for comparison.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from safefakes.data.ground_truth import GroundTruth, load_ground_truth
from safefakes.data.predictions import ImagePredictions, read_predictions, write_predictions
from safefakes.evaluate.wider_eval import evaluate

DEFAULT_GT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wider_face" / "ground_truth"
#: Fraction of GT faces detected, relative box jitter, fraction of duplicated detections.
KEEP_FRACTION, JITTER, DUPLICATE_FRACTION = 0.9, 0.08, 0.1


def synthetic_detections(ground_truth: GroundTruth, total_boxes: int, seed: int) -> dict[tuple[str, str], ImagePredictions]:
    """About ``total_boxes`` detections: jittered GT faces, duplicates and uniform false positives, scores in (0, 1)."""
    rng = np.random.default_rng(seed)
    n_faces = sum(image.boxes.shape[0] for image in ground_truth.images)
    expected_true = n_faces * KEEP_FRACTION * (1 + DUPLICATE_FRACTION)
    false_per_image = max(total_boxes - expected_true, 0.0) / max(len(ground_truth), 1)
    result = {}
    for image in ground_truth.images:
        boxes = image.boxes[rng.random(image.boxes.shape[0]) < KEEP_FRACTION]
        sizes = np.maximum(boxes[:, 2:], 1.0)
        jittered = np.concatenate([boxes[:, :2] + rng.normal(0, JITTER, sizes.shape) * sizes, sizes * np.exp(rng.normal(0, JITTER, sizes.shape))], axis=1)
        duplicates = jittered[rng.random(jittered.shape[0]) < DUPLICATE_FRACTION] + rng.normal(0, 1.5, (1, 4))
        n_false = rng.poisson(false_per_image)
        false = np.concatenate([rng.uniform(0, 1000, (n_false, 2)), rng.uniform(6, 200, (n_false, 2))], axis=1)
        all_boxes = np.round(np.concatenate([jittered, duplicates, false]), 1)
        scores = np.concatenate([rng.beta(5, 2, len(jittered)), rng.beta(2, 3, len(duplicates)), rng.beta(1.5, 5, n_false)])
        result[image.key] = ImagePredictions(all_boxes, np.clip(np.round(scores, 4), 1e-4, 0.9999))
    return result


def _time(function, repeat: int) -> tuple[float, object]:
    timings, value = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        value = function()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings), value


def run_port(port_dir: Path, pred_dir: Path, gt_dir: Path) -> dict[str, object]:
    """Wall time and printed APs of the public port on the same prediction files."""
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "evaluation.py", "-p", str(pred_dir), "-g", str(gt_dir)], cwd=port_dir, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        return {"seconds": seconds, "error": completed.stderr.strip().splitlines()[-1:]}
    found = dict(re.findall(r"(Easy|Medium|Hard)\s+Val AP: ([0-9.eE+-]+|nan)", completed.stdout))
    return {"seconds": seconds, "ap": {name.lower(): float(value) for name, value in found.items()}}


def main() -> int:
    """Run the benchmark and print the timings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt", type=Path, default=DEFAULT_GT, help="ground-truth folder (default: ../shared/data/wider_face/ground_truth)")
    parser.add_argument("--boxes", type=int, default=100_000, help="approximate number of detections")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=5, help="runs of evaluate() to take the median of")
    parser.add_argument("--port", type=Path, help="folder of the public Python port (evaluation.py), to time it too")
    parser.add_argument("--keep-predictions", type=Path, help="write the prediction files here instead of a temporary folder")
    args = parser.parse_args()

    gt_seconds, ground_truth = _time(lambda: load_ground_truth(args.gt), 1)
    detections = synthetic_detections(ground_truth, args.boxes, args.seed)
    compute_seconds, result = _time(lambda: evaluate(ground_truth, detections), args.repeat)
    with tempfile.TemporaryDirectory() as scratch:
        pred_dir = args.keep_predictions or Path(scratch) / "pred"
        for (event, stem), found in detections.items():
            write_predictions(pred_dir, f"{event}/{stem}.jpg", found.boxes, found.scores)
        read_seconds, from_files = _time(lambda: read_predictions(pred_dir, ground_truth.keys()), 1)
        end_to_end_seconds, _ = _time(lambda: evaluate(load_ground_truth(args.gt), read_predictions(pred_dir, ground_truth.keys())), 1)
        same = evaluate(ground_truth, from_files).ap == result.ap
        port = run_port(args.port, pred_dir, args.gt) if args.port else None
    report = {
        "images": result.num_images,
        "detections": result.num_predictions,
        "ap": result.ap,
        "files_give_same_ap": same,
        "evaluate_compute_s": round(compute_seconds, 4),
        "read_ground_truth_s": round(gt_seconds, 4),
        "read_predictions_s": round(read_seconds, 4),
        "end_to_end_with_reading_s": round(end_to_end_seconds, 4),
        "port": port,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
