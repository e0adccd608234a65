"""The probe's numbers against explicit, hand-computed updates and dot products (tiny model)."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_config

from taskaffinity.affinity.probe import LookaheadRecorder
from taskaffinity.affinity.updates import optimizer_update
from taskaffinity.api import build
from taskaffinity.training.loop import JointTrainer

TASKS = ["trec6", "vader_tweets", "wn_relation", "wn_define"]


@pytest.fixture(scope="module")
def trained():
    """A tiny model after a few AdamW steps (so the optimizer has moments), plus a probe."""
    config = tiny_config(TASKS, steps=5, lr=1e-3, eval_every=100)
    tasks, model, tokenizer = build(config, progress=False)
    trainer = JointTrainer(config, tasks, model, tokenizer, progress=False)
    for step in range(1, 4):
        trainer.train_step(step)
    recorder = LookaheadRecorder(every=1, batch_size=12, lookahead_lr=1e-2, seed=5)
    return trainer, recorder


def explicit_losses(model, batches, names):
    model.eval()
    with torch.no_grad():
        return torch.stack([model.loss(n, batches[n])[0] for n in names]).double()


def test_lookahead_equals_explicit_update_for_both_rules(trained):
    trainer, recorder = trained
    arrays = recorder.probe(trainer, step=4)
    names = list(trainer.tasks)
    batches = recorder.probe_batches(trainer, 4)
    base = explicit_losses(trainer.model, batches, names)
    shared = dict(trainer.model.shared_parameters())
    for i, source in enumerate(names):
        # g_i by plain autograd in eval mode, on a deep copy: nothing shared with the recorder
        sgd_model = copy.deepcopy(trainer.model).eval()
        loss, _ = sgd_model.loss(source, batches[source])
        params = [p for n, p in sgd_model.named_parameters() if n in shared]
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= 1e-2 * g
        expected_sgd = 1 - explicit_losses(sgd_model, batches, names) / base
        np.testing.assert_allclose(arrays["lookahead_sgd"][i], expected_sgd.numpy(), atol=2e-6, rtol=1e-4)

        # optimizer rule: a real AdamW step on a copy of model and optimizer, with g_i only
        adam_model = copy.deepcopy(trainer.model)
        optimizer = torch.optim.AdamW(trainer.param_groups_for(adam_model))
        optimizer.load_state_dict(copy.deepcopy(trainer.optimizer.state_dict()))
        for _n, p in adam_model.named_parameters():
            p.grad = None
        adam_shared = [p for n, p in adam_model.named_parameters() if n in shared]
        for p, g in zip(adam_shared, grads):
            p.grad = g.clone()
        optimizer.step()
        expected_opt = 1 - explicit_losses(adam_model, batches, names) / base
        np.testing.assert_allclose(arrays["lookahead_optimizer"][i], expected_opt.numpy(), atol=2e-6, rtol=1e-4)


def test_first_order_values_are_explicit_dot_products(trained):
    trainer, recorder = trained
    arrays = recorder.probe(trainer, step=6)
    names = list(trainer.tasks)
    batches = recorder.probe_batches(trainer, 6)
    model = copy.deepcopy(trainer.model).eval()
    shared = dict(model.shared_parameters())
    params = list(shared.values())
    losses, grads = [], []
    for name in names:
        loss, _ = model.loss(name, batches[name])
        losses.append(float(loss.detach()))
        grads.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]).double())
    live = [p for _, p in trainer.model.shared_parameters()]
    for i in range(len(names)):
        g_list = [g.float() for g in _split(grads[i], params)]
        u = torch.cat([d.reshape(-1) for d in optimizer_update(trainer.optimizer, live, g_list)]).double()
        for j in range(len(names)):
            gram = float(grads[i] @ grads[j])
            assert arrays["gram"][i, j] == pytest.approx(gram, rel=1e-4, abs=1e-9)
            assert arrays["cosine"][i, j] == pytest.approx(
                gram / float(grads[i].norm() * grads[j].norm()), rel=1e-4, abs=1e-7
            )
            assert arrays["first_order_sgd"][i, j] == pytest.approx(1e-2 * gram / losses[j], rel=1e-4, abs=1e-9)
            assert arrays["first_order_optimizer"][i, j] == pytest.approx(
                float(-u @ grads[j]) / losses[j], rel=1e-3, abs=1e-9
            )


def _split(vector, like):
    out, offset = [], 0
    for p in like:
        out.append(vector[offset : offset + p.numel()].view_as(p))
        offset += p.numel()
    return out


def test_probe_leaves_model_optimizer_and_rng_bit_identical(trained):
    trainer, recorder = trained
    model = trainer.model
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optim_before = copy.deepcopy(trainer.optimizer.state_dict())
    rng_before = torch.get_rng_state()
    modes = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: modes.append(mod.training))
        for m in model.modules()
        if isinstance(m, torch.nn.Dropout)
    ]
    try:
        recorder.probe(trainer, step=8)
    finally:
        for hook in hooks:
            hook.remove()
    assert modes and not any(modes)  # every dropout ran in eval mode during the probe
    assert model.training  # and the mode is restored
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # parameters and buffers
    assert torch.equal(rng_before, torch.get_rng_state())
    optim_after = trainer.optimizer.state_dict()
    for index, slots in optim_before["state"].items():
        for slot, value in slots.items():
            assert torch.equal(value, optim_after["state"][index][slot])
    assert optim_before["param_groups"] == optim_after["param_groups"]


def test_sampled_pairs_are_exactly_the_full_probes_values(trained):
    """Sampling sources and targets only skips work: each sampled pair equals the full probe's value."""
    trainer, recorder = trained
    names = list(trainer.tasks)
    full = recorder.probe(trainer, step=6)
    sampled = LookaheadRecorder(
        rules=recorder.rules, every=1, batch_size=12, lookahead_lr=1e-2, seed=5, sources=2, targets=3
    )
    sampled.probe(trainer, step=6)
    records = pd.DataFrame(sampled.records)
    sources, targets = sampled.pairs(6, names)
    assert len(sources) == 2 and len(targets) == 3
    for estimator, rows in records.groupby("estimator"):
        assert len(rows) == 6 and set(rows.source) == set(sources) and set(rows.target) == set(targets)
        for row in rows.itertuples():
            expected = full[estimator][names.index(row.source), names.index(row.target)]
            assert row.value == pytest.approx(expected, rel=1e-4, abs=1e-7), (estimator, row.source, row.target)
    # other steps sample other pairs, and over many probes every pair is covered
    covered = {
        (s, t) for step in range(1, 60) for s in sampled.pairs(step, names)[0] for t in sampled.pairs(step, names)[1]
    }
    assert covered == {(s, t) for s in names for t in names}


def test_first_order_probes_equal_the_exact_probes_first_order_forms(trained):
    """lookahead: first_order skips the lookahead passes and records the same first-order values."""
    trainer, recorder = trained
    exact = recorder.probe(trainer, step=7)
    cheap = LookaheadRecorder(every=1, batch_size=12, lookahead_lr=1e-2, seed=5, exact=False).probe(trainer, step=7)
    assert set(cheap) == {"gram", "cosine", "first_order_sgd", "first_order_optimizer"}
    for name, values in cheap.items():
        np.testing.assert_allclose(values, exact[name], rtol=1e-6, atol=1e-12)
