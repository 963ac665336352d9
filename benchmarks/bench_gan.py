"""GAN anonymization throughput (faces per second) and peak memory against dataset size.

For each GAN, an untrained generator at the given hyper-parameters (the paper's 128x128 by default;
speed does not depend on the weights) anonymizes a synthetic WIDER FACE training split of ``--images``
images and then one ``--scale`` times larger, each in a fresh process. Landmarks come from the
synthetic data's ground truth, so the figures are the generator's cost plus cropping, pasting and JPEG
coding, not a landmark detector's. The peak resident memory of the two runs should be about equal:
images stream through the runner in batches, nothing grows with the dataset. The batches are kept small
(``--batch-faces``, ``--batch-images``) so that even the small dataset fills them; the peak then
measures the batch, which the method parameters bound, not the dataset.

    OMP_NUM_THREADS=2 python benchmarks/bench_gan.py [--gans deepprivacy,ciagan,sun2018] [--device cpu|cuda]
        [--images 3 --scale 10] [--batch-faces 8 --batch-images 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SAFEFAKES_NO_PROGRESS", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]


#: DeepPrivacy's faces without synthetic keypoints get Keypoint R-CNN's when its weights are here, else MTCNN's (as
#: config.yaml's demo; the method refuses a missing detector unless keypoint_fallback allows a stand-in).
LANDMARK_PARAMS: dict[str, dict[str, str]] = {"deepprivacy": {"keypoint_fallback": "mtcnn"}}


def write_untrained_checkpoint(gan: str, hparams: dict, path: Path) -> None:
    """A checkpoint of a freshly initialised generator (seed 0)."""
    import numpy as np
    import torch

    from safefakes.anonymize.gan.cropsets import CropSet
    from safefakes.anonymize.gan.recipe import get_recipe
    from safefakes.anonymize.gan.training import write_gan_checkpoint

    recipe = get_recipe(gan)
    parsed = recipe.parse_hparams(hparams)
    torch.manual_seed(0)
    # Two placeholder crops with distinct identities: what generator_config reads (CIAGAN's identity count).
    one = CropSet(
        np.zeros((2, parsed.model.resolution, parsed.model.resolution, 3), np.uint8),
        np.zeros((2, 4), np.int64),
        np.zeros((2, 7, 3), np.float32),
        np.zeros((2, 68, 3), np.float32),
        np.arange(2, dtype=np.int64),
        "benchmark",
    )
    config = recipe.generator_config(parsed, one)
    generator = recipe.build_generator(parsed, config)
    write_gan_checkpoint(path, gan, generator, parsed, 1, parsed.model.resolution, 1.0, 0, config)


def measure(gan: str, checkpoint: Path, root: Path, out: Path, params: dict) -> dict:
    """Anonymize ``root`` in this (child) process with method ``params``; wall time, faces and peak RSS."""
    from safefakes.anonymize.dataset import AnonymizeJob, anonymize_dataset

    start = time.perf_counter()
    anonymize_dataset(AnonymizeJob(wider_root=root, split="train", out=out, method=gan, params={"checkpoint": str(checkpoint), **params}))
    seconds = time.perf_counter() - start
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "faces": counts["faces_anonymized"], "peak_rss_mb": peak_mb}


def run_child(gan: str, checkpoint: Path, root: Path, out: Path, params: dict) -> dict:
    """:func:`measure` in a fresh interpreter, so peak memory belongs to one run only."""
    code = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); import bench_gan; from pathlib import Path; "
        f"print(json.dumps(bench_gan.measure({gan!r}, Path({str(checkpoint)!r}), Path({str(root)!r}), Path({str(out)!r}), {params!r})))"
    )
    env = {**os.environ, "PYTHONPATH": f"{PROJECT_ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    """Print one JSON line per GAN and dataset size."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gans", default="deepprivacy,ciagan,sun2018")
    parser.add_argument("--images", type=int, default=20, help="images of the small dataset")
    parser.add_argument("--scale", type=int, default=10, help="the large dataset has this many times more images")
    parser.add_argument("--image-width", type=int, default=1024)
    parser.add_argument("--hparams", default="{}", help="JSON hyper-parameters applied to every GAN (default: paper values)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-faces", type=int, default=8, help="faces per generator pass (method parameter batch_faces)")
    parser.add_argument("--batch-images", type=int, default=2, help="images per batch (method parameter batch_images)")
    args = parser.parse_args()
    params = {"device": args.device, "batch_faces": args.batch_faces, "batch_images": args.batch_images}
    sys.path.insert(0, str(PROJECT_ROOT / "src"))
    from safefakes.data.synth import SynthConfig, synthesize

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        roots = {}
        for count in (args.images, args.images * args.scale):
            roots[count] = work / f"data_{count}"
            synthesize(roots[count], count, seed=3, config=SynthConfig.from_dict({"image_width": args.image_width}))
        for gan in args.gans.split(","):
            checkpoint = work / f"{gan}.pt"
            write_untrained_checkpoint(gan, json.loads(args.hparams), checkpoint)
            for count, root in roots.items():
                row = run_child(gan, checkpoint, root, work / f"out_{gan}_{count}", {**params, **LANDMARK_PARAMS.get(gan, {})})
                row.update(gan=gan, images=count, faces_per_s=row["faces"] / row["seconds"], device=args.device)
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
