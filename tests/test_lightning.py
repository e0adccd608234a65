"""AffinityCallback in a real Lightning fit (tiny module on the digits data, CPU) equals the plain-loop meter."""

import copy
import os

import numpy as np
import pytest
import torch
from torch import nn

try:  # the `lightning` extra: skipped without it, except on CI, which must exercise the callback
    import pytorch_lightning as pl
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("pytorch-lightning is not installed", allow_module_level=True)

from affinity.test_meter import TASKS, Net, digits_labels  # noqa: E402
from probe_support import first_order_sgd_by_hand, probe_losses_of  # noqa: E402

from taskaffinity import AffinityMeter  # noqa: E402
from taskaffinity.affinity.store import AffinityStore  # noqa: E402
from taskaffinity.errors import TaskAffinityError  # noqa: E402
from taskaffinity.loops.lightning import AffinityCallback  # noqa: E402


class DigitsModule(pl.LightningModule):
    def __init__(self, net: Net, labels, *, contract: bool = True):
        super().__init__()
        self.net, self.labels, self.contract = net, labels, contract

    def training_step(self, batch, batch_idx):
        x, rows = batch
        z = self.net.trunk(x)
        task_losses = {t: nn.functional.cross_entropy(self.net.heads[t](z), self.labels[t][rows]) for t in TASKS}
        loss = sum(task_losses.values())
        return {"loss": loss, "task_losses": task_losses} if self.contract else loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


def batches(x, n=8, size=32):
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        rows = torch.randint(0, len(x), (size,), generator=gen)
        out.append((x[rows], rows))
    return out


def fit(module, callback, data, steps):
    trainer = pl.Trainer(
        max_steps=steps,
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=None, shuffle=False))
    return trainer


def test_callback_records_what_the_plain_loop_meter_records(tmp_path):
    x, labels = digits_labels()
    data = batches(x)
    net = Net(seed=4)
    plain = copy.deepcopy(net)

    callback = AffinityCallback(lambda m: m.net.trunk, window=2, out=tmp_path / "aff")
    module = DigitsModule(net, labels)
    fit(module, callback, data, steps=8)

    # the same steps in a plain loop, with the meter's backward in place of loss.backward()
    optimizer = torch.optim.AdamW(plain.parameters(), lr=1e-2)
    meter = AffinityMeter(plain, plain.trunk, tasks=TASKS, optimizer=optimizer, window=2)
    for xb, rows in data:
        z = plain.trunk(xb)
        optimizer.zero_grad()
        meter.backward({t: nn.functional.cross_entropy(plain.heads[t](z), labels[t][rows]) for t in TASKS})
        optimizer.step()

    got, want = callback.meter.store, meter.store
    assert got.estimators == want.estimators and len(got.estimators) == 4  # optimizer rule included
    for estimator in want.estimators:
        np.testing.assert_allclose(
            got.matrix(estimator).to_numpy(), want.matrix(estimator).to_numpy(), rtol=1e-3, atol=1e-7, err_msg=estimator
        )
    for p, q in zip(module.net.parameters(), plain.parameters()):  # Lightning's own step went on unchanged
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    saved = AffinityStore.load(tmp_path / "aff" / "affinity.parquet")
    assert sorted(saved.records["step"].unique()) == [2, 4, 6, 8]
    assert "training_step" not in vars(module)  # the class's own method is back


def test_training_step_without_task_losses_is_one_clear_error():
    x, labels = digits_labels()
    module = DigitsModule(Net(), labels, contract=False)
    with pytest.raises(TaskAffinityError, match="must return a dict with 'loss' and 'task_losses'"):
        fit(module, AffinityCallback("net"), batches(x, n=2), steps=2)


class PartialModule(DigitsModule):
    """Batch k holds every task but 'loop' when k is even; counts say which tasks have labels."""

    def training_step(self, batch, batch_idx):
        x, rows = batch
        z = self.net.trunk(x)
        tasks = [t for t in TASKS if t != "loop" or batch_idx % 2]
        task_losses = {t: nn.functional.cross_entropy(self.net.heads[t](z), self.labels[t][rows]) for t in tasks}
        counts = {t: (0 if t == "digit" and batch_idx == 1 else len(rows)) for t in tasks}
        return {"loss": sum(task_losses.values()), "task_losses": task_losses, "task_counts": counts}


def test_a_later_task_without_tasks_names_the_fix_and_counts_mark_absent_tasks():
    """Without tasks=, the order came from the first step and a task first seen later failed with a bare
    'unknown task'; now the error says where the order came from and what to give. With tasks=, the
    task_counts output marks a task without labels as absent (counted in the store's metadata)."""
    x, labels = digits_labels()
    with pytest.raises(
        TaskAffinityError,
        match="unknown task 'loop' in task_losses .* not in the first step's task_losses .* give tasks=",
    ):
        fit(PartialModule(Net(), labels), AffinityCallback("net", window=1), batches(x, n=2), steps=2)
    callback = AffinityCallback(lambda m: m.net.trunk, tasks=TASKS, window=1)
    fit(PartialModule(Net(), labels), callback, batches(x, n=4), steps=4)
    meta = callback.meter.store.metadata
    assert meta["present_steps"] == {"digit": 3, "parity": 4, "ge5": 4, "loop": 2}
    assert meta["skipped_steps"] == {"digit": {"no_examples": 1, "non_finite": 0}}


def test_nothing_recorded_warns_after_fit_instead_of_failing(tmp_path, caplog):
    x, labels = digits_labels()
    callback = AffinityCallback("net", start=100, out=tmp_path / "aff")
    trainer = fit(DigitsModule(Net(), labels), callback, batches(x, n=2), steps=2)
    assert trainer.global_step == 2 and not (tmp_path / "aff").exists()
    assert "no affinity recorded in 2 micro-batches" in caplog.text


def test_options_the_callback_cannot_take_are_refused_when_it_is_made():
    with pytest.raises(TaskAffinityError, match="unknown keyword 'windw'"):
        AffinityCallback("net", windw=2)
    with pytest.raises(TaskAffinityError, match="keyword 'scaler' is not for this front: task_losses are the unscaled"):
        AffinityCallback("net", scaler=object())


# -- the held-out probe ---------------------------------------------------------------------------
class Snapshots(pl.Callback):
    """The net's state right after each optimizer step (the first batch end at each global_step)."""

    def __init__(self):
        self.states = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.states.setdefault(trainer.global_step, copy.deepcopy(pl_module.net.state_dict()))


def training_batches(x, n):
    gen = torch.Generator().manual_seed(0)
    return [(x[rows], rows) for rows in (torch.randint(0, 1600, (32,), generator=gen) for _ in range(n))]


def fit_steps(module, callbacks, data, steps, accumulate):
    trainer = pl.Trainer(
        max_steps=steps,
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        accumulate_grad_batches=accumulate,
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=None, shuffle=False))
    return trainer


@pytest.mark.parametrize("accumulate", [1, 2])
def test_held_out_probes_are_the_known_answer_at_every_second_optimizer_step(accumulate):
    """6 optimizer steps, probe_every=2: first_order_sgd at optimizer steps 2, 4, 6 (meter steps: micro-batches),
    each η g_i·g_j / L_j by hand on the probe batch with the weights of a run without probes at that step; that
    run ends with the same weights, bit for bit (batch norm and dropout included)."""
    x, labels = digits_labels()
    data = training_batches(x, 6 * accumulate)
    callback = AffinityCallback(lambda m: m.net.trunk, window=2, probe_losses=probe_losses_of(x, labels), probe_every=2)
    probed = DigitsModule(Net(seed=4, norm=True), labels)
    fit_steps(probed, [callback], data, 6, accumulate)
    snapshots = Snapshots()
    plain = DigitsModule(Net(seed=4, norm=True), labels)
    fit_steps(plain, [AffinityCallback(lambda m: m.net.trunk, window=2), snapshots], data, 6, accumulate)

    for (name, p), q in zip(probed.net.state_dict().items(), plain.net.state_dict().values()):
        assert torch.equal(p, q), name  # the probes changed nothing
    records = callback.meter.store.records
    sgd = records[records["estimator"] == "first_order_sgd"]
    assert sorted(sgd["step"].unique()) == [2 * accumulate, 4 * accumulate, 6 * accumulate]
    assert (sgd.groupby("step").size() == len(TASKS) ** 2).all()  # one probe per optimizer step
    assert set(records["estimator"]) >= {"first_order_sgd", "gram", "cosine"}
    assert "first_order_optimizer" not in set(records["estimator"])  # probe_rules default: sgd only
    for optimizer_step in (2, 4, 6):
        at = sgd[sgd["step"] == optimizer_step * accumulate].pivot(index="source", columns="target", values="value")
        want = first_order_sgd_by_hand(snapshots.states[optimizer_step], x, labels, lr=1e-2)
        np.testing.assert_allclose(at.loc[TASKS, TASKS].to_numpy(), want, rtol=1e-4, atol=1e-9)


def test_probe_options_are_refused_when_the_callback_is_made():
    losses = probe_losses_of(*digits_labels())
    with pytest.raises(TaskAffinityError, match="AffinityCallback: probe_every=2 needs probe_losses"):
        AffinityCallback("net", probe_every=2)
    with pytest.raises(TaskAffinityError, match="AffinityCallback: probe_every must be an integer >= 1, got 0"):
        AffinityCallback("net", probe_losses=losses, probe_every=0)
    with pytest.raises(TaskAffinityError, match="AffinityCallback: probe_losses needs probe_every"):
        AffinityCallback("net", probe_losses=losses)
    with pytest.raises(TaskAffinityError, match="unknown probe_rules entry 'adam'"):
        AffinityCallback("net", probe_losses=losses, probe_every=2, probe_rules=["adam"])
    with pytest.raises(TaskAffinityError, match="probe_rules 'optimizer' needs the optimizer"):
        AffinityCallback("net", probe_losses=losses, probe_every=2, probe_rules=["optimizer"], optimizer_rule=False)
    with pytest.raises(TaskAffinityError, match="probe_lookahead must be first_order or exact"):
        AffinityCallback("net", probe_losses=losses, probe_every=2, probe_lookahead="second_order")
