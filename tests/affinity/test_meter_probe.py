"""AffinityMeter.probe: exact lookahead against explicit updates on copies; nothing it touches changes."""

import copy

import numpy as np
import pytest
import torch
from test_meter import TASKS, Net, digits_labels
from torch import nn

from taskaffinity import AffinityMeter


@pytest.fixture(scope="module")
def trained():
    """A net with BatchNorm and Dropout after a few AdamW steps (the optimizer has moments)."""
    x, labels = digits_labels()
    model = Net(seed=1, norm=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        rows = torch.randint(0, len(x), (64,), generator=gen)
        z = model.trunk(x[rows])
        loss = sum(nn.functional.cross_entropy(model.heads[t](z), labels[t][rows]) for t in TASKS)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, optimizer, x, labels


def probe_losses(x, labels):
    """A probe batch drawn at random inside losses_fn: the probe must replay the same draw."""

    def losses_fn(model):
        rows = torch.randperm(len(x))[:150]
        z = model.trunk(x[rows])
        return {t: nn.functional.cross_entropy(model.heads[t](z), labels[t][rows]) for t in TASKS}

    return losses_fn


def test_lookahead_equals_explicit_updates_for_both_rules(trained):
    model, optimizer, x, labels = trained
    meter = AffinityMeter(model, model.trunk, tasks=TASKS, lr=0.05, optimizer=optimizer, vmap=True)
    losses_fn = probe_losses(x, labels)
    rng = torch.get_rng_state()
    frames = meter.probe(losses_fn, lookahead="exact")

    def explicit_losses(net):
        torch.set_rng_state(rng)
        net.eval()
        with torch.no_grad():
            out = losses_fn(net)
        return np.array([float(out[t]) for t in TASKS])

    base = explicit_losses(copy.deepcopy(model))
    for _i, source in enumerate(TASKS):
        # g_i by plain autograd on a deep copy in eval mode
        net = copy.deepcopy(model).eval()
        torch.set_rng_state(rng)
        loss = losses_fn(net)[source]
        grads = torch.autograd.grad(loss, list(net.trunk.parameters()))
        sgd = copy.deepcopy(net)
        with torch.no_grad():
            for p, g in zip(sgd.trunk.parameters(), grads):
                p -= 0.05 * g
        np.testing.assert_allclose(
            frames["lookahead_sgd"].loc[source, TASKS].to_numpy(), 1 - explicit_losses(sgd) / base, rtol=1e-4, atol=2e-6
        )
        # optimizer rule: a real AdamW step with g_i alone, on copies of model and optimizer
        adam = copy.deepcopy(model)
        opt = torch.optim.AdamW(adam.parameters(), lr=1e-2, weight_decay=0.01)
        opt.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        for p in adam.parameters():
            p.grad = None
        for p, g in zip(adam.trunk.parameters(), grads):
            p.grad = g.clone()
        # AdamW decays every parameter it steps; heads have no gradient here, so only the trunk moves
        opt.step()
        np.testing.assert_allclose(
            frames["lookahead_optimizer"].loc[source, TASKS].to_numpy(),
            1 - explicit_losses(adam) / base,
            rtol=1e-4,
            atol=2e-6,
        )
    # the first-order forms: η g_i·g_j / L_j from the same gradients
    net = copy.deepcopy(model).eval()
    torch.set_rng_state(rng)
    out = losses_fn(net)
    g = [
        torch.cat(
            [v.reshape(-1) for v in torch.autograd.grad(out[t], list(net.trunk.parameters()), retain_graph=True)]
        ).double()
        for t in TASKS
    ]
    gram = np.array([[float(a @ b) for b in g] for a in g])
    np.testing.assert_allclose(frames["gram"].loc[TASKS, TASKS].to_numpy(), gram, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(
        frames["first_order_sgd"].loc[TASKS, TASKS].to_numpy(), 0.05 * gram / base[None, :], rtol=1e-4, atol=1e-8
    )
    # at this small η the exact lookahead is close to its first-order form
    off = ~np.eye(len(TASKS), dtype=bool)
    exact, first = frames["lookahead_sgd"].to_numpy()[off], frames["first_order_sgd"].to_numpy()[off]
    assert np.corrcoef(exact, first)[0, 1] > 0.95


@pytest.mark.parametrize("shared_batch", [True, False])
def test_probe_leaves_parameters_buffers_optimizer_and_rng_bit_identical(trained, shared_batch):
    model, optimizer, x, labels = trained
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}  # BatchNorm running stats included
    optim_before = copy.deepcopy(optimizer.state_dict())
    rng_before = torch.get_rng_state()
    grads_before = [p.grad.clone() for p in model.parameters()]
    modes = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: modes.append(mod.training))
        for m in model.modules()
        if isinstance(m, (nn.Dropout, nn.BatchNorm1d))
    ]
    if shared_batch:
        losses_fn = probe_losses(x, labels)
    else:

        def losses_fn(net):  # per-task probe batches
            return {
                t: nn.functional.cross_entropy(
                    net.heads[t](net.trunk(x[k * 50 : k * 50 + 40])), labels[t][k * 50 : k * 50 + 40]
                )
                for k, t in enumerate(TASKS)
            }

    meter = AffinityMeter(model, model.trunk, tasks=TASKS, lr=0.05, optimizer=optimizer, vmap=shared_batch)
    try:
        meter.probe(losses_fn, lookahead="exact")
    finally:
        for hook in hooks:
            hook.remove()
    assert modes and not any(modes)  # every dropout and batch norm ran in eval mode
    assert model.training  # and the mode is restored
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads_before))  # .grad untouched
    assert torch.equal(rng_before, torch.get_rng_state())
    optim_after = optimizer.state_dict()
    for index, slots in optim_before["state"].items():
        for slot, value in slots.items():
            assert torch.equal(value, optim_after["state"][index][slot])
    assert optim_before["param_groups"] == optim_after["param_groups"]
    assert all(isinstance(p, nn.Parameter) for p in model.parameters())  # no tensor left substituted


def test_probe_on_a_subset_of_tasks_and_bad_rules(trained):
    model, optimizer, x, labels = trained
    meter = AffinityMeter(model, model.trunk, tasks=TASKS, lr=0.05)
    frames = meter.probe(
        lambda m: {
            t: nn.functional.cross_entropy(m.heads[t](m.trunk(x[:60])), labels[t][:60]) for t in ["loop", "digit"]
        },
        step=7,
        lookahead="exact",
    )
    assert list(frames["lookahead_sgd"].index) == ["digit", "loop"]  # the meter's task order
    assert set(meter.store.records["step"]) == {7}
    from taskaffinity.errors import TaskAffinityError

    with pytest.raises(TaskAffinityError, match="optimizer rule needs"):
        meter.probe(lambda m: {}, rules=["optimizer"])
    with pytest.raises(TaskAffinityError, match="unknown rule 'adam'"):
        meter.probe(lambda m: {}, rules=["adam"])
    with pytest.raises(TaskAffinityError, match="non-empty dict"):
        meter.probe(lambda m: {})


def test_the_default_probe_is_first_order_and_equals_the_exact_probes_first_order_forms(trained):
    """``lookahead="first_order"`` (the default) records the first-order forms, Gram and cosine with one
    call of ``losses_fn`` and no lookahead pass; they equal those the exact probe records."""
    model, optimizer, x, labels = trained
    calls = []

    def counted(model_):
        calls.append(1)
        return probe_losses(x, labels)(model_)

    cheap = AffinityMeter(model, model.trunk, tasks=TASKS, lr=0.05, optimizer=optimizer)
    exact = AffinityMeter(model, model.trunk, tasks=TASKS, lr=0.05, optimizer=optimizer)  # a probe restores everything
    rng = torch.get_rng_state()
    first = cheap.probe(counted)
    assert len(calls) == 1 and set(first) == {"gram", "cosine", "first_order_sgd", "first_order_optimizer"}
    torch.set_rng_state(rng)
    both = exact.probe(counted, lookahead="exact")
    assert len(calls) == 1 + 1 + 2 * len(TASKS)  # gradients, then one pass per source and rule
    for name, frame in first.items():
        np.testing.assert_allclose(frame.to_numpy(), both[name].to_numpy(), rtol=1e-5, atol=1e-9)
    with pytest.raises(Exception, match="lookahead must be first_order or exact, got 'taylor'"):
        cheap.probe(counted, lookahead="taylor")
