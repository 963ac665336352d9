"""Sub-commands of the data stage: ``synth`` (synthetic WIDER FACE), ``synth-identities`` (identity photos for
the re-identification test) and ``fetch-wider`` (the real WIDER FACE)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safefakes.common.config import parse_json_argument
from safefakes.common.errors import SafefakesError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's sub-commands to the top-level parser."""
    synth = subparsers.add_parser(
        "synth",
        help="write a synthetic WIDER FACE (drawn faces, official layout)",
        description="Render procedurally drawn faces on varied backgrounds and write them in the official WIDER FACE "
        "layout: images, bbx_gt txt files, per-face extras (identity, keypoints, landmarks) and the val .mat ground truth.",
    )
    synth.add_argument("--out", required=True, type=Path, help="output root (replaced atomically)")
    synth.add_argument("--images", required=True, type=int, help="total number of images (train + val)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    synth.add_argument("--val-images", type=int, default=None, help="validation images (default: 20%% of --images)")
    synth.add_argument("--image-width", type=int, default=None, help="image width in px; faces scale with it (default 1024)")
    synth.add_argument("--crop-full-scene", action="store_true", help="each image is a crop of a 1024-px-wide scene: faces keep WIDER's absolute sizes")
    synth.add_argument("--workers", type=int, default=1, help="rendering processes (the output does not depend on them)")
    synth.add_argument(
        "--config-json", default=None, metavar="JSON", help="SynthConfig settings as a JSON object, inline or a JSON/YAML file (the config.yaml section)"
    )
    synth.set_defaults(func=_run_synth)

    identities = subparsers.add_parser(
        "synth-identities",
        help="write synthetic identity photos (folder per identity + identities.csv) for 'safefakes reid'",
        description="Render several portraits of each synthetic identity (same face parameters, varied pose, expression, "
        "light and background) into OUT/<identity>/<photo>.png with OUT/identities.csv (path, identity, face box).",
    )
    identities.add_argument("--out", required=True, type=Path, help="output folder (replaced atomically)")
    identities.add_argument("--identities", required=True, type=int, help="number of identities")
    identities.add_argument("--photos", required=True, type=int, help="photos per identity")
    identities.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes; same identity pool as synth)")
    identities.add_argument("--size", type=int, default=None, help="portrait side in px (default 224)")
    identities.add_argument("--config-json", default=None, metavar="JSON", help="SynthIdentitiesConfig settings as a JSON object, inline or a JSON/YAML file")
    identities.set_defaults(func=_run_synth_identities)

    fetch = subparsers.add_parser(
        "fetch-wider",
        help="download, verify and unpack the real WIDER FACE archives",
        description="Download archives (http(s)://, file:// or a local path), verify md5/sha1/sha256 checksums and unpack "
        "them atomically into ROOT. Archives already unpacked there (ROOT/.fetched/NAME.json) are skipped offline.",
    )
    fetch.add_argument("--out", required=True, type=Path, help="dataset root (official layout)")
    fetch.add_argument("--archive", action="append", default=[], metavar="NAME=URL", help="an archive to fetch (repeatable)")
    fetch.add_argument("--checksum", action="append", default=[], metavar="NAME=ALGO:HEX", help="expected digest (md5, sha1, sha256)")
    fetch.add_argument(
        "--member",
        action="append",
        default=[],
        metavar="NAME=SRC:DEST",
        help="unpack only archive folder SRC, into ROOT/DEST (repeatable; default: everything as is)",
    )
    fetch.add_argument("--spec", type=Path, default=None, help="JSON list of {name, url, checksum, members} instead of the flags")
    fetch.add_argument("--keep-archives", action="store_true", help="keep the downloaded archives in ROOT/.downloads")
    fetch.set_defaults(func=_run_fetch)


def _run_synth(args: argparse.Namespace) -> int:
    from safefakes.data.synth import SynthConfig, synthesize

    settings = parse_json_argument(args.config_json, "--config-json")
    if args.image_width is not None:
        settings["image_width"] = args.image_width
    if args.crop_full_scene:
        settings["crop_full_scene"] = True
    config = SynthConfig.from_dict(settings)
    counts = synthesize(args.out, args.images, args.seed, val_images=args.val_images, config=config, workers=args.workers)
    print(json.dumps(counts, sort_keys=True))
    return 0


def _run_synth_identities(args: argparse.Namespace) -> int:
    from safefakes.data.synth_identities import SynthIdentitiesConfig, synthesize_identities

    settings = parse_json_argument(args.config_json, "--config-json")
    if args.size is not None:
        settings["size_px"] = args.size
    if args.out.exists() and not args.out.is_dir():
        raise SafefakesError(f"--out exists and is not a folder: {args.out}")
    counts = synthesize_identities(args.out, args.identities, args.photos, args.seed, SynthIdentitiesConfig.from_dict(settings))
    print(json.dumps(counts, sort_keys=True))
    return 0


def _run_fetch(args: argparse.Namespace) -> int:
    from safefakes.data.download import fetch_archives, specs_from_arguments, specs_from_json

    specs = specs_from_json(args.spec) if args.spec else []
    specs += specs_from_arguments(args.archive, args.checksum, args.member)
    if not specs:
        raise SafefakesError("nothing to fetch: give --archive NAME=URL (repeatable) or --spec FILE")
    done = fetch_archives(args.out, specs, keep_archives=args.keep_archives)
    print(json.dumps({name: "unpacked" if fresh else "already there" for name, fresh in done.items()}, sort_keys=True))
    return 0
