"""The optimizer lookahead rule against the real optimizer's step, without mutating it."""

import copy

import pytest
import torch

from taskaffinity.affinity.updates import optimizer_update, sgd_update


@pytest.mark.parametrize("make", [
    lambda p: torch.optim.AdamW([p], lr=1e-3, weight_decay=0.01),
    lambda p: torch.optim.Adam([p], lr=1e-3, weight_decay=0.01, amsgrad=True),
    lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda p: torch.optim.AdamW([p], lr=1e-3),  # no state yet: the first step
])
def test_update_equals_the_real_step(make):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(64))
    optimizer = make(p)
    if optimizer.defaults.get("betas") is None or optimizer.defaults["weight_decay"]:
        for _ in range(3):
            p.grad = torch.randn(64)
            optimizer.step()
    g = torch.randn(64)
    state_before = copy.deepcopy(optimizer.state_dict())
    delta = optimizer_update(optimizer, [p], [g])[0]
    assert _same_state(state_before, optimizer.state_dict())  # read, never written

    twin = torch.nn.Parameter(p.detach().clone())
    reference = make(twin)
    reference.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    twin.grad = g.clone()
    reference.step()
    # equal up to float32 rounding of p + Δ (a couple of ulps of |p|)
    torch.testing.assert_close(p.detach() + delta, twin.detach(), atol=1e-7, rtol=2.5e-7)


def test_sgd_rule():
    g = [torch.tensor([1.0, -2.0])]
    assert torch.equal(sgd_update(g, 0.5)[0], torch.tensor([-0.5, 1.0]))


def _same_state(a, b):
    return all(torch.equal(v, b["state"][i][k]) if torch.is_tensor(v) else v == b["state"][i][k]
               for i, slots in a["state"].items() for k, v in slots.items())
