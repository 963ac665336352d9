"""Sub-commands of the anonymize stage: ``anonymize`` (a whole WIDER split) and ``anonymize-methods``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

from safefakes.anonymize.base import STRENGTH_KEY, get_anonymizer_spec, method_names, parse_param_assignments
from safefakes.anonymize.dataset import BAD_IMAGE_POLICIES, AnonymizeJob, anonymize_dataset
from safefakes.anonymize.images import DEFAULT_JPEG_QUALITY
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
            "whatever --workers. See 'safefakes anonymize-methods' for the methods and their parameters."
        ),
    )
    parser.add_argument("--method", required=True, help="anonymization method (see anonymize-methods)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="method parameter; repeatable (e.g. --param kernel=25)")
    parser.add_argument("--params-json", default=None, metavar="JSON", help="method parameters as a JSON object (merged with --param)")
    parser.add_argument("--checkpoint", type=Path, default=None, metavar="FILE", help="generator checkpoint of a GAN method (from 'safefakes train-gan')")
    parser.add_argument("--wider-root", required=True, type=Path, metavar="ROOT", help="WIDER FACE root in the official layout")
    parser.add_argument("--split", required=True, choices=SPLITS)
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


def collect_params(assignments: list[str], params_json: str | None) -> dict[str, Any]:
    """Merge ``--params-json`` and ``--param KEY=VALUE`` (a key given in both is an error)."""
    params: dict[str, Any] = {}
    if params_json:
        try:
            loaded = json.loads(params_json)
        except json.JSONDecodeError as error:
            raise SafefakesError(f"--params-json is not valid JSON: {error}") from None
        if not isinstance(loaded, dict):
            raise SafefakesError("--params-json must be a JSON object")
        params.update(loaded)
    for key, value in parse_param_assignments(assignments).items():
        if key in params:
            raise SafefakesError(f"parameter {key} given in both --params-json and --param")
        params[key] = value
    return params


def run_anonymize(args: argparse.Namespace) -> int:
    """Handler of ``safefakes anonymize``."""
    params = collect_params(args.param, args.params_json)
    if args.checkpoint is not None:
        if "checkpoint" in params:
            raise SafefakesError("give the checkpoint either with --checkpoint or as a parameter, not both")
        params["checkpoint"] = str(args.checkpoint)
    fields = {f.name for f in dataclasses.fields(get_anonymizer_spec(args.method).config_class)}
    if args.checkpoint is not None and "checkpoint" not in fields:
        raise SafefakesError(f"method {args.method} takes no --checkpoint")
    if "checkpoint" in fields and not params.get("checkpoint"):
        raise SafefakesError(f"method {args.method} needs --checkpoint FILE (a generator checkpoint from 'safefakes train-gan')")
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
