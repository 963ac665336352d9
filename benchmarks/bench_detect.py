"""Training throughput and inference latency of a registered detector on CPU (and CUDA when available).

Usage::

    OMP_NUM_THREADS=2 python benchmarks/bench_detect.py faster_rcnn [--size 1024] [--train-size 640]
        [--batch-size 4] [--iterations 3] [--warmup 1] [--hparams JSON] [--devices cpu cuda]

Images are random (the cost of these networks does not depend on the content); training uses a
few random face boxes per image. Prints one JSON line per device with ``train_images_per_s`` and
``inference_s_per_image``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from safefakes.common.config import parse_json_argument
from safefakes.detect.hparams import resolve_hparams
from safefakes.detect.registry import get_detector

FACES_PER_IMAGE = 5
WIDER_ASPECT = 0.75  # height / width of a typical 1024-px WIDER image


def _random_targets(batch: int, size: int, device: torch.device, generator: torch.Generator) -> list[dict[str, torch.Tensor]]:
    targets = []
    for _ in range(batch):
        corners = torch.rand(FACES_PER_IMAGE, 2, generator=generator) * size * 0.8
        sides = 8 + torch.rand(FACES_PER_IMAGE, 1, generator=generator) * size * 0.15
        boxes = torch.cat([corners, corners + sides], dim=1).to(device)
        targets.append({"boxes": boxes, "labels": torch.ones(FACES_PER_IMAGE, dtype=torch.int64, device=device)})
    return targets


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_training(model: torch.nn.Module, device: torch.device, size: int, batch: int, iterations: int, warmup: int) -> float:
    """Images per second of forward + backward + SGD step on ``size x size`` images."""
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    model.train()
    elapsed = 0.0
    for step in range(warmup + iterations):
        images = [torch.rand(3, size, size, generator=generator).to(device) for _ in range(batch)]
        targets = _random_targets(batch, size, device, generator)
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            loss = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        _sync(device)
        if step >= warmup:
            elapsed += time.perf_counter() - start
    return batch * iterations / elapsed


@torch.inference_mode()
def bench_inference(model: torch.nn.Module, device: torch.device, size: int, iterations: int, warmup: int) -> float:
    """Seconds per ``size``-wide WIDER-shaped image (batch 1)."""
    model.eval()
    image = torch.rand(3, int(size * WIDER_ASPECT), size, generator=torch.Generator().manual_seed(1)).to(device)
    elapsed = 0.0
    for step in range(warmup + iterations):
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            model([image])
        _sync(device)
        if step >= warmup:
            elapsed += time.perf_counter() - start
    return elapsed / iterations


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, benchmark each requested device, print JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("detector", help="registered detector name, e.g. faster_rcnn")
    parser.add_argument("--size", type=int, default=1024, help="inference image width (default 1024)")
    parser.add_argument("--train-size", type=int, default=640, help="square training crop side (DSFD-style 640)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations (each phase)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    parser.add_argument("--hparams", help="overrides of the detector's hyper-parameters (JSON or file)")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"], help="devices to try (cuda skipped when absent)")
    args = parser.parse_args(argv)

    spec = get_detector(args.detector)
    hparams = resolve_hparams(spec.paper_hparams, parse_json_argument(args.hparams, "--hparams"))
    for name in args.devices:
        if name == "cuda" and not torch.cuda.is_available():
            continue
        device = torch.device(name)
        torch.manual_seed(0)
        # The network without its initial pretrained weights: they change no timing, and need no weight file here.
        model = spec.build_model(hparams["model"], load_pretrained=False).to(device)
        result = {
            "detector": args.detector,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
            "train_size": args.train_size,
            "batch_size": args.batch_size,
            "train_images_per_s": round(bench_training(model, device, args.train_size, args.batch_size, args.iterations, args.warmup), 3),
            "inference_size": args.size,
            "inference_s_per_image": round(bench_inference(model, device, args.size, args.iterations, args.warmup), 3),
        }
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
