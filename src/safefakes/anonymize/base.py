"""The face anonymizer interface, typed method configs, and the method registry.

Every anonymizer (the conventional ones in :mod:`safefakes.anonymize.conventional`, the three GANs in
:mod:`safefakes.anonymize.gan.anonymizer`) is built from a method name and a plain mapping of parameters::

    anonymizer = build_anonymizer("blur", {"kernel": "25"})      # strings from the CLI are converted
    image, outcomes = anonymizer.anonymize(image_bgr, faces, extras, rng)

Parameters are fields of a frozen config dataclass per method (the papers' values are the defaults);
:meth:`MethodConfig.from_dict` converts strings, rejects unknown keys and out-of-range values with a
:class:`SafefakesError` (through :func:`~safefakes.common.config.build_config`). Every method accepts
``strength``: an alias for the one field that sets how strongly the face is obscured (its meaning per
method is in :attr:`MethodConfig.STRENGTH_DOC`), so the re-identification study can sweep
``build_anonymizer(method, {"strength": k})`` uniformly.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np

from safefakes.anonymize import CONVENTIONAL_METHODS, GAN_METHODS
from safefakes.common.config import build_config
from safefakes.common.errors import SafefakesError
from safefakes.data.wider import FaceBox, FaceExtras

LOGGER = logging.getLogger(__name__)

#: The reserved parameter name every method accepts (see :attr:`MethodConfig.STRENGTH_DOC`).
STRENGTH_KEY = "strength"

#: Why a face was left unchanged.
SKIP_OUTSIDE_IMAGE = "outside_image"  # nothing of the box is left after clipping to the image
SKIP_BELOW_MIN_SIZE = "below_min_face_size"  # sqrt(annotated area) below the method's ``min_face_size``


@dataclass(frozen=True)
class FaceOutcome:
    """What happened to one face: anonymized (possibly only its visible, clipped part) or skipped and why.

    ``clipped``: part of the box lay outside the image; ``detail``: optional method-specific note
    (e.g. which keypoints placed the eye bar), counted in the dataset manifest.
    """

    anonymized: bool
    reason: str | None = None
    clipped: bool = False
    detail: str | None = None

    @classmethod
    def done(cls, clipped: bool = False, detail: str | None = None) -> FaceOutcome:
        """The face was anonymized; ``clipped`` when part of its box lay outside the image."""
        return cls(anonymized=True, clipped=clipped, detail=detail)

    @classmethod
    def skipped(cls, reason: str) -> FaceOutcome:
        """The face was left unchanged for ``reason`` (one of the ``SKIP_*`` constants or a method's own)."""
        return cls(anonymized=False, reason=reason)


@runtime_checkable
class FaceAnonymizer(Protocol):
    """A face anonymization method.

    ``image`` is ``(H, W, 3)`` uint8 BGR as OpenCV decodes it; ``faces`` are the annotated boxes in
    image pixels; ``extras`` (same length as ``faces``) may carry keypoints. The method may modify
    ``image`` in place and returns the anonymized image plus one :class:`FaceOutcome` per face.
    ``changes_pixels`` is False for the identity method, letting the dataset command copy files
    byte for byte. ``batch_size`` is how many images :meth:`anonymize_batch` wants at once (GPU methods).
    """

    name: str
    config: MethodConfig
    changes_pixels: bool
    batch_size: int

    def anonymize(
        self,
        image: np.ndarray,
        faces: Sequence[FaceBox],
        extras: Sequence[FaceExtras] | None,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, list[FaceOutcome]]:
        """Anonymize every face of one image."""
        ...

    def anonymize_batch(
        self,
        images: Sequence[np.ndarray],
        faces: Sequence[Sequence[FaceBox]],
        extras: Sequence[Sequence[FaceExtras] | None],
        rngs: Sequence[np.random.Generator],
    ) -> list[tuple[np.ndarray, list[FaceOutcome]]]:
        """Anonymize several images at once (one RNG per image, so results do not depend on batching)."""
        ...


class PerImageAnonymizer:
    """Base class for methods that work one image at a time; provides :meth:`anonymize_batch`."""

    name: str = ""
    changes_pixels: bool = True
    batch_size: int = 1

    def __init__(self, config: MethodConfig) -> None:
        self.config = config

    def anonymize(
        self,
        image: np.ndarray,
        faces: Sequence[FaceBox],
        extras: Sequence[FaceExtras] | None,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, list[FaceOutcome]]:
        """Anonymize every face of one image (subclasses implement this)."""
        raise NotImplementedError

    def anonymize_batch(
        self,
        images: Sequence[np.ndarray],
        faces: Sequence[Sequence[FaceBox]],
        extras: Sequence[Sequence[FaceExtras] | None],
        rngs: Sequence[np.random.Generator],
    ) -> list[tuple[np.ndarray, list[FaceOutcome]]]:
        """Apply :meth:`anonymize` to each image in turn."""
        return [self.anonymize(*item) for item in zip(images, faces, extras, rngs, strict=True)]


# --------------------------------------------------------------------------------------------------
# Typed configs built from plain mappings
# --------------------------------------------------------------------------------------------------

ConfigT = TypeVar("ConfigT", bound="MethodConfig")

_TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE_WORDS = {"0", "false", "no", "off"}


def convert_parameter(value: Any, annotation: Any, key: str) -> Any:
    """Convert one parameter (a string from the CLI or a JSON/YAML scalar) to the field's type."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(annotation) if option is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            return None
        return convert_parameter(value, options[0], key)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise SafefakesError(f"parameter {key}={value!r}: expected one of {', '.join(map(str, choices))}")
        return value
    text = value.strip() if isinstance(value, str) else value
    try:
        if annotation is bool:
            if isinstance(text, bool):
                return text
            word = str(text).lower()
            if word in _TRUE_WORDS | _FALSE_WORDS:
                return word in _TRUE_WORDS
            raise ValueError
        if annotation is int:
            if isinstance(text, bool) or (isinstance(text, float) and not text.is_integer()):
                raise ValueError
            return int(text) if not isinstance(text, str) else int(text, 10)
        if annotation is float:
            if isinstance(text, bool):
                raise ValueError
            number = float(text)
            if not np.isfinite(number):
                raise ValueError
            return number
        if annotation is str:
            return str(text)
    except (TypeError, ValueError):
        raise SafefakesError(f"parameter {key}={value!r}: expected {annotation.__name__}") from None
    raise TypeError(f"unsupported config field type {annotation!r} for {key}")


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method's parameters: a frozen dataclass built with :meth:`from_dict`.

    Subclasses set ``STRENGTH_FIELD`` (the field ``strength`` stands for, or None when the method has
    no strength) and ``STRENGTH_DOC`` (what the strength means), and override :meth:`validate`, which
    every construction runs.
    """

    STRENGTH_FIELD: ClassVar[str | None] = None
    STRENGTH_DOC: ClassVar[str] = "no effect: the method has no strength"

    @classmethod
    def from_dict(cls: type[ConfigT], params: Mapping[str, Any] | None = None) -> ConfigT:
        """Build and validate the config from a plain mapping (strings converted to the fields' types); unknown
        keys and bad values raise SafefakesError."""
        values = dict(params or {})
        if STRENGTH_KEY in values:
            values = cls.apply_strength(values, values.pop(STRENGTH_KEY))
        return build_config(cls, values, cls.__name__, convert_value=convert_parameter, aliases=(STRENGTH_KEY,))

    @classmethod
    def apply_strength(cls, values: dict[str, Any], strength: Any) -> dict[str, Any]:
        """Map the ``strength`` alias onto the method's own field(s); a clash with an explicit value raises."""
        if cls.STRENGTH_FIELD is None:
            return values
        if cls.STRENGTH_FIELD in values:
            raise SafefakesError(f"give either {STRENGTH_KEY} or {cls.STRENGTH_FIELD}, not both")
        return {**values, cls.STRENGTH_FIELD: strength}

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise SafefakesError when a value is out of range (subclasses extend)."""

    def to_dict(self) -> dict[str, Any]:
        """The resolved parameters as a JSON-ready mapping (recorded in the dataset manifest)."""
        return dataclasses.asdict(self)


def require(condition: bool, message: str) -> None:
    """Raise a SafefakesError with ``message`` unless ``condition`` holds (for :meth:`MethodConfig.validate`)."""
    if not condition:
        raise SafefakesError(message)


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnonymizerSpec:
    """One registered method: its config class, how to build it, and a one-line description."""

    name: str
    config_class: type[MethodConfig]
    build: Callable[[Any], FaceAnonymizer]
    description: str


#: Method name -> ``module:attribute`` holding its :class:`AnonymizerSpec` (imported only when used,
#: so GPU methods do not load torch for a blur run). Later modules add their entries here.
ANONYMIZER_SPECS: dict[str, str] = {name: f"safefakes.anonymize.conventional:{name.upper()}_SPEC" for name in CONVENTIONAL_METHODS}
ANONYMIZER_SPECS.update({name: f"safefakes.anonymize.gan.anonymizer:{name.upper()}_SPEC" for name in GAN_METHODS})


def register_anonymizer(name: str, target: str) -> None:
    """Register (or replace) a method: ``target`` is ``"module:attribute"`` naming its :class:`AnonymizerSpec`."""
    ANONYMIZER_SPECS[name] = target


def method_names() -> list[str]:
    """All registered method names, sorted."""
    return sorted(ANONYMIZER_SPECS)


def get_anonymizer_spec(method: str) -> AnonymizerSpec:
    """The :class:`AnonymizerSpec` registered under ``method``."""
    try:
        module_name, attribute = ANONYMIZER_SPECS[method].split(":")
    except KeyError:
        raise SafefakesError(f"unknown anonymization method {method!r}; expected one of {', '.join(method_names())}") from None
    return getattr(importlib.import_module(module_name), attribute)


def method_config(method: str, params: Mapping[str, Any] | None = None) -> MethodConfig:
    """Check ``params`` of ``method`` without building it: its config, or a SafefakesError naming the method and key."""
    spec = get_anonymizer_spec(method)
    try:
        return spec.config_class.from_dict(params)
    except SafefakesError as error:
        raise SafefakesError(f"method {method}: {error}") from None


def build_anonymizer(method: str, params: Mapping[str, Any] | None = None) -> FaceAnonymizer:
    """Build the anonymizer ``method`` with ``params`` (strings or typed values; ``strength`` accepted by all)."""
    return get_anonymizer_spec(method).build(method_config(method, params))


def run_record(anonymizer: FaceAnonymizer) -> dict[str, Any]:
    """What a method decided for this run beyond its parameters (a GAN: where its landmarks come from), from its
    optional ``run_record()`` method: ``{section: {..., "summary": one line[, "used_fallback": bool]}}``; empty for
    methods without one. The dataset commands write it to the manifest and log it once per run."""
    record = getattr(anonymizer, "run_record", None)
    return dict(record()) if callable(record) else {}


def log_run_record(method: str, record: Mapping[str, Any]) -> None:
    """Log each section of a :func:`run_record` once: its summary, as a warning when a fallback replaced what was asked."""
    for section, values in record.items():
        level = logging.WARNING if values.get("used_fallback") else logging.INFO
        LOGGER.log(level, "%s %s: %s", method, section, values.get("summary", values))


def parse_param_assignments(assignments: Sequence[str]) -> dict[str, str]:
    """Turn CLI ``KEY=VALUE`` strings into a mapping (values stay strings; the config converts them)."""
    params: dict[str, str] = {}
    for assignment in assignments:
        key, separator, value = assignment.partition("=")
        key = key.strip()
        if not separator or not key:
            raise SafefakesError(f"--param {assignment!r}: expected KEY=VALUE")
        if key in params:
            raise SafefakesError(f"--param {key} given twice")
        params[key] = value
    return params
