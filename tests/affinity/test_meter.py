"""AffinityMeter in a plain loop: gradients, streamed estimators, windows, outputs (real digits data)."""

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from taskaffinity import AffinityMeter
from taskaffinity.affinity.store import AffinityStore
from taskaffinity.affinity.updates import optimizer_update
from taskaffinity.errors import TaskAffinityError

TASKS = ["digit", "parity", "ge5", "loop"]


def digits_labels():
    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target)
    labels = {
        "digit": y,
        "parity": y % 2,
        "ge5": (y >= 5).long(),
        "loop": torch.isin(y, torch.tensor([0, 4, 6, 8, 9])).long(),
    }
    return x, labels


class Net(nn.Module):
    def __init__(self, seed=0, norm=False):
        super().__init__()
        torch.manual_seed(seed)
        norms = [nn.BatchNorm1d(24), nn.Dropout(0.2)] if norm else []
        layers = [nn.Linear(64, 24), *norms, nn.ReLU(), nn.Linear(24, 16), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({t: nn.Linear(16, 10 if t == "digit" else 2) for t in TASKS})


@pytest.fixture(scope="module")
def data():
    return digits_labels()


def shared_losses(model, x, labels, rows):
    z = model.trunk(x[rows])
    return {t: nn.functional.cross_entropy(model.heads[t](z), labels[t][rows]) for t in TASKS}


def per_task_losses(model, x, labels, rows_of):
    return {t: nn.functional.cross_entropy(model.heads[t](model.trunk(x[r])), labels[t][r]) for t, r in rows_of.items()}


def flat_grad(loss, params):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params, retain_graph=True)]).double()


@pytest.mark.parametrize("shared_batch, vmap", [(True, False), (True, True), (False, False)])
def test_grad_is_the_weighted_sum_and_windows_are_means_of_explicit_products(data, shared_batch, vmap):
    x, labels = data
    model = Net()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    meter = AffinityMeter(model, model.trunk, tasks=TASKS, lr=0.05, optimizer=optimizer, window=2, vmap=vmap)
    weights = {"digit": 0.5, "parity": 1.0, "ge5": 2.0, "loop": 1.5}
    gen = torch.Generator().manual_seed(0)
    expected = {e: [] for e in meter.estimators}
    shared = list(model.trunk.parameters())
    for _step in range(4):
        if shared_batch:
            rows = torch.randint(0, len(x), (32,), generator=gen)
            make = lambda m, rows=rows: shared_losses(m, x, labels, rows)  # noqa: E731
        else:  # heterogeneous batch: each task its own rows
            rows_of = {t: torch.randint(0, len(x), (16,), generator=gen) for t in TASKS}
            make = lambda m, rows_of=rows_of: per_task_losses(m, x, labels, rows_of)  # noqa: E731
        # explicit: per-task gradients and the plain backward of the weighted sum, on a copy
        twin = copy.deepcopy(model)
        twin_losses = make(twin)
        g = [flat_grad(twin_losses[t], list(twin.trunk.parameters())) for t in TASKS]
        L = np.array([float(twin_losses[t].detach()) for t in TASKS])
        sum(weights[t] * twin_losses[t] for t in TASKS).backward()
        gram = np.array([[float(a @ b) for b in g] for a in g])
        u = [
            torch.cat(
                [d.reshape(-1) for d in optimizer_update(optimizer, shared, [v.float() for v in _split(gi, shared)])]
            ).double()
            for gi in g
        ]
        products = np.array([[float(-ui @ gj) for gj in g] for ui in u])
        norms = np.sqrt(np.diag(gram))
        step_values = {
            "stream_gram": gram,
            "stream_cosine": gram / np.outer(norms, norms),
            "stream_first_order_sgd": 0.05 * gram / L[None, :],
            "stream_first_order_optimizer": products / L[None, :],
        }
        for e in expected:
            expected[e].append(step_values[e])

        optimizer.zero_grad()
        meter.backward(make(model), weights=weights)
        for (name, p), (_, q) in zip(model.named_parameters(), twin.named_parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)
        optimizer.step()

    store = meter.store
    assert sorted(store.records["step"].unique()) == [2, 4]
    for e, per_step in expected.items():
        for k, end in enumerate([2, 4]):
            want = np.mean(per_step[2 * k : 2 * k + 2], axis=0)
            got = store.matrix(e, window=(end, end)).loc[TASKS, TASKS].to_numpy()
            np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-8, err_msg=f"{e} window ending {end}")


def _split(vector, like):
    out, offset = [], 0
    for p in like:
        out.append(vector[offset : offset + p.numel()].view_as(p))
        offset += p.numel()
    return out


def test_absent_tasks_start_and_every(data):
    """A step without some task adds nothing to its pairs; unrecorded steps are a plain backward."""
    x, labels = data
    model = Net()
    meter = AffinityMeter(model, model.trunk, tasks=TASKS, lr=0.1, window=3, start=2, every=2)
    gen = torch.Generator().manual_seed(1)
    seen = []
    for step in range(1, 9):
        present = TASKS if step != 4 else ["digit", "parity"]  # step 4: two tasks only
        rows_of = {t: torch.randint(0, len(x), (8,), generator=gen) for t in present}
        losses = per_task_losses(model, x, labels, rows_of)
        twin = copy.deepcopy(model)
        sum(per_task_losses(twin, x, labels, rows_of).values()).backward()
        seen.append(meter.recording())
        model.zero_grad()
        meter.backward(losses)
        for p, q in zip(model.parameters(), twin.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6)
    assert seen == [False, True, False, True, False, True, False, True]  # steps 2, 4, 6, 8
    # the first window (steps 2, 4, 6) ends at step 6: digit-parity seen 3 times, loop-ge5 twice
    window = meter.store.records.query("step == 6 and estimator == 'stream_gram'")
    assert len(window) == 16 and meter.stream.means.counts is not None  # step 8 opened the next window
    state = meter.state_dict()
    assert state["recorded_in_window"] == 1
    assert json.loads(json.dumps(state)) == state


def test_record_keeps_the_graph_and_leaves_grad_alone(data):
    x, labels = data
    model = Net()
    meter = AffinityMeter(model, model.trunk, tasks=TASKS, lr=0.1, window=1)
    losses = shared_losses(model, x, labels, torch.arange(40))
    meter.record(losses)
    assert all(p.grad is None for p in model.parameters())
    sum(losses.values()).backward()  # the caller's own backward still works
    assert all(p.grad is not None for p in model.parameters())
    assert set(meter.store.estimators) == {"stream_gram", "stream_cosine", "stream_first_order_sgd"}


def test_bad_input_names_the_culprit(data):
    x, labels = data
    model = Net()
    with pytest.raises(TaskAffinityError, match="lr"):
        AffinityMeter(model, model.trunk, tasks=TASKS)
    with pytest.raises(TaskAffinityError, match="parameters of the model"):
        AffinityMeter(model, nn.Linear(2, 2), tasks=TASKS, lr=0.1)
    with pytest.raises(TaskAffinityError, match="stream_gramm"):
        AffinityMeter(model, model.trunk, tasks=TASKS, lr=0.1, estimators=["stream_gramm"])
    with pytest.raises(TaskAffinityError, match="needs optimizer"):
        AffinityMeter(model, model.trunk, tasks=TASKS, lr=0.1, estimators=["stream_first_order_optimizer"])
    with pytest.raises(TaskAffinityError, match="duplicate"):
        AffinityMeter(model, model.trunk, tasks=["a", "a"], lr=0.1)
    meter = AffinityMeter(model, model.trunk, tasks=TASKS, lr=0.1)
    losses = shared_losses(model, x, labels, torch.arange(8))
    with pytest.raises(TaskAffinityError, match="unknown task 'colour'"):
        meter.backward({**losses, "colour": losses["digit"]})
    with pytest.raises(TaskAffinityError, match="no weight for task 'parity'"):
        meter.backward(losses, weights={"digit": 1.0, "ge5": 1.0, "loop": 1.0})
    with pytest.raises(TaskAffinityError, match="nothing recorded"):
        meter.save("unused")


def test_save_writes_what_the_affinity_run_writes(data, tmp_path):
    x, labels = data
    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    meter = AffinityMeter(model, model.trunk, tasks=TASKS, optimizer=optimizer, window=2)
    assert meter.lr == 1e-2  # taken from the optimizer
    gen = torch.Generator().manual_seed(2)
    for step in range(12):
        optimizer.zero_grad()
        meter.backward(shared_losses(model, x, labels, torch.randint(0, len(x), (32,), generator=gen)))
        optimizer.step()
        if step % 4 == 3:
            meter.probe(lambda m: shared_losses(m, x, labels, torch.arange(200)), lookahead="exact")
    store = meter.save(tmp_path / "out", n_boot=50)
    names = {p.name for p in (tmp_path / "out").iterdir()}
    for e in store.estimators:
        assert {f"matrix_{e}.csv", f"summary_{e}.csv", f"heatmap_{e}.png"} <= names
    loaded = AffinityStore.load(tmp_path / "out" / "affinity.parquet")
    pd.testing.assert_frame_equal(loaded.records, meter.store.records)
    assert loaded.metadata["tasks"] == TASKS and loaded.metadata["vmap"] is False
    report = json.loads((tmp_path / "out" / "fidelity.json").read_text())
    assert report["reliability"]["stream_gram"]["samples"] == 6
    assert "lookahead_sgd vs first_order_sgd" in report["agreement"]
    assert set(store.estimators) == {
        "stream_gram",
        "stream_cosine",
        "stream_first_order_sgd",
        "stream_first_order_optimizer",
        "gram",
        "cosine",
        "lookahead_sgd",
        "first_order_sgd",
        "lookahead_optimizer",
        "first_order_optimizer",
    }


def test_gradients_from_elsewhere_give_the_same_records(data):
    """begin_step / add_gradients / end_step (a trainer that has per-task gradients) == backward."""
    x, labels = data
    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    fed = copy.deepcopy(model)
    fed_optimizer = torch.optim.Adam(fed.parameters(), lr=1e-2)
    meter = AffinityMeter(model, model.trunk, tasks=TASKS, optimizer=optimizer, window=2)
    other = AffinityMeter(fed, fed.trunk, tasks=TASKS, optimizer=fed_optimizer, window=2)
    for step in range(4):
        rows = torch.arange(step * 40, step * 40 + 40)
        optimizer.zero_grad()
        meter.backward(shared_losses(model, x, labels, rows))
        optimizer.step()
        fed_optimizer.zero_grad()
        losses = shared_losses(fed, x, labels, rows)
        assert other.begin_step()
        for task in reversed(TASKS):  # the order gradients arrive in does not matter
            grads = torch.autograd.grad(losses[task], list(fed.trunk.parameters()), retain_graph=True)
            other.add_gradients(task, float(losses[task].detach()), grads)
        sum(losses.values()).backward()
        other.end_step()
        fed_optimizer.step()
    pd.testing.assert_frame_equal(meter.store.records, other.store.records, rtol=1e-5, atol=1e-9)


def test_feature_estimators_are_products_of_representation_gradients(data):
    """feature_gram = c_i·c_j with c_i = ∂L_i/∂z; .grad as the plain backward; parameter estimators optional."""
    x, labels = data
    model = Net()
    meter = AffinityMeter(
        model, model.trunk, tasks=TASKS, lr=0.1, window=1, estimators=["feature_gram", "feature_cosine"]
    )
    rows = torch.arange(50)
    z = model.trunk(x[rows])
    losses = {t: nn.functional.cross_entropy(model.heads[t](z), labels[t][rows]) for t in TASKS}
    c = [torch.autograd.grad(losses[t], z, retain_graph=True)[0].reshape(-1).double() for t in TASKS]
    twin = copy.deepcopy(model)
    zt = twin.trunk(x[rows])
    sum(nn.functional.cross_entropy(twin.heads[t](zt), labels[t][rows]) for t in TASKS).backward()
    meter.backward(losses, features=z)
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6)
    gram = np.array([[float(a @ b) for b in c] for a in c])
    np.testing.assert_allclose(meter.store.matrix("feature_gram").loc[TASKS, TASKS].to_numpy(), gram, rtol=1e-4)
    with pytest.raises(TaskAffinityError, match="needs backward\\(..., features=z\\)"):
        meter.backward(shared_losses(model, x, labels, rows))


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3),  # directions via optimizer_update
        lambda ps: torch.optim.AdamW(ps, lr=1e-2),
    ],
)  # fused blocked pass
def test_sketched_and_non_adam_paths_agree_with_the_exact_stream(data, make_optimizer):
    """With a CountSketch of d ≫ P the streamed estimators stay within 5 % of the exact ones, for
    AdamW (fused blocked pass unsketched, stored sketched directions) and for SGD with momentum
    (directions from ``optimizer_update``, stored)."""
    x, labels = data
    runs = {}
    for sketch in (None, 50_000):
        model = Net(seed=3)
        optimizer = make_optimizer(model.parameters())
        meter = AffinityMeter(model, model.trunk, tasks=TASKS, optimizer=optimizer, window=2, sketch_dim=sketch)
        for step in range(4):
            rows = torch.arange(step * 60, step * 60 + 60)
            optimizer.zero_grad()
            meter.backward(shared_losses(model, x, labels, rows))
            optimizer.step()
        runs[sketch] = meter.store
    exact, sketched = runs[None], runs[50_000]
    off = ~np.eye(len(TASKS), dtype=bool)
    for estimator in ("stream_cosine", "stream_first_order_optimizer"):
        a = exact.matrix(estimator).to_numpy()[off]
        b = sketched.matrix(estimator).to_numpy()[off]
        assert np.abs(a - b).max() <= 0.05 * np.abs(a).max(), estimator


def test_a_refused_step_changes_nothing(data):
    x, labels = data
    model = Net()
    meter = AffinityMeter(model, model.trunk, tasks=TASKS, lr=0.1, estimators=["feature_cosine"])
    with pytest.raises(TaskAffinityError, match="features=z"):
        meter.backward(shared_losses(model, x, labels, torch.arange(10)))
    model.trunk.requires_grad_(False)
    with pytest.raises(TaskAffinityError, match="frozen trunk"):
        meter.backward(shared_losses(model, x, labels, torch.arange(10)))
    assert meter.step == 0 and all(p.grad is None for p in model.parameters())


def test_a_task_whose_loss_ignores_the_shared_parameters_is_named(data, caplog):
    x, labels = data
    net = Net()
    meter = AffinityMeter(net, net.trunk, tasks=TASKS, lr=0.1, window=1)
    z = net.trunk(x[:32])
    losses = {
        t: nn.functional.cross_entropy(net.heads[t](z.detach() if t == "loop" else z), labels[t][:32]) for t in TASKS
    }
    meter.backward(losses)
    assert "the loss of task 'loop' does not depend on the shared parameters" in caplog.text
    gram = meter.store.matrix("stream_gram")
    assert gram.loc["loop", "loop"] == 0 and gram.loc["digit", "digit"] > 0
