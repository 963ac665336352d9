"""Sub-command ``safefakes train-gan``: train a GAN anonymizer with checkpoints at several iteration counts."""

from __future__ import annotations

import argparse
from pathlib import Path

from safefakes.anonymize import GAN_METHODS
from safefakes.anonymize.gan.cropsets import CROP_KEYPOINT_CHOICES, DEFAULT_CROP_KEYPOINTS
from safefakes.common.config import parse_json_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train-gan`` to the top-level parser."""
    parser = subparsers.add_parser(
        "train-gan",
        help="train a GAN face anonymizer on face crops (resumable, checkpoints at several iterations)",
        description=(
            "Train GAN on TRAIN_SET (a synthetic WIDER FACE root, an FDF folder, a PIPA folder or CelebA-style identity folders) "
            "and write CHECKPOINTS/iter_N.pt for "
            "every N of --iterations plus CHECKPOINTS/train_log.csv. The resumable state lives in STATE_DIR; run the "
            "same command again after a kill to continue where it stopped."
        ),
    )
    parser.add_argument("--gan", required=True, choices=GAN_METHODS)
    parser.add_argument("--train-set", required=True, type=Path, metavar="ROOT_OR_FOLDER", help="synthetic WIDER FACE root, FDF, PIPA or identity folders")
    parser.add_argument("--max-faces", type=int, default=None, metavar="N", help="train on a seeded random subset of N crops (training-set size sweeps)")
    parser.add_argument(
        "--min-faces-per-identity",
        type=int,
        default=None,
        metavar="N",
        help="identity sets (CelebA style) only: keep the identities with at least N photos (CIAGAN's CelebA subset: 30)",
    )
    parser.add_argument(
        "--max-identities",
        type=int,
        default=None,
        metavar="N",
        help="identity sets only: then keep N identities, most photos first, ties by name (CIAGAN's CelebA subset: 1200)",
    )
    parser.add_argument(
        "--keypoints7",
        choices=CROP_KEYPOINT_CHOICES,
        default=DEFAULT_CROP_KEYPOINTS,
        help=(
            "PIPA and identity sets, DeepPrivacy: where the crops' 7 keypoints come from: rcnn (Keypoint R-CNN, DeepPrivacy's; refused "
            "without its weights, see 'safefakes fetch-weights'), dlib (derived from dlib's 68 landmarks) or rcnn_or_dlib (the first "
            f"when its weights are present, else the second); synthetic and FDF sets carry their own (default {DEFAULT_CROP_KEYPOINTS})"
        ),
    )
    parser.add_argument("--iterations", required=True, type=int, nargs="+", metavar="N", help="iteration counts to write checkpoints at")
    parser.add_argument("--checkpoints", required=True, type=Path, metavar="DIR", help="folder of iter_N.pt and train_log.csv")
    parser.add_argument("--state-dir", required=True, type=Path, metavar="DIR", help="folder of the resumable state.pt")
    parser.add_argument(
        "--hparams", default="{}", metavar="JSON", help='hyper-parameters as JSON, inline or a JSON/YAML file: {"model": {...}, "train": {...}, "loss": {...}}'
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.set_defaults(func=run_train_gan)


def run_train_gan(args: argparse.Namespace) -> int:
    """Handler of ``safefakes train-gan``."""
    from safefakes.anonymize.gan.training import GanTrainRequest, train_gan

    hparams = parse_json_argument(args.hparams, "--hparams")
    request = GanTrainRequest(
        args.gan,
        args.train_set,
        args.checkpoints,
        args.state_dir,
        hparams,
        tuple(args.iterations),
        args.seed,
        args.device,
        args.max_faces,
        min_faces_per_identity=args.min_faces_per_identity,
        max_identities=args.max_identities,
        keypoints7=args.keypoints7,
    )
    paths = train_gan(request)
    print(f"{args.gan}: checkpoints {', '.join(str(p) for p in paths)}")
    return 0
