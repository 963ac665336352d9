"""Sub-commands of the anonymize stage: ``anonymize`` (a whole WIDER split) and ``anonymize-methods``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

from safefakes.anonymize.base import STRENGTH_KEY, get_anonymizer_spec, method_config, method_names, parse_param_assignments
from safefakes.anonymize.dataset import BAD_IMAGE_POLICIES, AnonymizeJob, anonymize_dataset
from safefakes.anonymize.face_finders import FACE_FINDER_SPECS
from safefakes.anonymize.images import DEFAULT_JPEG_QUALITY
from safefakes.common.config import parse_json_argument
from safefakes.common.errors import SafefakesError
from safefakes.data.wider import SPLITS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's sub-commands to the top-level parser."""
    parser = subparsers.add_parser(
        "anonymize",
        help="anonymize every face of one WIDER FACE split into a new dataset",
        description=(
            "Anonymize every annotated face of ROOT's SPLIT with METHOD and write OUT in the same layout, "
            "plus OUT/manifest.json. OUT appears only when complete. Same input and seed give the same bytes, "
            "whatever --workers. See 'safefakes anonymize-methods' for the methods and their parameters. "
            "Images without annotations: --boxes-from FINDER --images DIR anonymizes the faces a face finder finds in every "
            "jpg/png under DIR and writes OUT as a WIDER root (WIDER_SPLIT/images/<same paths>, the found boxes as "
            "wider_face_split/wider_face_SPLIT_bbx_gt.txt, possible faces below the threshold in ..._review_bbx_gt.txt); with "
            "ground truth (DIR a WIDER root, or --ground-truth) the manifest counts the faces left unprotected."
        ),
    )
    parser.add_argument("--method", required=True, help="anonymization method (see anonymize-methods)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="method parameter; repeatable (e.g. --param kernel=25)")
    parser.add_argument(
        "--config-json", default=None, metavar="JSON", help="method parameters as a JSON object, inline or a JSON/YAML file (merged with --param)"
    )
    parser.add_argument("--checkpoint", type=Path, default=None, metavar="FILE", help="generator checkpoint of a GAN method (from 'safefakes train-gan')")
    parser.add_argument("--wider-root", type=Path, metavar="ROOT", help="WIDER FACE root in the official layout (its annotated faces are anonymized)")
    parser.add_argument("--split", choices=SPLITS, help="split of --wider-root (required there); with --images: OUT's split name (default: detected, else val)")
    parser.add_argument(
        "--boxes-from",
        metavar="FINDER",
        help="anonymize the faces this face finder finds instead of annotated ones (needs --images); finders with their default threshold / review "
        f"threshold: {', '.join(f'{spec.name} {spec.threshold:g}/{spec.review_threshold:g}' for spec in FACE_FINDER_SPECS.values())}",
    )
    parser.add_argument("--images", type=Path, metavar="DIR", help="folder of images without annotations (searched recursively; a WIDER root works too)")
    parser.add_argument(
        "--threshold", type=float, default=None, metavar="T", help="with --boxes-from: lowest score of a box to anonymize (default: the finder's)"
    )
    parser.add_argument(
        "--review-threshold",
        metavar="T",
        type=float,
        default=None,
        help="with --boxes-from: boxes scoring from this up to --threshold count as possible faces left untouched (default: the finder's)",
    )
    parser.add_argument(
        "--ground-truth",
        type=Path,
        default=None,
        metavar="PATH",
        help="with --boxes-from: WIDER root, bbx_gt .txt or folder of the .mat files to count unprotected faces (default: DIR's own when it is a WIDER root)",
    )
    parser.add_argument("--out", required=True, type=Path, help="output dataset root (replaced if it exists)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the randomized methods (default 0)")
    parser.add_argument("--jpeg-quality", type=int, default=DEFAULT_JPEG_QUALITY, help=f"quality of re-encoded JPEGs (default {DEFAULT_JPEG_QUALITY})")
    parser.add_argument(
        "--on-bad-image",
        choices=BAD_IMAGE_POLICIES,
        default="skip",
        help="missing/corrupt images: leave them out and count them in the manifest (skip, default) or stop (error)",
    )
    parser.set_defaults(func=run_anonymize)

    methods = subparsers.add_parser(
        "anonymize-methods",
        help="list the anonymization methods and their parameters",
        description="List every registered anonymization method, its parameters with defaults, and what 'strength' means for it.",
    )
    methods.add_argument("--json", action="store_true", help="print machine-readable JSON")
    methods.set_defaults(func=run_list_methods)


def collect_params(assignments: list[str], config_json: str | None) -> dict[str, Any]:
    """Merge ``--config-json`` and ``--param KEY=VALUE`` (a key given in both is an error)."""
    params = parse_json_argument(config_json, "--config-json")
    for key, value in parse_param_assignments(assignments).items():
        if key in params:
            raise SafefakesError(f"parameter {key} given in both --config-json and --param")
        params[key] = value
    return params


def job_params(method: str, params: dict[str, Any], checkpoint: Path | str | None) -> dict[str, Any]:
    """The parameters ``safefakes anonymize`` gives ``method``: ``params`` plus ``--checkpoint``, checked as the
    command checks them (the checkpoint given once, only to a method that takes one, never missing, every key
    and value valid for the method); a SafefakesError names the method and key."""
    params = dict(params)
    if checkpoint is not None:
        if "checkpoint" in params:
            raise SafefakesError("give the checkpoint either with --checkpoint or as a parameter, not both")
        params["checkpoint"] = str(checkpoint)
    fields = {f.name for f in dataclasses.fields(get_anonymizer_spec(method).config_class)}
    if checkpoint is not None and "checkpoint" not in fields:
        raise SafefakesError(f"method {method} takes no --checkpoint")
    if "checkpoint" in fields and not params.get("checkpoint"):
        raise SafefakesError(f"method {method} needs --checkpoint FILE (a generator checkpoint from 'safefakes train-gan')")
    method_config(method, params)
    return params


def run_anonymize(args: argparse.Namespace) -> int:
    """Handler of ``safefakes anonymize``."""
    params = job_params(args.method, collect_params(args.param, args.config_json), args.checkpoint)
    if args.boxes_from is not None or args.images is not None:
        return run_anonymize_found_boxes(args, params)
    found_box_options = [name for name in ("threshold", "review_threshold", "ground_truth") if getattr(args, name) is not None]
    if found_box_options:
        raise SafefakesError(f"--{found_box_options[0].replace('_', '-')} goes with --boxes-from and --images")
    if args.wider_root is None or args.split is None:
        raise SafefakesError("give --wider-root ROOT and --split SPLIT (annotated faces), or --boxes-from FINDER and --images DIR (found faces)")
    job = AnonymizeJob(
        wider_root=args.wider_root,
        split=args.split,
        out=args.out,
        method=args.method,
        params=params,
        seed=args.seed,
        workers=args.workers,
        jpeg_quality=args.jpeg_quality,
        on_bad_image=args.on_bad_image,
    )
    manifest = anonymize_dataset(job)
    counts = manifest["counts"]
    print(
        f"{job.method}: {counts['images_written']}/{counts['images_listed']} images written, "
        f"{counts['faces_anonymized']}/{counts['faces_listed']} faces anonymized, "
        f"images skipped {counts['images_skipped'] or 0}, faces skipped {counts['faces_skipped'] or 0} -> {job.out}"
    )
    return 0


def run_anonymize_found_boxes(args: argparse.Namespace, params: dict[str, Any]) -> int:
    """``safefakes anonymize --boxes-from FINDER --images DIR``: anonymize the faces a face finder finds."""
    from safefakes.anonymize.unannotated import FoundBoxesJob, anonymize_unannotated, summary_line

    if args.boxes_from is None or args.images is None:
        raise SafefakesError("--boxes-from FINDER and --images DIR go together")
    if args.wider_root is not None:
        raise SafefakesError(f"give either --wider-root (annotated faces) or --images (found faces), not both; --images {args.wider_root} finds a root's faces")
    job = FoundBoxesJob(
        images=args.images,
        out=args.out,
        method=args.method,
        boxes_from=args.boxes_from,
        params=params,
        threshold=args.threshold,
        review_threshold=args.review_threshold,
        ground_truth=args.ground_truth,
        split=args.split,
        seed=args.seed,
        workers=args.workers,
        jpeg_quality=args.jpeg_quality,
        on_bad_image=args.on_bad_image,
    )
    print(summary_line(anonymize_unannotated(job), job.out))
    return 0


def _type_name(annotation: Any) -> str:
    """A readable name of a config field's type (``int``, ``Literal['gaussian', 'box']``)."""
    return getattr(annotation, "__name__", None) if not typing.get_args(annotation) else str(annotation).replace("typing.", "")  # type: ignore[return-value]


def describe_methods() -> dict[str, Any]:
    """Every method with its description, parameters (type and default) and the meaning of ``strength``."""
    described: dict[str, Any] = {}
    for name in method_names():
        spec = get_anonymizer_spec(name)
        hints = typing.get_type_hints(spec.config_class)
        described[name] = {
            "description": spec.description,
            STRENGTH_KEY: spec.config_class.STRENGTH_DOC,
            "params": {f.name: {"type": _type_name(hints[f.name]), "default": f.default} for f in dataclasses.fields(spec.config_class)},
        }
    return described


def run_list_methods(args: argparse.Namespace) -> int:
    """Handler of ``safefakes anonymize-methods``."""
    described = describe_methods()
    if args.json:
        print(json.dumps(described, indent=2, sort_keys=True, default=str))
        return 0
    for name, info in described.items():
        print(f"{name}: {info['description']}")
        print(f"    {STRENGTH_KEY}: {info[STRENGTH_KEY]}")
        for key, param in info["params"].items():
            print(f"    {key} ({param['type']}, default {param['default']})")
    return 0
