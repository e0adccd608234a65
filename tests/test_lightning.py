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

from taskaffinity import AffinityMeter  # noqa: E402
from taskaffinity.affinity.store import AffinityStore  # noqa: E402
from taskaffinity.errors import TaskAffinityError  # noqa: E402
from taskaffinity.lightning import AffinityCallback  # noqa: E402

from affinity.test_meter import TASKS, Net, digits_labels  # noqa: E402


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
    trainer = pl.Trainer(max_steps=steps, max_epochs=1, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[callback])
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
        np.testing.assert_allclose(got.matrix(estimator).to_numpy(), want.matrix(estimator).to_numpy(),
                                   rtol=1e-3, atol=1e-7, err_msg=estimator)
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
    with pytest.raises(TaskAffinityError, match="unknown task 'loop' in task_losses .* not in the first step's "
                                                "task_losses .* give tasks="):
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
