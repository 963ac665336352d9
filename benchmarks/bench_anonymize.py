"""Throughput of ``safefakes anonymize`` per method, as a ratio to the JPEG decode+encode floor.

The floor reads, decodes, re-encodes (same fixed JPEG settings) and writes the same images with the
same number of processes and nothing else; a ratio of 1.0 means the method costs nothing beyond JPEG
coding. Each timing is the best of ``--repeats`` runs. Wall-clock ratios suffer when the machine is
shared, so the CPU-time ratio (this process plus its worker processes) is reported too.

    OMP_NUM_THREADS=1 python benchmarks/bench_anonymize.py [--wider-fixture ../shared/data/wider_face]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SAFEFAKES_NO_PROGRESS", "1")

import cv2  # noqa: E402

from safefakes.anonymize.base import method_names  # noqa: E402
from safefakes.anonymize.dataset import AnonymizeJob, anonymize_dataset  # noqa: E402
from safefakes.anonymize.images import DEFAULT_JPEG_QUALITY, encode_image, image_format, read_image  # noqa: E402
from safefakes.data.wider import WiderLayout, read_bbx_gt  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURE = PROJECT_ROOT.parent / "shared" / "data" / "wider_face"


def cpu_seconds() -> float:
    """CPU time of this process plus its finished child processes."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def make_root(fixture: Path, workdir: Path) -> Path:
    """The real training subset in the official layout (symlinked images)."""
    root = workdir / "root"
    (root / "WIDER_train").mkdir(parents=True)
    (root / "WIDER_train" / "images").symlink_to((fixture / "WIDER_train" / "images").resolve())
    (root / "wider_face_split").mkdir()
    shutil.copyfile(fixture / "train_subset_bbx_gt.txt", WiderLayout(root).annotation_file("train"))
    return root


def _reencode(job: tuple[Path, Path]) -> None:
    """Floor work for one image: read, decode, encode, write."""
    source, target = job
    _, pixels = read_image(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(encode_image(pixels, image_format(source), DEFAULT_JPEG_QUALITY))


def _single_thread() -> None:
    cv2.setNumThreads(1)


def time_floor(root: Path, out: Path, workers: int) -> tuple[float, float]:
    """Wall and CPU seconds to decode+encode every listed image with ``workers`` processes (spawned like the real run)."""
    layout = WiderLayout(root)
    names = [a.name for a in read_bbx_gt(layout.annotation_file("train"))]
    jobs = [(layout.image_path("train", name), out / name) for name in names]
    started, cpu = time.perf_counter(), cpu_seconds()
    if workers == 1:
        for job in jobs:
            _reencode(job)
    else:
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_single_thread) as pool:
            for _ in pool.imap(_reencode, jobs, chunksize=4):
                pass
    elapsed = (time.perf_counter() - started, cpu_seconds() - cpu)
    shutil.rmtree(out)
    return elapsed


def time_method(root: Path, out: Path, method: str, workers: int) -> tuple[float, float]:
    """Wall and CPU seconds for one ``anonymize_dataset`` run."""
    started, cpu = time.perf_counter(), cpu_seconds()
    anonymize_dataset(AnonymizeJob(wider_root=root, split="train", out=out, method=method, workers=workers))
    elapsed = (time.perf_counter() - started, cpu_seconds() - cpu)
    shutil.rmtree(out)
    return elapsed


def best_of(repeats: int, measure) -> tuple[float, float]:
    """The smallest wall and the smallest CPU time over ``repeats`` measurements."""
    runs = [measure() for _ in range(repeats)]
    return min(wall for wall, _ in runs), min(cpu for _, cpu in runs)


def main() -> None:
    """Print a table of images/s and ratio to the floor, per method and worker count."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wider-fixture", type=Path, default=DEFAULT_FIXTURE, help="folder with WIDER_train/images and train_subset_bbx_gt.txt")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--methods", nargs="+", default=method_names())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_anonymize_") as tmp:
        workdir = Path(tmp)
        root = make_root(args.wider_fixture, workdir)
        images = len(read_bbx_gt(WiderLayout(root).annotation_file("train")))
        rows = []
        print(f"{images} images; best of {args.repeats}; ratio = method images/s / floor images/s (wall clock, and CPU time)")
        print("| method | workers | images/s | floor images/s | ratio | CPU ms/image | floor CPU ms/image | CPU ratio |")
        print("|---|---|---|---|---|---|---|---|")
        for workers in args.workers:
            floor_wall, floor_cpu = best_of(args.repeats, lambda workers=workers: time_floor(root, workdir / "floor", workers))
            for method in args.methods:
                wall, cpu = best_of(args.repeats, lambda method=method, workers=workers: time_method(root, workdir / "out", method, workers))
                row = {
                    "method": method,
                    "workers": workers,
                    "images_per_s": images / wall,
                    "floor_images_per_s": images / floor_wall,
                    "ratio": floor_wall / wall,
                    "cpu_ms_per_image": 1000 * cpu / images,
                    "floor_cpu_ms_per_image": 1000 * floor_cpu / images,
                    "cpu_ratio": floor_cpu / cpu,
                }
                rows.append(row)
                print(
                    f"| {method} | {workers} | {row['images_per_s']:.1f} | {row['floor_images_per_s']:.1f} | {row['ratio']:.2f} "
                    f"| {row['cpu_ms_per_image']:.1f} | {row['floor_cpu_ms_per_image']:.1f} | {row['cpu_ratio']:.2f} |",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
