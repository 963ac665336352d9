"""Optimizers built the one way every training loop (detectors and GANs) uses them."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def adam(
    parameters: Iterable[torch.nn.Parameter],
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> torch.optim.Optimizer:
    """Adam (AdamW when ``decoupled_weight_decay``) with torch's fused kernel: the update of the per-tensor loop
    in one pass over all parameters, several times faster for the demo's many small tensors on a CPU
    (BENCHMARKS.md, "Detector training iteration")."""
    optimizer = torch.optim.AdamW if decoupled_weight_decay else torch.optim.Adam
    return optimizer(list(parameters), lr=lr, betas=betas, weight_decay=weight_decay, fused=True)


def sgd(parameters: Iterable[torch.nn.Parameter], lr: float, momentum: float, weight_decay: float, nesterov: bool) -> torch.optim.Optimizer:
    """SGD with momentum, fused like :func:`adam`."""
    return torch.optim.SGD(list(parameters), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, fused=True)
