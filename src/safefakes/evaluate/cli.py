"""Sub-commands of the evaluate stage: ``safefakes evaluate``."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from safefakes.common.config import parse_json_argument
from safefakes.common.errors import SafefakesError
from safefakes.common.io import atomic_write_json, atomic_write_text

LOGGER = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's sub-commands to the top-level parser."""
    parser = subparsers.add_parser(
        "evaluate",
        help="WIDER FACE easy/medium/hard AP of a prediction folder",
        description=(
            "Evaluate WIDER FACE predictions (<PRED_DIR>/<event>/<image>.txt, lines 'x y w h score') against the "
            "official validation ground truth (wider_face_val.mat and wider_{easy,medium,hard}_val.mat), exactly as "
            'the official eval_tools do. The last line on stdout is {"easy": AP, "medium": AP, "hard": AP}, plus '
            '"initialisation" (the pretrained file the detector started from, or none) when the folder was written by '
            "'safefakes predict'. Only the images of the ground truth are evaluated; a missing prediction file means no detections."
        ),
    )
    parser.add_argument("--pred", required=True, type=Path, metavar="PRED_DIR", help="prediction folder")
    parser.add_argument("--gt", required=True, type=Path, metavar="GT_DIR", help="folder with the four ground-truth .mat files")
    parser.add_argument(
        "--images-of",
        type=Path,
        metavar="ROOT",
        help="score only the validation images present in this WIDER root (a subset, e.g. 115 of the 3,226); images outside it are not counted as missed",
    )
    parser.add_argument("--out", type=Path, metavar="FILE", help="also write the AP JSON to FILE")
    parser.add_argument("--curves", type=Path, metavar="CSV", help="write the PR curves (setting, threshold, precision, recall)")
    parser.add_argument(
        "--config-json",
        metavar="JSON",
        help='evaluation settings as a JSON object, inline or a JSON/YAML file, e.g. \'{"iou_threshold": 0.5, "num_thresholds": 1000}\' '
        "(defaults: the official ones)",
    )
    parser.set_defaults(func=run_evaluate)


def present_images(root: Path, split: str = "val") -> list[tuple[str, str]]:
    """``(event, stem)`` of the images of ``split`` that a WIDER root lists and holds."""
    from safefakes.data.wider import WiderLayout, load_split

    layout = WiderLayout(root)
    annotations, _ = load_split(root, split)
    keys = [(Path(a.name).parent.name, Path(a.name).stem) for a in annotations if layout.image_path(split, a.name).is_file()]
    if not keys:
        raise SafefakesError(f"--images-of {root}: no {split} image of its annotation file is there")
    return keys


def run_evaluate(args: argparse.Namespace) -> int:
    """``safefakes evaluate``: read the ground truth and predictions, evaluate, print and write the results."""
    from safefakes.data.ground_truth import load_ground_truth
    from safefakes.data.predictions import read_prediction_metadata, read_predictions
    from safefakes.evaluate.wider_eval import EvaluationConfig, evaluate

    config = EvaluationConfig.from_dict(parse_json_argument(args.config_json, "--config-json"))
    ground_truth = load_ground_truth(args.gt)
    if args.images_of:
        ground_truth = ground_truth.subset(present_images(args.images_of))
    predictions = read_predictions(args.pred, ground_truth.keys())
    started = time.perf_counter()
    result = evaluate(ground_truth, predictions, config)
    LOGGER.info(
        "evaluated %d detections on %d images in %.2f s; faces easy/medium/hard: %s",
        result.num_predictions,
        result.num_images,
        time.perf_counter() - started,
        "/".join(str(result.face_counts[s]) for s in ("easy", "medium", "hard")),
    )
    summary: dict[str, object] = dict(result.summary())
    metadata = read_prediction_metadata(args.pred)
    if metadata is not None:
        summary["initialisation"] = metadata.initialisation.to_dict()
    if args.curves:
        atomic_write_text(args.curves, result.curves_frame().to_csv(index=False, float_format=None, lineterminator="\n"))
    if args.out:
        atomic_write_json(args.out, summary)
    print(json.dumps(summary))
    return 0
