"""Where one detector training iteration spends its time, at the demo's settings (config.yaml).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/profile_train_step.py tinaface [--iterations 10] [--root results/data/synthetic]
        [--channels-last] [--hparams JSON]

Trains ``--iterations`` steps on the demo's synthetic training split (made with ``safefakes synth`` first;
``./run.sh demo`` leaves it at ``results/data/synthetic``) with the detector's demo hyper-parameters, and
prints one JSON line: seconds per iteration for the augmentation of one batch, the forward pass (losses
included), the backward pass and the optimizer step, plus the share of the step spent inside convolutions.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from safefakes.common.config import parse_json_argument
from safefakes.detect.data import AugmentedDataset, WiderFaceDataset, collate_detection, to_model_inputs
from safefakes.detect.hparams import TrainConfig, resolve_hparams
from safefakes.detect.registry import get_detector
from safefakes.detect.train import build_optimizer

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_KEYS = ("methods", "iterations")


def demo_config() -> dict[str, Any]:
    """The demo preset, ``config.yaml``, as a mapping."""
    return yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text())


def demo_overrides(detector: str) -> dict[str, Any]:
    """The demo's hyper-parameter overrides of ``detector``: its ``config.yaml`` entry without the workflow keys."""
    entry = demo_config()["detectors"][detector] or {}
    return {key: value for key, value in entry.items() if key not in WORKFLOW_KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("detector")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT / "results" / "data" / "synthetic")
    parser.add_argument("--channels-last", action="store_true", help="run the model in channels_last memory format")
    parser.add_argument("--optimizer-loop", action="store_true", help="torch's per-tensor optimizer loop (foreach=False) instead of the fused kernel")
    parser.add_argument("--no-profiler", action="store_true", help="time without torch's profiler (no convolution share)")
    parser.add_argument("--hparams", default=None, help='overrides merged onto the demo\'s entry, e.g. \'{"train": {"batch_size": 2}}\'')
    args = parser.parse_args()

    spec = get_detector(args.detector)
    hparams = resolve_hparams(resolve_hparams(spec.paper_hparams, demo_overrides(args.detector)), parse_json_argument(args.hparams, "--hparams"))
    config = TrainConfig.from_dict(hparams["train"])
    dataset = AugmentedDataset(WiderFaceDataset(args.root, "train"), spec.build_train_transform(hparams["augment"]))
    torch.manual_seed(0)
    model = spec.build_model(hparams["model"])
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = build_optimizer(model, config.optimizer)
    if args.optimizer_loop:  # the same optimizer and settings, stepped tensor by tensor
        accepted = inspect.signature(type(optimizer)).parameters
        settings = {key: value for key, value in optimizer.defaults.items() if key in accepted}
        optimizer = type(optimizer)(optimizer.param_groups[0]["params"], **{**settings, "fused": None, "foreach": False})
    device = torch.device("cpu")
    totals = {"augment": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    conv_seconds = 0.0
    for step in range(args.warmup + args.iterations):
        timed = step >= args.warmup
        tick = time.perf_counter()
        batch = collate_detection([dataset[((step * config.batch_size + i) % len(dataset), step)] for i in range(config.batch_size)])
        inputs, targets = to_model_inputs(*batch, device)
        after_augment = time.perf_counter()
        profiling = contextlib.nullcontext() if args.no_profiler else torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
        with profiling as profiler:
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=config.cpu_bfloat16):
                loss = sum(model(inputs, targets).values())
            after_forward = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            after_backward = time.perf_counter()
            optimizer.step()
        done = time.perf_counter()
        if timed:
            totals["augment"] += after_augment - tick
            totals["forward"] += after_forward - after_augment
            totals["backward"] += after_backward - after_forward
            totals["optimizer"] += done - after_backward
            conv_seconds += 0.0 if profiler is None else sum(e.self_cpu_time_total for e in profiler.key_averages() if "conv" in e.key.lower()) / 1e6
    per_iteration = {name: round(value / args.iterations, 4) for name, value in totals.items()}
    step_seconds = sum(per_iteration.values()) - per_iteration["augment"]
    print(
        json.dumps(
            {
                "detector": args.detector,
                "batch_size": config.batch_size,
                "crop": hparams["augment"].get("output_size"),
                "threads": torch.get_num_threads(),
                "channels_last": args.channels_last,
                "cpu_bfloat16": config.cpu_bfloat16,
                "seconds_per_iteration": per_iteration,
                "total_s": round(sum(per_iteration.values()), 4),
                "convolution_share_of_step": None if args.no_profiler else round(conv_seconds / args.iterations / step_seconds, 3),
                "optimizer": "per-tensor loop" if args.optimizer_loop else "fused",
            }
        )
    )


if __name__ == "__main__":
    main()
