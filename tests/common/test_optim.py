"""The fused optimizers make the same updates as torch's per-tensor loop with the same hyper-parameters."""

import pytest
import torch

from safefakes.common import optim


def _run(make, steps: int = 5) -> list[torch.Tensor]:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(7))]
    optimizer = make(params)
    for step in range(steps):
        optimizer.zero_grad()
        loss = sum(((p - step) ** 2).sum() for p in params)
        loss.backward()
        optimizer.step()
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_matches_the_loop_implementation(decoupled: bool) -> None:
    reference_class = torch.optim.AdamW if decoupled else torch.optim.Adam
    expected = _run(lambda ps: reference_class(ps, lr=0.01, betas=(0.5, 0.99), weight_decay=0.1, foreach=False))
    got = _run(lambda ps: optim.adam(ps, lr=0.01, betas=(0.5, 0.99), weight_decay=0.1, decoupled_weight_decay=decoupled))
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)


def test_adam_and_adamw_differ_when_weight_decay_is_set() -> None:
    coupled = _run(lambda ps: optim.adam(ps, lr=0.01, weight_decay=0.5))
    decoupled = _run(lambda ps: optim.adam(ps, lr=0.01, weight_decay=0.5, decoupled_weight_decay=True))
    assert not torch.allclose(coupled[0], decoupled[0])


def test_sgd_matches_the_loop_implementation() -> None:
    expected = _run(lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9, weight_decay=1e-3, nesterov=True, foreach=False))
    got = _run(lambda ps: optim.sgd(ps, lr=0.01, momentum=0.9, weight_decay=1e-3, nesterov=True))
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)
