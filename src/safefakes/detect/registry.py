"""Which face detectors exist and how to build them: one :class:`DetectorSpec` per ``{detector}`` wildcard.

The model contract follows torchvision's detection models:

* ``model.train(); losses = model(images, targets)`` where ``images`` is a list of float32 tensors
  ``[3, H, W]`` holding RGB in ``[0, 1]`` (sizes may differ; the model normalizes and pads itself) and
  ``targets`` a list of dicts with ``"boxes"`` (``[N, 4]`` float, ``x1 y1 x2 y2`` pixels) and ``"labels"``
  (``[N]`` int64, all ones). It returns a dict of scalar loss tensors; training minimizes their sum.
* ``model.eval(); detections = model(images)`` returns one dict per image with ``"boxes"`` (``[K, 4]``
  ``x1 y1 x2 y2`` in the input image's pixels), ``"scores"`` (``[K]`` in ``[0, 1]``) and ``"labels"``.

Every built model has an ``initialisation`` attribute: the :class:`~safefakes.common.weights.Initialisation`
its ``model.pretrained`` setting loaded (a weight file's name and sha256, or ``none``), which the training
checkpoints record; ``build_model(model, load_pretrained=False)`` builds the same network without its initial
weights (``initialisation`` is then ``None``), for a checkpoint's weights to replace.

Training-time augmentation is detector specific (DSFD's scale augmentation and data-anchor-sampling,
TinaFace's random crop), so each spec also builds a :data:`TrainTransform`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported only by the detectors themselves, to keep the CLI fast
    from torch import nn

from safefakes.common.errors import SafefakesError
from safefakes.common.weights import Initialisation

#: ``(image RGB uint8 [H, W, 3], boxes float32 [N, 4] x1 y1 x2 y2, rng) -> (image, boxes)``.
TrainTransform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class DetectorSpec:
    """How to build one detector from its config section.

    ``build_model`` receives the ``model`` mapping of the detector's hyper-parameters (and ``load_pretrained``) and
    ``build_train_transform`` the ``augment`` mapping; ``paper_hparams`` is the full set of the
    paper's values (sections ``model``, ``augment``, ``train``, ``predict``). Detectors that run their
    own post-processing (score threshold, NMS, top-k) take the ``predict`` section through
    ``configure_inference(model, predict)`` before prediction.
    """

    name: str
    build_model: Callable[..., nn.Module]  # (model mapping, load_pretrained: bool = True) -> model
    build_train_transform: Callable[[Mapping[str, Any]], TrainTransform]
    paper_hparams: Mapping[str, Any]
    configure_inference: Callable[[nn.Module, Mapping[str, Any]], nn.Module] | None = None
    #: Parses and checks the ``model`` mapping without building the network (raises SafefakesError); None: not checked early.
    check_model: Callable[[Mapping[str, Any]], object] | None = None


#: ``{detector}`` wildcard value -> ``module:attribute`` holding its :class:`DetectorSpec`.
DETECTOR_SPECS = {
    "faster_rcnn": "safefakes.detect.faster_rcnn:SPEC",
    "dsfd": "safefakes.detect.dsfd:SPEC",
    "tinaface": "safefakes.detect.tinaface:SPEC",
}


def get_detector(name: str) -> DetectorSpec:
    """The :class:`DetectorSpec` registered under ``name``."""
    try:
        module_name, attribute = DETECTOR_SPECS[name].split(":")
    except KeyError:
        raise SafefakesError(f"unknown detector {name!r}; expected one of {', '.join(sorted(DETECTOR_SPECS))}") from None
    return getattr(importlib.import_module(module_name), attribute)


def check_hparams(name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Check the hyper-parameter ``overrides`` of detector ``name`` as ``safefakes train`` does, without building or
    training anything: the resolved hyper-parameters, or a SafefakesError naming the detector and the bad key."""
    from safefakes.detect.hparams import resolve_hparams

    spec = get_detector(name)
    try:
        resolved = resolve_hparams(spec.paper_hparams, overrides)
        spec.build_train_transform(resolved["augment"])
        if spec.check_model is not None:
            spec.check_model(resolved["model"])
    except (SafefakesError, TypeError, ValueError) as error:
        raise SafefakesError(f"detector {name}: {error}") from None
    return resolved


def model_initialisation(model: nn.Module, detector: str) -> Initialisation:
    """What a freshly built model started from (see the module docstring); an error when its builder did not record it."""
    initialisation = getattr(model, "initialisation", None)
    if not isinstance(initialisation, Initialisation):
        raise SafefakesError(f"the {detector} builder did not record its model's initialisation (weights file or 'none')")
    return initialisation
