"""The GAN face anonymizers (``deepprivacy``, ``ciagan``, ``sun2018``): a trained generator applied to every face box.

Per image: faces whose box lies outside the image or whose size (sqrt of the box area) is under
``min_face_size`` (Safe Fakes: 10 px) stay as they are and are counted; every other box is painted
black in a copy of the image (:func:`~safefakes.anonymize.gan.crops.block_boxes`), each face's
context crop is cut from that copy, the generator paints a face into it at the model resolution,
and the result is pasted back inside the box only. What the generator learns of a face is thus its
position and landmarks, never its pixels.

Landmarks (the GAN's kind: 7 keypoints or 68 landmarks) come from the dataset's extras when it has
them and ``dataset_landmarks`` is on, else from the detector ``keypoint_source`` names (``auto``: the
paper's, Keypoint R-CNN for DeepPrivacy, dlib for CIAGAN and Sun2018; :mod:`.keypoints`, :mod:`.landmarks68`).
A detector that cannot run here is replaced only as ``keypoint_fallback`` says (default ``error``: the
method refuses to start, naming ``safefakes fetch-weights``); the choice is made once, when the method is
built, and recorded (:meth:`GanAnonymizer.run_record`, in the manifest), with the generator checkpoint's GAN,
iteration, resolution, training set and training-crop count (Fig. 7's training faces). A face without landmarks is
generated without them (DeepPrivacy, Sun2018) or blacked out (CIAGAN), as in Safe Fakes Sec. III-C. Each
anonymized face's outcome detail is ``kp=<source>,size=<bin>[,fallback=blackout]``
(:class:`~safefakes.anonymize.gan.keypoints.FaceLandmarkDetail`), so the manifest's ``face_details`` gives
landmark coverage by face size and ``landmark_sources`` the faces per source.

Randomness: each face's random inputs are drawn from its image's generator in face order, so results
do not depend on how images are batched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from safefakes.anonymize.base import SKIP_BELOW_MIN_SIZE, SKIP_OUTSIDE_IMAGE, AnonymizerSpec, FaceOutcome, MethodConfig, require
from safefakes.anonymize.conventional import check_extras, clip_box
from safefakes.anonymize.gan.crops import FaceCrop, block_boxes, make_face_crop, paste_inside_box
from safefakes.anonymize.gan.cropsets import landmarks_with_visibility
from safefakes.anonymize.gan.keypoints import (
    KEYPOINT_FALLBACKS,
    KEYPOINT_SOURCES,
    SOURCE_DATASET,
    SOURCE_NONE,
    DetectorChoice,
    FaceLandmarkDetail,
    build_keypoint_detector,
    choose_keypoint_detector,
    keypoints_from_extras,
    size_bin,
)
from safefakes.anonymize.gan.landmarks68 import LANDMARK68_FALLBACKS, LANDMARK68_SOURCES, DlibLandmarks68, NoLandmarks, choose_landmark68_detector
from safefakes.anonymize.gan.recipe import GanRecipe, get_recipe
from safefakes.anonymize.gan.training import GanCheckpoint, load_gan_checkpoint
from safefakes.common.errors import SafefakesError
from safefakes.common.run_state import select_device
from safefakes.data.wider import FaceBox, FaceExtras


@dataclass(frozen=True)
class GanMethodConfig(MethodConfig):
    """Parameters of a GAN method (every GAN takes the same ones)."""

    checkpoint: str | None = None  # generator checkpoint from `safefakes train-gan` (required to anonymize)
    min_face_size: float = 10.0  # Safe Fakes Sec. III-C: faces under 10 px are left as they are
    context_factor: float = 2.0  # crop side / face box side; must match the training crops
    keypoint_source: str = "auto"  # detector for faces without dataset landmarks: auto (the paper's: rcnn / dlib), rcnn, mtcnn, dlib or none
    keypoint_fallback: str = "error"  # when that detector cannot run here: error (refuse), mtcnn (DeepPrivacy) or none
    dataset_landmarks: bool = True  # use the dataset's ground-truth landmarks where it has them
    batch_images: int = 8  # images handed to anonymize_batch at once
    batch_faces: int = 64  # faces per generator forward pass
    device: str = "auto"  # auto (CUDA when available), cpu or cuda
    amp: bool = True  # float16 inference on CUDA

    def validate(self) -> None:
        """Check the ranges."""
        require(self.min_face_size >= 0, f"min_face_size must be >= 0, got {self.min_face_size}")
        require(self.context_factor >= 1, f"context_factor must be >= 1, got {self.context_factor}")
        sources = sorted(set(KEYPOINT_SOURCES) | set(LANDMARK68_SOURCES))
        require(self.keypoint_source in sources, f"keypoint_source must be one of {', '.join(sources)}")
        fallbacks = sorted(set(KEYPOINT_FALLBACKS) | set(LANDMARK68_FALLBACKS))
        require(self.keypoint_fallback in fallbacks, f"keypoint_fallback must be one of {', '.join(fallbacks)}")
        require(self.batch_images >= 1 and self.batch_faces >= 1, "batch_images and batch_faces must be >= 1")


@dataclass
class _PendingFace:
    """A face waiting for the generator: where it goes, what it was given, its random inputs."""

    image_index: int
    face: FaceBox
    crop: FaceCrop
    inputs: dict[str, np.ndarray]


class GanAnonymizer:
    """Replaces every face large enough with a face generated by a trained GAN (see the module docstring)."""

    changes_pixels = True

    def __init__(self, name: str, config: GanMethodConfig) -> None:
        self.name = name
        self.config = config
        self.batch_size = config.batch_images
        self.recipe: GanRecipe = get_recipe(name)
        keypoints7 = self.recipe.landmark_kind == "keypoints7"
        allowed = KEYPOINT_SOURCES if keypoints7 else LANDMARK68_SOURCES
        if config.keypoint_source not in allowed:
            raise SafefakesError(f"method {name}: keypoint_source must be one of {', '.join(allowed)} (its landmarks are {self.recipe.landmark_kind})")
        fallbacks = KEYPOINT_FALLBACKS if keypoints7 else LANDMARK68_FALLBACKS
        if config.keypoint_fallback not in fallbacks:
            raise SafefakesError(f"method {name}: keypoint_fallback must be one of {', '.join(fallbacks)} (its landmarks are {self.recipe.landmark_kind})")
        choose = choose_keypoint_detector if keypoints7 else choose_landmark68_detector
        # Decided here, before any image: a detector that cannot run is refused or replaced as configured, never silently.
        self.landmark_choice: DetectorChoice = choose(config.keypoint_source, config.keypoint_fallback)
        self._generator: nn.Module | None = None
        self._checkpoint: GanCheckpoint | None = None
        self._generator_record: dict[str, Any] | None = None
        self._landmark_source: Any = None
        self.device = select_device(config.device)

    # The checkpoint and detector load on first use, so listing or validating the method stays cheap.
    def _load_checkpoint(self) -> GanCheckpoint:
        """Read the configured generator checkpoint (refused when none is configured or it is another GAN's)."""
        if not self.config.checkpoint:
            raise SafefakesError(f"method {self.name} needs a generator checkpoint (--checkpoint FILE from 'safefakes train-gan')")
        return load_gan_checkpoint(self.config.checkpoint, self.name)

    def generator(self) -> tuple[nn.Module, GanCheckpoint]:
        """The generator (loaded once) and its checkpoint record."""
        if self._generator is None:
            checkpoint = self._load_checkpoint()
            self._generator = checkpoint.build_generator().to(self.device)
            self._checkpoint = checkpoint
        assert self._checkpoint is not None
        return self._generator, self._checkpoint

    def landmark_source(self) -> Any:
        """The chosen detector for faces without dataset landmarks (:attr:`landmark_choice`; built on first need)."""
        if self._landmark_source is None:
            detector = self.landmark_choice.detector
            if self.recipe.landmark_kind == "keypoints7":
                self._landmark_source = build_keypoint_detector(detector, self.device.type)
            else:
                self._landmark_source = NoLandmarks() if detector == SOURCE_NONE else DlibLandmarks68()
        return self._landmark_source

    def run_record(self) -> dict[str, Any]:
        """What this run's faces come from, for the log and the manifest: ``landmarks`` (dataset landmarks on or off,
        and the detector choice: asked for, fallback setting, used, why) and ``generator`` (:meth:`GanCheckpoint.record`:
        the checkpoint's GAN, iteration, resolution, training set and training crops).

        The dataset commands call this once before the first image, so a missing or foreign checkpoint stops the run
        there. Only the checkpoint's record is kept: the generator is built where images are anonymized (the worker
        processes), not a second time here."""
        if self._generator_record is None:
            self._generator_record = (self._checkpoint or self._load_checkpoint()).record()
        landmarks = {"dataset_landmarks": self.config.dataset_landmarks, **self.landmark_choice.to_dict(), "summary": self.landmark_choice.summary()}
        return {"landmarks": landmarks, "generator": dict(self._generator_record)}

    def _dataset_landmarks(self, extras: FaceExtras | None) -> np.ndarray | None:
        """The dataset's landmarks of the GAN's kind for one face, or None."""
        if extras is None or not self.config.dataset_landmarks:
            return None
        if self.recipe.landmark_kind == "keypoints7":
            return keypoints_from_extras(extras)
        return landmarks_with_visibility(extras.landmarks68)

    def _face_landmarks(self, image: np.ndarray, faces: Sequence[FaceBox], extras: Sequence[FaceExtras] | None) -> tuple[list[np.ndarray | None], list[str]]:
        """Landmarks of each face and where they came from (dataset, a detector's name, or none)."""
        points = [self._dataset_landmarks(e) for e in extras] if extras is not None else [None] * len(faces)
        sources = [SOURCE_DATASET if p is not None else SOURCE_NONE for p in points]
        missing = [i for i, p in enumerate(points) if p is None]
        if missing and self.landmark_choice.detector != SOURCE_NONE:
            source = self.landmark_source()
            for i, found in zip(missing, source.detect(image, [faces[i] for i in missing])):
                if found is not None:
                    points[i], sources[i] = found, source.name
        return points, sources

    def anonymize(
        self, image: np.ndarray, faces: Sequence[FaceBox], extras: Sequence[FaceExtras] | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, list[FaceOutcome]]:
        """Anonymize every face of one image."""
        return self.anonymize_batch([image], [faces], [extras], [rng])[0]

    def anonymize_batch(
        self,
        images: Sequence[np.ndarray],
        faces: Sequence[Sequence[FaceBox]],
        extras: Sequence[Sequence[FaceExtras] | None],
        rngs: Sequence[np.random.Generator],
    ) -> list[tuple[np.ndarray, list[FaceOutcome]]]:
        """Generate all faces of all images, ``batch_faces`` per forward pass, and paste them back."""
        generator, checkpoint = self.generator()
        pending: list[_PendingFace] = []
        outputs: list[np.ndarray] = []
        outcomes: list[list[FaceOutcome | None]] = []
        for index, (image, image_faces, image_extras, rng) in enumerate(zip(images, faces, extras, rngs, strict=True)):
            check_extras(image_faces, image_extras)
            results: list[FaceOutcome | None] = []
            eligible: list[int] = []
            clipped: dict[int, bool] = {}
            for i, face in enumerate(image_faces):
                box = clip_box(face, *image.shape[:2])
                if box is None:
                    results.append(FaceOutcome.skipped(SKIP_OUTSIDE_IMAGE))
                elif face.size < self.config.min_face_size:
                    results.append(FaceOutcome.skipped(SKIP_BELOW_MIN_SIZE))
                else:
                    results.append(None)
                    eligible.append(i)
                    clipped[i] = box.clipped
            outcomes.append(results)
            if not eligible:
                outputs.append(image)
                continue
            chosen = [image_faces[i] for i in eligible]
            points, sources = self._face_landmarks(image, chosen, [image_extras[i] for i in eligible] if image_extras is not None else None)
            blocked = block_boxes(image, chosen)
            # Blacked-out fallbacks keep the blocked pixels; generated faces are pasted into the same array
            # after every crop of the batch has been cut (crops copy their pixels).
            outputs.append(blocked)
            for i, face, face_points, source in zip(eligible, chosen, points, sources):
                blackout = face_points is None and self.recipe.missing_landmarks == "blackout"
                detail = FaceLandmarkDetail(source, size_bin(face.size), blacked_out=blackout).text()
                if blackout:
                    results[i] = FaceOutcome.done(clipped=clipped[i], detail=detail)
                    continue
                crop = make_face_crop(blocked, face, face_points, self.config.context_factor, checkpoint.resolution)
                inputs = self.recipe.sample_face_inputs(checkpoint.hparams, checkpoint.generator_config, checkpoint.resolution, rng)
                pending.append(_PendingFace(index, face, crop, inputs))
                results[i] = FaceOutcome.done(clipped=clipped[i], detail=detail)
        use_amp = self.config.amp and self.device.type == "cuda"
        for start in range(0, len(pending), self.config.batch_faces):
            chunk = pending[start : start + self.config.batch_faces]
            generated = self.recipe.generate(
                generator,
                checkpoint.hparams,
                checkpoint.generator_config,
                [p.crop for p in chunk],
                [p.inputs for p in chunk],
                checkpoint.alpha,
                self.device,
                use_amp,
            )
            for item, pixels in zip(chunk, generated):
                paste_inside_box(outputs[item.image_index], pixels, item.crop.square, item.face)
        return [(output, [o for o in results if o is not None]) for output, results in zip(outputs, outcomes)]


def _gan_spec(name: str, description: str) -> AnonymizerSpec:
    """The registry entry of one GAN method."""
    return AnonymizerSpec(name, GanMethodConfig, lambda config: GanAnonymizer(name, config), description)


DEEPPRIVACY_SPEC = _gan_spec("deepprivacy", "DeepPrivacy GAN: a generated face in each box, 7 keypoints (needs --checkpoint)")
CIAGAN_SPEC = _gan_spec("ciagan", "CIAGAN: an identity-conditioned face from dlib landmarks; boxes without landmarks blacked out (needs --checkpoint)")
SUN2018_SPEC = _gan_spec("sun2018", "Sun2018 head inpainting: landmarks generated or detected, then a face painted in (needs --checkpoint)")
