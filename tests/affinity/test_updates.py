"""The optimizer lookahead rule against the real optimizer's step, without mutating it."""

import copy

import pytest
import torch

from taskaffinity.affinity.updates import optimizer_update, optimizer_update_rows, sgd_update


@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.optim.AdamW([p], lr=1e-3, weight_decay=0.01),
        lambda p: torch.optim.Adam([p], lr=1e-3, weight_decay=0.01, amsgrad=True),
        lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        lambda p: torch.optim.AdamW([p], lr=1e-3),  # no state yet: the first step
    ],
)
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
    return all(
        torch.equal(v, b["state"][i][k]) if torch.is_tensor(v) else v == b["state"][i][k]
        for i, slots in a["state"].items()
        for k, v in slots.items()
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.optim.AdamW([p], lr=1e-3, weight_decay=0.01),
        lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01),
    ],
)
def test_row_update_equals_those_rows_of_the_full_update(make):
    torch.manual_seed(1)
    weight = torch.nn.Parameter(torch.randn(30, 4))
    optimizer = make(weight)
    for _ in range(2):
        weight.grad = torch.randn(30, 4)
        optimizer.step()
    rows = torch.tensor([2, 7, 19])
    grad = torch.zeros(30, 4)
    grad[rows] = torch.randn(3, 4)
    full = optimizer_update(optimizer, [weight], [grad])[0]
    torch.testing.assert_close(optimizer_update_rows(optimizer, weight, rows, grad[rows]), full[rows])
    # rows without gradient still move (momentum, weight decay): the streamed estimator relies on this split
    assert full[0].abs().sum() > 0


@pytest.mark.parametrize("steps_before", [0, 3])
def test_flat_adam_update_equals_the_per_tensor_rule(steps_before):
    from taskaffinity.affinity.updates import FlatAdamUpdate

    torch.manual_seed(2)
    decayed, bias = torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3))
    optimizer = torch.optim.AdamW(
        [{"params": [decayed], "weight_decay": 0.1}, {"params": [bias], "weight_decay": 0.0}], lr=1e-2
    )
    for _ in range(steps_before):
        decayed.grad, bias.grad = torch.randn(5, 3), torch.randn(3)
        optimizer.step()
    grads = [torch.randn(5, 3), torch.randn(3)]
    fast = FlatAdamUpdate([decayed, bias])
    assert fast.refresh(optimizer)
    flat_g = torch.cat([g.reshape(-1) for g in grads])
    got = fast.minus_update(flat_g, torch.empty(18))
    expected = -torch.cat([d.reshape(-1) for d in optimizer_update(optimizer, [decayed, bias], grads)])
    torch.testing.assert_close(got, expected)


def test_flat_adam_update_declines_what_it_does_not_cover():
    from taskaffinity.affinity.updates import FlatAdamUpdate

    p = torch.nn.Parameter(torch.randn(4))
    fast = FlatAdamUpdate([p])
    assert fast.refresh(torch.optim.AdamW([p]))
    assert not fast.refresh(torch.optim.AdamW([p], amsgrad=True))
    assert not fast.refresh(torch.optim.Adam([p], weight_decay=0.1))
    assert not fast.refresh(torch.optim.SGD([p], lr=0.1))
    assert not fast.refresh(torch.optim.AdamW([torch.nn.Parameter(torch.randn(4))]))  # p not managed


@pytest.mark.parametrize("rows", [[0, 1, 2, 3], [3, 1]])
def test_block_products_equal_explicit_gram_and_optimizer_products(rows):
    """The blocked one-pass products equal g_i·g_j and −Δ_i·g_j from the per-tensor optimizer rule,
    for all rows or a subset in any order, with blocks that split parameters and a partial last block."""
    from taskaffinity.affinity.gradient_rows import block_products
    from taskaffinity.affinity.updates import FlatAdamUpdate

    torch.manual_seed(3)
    params = [torch.nn.Parameter(torch.randn(7, 5)), torch.nn.Parameter(torch.randn(11))]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.05)
    for _ in range(2):
        for p in params:
            p.grad = torch.randn_like(p)
        optimizer.step()
    grads = [[torch.randn_like(p) for p in params] for _ in range(4)]
    g = torch.stack([torch.cat([t.reshape(-1) for t in task]) for task in grads])
    fast = FlatAdamUpdate(params)
    assert fast.refresh(optimizer)
    index = torch.tensor(rows)
    gram, products = block_products(g, rows, fast, block_elements=3 * len(rows))  # 46 columns in blocks of 3
    minus = torch.stack(
        [-torch.cat([d.reshape(-1) for d in optimizer_update(optimizer, params, grads[r])]) for r in rows]
    )
    torch.testing.assert_close(gram, g[index] @ g[index].T)
    torch.testing.assert_close(products, minus @ g[index].T)
    assert block_products(g, rows)[1] is None
