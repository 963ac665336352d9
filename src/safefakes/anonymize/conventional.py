"""Conventional face anonymizers (OpenCV), with the papers' settings as defaults.

Sources of the defaults:

* Safe Fakes (Klomp et al., Sec. III-C "Experimental setup"): face blur with a fixed 25x25 kernel,
  full-image blur with an 18x18 kernel, pixelation to a fixed 10x10 output, black-out of the box.
* DeepPrivacy (Hukkelås et al., Table 1): pixelation 8x8 and 16x16, a 9x9 Gaussian blur with sigma 3,
  "heavy blur" with a filter size of 30% of the face width, black-out.
* Heimes ("Ad-hoc and Deep-Learning based Face Anonymization Experiments", Sec. 3.4): the strength k of
  blur (k x k kernel), pixelation (k x k output) and noise (k% of the face's pixels get random colours),
  and the black mask over the eyes.

Every per-face method works on the annotated box clipped to the image; a box with nothing left after
clipping, or whose size (sqrt of the annotated area) is below ``min_face_size``, stays unchanged and is
reported as skipped. ``min_face_size`` defaults to 0: Safe Fakes applies the conventional methods to
every annotated face (its 10-pixel cut-off is only for the GAN methods). Pixels outside the face boxes
never change, except with ``fullblur``, which blurs the whole image.

Gaussian filters are ``cv2.getGaussianKernel`` taps applied with ``cv2.sepFilter2D`` (``sigma`` 0:
OpenCV's rule from the kernel size). Even kernel sizes (the 18x18 full-image blur, Heimes's k = 10,
20, ...): the box filter (``cv2.blur``) takes them directly; an even Gaussian kernel is anchored at its
middle element ``k // 2`` (a half-pixel shift, as any even filter must have).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import cv2
import numpy as np

from safefakes.anonymize.base import (
    SKIP_BELOW_MIN_SIZE,
    SKIP_OUTSIDE_IMAGE,
    AnonymizerSpec,
    FaceOutcome,
    MethodConfig,
    PerImageAnonymizer,
    require,
)
from safefakes.common.errors import SafefakesError
from safefakes.data.wider import KEYPOINTS_7, FaceBox, FaceExtras

#: Border handling of every filter: mirror without repeating the edge pixel (OpenCV's default).
BORDER = cv2.BORDER_REFLECT_101
#: Reason for faces the identity method leaves alone on purpose.
SKIP_IDENTITY = "identity_method"
#: Eye landmarks in dlib's 68-point (iBUG-300W) order: the two eyes' six contour points each.
LANDMARKS68_LEFT_EYE = slice(36, 42)
LANDMARKS68_RIGHT_EYE = slice(42, 48)
#: Sub-pixel precision (bits) for drawing the rotated eye bar.
DRAW_SHIFT_BITS = 4

FilterKind = Literal["gaussian", "box"]


# --------------------------------------------------------------------------------------------------
# Boxes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PixelBox:
    """A face box clipped to the image, as half-open pixel ranges ``[x0, x1) x [y0, y1)``."""

    x0: int
    y0: int
    x1: int
    y1: int
    clipped: bool

    @property
    def width(self) -> int:
        """Clipped width in pixels."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """Clipped height in pixels."""
        return self.y1 - self.y0

    def view(self, image: np.ndarray) -> np.ndarray:
        """The box's pixels as a writable view into ``image``."""
        return image[self.y0 : self.y1, self.x0 : self.x1]


def clip_box(face: FaceBox, height: int, width: int) -> PixelBox | None:
    """Clip ``face`` to an image of ``height`` x ``width``; None when nothing of it is inside."""
    x0, y0 = max(face.x, 0), max(face.y, 0)
    x1, y1 = min(face.x + face.w, width), min(face.y + face.h, height)
    if x1 <= x0 or y1 <= y0:
        return None
    clipped = (x0, y0, x1, y1) != (face.x, face.y, face.x + face.w, face.y + face.h)
    return PixelBox(x0, y0, x1, y1, clipped)


def check_extras(faces: Sequence[FaceBox], extras: Sequence[FaceExtras] | None) -> None:
    """Extras, when given, must hold one entry per face."""
    if extras is not None and len(extras) != len(faces):
        raise SafefakesError(f"extras list one entry per face: got {len(extras)} for {len(faces)} faces")


def anonymize_each_face(
    image: np.ndarray,
    faces: Sequence[FaceBox],
    min_face_size: float,
    apply: Callable[[np.ndarray, PixelBox, int], str | None],
) -> list[FaceOutcome]:
    """Call ``apply(image, box, index)`` on every usable face; skipped faces are reported with a reason.

    ``apply`` may return a short detail string (e.g. which keypoints placed the eye bar).
    """
    height, width = image.shape[:2]
    outcomes: list[FaceOutcome] = []
    for index, face in enumerate(faces):
        box = clip_box(face, height, width)
        if box is None:
            outcomes.append(FaceOutcome.skipped(SKIP_OUTSIDE_IMAGE))
        elif face.size < min_face_size:
            outcomes.append(FaceOutcome.skipped(SKIP_BELOW_MIN_SIZE))
        else:
            detail = apply(image, box, index)
            outcomes.append(FaceOutcome.done(clipped=box.clipped, detail=detail))
    return outcomes


# --------------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------------


def smooth(region: np.ndarray, kind: FilterKind, kernel: int, sigma: float) -> np.ndarray:
    """Low-pass ``region`` with a ``kernel`` x ``kernel`` Gaussian (``sigma`` 0: OpenCV's rule) or box filter."""
    if kernel <= 1:
        return region.copy()
    if kind == "box":
        return cv2.blur(region, (kernel, kernel), borderType=BORDER)
    # The separable float filter: the same Gaussian taps as cv2.GaussianBlur (which rounds them to
    # fixed point, +-1 grey level) at 3-8x its speed for large kernels, and it takes even sizes.
    taps = cv2.getGaussianKernel(kernel, sigma)
    return cv2.sepFilter2D(region, -1, taps, taps, borderType=BORDER)


def smooth_box(image: np.ndarray, box: PixelBox, kind: FilterKind, kernel: int, sigma: float) -> None:
    """Blur the pixels of ``box`` in place as if the whole image had been blurred.

    The filter runs on the box grown by the kernel radius (clipped to the image), so box pixels mix
    with their real surroundings; only the box itself is written back.
    """
    radius = kernel // 2
    height, width = image.shape[:2]
    ex0, ey0 = max(box.x0 - radius, 0), max(box.y0 - radius, 0)
    ex1, ey1 = min(box.x1 + radius, width), min(box.y1 + radius, height)
    blurred = smooth(image[ey0:ey1, ex0:ex1], kind, kernel, sigma)
    box.view(image)[...] = blurred[box.y0 - ey0 : box.y1 - ey0, box.x0 - ex0 : box.x1 - ex0]


# --------------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceMethodConfig(MethodConfig):
    """Parameters shared by the per-face methods."""

    # Faces whose size (sqrt of the box area) is below this stay unchanged. Safe Fakes anonymizes every
    # annotated face with the conventional methods, so 0 (its 10-pixel limit applies to GANs only).
    min_face_size: float = 0.0

    def validate(self) -> None:
        """Check the shared ranges."""
        require(self.min_face_size >= 0, f"min_face_size must be >= 0, got {self.min_face_size}")


@dataclass(frozen=True)
class OriginalConfig(MethodConfig):
    """The identity method: no parameters (``strength`` is accepted and has no effect)."""


@dataclass(frozen=True)
class BlurConfig(FaceMethodConfig):
    """Blur of each face box with a fixed kernel regardless of face size."""

    STRENGTH_FIELD: ClassVar[str | None] = "kernel"
    STRENGTH_DOC: ClassVar[str] = "kernel size k (k x k; 1 leaves the face unchanged), as Heimes's blur strength"

    kernel: int = 25  # Safe Fakes Sec. III-C: "a fixed kernel size of 25 x 25 for individual face blurring"
    sigma: float = 0.0  # not given by the paper; 0 = OpenCV's rule 0.3*((k-1)/2-1)+0.8 (4.1 for k=25)
    filter: FilterKind = "gaussian"  # the paper says "blurring"; Gaussian is the usual face blur

    def validate(self) -> None:
        """Check the kernel and sigma."""
        super().validate()
        require(self.kernel >= 1, f"kernel must be >= 1, got {self.kernel}")
        require(self.sigma >= 0, f"sigma must be >= 0, got {self.sigma}")


@dataclass(frozen=True)
class FullBlurConfig(MethodConfig):
    """Blur of the whole image."""

    STRENGTH_FIELD: ClassVar[str | None] = "kernel"
    STRENGTH_DOC: ClassVar[str] = "kernel size k of the whole-image blur (k x k)"

    kernel: int = 18  # Safe Fakes Sec. III-C: "a kernel size of 18x18 for full image blurring"
    # An 18x18 kernel is even, which cv2.GaussianBlur refuses; the box (mean) filter cv2.blur takes it as is.
    filter: FilterKind = "box"
    sigma: float = 0.0  # only for filter=gaussian; 0 = OpenCV's rule from the kernel size

    def validate(self) -> None:
        """Check the kernel and sigma."""
        require(self.kernel >= 1, f"kernel must be >= 1, got {self.kernel}")
        require(self.sigma >= 0, f"sigma must be >= 0, got {self.sigma}")


@dataclass(frozen=True)
class PixelateConfig(FaceMethodConfig):
    """Each face box averaged down to ``grid`` x ``grid`` cells and scaled back with nearest neighbour."""

    STRENGTH_FIELD: ClassVar[str | None] = "grid"
    STRENGTH_DOC: ClassVar[str] = "output size k (k x k cells; smaller k = stronger), as Heimes's pixelation strength"

    grid: int = 10  # Safe Fakes Sec. III-C: "pixelation output size of 10 x 10"; DeepPrivacy Table 1: 8 and 16

    def validate(self) -> None:
        """Check the grid size."""
        super().validate()
        require(self.grid >= 1, f"grid must be >= 1, got {self.grid}")


@dataclass(frozen=True)
class BlackoutConfig(FaceMethodConfig):
    """Each face box painted black."""

    STRENGTH_FIELD: ClassVar[str | None] = "opacity_percent"
    STRENGTH_DOC: ClassVar[str] = "opacity of the black box in percent (100 = solid black, 0 = unchanged)"

    opacity_percent: float = 100.0  # Safe Fakes / DeepPrivacy "black out": a solid black box

    def validate(self) -> None:
        """Check the opacity."""
        super().validate()
        require(0 <= self.opacity_percent <= 100, f"opacity_percent must be in [0, 100], got {self.opacity_percent}")


@dataclass(frozen=True)
class HeavyBlurConfig(FaceMethodConfig):
    """Gaussian blur whose kernel grows with the face: a percentage of the face box width."""

    STRENGTH_FIELD: ClassVar[str | None] = "width_percent"
    STRENGTH_DOC: ClassVar[str] = "kernel size as a percentage of the face width"

    width_percent: float = 30.0  # DeepPrivacy Table 1: "Heavy Blur (filter size = 30% face width)"
    sigma: float = 0.0  # not given; 0 = OpenCV's rule from the kernel size

    def validate(self) -> None:
        """Check the percentage and sigma."""
        super().validate()
        require(self.width_percent > 0, f"width_percent must be > 0, got {self.width_percent}")
        require(self.sigma >= 0, f"sigma must be >= 0, got {self.sigma}")


@dataclass(frozen=True)
class Gaussian9Config(FaceMethodConfig):
    """A small Gaussian blur of each face box."""

    STRENGTH_FIELD: ClassVar[str | None] = "kernel"
    STRENGTH_DOC: ClassVar[str] = "kernel size k; sigma follows as k/3 (the paper's 9x9, sigma 3 ratio)"

    kernel: int = 9  # DeepPrivacy Table 1: "9x9 Gaussian Blur (sigma = 3)"
    sigma: float = 3.0  # DeepPrivacy Table 1
    #: Ratio sigma / kernel of DeepPrivacy's 9x9, sigma 3 blur, kept when ``strength`` sets the kernel.
    SIGMA_PER_KERNEL: ClassVar[float] = 3.0 / 9.0

    @classmethod
    def apply_strength(cls, values: dict[str, Any], strength: Any) -> dict[str, Any]:
        """``strength`` sets the kernel and, unless given, sigma = kernel / 3."""
        values = super().apply_strength(values, strength)
        if "sigma" not in values:
            try:
                values["sigma"] = float(values["kernel"]) * cls.SIGMA_PER_KERNEL
            except (TypeError, ValueError):
                pass  # the kernel's own conversion reports the bad value
        return values

    def validate(self) -> None:
        """Check the kernel and sigma."""
        super().validate()
        require(self.kernel >= 1, f"kernel must be >= 1, got {self.kernel}")
        require(self.sigma > 0, f"sigma must be > 0, got {self.sigma}")


@dataclass(frozen=True)
class NoiseConfig(FaceMethodConfig):
    """A fraction of each face box's pixels replaced by uniformly random colours."""

    STRENGTH_FIELD: ClassVar[str | None] = "percent"
    STRENGTH_DOC: ClassVar[str] = "percentage k of the face's pixels set to random colours (Heimes's noise strength)"

    # Heimes Sec. 3.4 sweeps k in 5..90 and sets no dataset value; 50 is the middle of that sweep.
    percent: float = 50.0

    def validate(self) -> None:
        """Check the percentage."""
        super().validate()
        require(0 <= self.percent <= 100, f"percent must be in [0, 100], got {self.percent}")


@dataclass(frozen=True)
class EyesConfig(FaceMethodConfig):
    """A black bar over the eyes (Heimes Fig. 1 "black out ... eyes"), kept inside the face box.

    The bar follows the eye line from the 68 landmarks or the 7 keypoints (both eyes visible) when the
    extras carry them, in image pixel coordinates; otherwise it is a horizontal band across the box at
    ``eye_line_percent`` of the box height.
    """

    STRENGTH_FIELD: ClassVar[str | None] = "bar_height_percent"
    STRENGTH_DOC: ClassVar[str] = "bar thickness as a percentage of the face box height"

    # No paper fixes these; chosen so the bar covers eyes and brows of a WIDER-style box.
    bar_height_percent: float = 25.0
    # Eye line at 40% of the box height from the top (WIDER boxes start at the hairline/forehead).
    eye_line_percent: float = 40.0
    # With keypoints: the bar reaches past each eye centre by this percentage of the eye distance.
    margin_percent: float = 50.0

    def validate(self) -> None:
        """Check the percentages."""
        super().validate()
        require(0 < self.bar_height_percent <= 100, f"bar_height_percent must be in (0, 100], got {self.bar_height_percent}")
        require(0 <= self.eye_line_percent <= 100, f"eye_line_percent must be in [0, 100], got {self.eye_line_percent}")
        require(self.margin_percent >= 0, f"margin_percent must be >= 0, got {self.margin_percent}")


# --------------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------------


class OriginalAnonymizer(PerImageAnonymizer):
    """No anonymization: the baseline. The dataset command copies its files byte for byte."""

    name = "original"
    changes_pixels = False

    def anonymize(self, image, faces, extras, rng):  # noqa: D102 (documented on the protocol)
        return image, [FaceOutcome.skipped(SKIP_IDENTITY) for _ in faces]


class BlurAnonymizer(PerImageAnonymizer):
    """Fixed-kernel blur of each face box (Safe Fakes "Blur")."""

    name = "blur"
    config: BlurConfig

    def anonymize(self, image, faces, extras, rng):  # noqa: D102
        cfg = self.config

        def apply(img: np.ndarray, box: PixelBox, _: int) -> None:
            smooth_box(img, box, cfg.filter, cfg.kernel, cfg.sigma)

        return image, anonymize_each_face(image, faces, cfg.min_face_size, apply)


class FullBlurAnonymizer(PerImageAnonymizer):
    """Blur of the whole image (Safe Fakes "Fullblur"); every face inside the image counts as anonymized."""

    name = "fullblur"
    config: FullBlurConfig

    def anonymize(self, image, faces, extras, rng):  # noqa: D102
        cfg = self.config
        blurred = smooth(image, cfg.filter, cfg.kernel, cfg.sigma)
        return blurred, anonymize_each_face(blurred, faces, 0.0, lambda *_: None)


class PixelateAnonymizer(PerImageAnonymizer):
    """Each box averaged to ``grid`` x ``grid`` cells (fewer when the box is smaller) and scaled back."""

    name = "pixelate"
    config: PixelateConfig

    def anonymize(self, image, faces, extras, rng):  # noqa: D102
        grid = self.config.grid

        def apply(img: np.ndarray, box: PixelBox, _: int) -> None:
            region = box.view(img)
            cells = (min(grid, box.width), min(grid, box.height))
            small = cv2.resize(region, cells, interpolation=cv2.INTER_AREA)
            region[...] = cv2.resize(small, (box.width, box.height), interpolation=cv2.INTER_NEAREST)

        return image, anonymize_each_face(image, faces, self.config.min_face_size, apply)


class BlackoutAnonymizer(PerImageAnonymizer):
    """Each box painted black (or darkened by ``opacity_percent``)."""

    name = "blackout"
    config: BlackoutConfig

    def anonymize(self, image, faces, extras, rng):  # noqa: D102
        keep = 1.0 - self.config.opacity_percent / 100.0

        def apply(img: np.ndarray, box: PixelBox, _: int) -> None:
            region = box.view(img)
            region[...] = 0 if keep == 0 else cv2.convertScaleAbs(region, alpha=keep)

        return image, anonymize_each_face(image, faces, self.config.min_face_size, apply)


class HeavyBlurAnonymizer(PerImageAnonymizer):
    """Gaussian blur with a kernel of ``width_percent`` of each face's annotated width (DeepPrivacy)."""

    name = "heavyblur"
    config: HeavyBlurConfig

    def anonymize(self, image, faces, extras, rng):  # noqa: D102
        cfg = self.config

        def apply(img: np.ndarray, box: PixelBox, index: int) -> None:
            kernel = max(1, int(round(faces[index].w * cfg.width_percent / 100.0)))
            smooth_box(img, box, "gaussian", kernel, cfg.sigma)

        return image, anonymize_each_face(image, faces, cfg.min_face_size, apply)


class Gaussian9Anonymizer(PerImageAnonymizer):
    """9x9 Gaussian blur with sigma 3 of each face box (DeepPrivacy Table 1)."""

    name = "gaussian9"
    config: Gaussian9Config

    def anonymize(self, image, faces, extras, rng):  # noqa: D102
        cfg = self.config

        def apply(img: np.ndarray, box: PixelBox, _: int) -> None:
            smooth_box(img, box, "gaussian", cfg.kernel, cfg.sigma)

        return image, anonymize_each_face(image, faces, cfg.min_face_size, apply)


class NoiseAnonymizer(PerImageAnonymizer):
    """Exactly round(k% of the box area) distinct pixels per face get uniformly random BGR colours (Heimes)."""

    name = "noise"
    config: NoiseConfig

    def anonymize(self, image, faces, extras, rng):  # noqa: D102
        fraction = self.config.percent / 100.0

        def apply(img: np.ndarray, box: PixelBox, _: int) -> None:
            area = box.width * box.height
            count = int(round(fraction * area))
            chosen = rng.choice(area, size=count, replace=False, shuffle=False)
            rows, cols = np.divmod(chosen, box.width)
            set_pixels(img, box.y0 + rows, box.x0 + cols, rng.integers(0, 256, size=(count, 3), dtype=np.uint8))

        return image, anonymize_each_face(image, faces, self.config.min_face_size, apply)


_PIXEL = np.dtype((np.void, 3))


def set_pixels(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, colours: np.ndarray) -> None:
    """``image[rows, cols] = colours`` for a BGR uint8 image, in one pass over 3-byte pixels when contiguous."""
    if image.flags.c_contiguous:
        pixels = image.reshape(-1, 3).view(_PIXEL).reshape(-1)
        pixels[rows * image.shape[1] + cols] = np.ascontiguousarray(colours).view(_PIXEL).reshape(-1)
    else:
        image[rows, cols] = colours


def eye_centres(extra: FaceExtras | None) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The two eye centres (image pixels) from the 68 landmarks or the 7 keypoints, with their source."""
    if extra is None:
        return None
    if extra.landmarks68 is not None and len(extra.landmarks68) == 68:
        points = np.asarray(extra.landmarks68, dtype=np.float64)[:, :2]
        return points[LANDMARKS68_LEFT_EYE].mean(axis=0), points[LANDMARKS68_RIGHT_EYE].mean(axis=0), "landmarks68"
    if extra.keypoints7 is not None and len(extra.keypoints7) == len(KEYPOINTS_7):
        points = np.asarray(extra.keypoints7, dtype=np.float64)
        left, right = points[KEYPOINTS_7.index("left_eye")], points[KEYPOINTS_7.index("right_eye")]
        if len(left) > 2 and (left[2] <= 0 or right[2] <= 0):
            return None
        return left[:2], right[:2], "keypoints7"
    return None


class EyesAnonymizer(PerImageAnonymizer):
    """A black bar over the eyes, inside the face box."""

    name = "eyes"
    config: EyesConfig

    def anonymize(self, image, faces, extras, rng):  # noqa: D102
        check_extras(faces, extras)
        cfg = self.config

        def apply(img: np.ndarray, box: PixelBox, index: int) -> str:
            face = faces[index]
            thickness = face.h * cfg.bar_height_percent / 100.0
            centres = eye_centres(extras[index] if extras is not None else None)
            if centres is not None and np.linalg.norm(centres[1] - centres[0]) >= 1.0:
                left, right, source = centres
                distance = float(np.linalg.norm(right - left))
                along = (right - left) / distance
                half_length = distance / 2.0 + distance * cfg.margin_percent / 100.0
                middle = (left + right) / 2.0
            else:
                source = "box_geometry"
                along = np.array([1.0, 0.0])
                half_length = face.w / 2.0
                middle = np.array([face.x + face.w / 2.0, face.y + face.h * cfg.eye_line_percent / 100.0])
            across = np.array([-along[1], along[0]])
            corners = [middle + sa * half_length * along + sc * thickness / 2.0 * across for sa, sc in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
            local = (np.array(corners) - (box.x0, box.y0)) * (1 << DRAW_SHIFT_BITS)
            cv2.fillConvexPoly(box.view(img), np.round(local).astype(np.int32), (0, 0, 0), cv2.LINE_8, DRAW_SHIFT_BITS)
            return source

        return image, anonymize_each_face(image, faces, cfg.min_face_size, apply)


ORIGINAL_SPEC = AnonymizerSpec("original", OriginalConfig, OriginalAnonymizer, "no anonymization (files copied byte for byte)")
BLUR_SPEC = AnonymizerSpec("blur", BlurConfig, BlurAnonymizer, "Gaussian blur of each face box, fixed 25x25 kernel")
FULLBLUR_SPEC = AnonymizerSpec("fullblur", FullBlurConfig, FullBlurAnonymizer, "18x18 mean blur of the whole image")
PIXELATE_SPEC = AnonymizerSpec("pixelate", PixelateConfig, PixelateAnonymizer, "each face box pixelated to 10x10 cells")
BLACKOUT_SPEC = AnonymizerSpec("blackout", BlackoutConfig, BlackoutAnonymizer, "each face box painted black")
HEAVYBLUR_SPEC = AnonymizerSpec("heavyblur", HeavyBlurConfig, HeavyBlurAnonymizer, "Gaussian blur, kernel 30% of the face width")
GAUSSIAN9_SPEC = AnonymizerSpec("gaussian9", Gaussian9Config, Gaussian9Anonymizer, "9x9 Gaussian blur, sigma 3, of each face box")
NOISE_SPEC = AnonymizerSpec("noise", NoiseConfig, NoiseAnonymizer, "k% of each face's pixels set to random colours")
EYES_SPEC = AnonymizerSpec("eyes", EyesConfig, EyesAnonymizer, "black bar over the eyes")
