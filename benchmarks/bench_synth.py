"""Time ``safefakes synth``: render and write N synthetic WIDER images (default 200) and print the seconds.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/bench_synth.py [--images 200] [--image-width 1024] [--seed 0] [--workers 2]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from safefakes.data.synth import SynthConfig, synthesize


def main() -> None:
    """Run one synthesis into a temporary folder and print images, faces and wall time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--image-width", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="rendering processes")
    args = parser.parse_args()
    os.environ.setdefault("SAFEFAKES_NO_PROGRESS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu_start = time.perf_counter(), time.process_time()
        counts = synthesize(Path(tmp) / "wider", args.images, args.seed, config=SynthConfig(image_width=args.image_width), workers=args.workers)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    faces = counts["train_faces"] + counts["val_faces"]
    print(
        f"synth: {args.images} images ({faces} faces) at {args.image_width} px in {seconds:.2f} s "
        f"({seconds / args.images * 1000:.1f} ms/image); CPU time {cpu_seconds:.2f} s (wall exceeds it on a busy machine)"
    )


if __name__ == "__main__":
    main()
