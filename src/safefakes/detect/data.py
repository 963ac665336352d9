"""WIDER FACE as a detection dataset, plus deterministic, resumable batch sampling.

Sampling is a stream: the concatenation of one permutation of the dataset per epoch, each drawn
from a generator seeded by ``(seed, epoch)``. Batch ``t`` holds stream positions
``[t * B, (t + 1) * B)`` and every position carries its own augmentation seed derived from
``(seed, position)``. The data-loader position is therefore just the iteration number: resuming at
iteration ``t`` replays exactly the batches an uninterrupted run would see, whatever the number of
worker processes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from safefakes.common.errors import SafefakesError
from safefakes.data.wider import ImageAnnotation, WiderLayout, load_split

#: ``(image, boxes, rng) -> (image, boxes)``, as :data:`safefakes.detect.registry.TrainTransform`.
Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def read_image_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file as RGB uint8 ``[H, W, 3]``."""
    image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SafefakesError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def annotation_boxes_xyxy(annotation: ImageAnnotation) -> np.ndarray:
    """The faces of ``annotation`` as float32 ``[N, 4]`` ``x1 y1 x2 y2`` (``x2 = x + w``)."""
    boxes = np.array([[f.x, f.y, f.x + f.w, f.y + f.h] for f in annotation.faces], dtype=np.float32)
    return boxes.reshape(-1, 4)


@dataclass(frozen=True)
class DetectionSample:
    """One image with its face boxes."""

    name: str
    image: np.ndarray
    boxes: np.ndarray


class WiderFaceDataset(Dataset):
    """The images of one WIDER split (``WiderLayout`` paths) with their boxes, RGB uint8.

    ``drop_empty`` leaves out images without faces (for training).
    """

    def __init__(self, root: str | os.PathLike[str], split: str, drop_empty: bool = True) -> None:
        self.layout = WiderLayout(Path(root))
        self.split = split
        annotations, _ = load_split(root, split)
        self.annotations = [a for a in annotations if a.faces or not drop_empty]
        if not self.annotations:
            raise SafefakesError(f"no {'annotated ' if drop_empty else ''}images in {self.layout.annotation_file(split)}")

    def __len__(self) -> int:
        return len(self.annotations)

    def __getitem__(self, index: int) -> DetectionSample:
        annotation = self.annotations[index]
        image = read_image_rgb(self.layout.image_path(self.split, annotation.name))
        return DetectionSample(annotation.name, image, annotation_boxes_xyxy(annotation))

    def content_digest(self) -> str:
        """SHA-256 of the image names and boxes: identifies the training set in a resume state."""
        digest = hashlib.sha256()
        for annotation in self.annotations:
            digest.update(annotation.name.encode("utf-8"))
            digest.update(annotation_boxes_xyxy(annotation).tobytes())
        return digest.hexdigest()


class AugmentedDataset(Dataset):
    """Wraps a :class:`WiderFaceDataset`; item ``(index, sample_seed)`` is that image augmented with that seed.

    Returns ``(image uint8 tensor [3, H, W], boxes float32 tensor [N, 4])``.
    """

    def __init__(self, base: WiderFaceDataset, transform: Transform | None) -> None:
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, sample_seed = key
        sample = self.base[index]
        image, boxes = sample.image, sample.boxes
        if self.transform is not None:
            image, boxes = self.transform(image, boxes, np.random.default_rng(sample_seed))
        image_tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()
        return image_tensor, torch.from_numpy(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))


@lru_cache(maxsize=4)
def epoch_permutation(num_items: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the dataset in ``epoch``: a permutation drawn from a generator seeded by ``(seed, epoch)``."""
    generator = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch])))
    permutation = generator.permutation(num_items)
    permutation.setflags(write=False)
    return permutation


def sample_seed(seed: int, position: int) -> int:
    """The augmentation seed of stream position ``position``."""
    return int(np.random.SeedSequence([seed, position, 1]).generate_state(1, dtype=np.uint64)[0])


class StreamBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches ``start_iteration .. stop_iteration - 1`` of the epoch-permutation stream (see module doc)."""

    def __init__(self, num_items: int, batch_size: int, seed: int, start_iteration: int, stop_iteration: int) -> None:
        if num_items < 1 or batch_size < 1:
            raise SafefakesError("batch sampling needs at least one image and a batch size >= 1")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.start_iteration = start_iteration
        self.stop_iteration = stop_iteration

    def __len__(self) -> int:
        return max(0, self.stop_iteration - self.start_iteration)

    def batch(self, iteration: int) -> list[tuple[int, int]]:
        """The ``(index, sample_seed)`` keys of batch ``iteration``."""
        keys = []
        for position in range(iteration * self.batch_size, (iteration + 1) * self.batch_size):
            epoch, offset = divmod(position, self.num_items)
            index = int(epoch_permutation(self.num_items, self.seed, epoch)[offset])
            keys.append((index, sample_seed(self.seed, position)))
        return keys

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for iteration in range(self.start_iteration, self.stop_iteration):
            yield self.batch(iteration)


def collate_detection(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Keep images (uint8 ``[3, H, W]``, sizes may differ) and boxes as lists."""
    images = [image for image, _ in batch]
    boxes = [boxes for _, boxes in batch]
    return images, boxes


def to_model_inputs(images: list[torch.Tensor], boxes: list[torch.Tensor], device: torch.device) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """uint8 images and boxes -> the model contract: float RGB in ``[0, 1]`` and target dicts (label 1 = face)."""
    float_images = [image.to(device, non_blocking=True).float().div_(255.0) for image in images]
    targets = [{"boxes": b.to(device, non_blocking=True), "labels": torch.ones(len(b), dtype=torch.int64, device=device)} for b in boxes]
    return float_images, targets
