"""One-GPU check of every detector and GAN: training and inference speed, peak memory, and AMP/CUDA numerics.

Run it through the wrapper, which says how long it takes (``benchmarks/gpu_check.sh``)::

    bash benchmarks/gpu_check.sh --device cuda --out benchmarks/gpu_check.json   # a GPU node: the paper's sizes
    bash benchmarks/gpu_check.sh --device cpu --small                            # any CPU, tiny sizes, same code paths

It needs no dataset: a synthetic WIDER FACE (:func:`safefakes.data.synth.synthesize`, as ``safefakes synth``) is
written to a temporary folder, with images ``image_width`` wide (1,024 px: WIDER's width).

Detectors (every registered one: DSFD, TinaFace, Faster R-CNN) run at the paper's hyper-parameters and width, but
from random values (``model.pretrained: none``; the ImageNet files may be missing on a GPU node), trained on the
paper's 640-px crops at batch 4 with the production pieces of :mod:`safefakes.detect.train` (``make_loader`` with
worker processes and pinned memory, ``train_step`` with float16 autocast and gradient scaling, channels_last on
CUDA, cuDNN benchmark mode), ``--warmup`` untimed iterations and then ``--iterations`` timed ones. Inference runs
the production :func:`safefakes.detect.predict.detect` (AMP on CUDA) on the synthetic validation images.

GANs (DeepPrivacy, CIAGAN, Sun2018) train on 128-px face crops of the synthetic images at the paper's batch sizes
(128, 16, 64; ``--gan-batch-size`` for a smaller one) through their recipes' ``train_step``, always at the final
128-px stage (DeepPrivacy's progressive growing would otherwise spend its first 9,375 paper iterations at 8 px).
Generation throughput is the recipes' ``generate`` on prepared crops, ``batch_faces`` (64) faces per call, as the
anonymizer calls it: host-to-device copies and the copy of the faces back included, cropping and pasting not.

Numerics: every model is trained again on the CPU in float32 for the first ``--reference-iterations`` (K)
iterations, with the same seed, data and learning-rate schedule. The loss of iteration k (computed before that
iteration's update) of the run and of the CPU reference are reported side by side with their relative difference.
Iteration 1 compares the forward pass alone; iteration K also the first K - 1 updates. A GAN whose batch is over
``--reference-gan-batch`` (16) is compared at that batch, in a rerun of its first K iterations on the device
(DeepPrivacy's 128 faces at 128 px need more than 21 GB and minutes a step on a CPU). An AMP step that the
gradient scaler skipped (float16 overflow, usual in the first iterations) makes iteration K not comparable, and
Faster R-CNN draws its RPN and ROI samples with the device's random generator, so its CPU and CUDA losses also
differ by sampling: it is judged at a looser tolerance. On the CPU the reference repeats the run itself (a
determinism check: expect 0).

Memory: ``torch.cuda.max_memory_allocated`` of each phase on CUDA; on the CPU the process's maximum resident set
size (``resource.getrusage``), which only grows over the process's life, so it is not a per-phase figure there.

Writes one JSON file (``--out``) and prints a table. Exit status 0, or 2 when a model's numerics diverged.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from profile_train_step import PROJECT_ROOT, demo_config, demo_overrides  # benchmarks/ is on sys.path when run as a script
from torch import nn

from safefakes.anonymize.gan.anonymizer import GanMethodConfig
from safefakes.anonymize.gan.crops import BLOCKED_VALUE, CropSquare, FaceCrop
from safefakes.anonymize.gan.cropsets import CropSet, select_crops
from safefakes.anonymize.gan.recipe import GAN_RECIPES, GanRecipe, GrowthPhase, get_recipe
from safefakes.anonymize.gan.training import iteration_rngs, load_training_crops
from safefakes.common.run_state import seed_everything, select_device
from safefakes.common.weights import NO_PRETRAINED
from safefakes.data.synth import SynthConfig, synthesize
from safefakes.detect.data import AugmentedDataset, WiderFaceDataset
from safefakes.detect.hparams import PredictConfig, TrainConfig, resolve_hparams
from safefakes.detect.predict import LoadedDetector, detect
from safefakes.detect.registry import DETECTOR_SPECS, get_detector, model_initialisation
from safefakes.detect.train import LearningRateFactor, TrainingState, build_optimizer, make_loader, train_step

DEFAULT_OUT = PROJECT_ROOT / "benchmarks" / "gpu_check.json"
BYTES_PER_MIB = 2**20
RUSAGE_KIB_PER_MIB = 1024  # Linux reports ru_maxrss in KiB
CPU = torch.device("cpu")
#: Largest relative loss difference, run against CPU reference, that still counts as the same numerics.
DEFAULT_TOLERANCE = 0.05
#: Detectors whose losses average over samples drawn with the device's random generator (torchvision's
#: ``torch.randperm`` in the RPN and ROI samplers): CPU and CUDA draw other samples, so they are judged at
#: :data:`SAMPLING_TOLERANCE`.
DEVICE_SAMPLED_DETECTORS = frozenset({"faster_rcnn"})
SAMPLING_TOLERANCE = 0.25
#: Denominator floor of a relative difference (a loss of exactly 0 would otherwise divide by 0).
RELATIVE_DIFFERENCE_FLOOR = 1e-12
#: The loss term of each GAN's logged terms that the CPU reference compares: well away from 0 at the start
#: (DeepPrivacy's critic loss holds the gradient penalty; the generators' hold identity and L1 terms).
GAN_COMPARED_LOSS = {"deepprivacy": "d_loss", "ciagan": "g_loss", "sun2018": "g_loss"}
#: The shared GAN loop (:func:`safefakes.anonymize.gan.training.train_gan`) mirrors half of each batch.
GAN_FLIP_PROBABILITY = 0.5
#: Fade-in of the final progressive stage: the new resolution fully in.
FULLY_FADED_IN = 1.0
#: Largest GAN batch of the CPU reference: DeepPrivacy's paper batch of 128 at 128 px took more than 21 GB on
#: the CPU (killed on a 23-GB machine) and minutes a step; over it, the device reruns the first iterations at this batch.
REFERENCE_GAN_BATCH = 16
TIMED_RUN = "the timed run"
VERDICT_OK = "ok"
VERDICT_DIVERGED = "DIVERGED"
VERDICT_AMP_SKIPPED = "skipped AMP step"
VERDICT_NO_REFERENCE = "no reference"


@dataclass(frozen=True)
class CheckSizes:
    """The sizes of one kind of check: the GPU check at the paper's sizes, or the small CPU run of the same code."""

    name: str
    image_width: int  # synthetic images: inference runs at this width
    train_images: int
    val_images: int
    detector_crop: int  # side of the detectors' training crops
    detector_batch: int
    detector_width_from_demo: bool  # the demo's 1/8-width networks (config.yaml) instead of the paper's
    gan_resolution: int
    gan_batch: int | None  # None: each GAN's paper batch size
    gan_width_from_demo: bool  # the demo's narrow GANs (config.yaml) instead of the paper's
    generation_batch: int  # faces per generator call
    iterations: int  # timed training iterations
    warmup: int  # untimed training iterations before them
    reference_iterations: int  # CPU float32 reference iterations
    inference_images: int
    inference_warmup: int
    generation_batches: int
    generation_warmup: int
    num_workers: int  # data-loader worker processes of the detectors
    cpu_threads: int | None  # torch's CPU threads (None: torch's default, one per core)
    #: Detector name -> ``model`` overrides on top of the paper's (or the demo's) values.
    detector_model_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


PAPER_SIZES = CheckSizes(
    name="paper",
    image_width=1024,  # WIDER FACE images are 1,024 px wide
    train_images=16,
    val_images=12,
    detector_crop=640,  # the paper's training crops
    detector_batch=4,  # the paper's batch
    detector_width_from_demo=False,
    gan_resolution=128,  # Safe Fakes: 128x128 faces for every GAN
    gan_batch=None,
    gan_width_from_demo=False,
    generation_batch=GanMethodConfig().batch_faces,
    iterations=20,
    warmup=3,
    reference_iterations=2,
    inference_images=10,
    inference_warmup=2,
    generation_batches=10,
    generation_warmup=1,
    num_workers=TrainConfig().num_workers,
    cpu_threads=None,
)
SMALL_SIZES = CheckSizes(
    name="small",
    image_width=256,
    train_images=16,
    val_images=3,
    detector_crop=128,
    detector_batch=4,
    detector_width_from_demo=True,
    gan_resolution=32,
    gan_batch=8,
    gan_width_from_demo=True,
    generation_batch=8,
    iterations=2,
    warmup=1,
    reference_iterations=2,
    inference_images=2,
    inference_warmup=1,
    generation_batches=2,
    generation_warmup=1,
    num_workers=0,  # forking workers costs more than it saves at these sizes
    # One thread: on a shared CPU, two threads of these tiny convolutions mostly wait for each other
    # (TinaFace's part took 13 s with two threads, 1.2 s with one, on a loaded 2-core machine).
    cpu_threads=1,
    # Faster R-CNN resizes every image to min_size itself (the demo's 288 px): keep the small crops' and images' sizes.
    detector_model_overrides={"faster_rcnn": {"min_size": 128, "max_size": 256}},
)
SYNTH_SEED_OFFSET = 1  # the synthetic data's seed is the check's seed plus this (any fixed offset would do)


# --------------------------------------------------------------------------------------------------
# Devices, memory, numbers
# --------------------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (timings would otherwise measure only the launches)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory phase (CUDA only: a process's maximum RSS cannot be reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float:
    """CUDA: the tensors' peak since :func:`reset_peak_memory`; CPU: the process's maximum resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / BYTES_PER_MIB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / RUSAGE_KIB_PER_MIB


def peak_memory_label(device: torch.device) -> str:
    """What :func:`peak_memory_mib` measures on ``device``."""
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated of the phase, MiB"
    return "CPU: resource.getrusage max RSS of the whole process so far, MiB (not per phase)"


def release_memory(device: torch.device) -> None:
    """Give cached device memory back between models, so that each model's peak is its own."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def device_name(device: torch.device) -> str:
    """A readable name of the device."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'s' if threads > 1 else ''})"


def relative_difference(value: float, reference: float) -> float:
    """``|value - reference| / |reference|`` (the denominator floored away from 0)."""
    return abs(value - reference) / max(abs(reference), RELATIVE_DIFFERENCE_FLOOR)


def rate(count: float, seconds: float) -> float:
    """Items per second (0 when nothing was timed)."""
    return count / seconds if seconds > 0 else 0.0


def grad_scalers(training_state: Any) -> list[torch.amp.GradScaler]:
    """The enabled AMP gradient scalers among the fields of a training-state dataclass."""
    fields = (getattr(training_state, field.name) for field in dataclasses.fields(training_state))
    return [value for value in fields if isinstance(value, torch.amp.GradScaler) and value.is_enabled()]


def scaler_scales(scalers: Sequence[torch.amp.GradScaler]) -> list[float]:
    """The current loss scales (a scale that shrinks over a step means that step was skipped: float16 overflow)."""
    return [scaler.get_scale() for scaler in scalers]


# --------------------------------------------------------------------------------------------------
# Training runs
# --------------------------------------------------------------------------------------------------


@dataclass
class IterationRecord:
    """One training iteration: its logged losses, the wait for its batch, its step and whether AMP skipped an update."""

    losses: dict[str, float]
    data_seconds: float
    step_seconds: float
    amp_skipped: bool


@dataclass
class TrainingRun:
    """A run's iterations, its peak memory, and the trained detector (kept for inference) or GAN training state."""

    records: list[IterationRecord]
    peak_memory_mib: float
    trained: Any


@dataclass(frozen=True)
class TrainingSummary:
    """Speed, memory and final loss of a run's timed iterations."""

    batch_size: int
    warmup_iterations: int
    timed_iterations: int
    items_per_s: float  # images (detectors) or faces (GANs) per second, the wait for data included
    step_items_per_s: float  # the same, forward + backward + optimizer step alone
    data_wait_share: float  # share of the timed iterations spent waiting for batches
    peak_memory_mib: float
    loss_after: float  # the compared loss of the last iteration
    loss_terms_after: dict[str, float]
    amp_skipped_steps: int


def summarize_training(run: TrainingRun, batch_size: int, warmup: int, compared_loss: str) -> TrainingSummary:
    """The figures of a run's iterations after ``warmup``."""
    timed = run.records[warmup:]
    data = sum(record.data_seconds for record in timed)
    step = sum(record.step_seconds for record in timed)
    last = run.records[-1].losses
    return TrainingSummary(
        batch_size=batch_size,
        warmup_iterations=warmup,
        timed_iterations=len(timed),
        items_per_s=rate(batch_size * len(timed), data + step),
        step_items_per_s=rate(batch_size * len(timed), step),
        data_wait_share=data / (data + step) if data + step > 0 else 0.0,
        peak_memory_mib=run.peak_memory_mib,
        loss_after=last[compared_loss],
        loss_terms_after=last,
        amp_skipped_steps=sum(record.amp_skipped for record in run.records),
    )


def train_detector(name: str, hparams: Mapping[str, Any], root: Path, device: torch.device, iterations: int, schedule_length: int, seed: int) -> TrainingRun:
    """Train detector ``name`` for ``iterations`` iterations as :func:`safefakes.detect.train.train` does (no files written).

    ``schedule_length`` is the length the learning-rate schedule is laid out for (the timed run's length, also for
    a shorter CPU reference, so that both use the same rates).
    """
    spec = get_detector(name)
    config = TrainConfig.from_dict(hparams["train"])
    base = WiderFaceDataset(root, "train", drop_empty=True)
    dataset = AugmentedDataset(base, spec.build_train_transform(hparams["augment"]))
    seed_everything(seed)
    model = spec.build_model(hparams["model"]).to(device)
    use_amp = config.amp and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config.optimizer)
    schedule = LearningRateFactor(config.schedule, config.iterations_per_epoch(len(base)), schedule_length)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    training_state = TrainingState(model, optimizer, scheduler, torch.amp.GradScaler(device.type, enabled=use_amp))
    scalers = grad_scalers(training_state)
    model.train()
    batches = iter(make_loader(dataset, config, seed, 0, iterations, device))
    reset_peak_memory(device)
    records = []
    for _ in range(iterations):
        tick = time.perf_counter()
        images, boxes = next(batches)
        fetched = time.perf_counter()
        scales_before = scaler_scales(scalers)
        losses = train_step(training_state, images, boxes, device, config, use_amp)
        synchronize(device)
        done = time.perf_counter()
        skipped = any(after < before for before, after in zip(scales_before, scaler_scales(scalers)))
        records.append(IterationRecord(losses, fetched - tick, done - fetched, skipped))
    return TrainingRun(records, peak_memory_mib(device), model)


def train_gan_steps(gan: str, hparams_values: Mapping[str, Any], crops: CropSet, device: torch.device, iterations: int, seed: int) -> TrainingRun:
    """Train GAN ``gan`` for ``iterations`` iterations as :func:`safefakes.anonymize.gan.training.train_gan` does, at its final stage.

    Batches, flips and random draws come from :func:`iteration_rngs` as in the shared loop, so a CPU run and a
    CUDA run of the same seed see the same data and noise.
    """
    recipe = get_recipe(gan)
    hparams = recipe.parse_hparams(hparams_values)
    train = hparams.train
    use_amp = train.amp and device.type == "cuda"
    generator_config = recipe.generator_config(hparams, crops)
    torch.manual_seed(seed)
    training_state = recipe.build_training_state(hparams, generator_config, device, use_amp)
    scalers = grad_scalers(training_state)
    final_phase = GrowthPhase(hparams.model.resolution, FULLY_FADED_IN)
    reset_peak_memory(device)
    records = []
    for iteration in range(1, iterations + 1):
        tick = time.perf_counter()
        numpy_rng, torch_rng = iteration_rngs(seed, iteration)
        indices = numpy_rng.integers(0, len(crops), size=train.batch_size)
        flips = numpy_rng.random(train.batch_size) < GAN_FLIP_PROBABILITY if train.horizontal_flip else np.zeros(train.batch_size, dtype=bool)
        batch = select_crops(crops, indices, flips)
        fetched = time.perf_counter()
        scales_before = scaler_scales(scalers)
        terms = recipe.train_step(training_state, crops, batch, final_phase, hparams, generator_config, torch_rng, device, use_amp)
        synchronize(device)
        done = time.perf_counter()
        skipped = any(after < before for before, after in zip(scales_before, scaler_scales(scalers)))
        records.append(IterationRecord(terms, fetched - tick, done - fetched, skipped))
    return TrainingRun(records, peak_memory_mib(device), training_state)


# --------------------------------------------------------------------------------------------------
# The CPU reference
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferenceComparison:
    """The compared loss of the first K iterations of the run and of a float32 CPU run of the same seed."""

    device: str
    iterations: int
    batch_size: int
    compared_run: str  # the timed run's first iterations, or a rerun on the device at the reference's smaller batch
    compared_loss: str
    run_losses: list[float]
    cpu_losses: list[float]
    relative_differences: list[float]
    relative_difference_first: float  # iteration 1: the forward pass alone
    relative_difference_last: float  # iteration K: K - 1 updates too
    amp_skipped_steps_before_last: int  # updates the run's gradient scaler skipped before iteration K
    tolerance: float
    verdict: str


def compare_with_reference(
    run: TrainingRun, reference: TrainingRun, compared_run: str, batch_size: int, compared_loss: str, tolerance: float
) -> ReferenceComparison:
    """Side by side losses of the run's first iterations and the CPU reference's, and a verdict."""
    count = len(reference.records)
    run_losses = [record.losses[compared_loss] for record in run.records[:count]]
    cpu_losses = [record.losses[compared_loss] for record in reference.records]
    differences = [relative_difference(value, expected) for value, expected in zip(run_losses, cpu_losses)]
    skipped_before_last = sum(record.amp_skipped for record in run.records[: count - 1])
    if differences[0] > tolerance:
        verdict = VERDICT_DIVERGED
    elif differences[-1] > tolerance:
        verdict = VERDICT_AMP_SKIPPED if skipped_before_last else VERDICT_DIVERGED
    else:
        verdict = VERDICT_OK
    return ReferenceComparison(
        device=device_name(CPU),
        iterations=count,
        batch_size=batch_size,
        compared_run=compared_run,
        compared_loss=compared_loss,
        run_losses=run_losses,
        cpu_losses=cpu_losses,
        relative_differences=differences,
        relative_difference_first=differences[0],
        relative_difference_last=differences[-1],
        amp_skipped_steps_before_last=skipped_before_last,
        tolerance=tolerance,
        verdict=verdict,
    )


# --------------------------------------------------------------------------------------------------
# Inference and generation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThroughputSummary:
    """Items (images or faces) per second of a timed inference phase, and its peak memory."""

    timed_items: int
    warmup_items: int
    items_per_s: float
    peak_memory_mib: float
    size: str  # what one item is
    #: Detectors: boxes kept per image. An untrained network scores every anchor near its prior (0.01), about
    #: the paper's score threshold, so its post-processing (TinaFace: NMS over all anchors) does more than a
    #: trained one's would.
    mean_detections: float | None = None


def measure_detector_inference(
    name: str, model: nn.Module, hparams: Mapping[str, Any], root: Path, device: torch.device, sizes: CheckSizes
) -> ThroughputSummary:
    """Images per second of :func:`safefakes.detect.predict.detect` on the synthetic validation images, as ``safefakes predict`` runs it."""
    spec = get_detector(name)
    model = model.to(memory_format=torch.contiguous_format).eval()  # predict loads a checkpoint into a fresh network
    if spec.configure_inference is not None:
        spec.configure_inference(model, hparams["predict"])
    detector = LoadedDetector(name, model, dict(hparams), 0, device, model_initialisation(model, name))
    config = PredictConfig.from_dict(hparams["predict"])
    torch.backends.cudnn.benchmark = False  # a predict process does not turn it on; images differ in height
    validation = WiderFaceDataset(root, "val", drop_empty=False)
    total = sizes.inference_warmup + sizes.inference_images
    images = [validation[index % len(validation)].image for index in range(total)]  # decoded before the clock starts
    reset_peak_memory(device)
    seconds = 0.0
    detections = []
    for index, image in enumerate(images):
        synchronize(device)
        tick = time.perf_counter()
        boxes, _ = detect(detector, image, config)
        synchronize(device)
        if index >= sizes.inference_warmup:
            seconds += time.perf_counter() - tick
            detections.append(len(boxes))
    heights = [image.shape[0] for image in images]
    return ThroughputSummary(
        timed_items=sizes.inference_images,
        warmup_items=sizes.inference_warmup,
        items_per_s=rate(sizes.inference_images, seconds),
        peak_memory_mib=peak_memory_mib(device),
        size=f"images {sizes.image_width} px wide, {min(heights)}-{max(heights)} px high, batch 1",
        mean_detections=float(np.mean(detections)),
    )


def prepared_face_crops(crops: CropSet, recipe: GanRecipe) -> list[FaceCrop]:
    """The training crops as the anonymizer prepares faces: BGR, the box blacked out, the recipe's kind of landmarks."""
    points = crops.keypoints if recipe.landmark_kind == "keypoints7" else crops.landmarks
    prepared = []
    for index in range(len(crops)):
        pixels = np.ascontiguousarray(crops.images[index, :, :, ::-1])  # RGB -> BGR, a copy
        x0, y0, x1, y1 = (int(value) for value in crops.boxes[index])
        pixels[y0:y1, x0:x1] = BLOCKED_VALUE
        prepared.append(FaceCrop(pixels, (x0, y0, x1, y1), points[index], CropSquare(0, 0, crops.resolution)))
    return prepared


def measure_generation(
    gan: str, hparams_values: Mapping[str, Any], generator: nn.Module, crops: CropSet, device: torch.device, sizes: CheckSizes, seed: int
) -> ThroughputSummary:
    """Faces per second of the recipe's ``generate`` with the trained ``generator``, ``generation_batch`` faces per call."""
    recipe = get_recipe(gan)
    hparams = recipe.parse_hparams(hparams_values)
    generator_config = recipe.generator_config(hparams, crops)
    generator.eval()
    use_amp = GanMethodConfig().amp and device.type == "cuda"
    faces = prepared_face_crops(crops, recipe)
    rng = np.random.default_rng(seed)
    calls = []
    for call in range(sizes.generation_warmup + sizes.generation_batches):
        chunk = [faces[(call * sizes.generation_batch + offset) % len(faces)] for offset in range(sizes.generation_batch)]
        inputs = [recipe.sample_face_inputs(hparams, generator_config, crops.resolution, rng) for _ in chunk]
        calls.append((chunk, inputs))
    reset_peak_memory(device)
    seconds = 0.0
    for index, (chunk, inputs) in enumerate(calls):
        synchronize(device)
        tick = time.perf_counter()
        recipe.generate(generator, hparams, generator_config, chunk, inputs, FULLY_FADED_IN, device, use_amp)
        synchronize(device)
        if index >= sizes.generation_warmup:
            seconds += time.perf_counter() - tick
    timed_faces = sizes.generation_batches * sizes.generation_batch
    return ThroughputSummary(
        timed_items=timed_faces,
        warmup_items=sizes.generation_warmup * sizes.generation_batch,
        items_per_s=rate(timed_faces, seconds),
        peak_memory_mib=peak_memory_mib(device),
        size=f"faces {crops.resolution} px, {sizes.generation_batch} per generator call",
    )


# --------------------------------------------------------------------------------------------------
# Hyper-parameters of the check
# --------------------------------------------------------------------------------------------------


def detector_overrides(name: str, sizes: CheckSizes) -> dict[str, Any]:
    """What the check changes of detector ``name``'s paper hyper-parameters: random initial values, the crop and
    batch, AMP, channels_last and pinned-memory workers on (the CUDA paths), and in the small check the demo's width."""
    model = dict(demo_overrides(name).get("model", {})) if sizes.detector_width_from_demo else {}
    model.update(sizes.detector_model_overrides.get(name, {}))
    model["pretrained"] = NO_PRETRAINED
    train = {"batch_size": sizes.detector_batch, "amp": True, "channels_last": True, "pin_memory": True, "num_workers": sizes.num_workers}
    return {"model": model, "augment": {"output_size": sizes.detector_crop}, "train": train}


def gan_overrides(gan: str, sizes: CheckSizes, batch_size: int | None) -> dict[str, Any]:
    """What the check changes of GAN ``gan``'s paper hyper-parameters: the resolution, the batch when asked, and in
    the small check the demo's narrow networks."""
    model = dict(demo_config()["gans"]["models"][gan]["hparams"]["model"]) if sizes.gan_width_from_demo else {}
    model["resolution"] = sizes.gan_resolution
    batch = batch_size if batch_size is not None else sizes.gan_batch
    return {"model": model, "train": {"batch_size": batch} if batch is not None else {}}


# --------------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckOptions:
    """Everything one check needs."""

    device: torch.device
    sizes: CheckSizes
    detectors: tuple[str, ...]
    gans: tuple[str, ...]
    gan_batch_size: int | None
    reference_gan_batch: int
    seed: int
    tolerance: float


def check_detector(name: str, root: Path, options: CheckOptions) -> dict[str, Any]:
    """Train, time inference and compare with the CPU reference: the detector's JSON entry."""
    sizes, device = options.sizes, options.device
    overrides = detector_overrides(name, sizes)
    hparams = resolve_hparams(get_detector(name).paper_hparams, overrides)
    length = sizes.warmup + sizes.iterations
    run = train_detector(name, hparams, root, device, length, length, options.seed)
    training = summarize_training(run, sizes.detector_batch, sizes.warmup, "loss")
    release_memory(device)  # the optimizer's state: the inference's peak memory is the network's
    inference = measure_detector_inference(name, run.trained, hparams, root, device, sizes)
    run.trained = None
    release_memory(device)
    entry: dict[str, Any] = {"overrides_of_paper_hparams": overrides, "train": dataclasses.asdict(training), "inference": dataclasses.asdict(inference)}
    entry["train"]["crop"] = f"{sizes.detector_crop} px"
    if sizes.reference_iterations:
        reference = train_detector(name, hparams, root, CPU, sizes.reference_iterations, length, options.seed)
        tolerance = max(options.tolerance, SAMPLING_TOLERANCE) if name in DEVICE_SAMPLED_DETECTORS else options.tolerance
        comparison = compare_with_reference(run, reference, TIMED_RUN, sizes.detector_batch, "loss", tolerance)
        entry["reference"] = dataclasses.asdict(comparison)
        reference.trained = None
        release_memory(CPU)
    return entry


def check_gan(gan: str, root: Path, options: CheckOptions) -> dict[str, Any]:
    """Train, time generation and compare with the CPU reference: the GAN's JSON entry."""
    sizes, device = options.sizes, options.device
    recipe = get_recipe(gan)
    overrides = gan_overrides(gan, sizes, options.gan_batch_size)
    hparams = recipe.parse_hparams(overrides)
    crops = load_training_crops(recipe, hparams, root, None, options.seed)
    length = sizes.warmup + sizes.iterations
    run = train_gan_steps(gan, overrides, crops, device, length, options.seed)
    compared = GAN_COMPARED_LOSS[gan]
    training = summarize_training(run, hparams.train.batch_size, sizes.warmup, compared)
    generator = run.trained.generator
    run.trained = None  # the discriminators and optimizer states: the generation's peak memory is the generator's
    release_memory(device)
    generation = measure_generation(gan, overrides, generator, crops, device, sizes, options.seed)
    del generator
    release_memory(device)
    entry: dict[str, Any] = {"overrides_of_paper_hparams": overrides, "training_crops": len(crops), "train": dataclasses.asdict(training)}
    entry["generation"] = dataclasses.asdict(generation)
    if sizes.reference_iterations:
        entry["reference"] = dataclasses.asdict(gan_reference(gan, overrides, crops, run, options))
    return entry


def gan_reference(gan: str, overrides: Mapping[str, Any], crops: CropSet, run: TrainingRun, options: CheckOptions) -> ReferenceComparison:
    """The CPU reference of a GAN: against the timed run's first iterations, or when the run's batch is over
    ``--reference-gan-batch``, against a rerun of the first iterations on the device at that batch."""
    sizes, device = options.sizes, options.device
    run_batch = get_recipe(gan).parse_hparams(overrides).train.batch_size
    batch = min(run_batch, options.reference_gan_batch)
    if batch == run_batch:
        compared, compared_run = run, TIMED_RUN
    else:
        overrides = {**overrides, "train": {**overrides.get("train", {}), "batch_size": batch}}
        compared = train_gan_steps(gan, overrides, crops, device, sizes.reference_iterations, options.seed)
        compared.trained = None
        release_memory(device)
        compared_run = f"a rerun on {device.type} at batch {batch}"
    reference = train_gan_steps(gan, overrides, crops, CPU, sizes.reference_iterations, options.seed)
    reference.trained = None
    release_memory(CPU)
    return compare_with_reference(compared, reference, compared_run, batch, GAN_COMPARED_LOSS[gan], options.tolerance)


def timed_entry(what: str, check: Callable[[str, Path, CheckOptions], dict[str, Any]], name: str, root: Path, options: CheckOptions) -> dict[str, Any]:
    """``check(name, root, options)``, its progress on stderr: the model's JSON entry with the wall time it took."""
    print(f"gpu_check: {what} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    entry = check(name, root, options)
    entry["wall_s"] = time.perf_counter() - started
    print(f"gpu_check: {what} done in {entry['wall_s']:.1f} s", file=sys.stderr, flush=True)
    return entry


def run_check(options: CheckOptions) -> dict[str, Any]:
    """The whole check on synthetic data in a temporary folder: the JSON report."""
    sizes = options.sizes
    if sizes.reference_iterations > sizes.warmup + sizes.iterations:
        raise SystemExit(f"--reference-iterations ({sizes.reference_iterations}) must not exceed --warmup + --iterations ({sizes.warmup + sizes.iterations})")
    started = time.perf_counter()
    report: dict[str, Any] = {
        "check": "benchmarks/gpu_check.py",
        "sizes": dataclasses.asdict(sizes),
        "device": device_name(options.device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "seed": options.seed,
        "peak_memory": peak_memory_label(options.device),
        "detectors": {},
        "gans": {},
    }
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as folder:
        root = Path(folder) / "wider"
        synth = SynthConfig.from_dict({"image_width": sizes.image_width, "crop_full_scene": True})
        counts = synthesize(root, sizes.train_images + sizes.val_images, options.seed + SYNTH_SEED_OFFSET, val_images=sizes.val_images, config=synth)
        report["synthetic_data"] = {**counts, "image_width": sizes.image_width}
        for name in options.detectors:
            report["detectors"][name] = timed_entry(f"detector {name}", check_detector, name, root, options)
        for gan in options.gans:
            report["gans"][gan] = timed_entry(f"GAN {gan}", check_gan, gan, root, options)
    report["wall_s"] = time.perf_counter() - started
    return report


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------

TABLE_COLUMNS = (
    "model",
    "train /s",
    "infer /s",
    "train peak MiB",
    "infer peak MiB",
    "loss @N",
    "K",
    "loss @K run",
    "loss @K cpu",
    "rel.diff @1",
    "rel.diff @K",
    "verdict",
    "wall s",
)


def table_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """One row of :data:`TABLE_COLUMNS` per model of the report."""
    rows = []
    for kind, entries, speed_key in (("img", report["detectors"], "inference"), ("faces", report["gans"], "generation")):
        for name, entry in entries.items():
            train, speed = entry["train"], entry[speed_key]
            reference = entry.get("reference")
            row = [
                name,
                f"{train['items_per_s']:.2f} {kind}",
                f"{speed['items_per_s']:.2f} {kind}",
                f"{train['peak_memory_mib']:.0f}",
                f"{speed['peak_memory_mib']:.0f}",
                f"{train['loss_after']:.5g}",
            ]
            if reference is None:
                row += ["0", "-", "-", "-", "-", VERDICT_NO_REFERENCE]
            else:
                row += [
                    str(reference["iterations"]),
                    f"{reference['run_losses'][-1]:.6g}",
                    f"{reference['cpu_losses'][-1]:.6g}",
                    f"{reference['relative_difference_first']:.2e}",
                    f"{reference['relative_difference_last']:.2e}",
                    reference["verdict"],
                ]
            row.append(f"{entry['wall_s']:.0f}")
            rows.append(row)
    return rows


def format_table(report: Mapping[str, Any]) -> str:
    """The report as a readable table, with its legend."""
    rows = [list(TABLE_COLUMNS), *table_rows(report)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    sizes = report["sizes"]
    legend = [
        f"device: {report['device']}; torch {report['torch']}, CUDA {report['cuda']}; {sizes['name']} sizes; wall {report['wall_s']:.1f} s",
        f"detectors: {sizes['detector_crop']}-px training crops, batch {sizes['detector_batch']}; inference on {sizes['image_width']}-px-wide images",
        f"GANs: {sizes['gan_resolution']}-px faces; generation {sizes['generation_batch']} faces a call",
        f"N = {sizes['warmup']} warm-up + {sizes['iterations']} timed iterations; K = first iterations rerun on the CPU in float32, same seed "
        "(GANs at a batch over the reference's: against a device rerun at that batch, see the JSON)",
        f"peak memory: {report['peak_memory']}",
    ]
    return "\n".join([*lines, "", *legend])


def diverged_models(report: Mapping[str, Any]) -> list[str]:
    """The models whose CPU reference found diverging numerics."""
    entries = {**report["detectors"], **report["gans"]}
    return [name for name, entry in entries.items() if entry.get("reference", {}).get("verdict") == VERDICT_DIVERGED]


def names_argument(value: str, known: Sequence[str], what: str) -> tuple[str, ...]:
    """A comma-separated list of registered names (empty for none)."""
    names = tuple(name for name in value.split(",") if name)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown)}; expected some of {', '.join(known)}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check, write the JSON report, print the table; 2 when a model diverged from its CPU reference."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (CUDA when there is one), cuda or cpu")
    parser.add_argument("--small", action="store_true", help="tiny sizes (1/8-width detectors on 128-px crops, 32-px GANs): the code paths on a CPU")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON report (default {DEFAULT_OUT.relative_to(PROJECT_ROOT)})")
    parser.add_argument("--iterations", type=int, help="timed training iterations (default 20; small 2)")
    parser.add_argument("--warmup", type=int, help="untimed training iterations first (default 3; small 1)")
    parser.add_argument("--reference-iterations", type=int, help="first iterations rerun on the CPU in float32 (default 2; 0: none)")
    parser.add_argument("--inference-images", type=int, help="timed detector inference images (default 10; small 2)")
    parser.add_argument("--generation-batches", type=int, help="timed generator calls (default 10; small 2)")
    parser.add_argument("--gan-batch-size", type=int, help="GAN training batch (default: each GAN's paper batch, 128 / 16 / 64; small 8)")
    parser.add_argument(
        "--reference-gan-batch", type=int, default=REFERENCE_GAN_BATCH, help=f"largest GAN batch of the CPU reference (default {REFERENCE_GAN_BATCH})"
    )
    parser.add_argument("--num-workers", type=int, help="detector data-loader workers (default 2; small 0)")
    parser.add_argument("--cpu-threads", type=int, help="torch CPU threads (default: one per core; small 1)")
    parser.add_argument("--detectors", default=",".join(DETECTOR_SPECS), help="comma-separated detectors (default all)")
    parser.add_argument("--gans", default=",".join(GAN_RECIPES), help="comma-separated GANs (default all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="largest relative loss difference from the CPU reference")
    args = parser.parse_args(argv)
    os.environ.setdefault("SAFEFAKES_NO_PROGRESS", "1")  # no progress bars between the report's lines

    sizes = SMALL_SIZES if args.small else PAPER_SIZES
    replaced = {
        "iterations": args.iterations,
        "warmup": args.warmup,
        "reference_iterations": args.reference_iterations,
        "inference_images": args.inference_images,
        "generation_batches": args.generation_batches,
        "num_workers": args.num_workers,
        "cpu_threads": args.cpu_threads,
    }
    sizes = dataclasses.replace(sizes, **{key: value for key, value in replaced.items() if value is not None})
    if sizes.iterations < 1 or sizes.warmup < 0 or sizes.reference_iterations < 0:
        parser.error("--iterations must be >= 1, --warmup and --reference-iterations >= 0")
    try:
        detectors = names_argument(args.detectors, list(DETECTOR_SPECS), "detector(s)")
        gans = names_argument(args.gans, list(GAN_RECIPES), "GAN(s)")
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    if sizes.cpu_threads is not None:
        torch.set_num_threads(sizes.cpu_threads)
    device = select_device(args.device)
    if device.type == "cpu" and not args.small:
        print("gpu_check: the paper's sizes on a CPU take hours (a DSFD step alone is minutes); --small is the CPU check", file=sys.stderr)
    options = CheckOptions(device, sizes, detectors, gans, args.gan_batch_size, args.reference_gan_batch, args.seed, args.tolerance)
    report = run_check(options)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    print(format_table(report))
    print(f"report: {args.out}")
    diverged = diverged_models(report)
    if diverged:
        print(f"numerics diverged from the CPU reference: {', '.join(diverged)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
