"""Benchmark of the privacy evaluation: face-descriptor throughput and metric cost per 1,000 faces.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_privacy.py [--faces 200] [--wider ROOT]``.
Face crops come from the real WIDER training images of the shared fixtures (``--wider``), reused
cyclically until ``--faces`` crops are measured; times are scaled to 1,000 faces.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import cv2
import numpy as np

from safefakes.data.wider import read_bbx_gt
from safefakes.evaluate.face_descriptors import DescriptorConfig, FaceDescriptorModel
from safefakes.evaluate.image_metrics import RunningGaussian, crop_face, face_ssim, frechet_distance, pixel_l1, pixel_l2, to_unit_float

DEFAULT_WIDER = Path(__file__).resolve().parents[2] / "shared" / "data" / "wider_face"
PER = 1000


def real_face_crops(wider_root: Path, count: int, size: int, min_face_size: int) -> list[np.ndarray]:
    """``count`` RGB face crops of real WIDER training faces (cycled if there are fewer)."""
    crops = []
    for annotation in read_bbx_gt(wider_root / "train_subset_bbx_gt.txt"):
        image = cv2.imread(str(wider_root / "WIDER_train" / "images" / annotation.name))
        for face in annotation.faces:
            if min(face.w, face.h) >= min_face_size and not face.invalid:
                crop = crop_face(image, face, size)
                if crop is not None:
                    crops.append(crop)
    return list(itertools.islice(itertools.cycle(crops), count))


def timed(function, *args) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def main() -> None:
    """Print a JSON report of the measurements."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--faces", type=int, default=200)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--wider", type=Path, default=DEFAULT_WIDER)
    args = parser.parse_args()
    crops = real_face_crops(args.wider, args.faces, args.size, 14)
    blurred = [cv2.GaussianBlur(c, (15, 15), 0) for c in crops]
    model = FaceDescriptorModel(DescriptorConfig())
    whole = (0, 0, args.size, args.size)
    descriptor_s = timed(lambda: [model.describe_box(c, whole) for c in crops])
    pixel_s = timed(lambda: [(pixel_l1(a, b), pixel_l2(a, b)) for a, b in zip(map(to_unit_float, crops), map(to_unit_float, blurred))])
    ssim_s = timed(lambda: [face_ssim(to_unit_float(a), to_unit_float(b)) for a, b in zip(crops, blurred)])
    rng = np.random.default_rng(0)
    stats_a, stats_b = RunningGaussian(2048), RunningGaussian(2048)
    features = rng.normal(size=(PER, 2048))
    accumulate_s = timed(lambda: (stats_a.update(features), stats_b.update(features + 0.1)))
    frechet_2048_s = timed(lambda: frechet_distance(stats_a.mean, stats_a.covariance, stats_b.mean, stats_b.covariance))
    small = rng.normal(size=(PER, 128))
    frechet_128_s = timed(lambda: frechet_distance(small.mean(0), np.cov(small, rowvar=False), small.mean(0) + 0.1, np.cov(small, rowvar=False)))
    scale = PER / args.faces
    report = {
        "faces_measured": args.faces,
        "crop_size": args.size,
        "descriptor_faces_per_s": round(args.faces / descriptor_s, 2),
        "seconds_per_1000_faces": {
            "l1_l2": round(pixel_s * scale, 3),
            "ssim": round(ssim_s * scale, 3),
            "fid_face_descriptors (2 per face pair)": round(2 * descriptor_s * scale, 2),
            "fid_2048_accumulate (features given)": round(accumulate_s, 3),
        },
        "frechet_distance_once_s": {"dims_128": round(frechet_128_s, 3), "dims_2048": round(frechet_2048_s, 3)},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
