import numpy as np
import pytest

from taskaffinity.training.sampling import HeterogeneousSampler, task_probabilities

SIZES = {"big": 900, "mid": 90, "small": 10}


def test_probabilities():
    assert task_probabilities(SIZES, "natural") == pytest.approx({"big": 0.9, "mid": 0.09, "small": 0.01})
    assert task_probabilities(SIZES, "uniform") == pytest.approx(dict.fromkeys(SIZES, 1 / 3))
    t2 = task_probabilities(SIZES, "temperature", 2.0)
    root = {k: np.sqrt(v) for k, v in SIZES.items()}
    assert t2 == pytest.approx({k: v / sum(root.values()) for k, v in root.items()})
    with pytest.raises(ValueError, match="training.sampling"):
        task_probabilities(SIZES, "proportional")


def test_batches_mix_tasks_and_follow_natural_proportions():
    sampler = HeterogeneousSampler(SIZES, batch_size=50, seed=1)
    totals = dict.fromkeys(SIZES, 0)
    mixed = 0
    for step in range(1, 401):
        counts = sampler.counts(step)
        assert sum(counts.values()) == 50
        mixed += len(counts) > 1
        for task, c in counts.items():
            totals[task] += c
    assert mixed == 400  # heterogeneous: every update holds several tasks
    share = {k: v / 20000 for k, v in totals.items()}
    assert share["big"] == pytest.approx(0.9, abs=0.01) and share["small"] == pytest.approx(0.01, abs=0.005)
    # every task whose expected share is at least one example is in every update
    assert all(sampler.counts(step)["big"] >= 45 and sampler.counts(step).get("mid", 0) >= 4 for step in range(1, 50))


def test_rows_are_drawn_without_replacement_within_an_epoch():
    sampler = HeterogeneousSampler({"t": 10}, batch_size=4, seed=0)
    rows = np.concatenate([sampler.take("t", 4), sampler.take("t", 4), sampler.take("t", 2)])
    assert sorted(rows) == list(range(10))
    next_epoch = np.concatenate([sampler.take("t", 5), sampler.take("t", 5)])
    assert sorted(next_epoch) == list(range(10)) and not np.array_equal(next_epoch, rows)


def test_restored_state_continues_the_same_stream():
    a = HeterogeneousSampler(SIZES, batch_size=8, seed=4)
    for step in range(1, 30):
        a.draw(step)
    b = HeterogeneousSampler(SIZES, batch_size=8, seed=4)
    b.load_state_dict(a.state_dict())
    for step in range(30, 60):
        da, db = a.draw(step), b.draw(step)
        assert da.keys() == db.keys() and all(np.array_equal(da[k], db[k]) for k in da)


def test_tasks_per_step_caps_tasks_per_update_and_keeps_proportions_unbiased():
    sizes = {f"t{i}": 100 * (i + 1) for i in range(12)}
    sampler = HeterogeneousSampler(sizes, batch_size=30, seed=2, tasks_per_step=4)
    expected = task_probabilities(sizes, "natural")
    totals = dict.fromkeys(sizes, 0)
    steps = 3000
    for step in range(1, steps + 1):
        counts = sampler.counts(step)
        assert sum(counts.values()) == 30 and len(counts) <= 4
        assert all(c in (7, 8, 14, 15, 16, 21, 22, 23, 30) for c in counts.values())  # whole slots of 7-8
        for task, c in counts.items():
            totals[task] += c
    share = {k: v / (30 * steps) for k, v in totals.items()}
    for task in sizes:  # a few standard errors of the slot draw
        assert share[task] == pytest.approx(expected[task], abs=0.006), task
    assert sampler.counts(17) == HeterogeneousSampler(sizes, batch_size=30, seed=2, tasks_per_step=4).counts(17)
    with pytest.raises(ValueError, match="tasks_per_step"):
        HeterogeneousSampler(sizes, batch_size=30, tasks_per_step=0)
