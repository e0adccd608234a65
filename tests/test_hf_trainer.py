"""AffinityTrainer (a Hugging Face ``Trainer``) on the digits data, CPU: it records what the plain-loop
meter records on the same batches, leaves the Trainer's own update unchanged, and resumes its open
window from a Trainer checkpoint."""

import copy
import os

import numpy as np
import pytest
import torch
from torch import nn

try:  # the Trainer needs accelerate (a test extra): skipped without it, except on CI
    import accelerate  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("accelerate is not installed", allow_module_level=True)

import transformers  # noqa: E402
from affinity.test_meter import TASKS, Net, digits_labels  # noqa: E402
from probe_support import first_order_sgd_by_hand, probe_losses_of  # noqa: E402

from taskaffinity import AffinityMeter  # noqa: E402
from taskaffinity.affinity.store import AffinityStore  # noqa: E402
from taskaffinity.errors import TaskAffinityError  # noqa: E402
from taskaffinity.loops.hf_trainer import STATE_FILE, AffinityTrainer  # noqa: E402

LR = 1e-2


class DigitsModel(nn.Module):
    """A multi-task model as a Trainer user writes one: forward returns loss and task_losses."""

    def __init__(self, net: Net, labels, *, contract: bool = True):
        super().__init__()
        self.net, self.labels, self.contract = net, labels, contract
        self.seen: list[torch.Tensor] = []  # the rows of every training batch, in order

    def forward(self, x, rows):
        if self.training:
            self.seen.append(rows.clone())
        z = self.net.trunk(x)
        task_losses = {t: nn.functional.cross_entropy(self.net.heads[t](z), self.labels[t][rows]) for t in TASKS}
        loss = sum(task_losses.values())
        return {"loss": loss, "task_losses": task_losses} if self.contract else {"loss": loss}


class Rows(torch.utils.data.Dataset):
    def __init__(self, x, n=256):
        self.x, self.n = x, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": self.x[i], "rows": torch.tensor(i)}


def arguments(out, steps, save_steps=None, **more):
    return transformers.TrainingArguments(
        **more,
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=32,
        learning_rate=LR,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
        optim="adamw_torch",
        use_cpu=True,
        report_to=[],
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )


def replay(net, labels, x, seen, window):
    """The same batches in a plain loop: the meter's backward in place of loss.backward()."""
    optimizer = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=0.0)
    meter = AffinityMeter(net, net.trunk, tasks=TASKS, optimizer=optimizer, window=window)
    for rows in seen:
        z = net.trunk(x[rows])
        optimizer.zero_grad()
        meter.backward({t: nn.functional.cross_entropy(net.heads[t](z), labels[t][rows]) for t in TASKS})
        optimizer.step()
    return meter


def test_trainer_records_what_the_plain_loop_meter_records(tmp_path):
    x, labels = digits_labels()
    net = Net(seed=4)
    plain = copy.deepcopy(net)
    model = DigitsModel(net, labels)
    trainer = AffinityTrainer(
        model=model,
        args=arguments(tmp_path / "hf", steps=8),
        train_dataset=Rows(x),
        shared="net.trunk",
        affinity_out=tmp_path / "aff",
        meter_kwargs={"window": 2},
    )
    trainer.train()
    assert len(model.seen) == 8

    want = replay(plain, labels, x, model.seen, window=2).store
    got = trainer.meter.store
    assert got.estimators == want.estimators and len(got.estimators) == 4  # optimizer rule included
    for estimator in want.estimators:
        np.testing.assert_allclose(
            got.matrix(estimator).to_numpy(), want.matrix(estimator).to_numpy(), rtol=1e-3, atol=1e-7, err_msg=estimator
        )
    for p, q in zip(model.net.parameters(), plain.parameters()):  # the Trainer's own step went on unchanged
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    saved = AffinityStore.load(tmp_path / "aff" / "affinity.parquet")
    assert sorted(saved.records["step"].unique()) == [2, 4, 6, 8]


def test_resume_from_a_trainer_checkpoint_keeps_the_open_window(tmp_path):
    """A run stopped at step 3 (window 2: one window done, one open) and resumed to step 8 records
    what one uninterrupted run records."""
    x, labels = digits_labels()
    whole = AffinityTrainer(
        model=DigitsModel(Net(seed=4), labels),
        args=arguments(tmp_path / "a", steps=8),
        train_dataset=Rows(x),
        shared="net.trunk",
        meter_kwargs={"window": 2},
    )
    whole.train()

    first = AffinityTrainer(
        model=DigitsModel(Net(seed=4), labels),
        args=arguments(tmp_path / "b", steps=8, save_steps=3),
        train_dataset=Rows(x),
        shared="net.trunk",
        meter_kwargs={"window": 2},
    )
    first.train()
    checkpoint = tmp_path / "b" / "checkpoint-3"
    assert (checkpoint / STATE_FILE).exists()
    resumed = AffinityTrainer(
        model=DigitsModel(Net(seed=4), labels),
        args=arguments(tmp_path / "b", steps=8, save_steps=3),
        train_dataset=Rows(x),
        shared="net.trunk",
        meter_kwargs={"window": 2},
    )
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.meter.step == 8
    a, b = whole.meter.store.records, resumed.meter.store.records
    assert len(a) == len(b) and sorted(b["step"].unique()) == [2, 4, 6, 8]
    np.testing.assert_allclose(b["value"].to_numpy(), a["value"].to_numpy(), rtol=1e-4, atol=1e-7)


def test_forward_without_task_losses_is_one_clear_error(tmp_path):
    x, labels = digits_labels()
    trainer = AffinityTrainer(
        model=DigitsModel(Net(), labels, contract=False),
        args=arguments(tmp_path / "hf", steps=2),
        train_dataset=Rows(x),
        shared="net.trunk",
    )
    with pytest.raises(TaskAffinityError, match="must return a mapping with 'loss' and 'task_losses'"):
        trainer.train()


def test_unknown_shared_module_is_named(tmp_path):
    x, labels = digits_labels()
    trainer = AffinityTrainer(
        model=DigitsModel(Net(), labels),
        args=arguments(tmp_path / "hf", steps=2),
        train_dataset=Rows(x),
        shared="backbone",
    )
    with pytest.raises(TaskAffinityError, match="no attribute 'backbone'"):
        trainer.train()


def test_resume_with_other_meter_settings_is_refused(tmp_path):
    """The saved open window belongs to the saved settings: another task order or window is one clear error."""
    x, labels = digits_labels()
    first = AffinityTrainer(
        model=DigitsModel(Net(seed=4), labels),
        args=arguments(tmp_path / "b", steps=4, save_steps=3),
        train_dataset=Rows(x),
        shared="net.trunk",
        meter_kwargs={"window": 2},
    )
    first.train()
    for change in ({"tasks": TASKS[::-1]}, {"meter_kwargs": {"window": 3}}):
        kwargs = {"meter_kwargs": {"window": 2}, **change}
        resumed = AffinityTrainer(
            model=DigitsModel(Net(seed=4), labels),
            args=arguments(tmp_path / "b", steps=8, save_steps=3),
            train_dataset=Rows(x),
            shared="net.trunk",
            **kwargs,
        )
        with pytest.raises(TaskAffinityError, match="the state was saved with (tasks|window)="):
            resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-3"))


def test_nothing_recorded_keeps_the_training_and_writes_nothing(tmp_path, caplog):
    x, labels = digits_labels()
    trainer = AffinityTrainer(
        model=DigitsModel(Net(), labels),
        args=arguments(tmp_path / "hf", steps=3),
        train_dataset=Rows(x),
        shared="net.trunk",
        affinity_out=tmp_path / "aff",
        meter_kwargs={"window": 2, "start": 100},
    )
    result = trainer.train()
    assert result.global_step == 3 and not (tmp_path / "aff").exists()
    assert "no affinity recorded in 3 micro-batches" in caplog.text


def test_unknown_meter_option_is_refused_before_training(tmp_path):
    x, labels = digits_labels()
    with pytest.raises(TaskAffinityError, match="unknown meter_kwargs key 'windw'"):
        AffinityTrainer(
            model=DigitsModel(Net(), labels),
            args=arguments(tmp_path / "hf", steps=2),
            train_dataset=Rows(x),
            shared="net.trunk",
            meter_kwargs={"windw": 2},
        )


class PartialDigits(DigitsModel):
    """Even batches lack 'loop'; counts mark 'digit' unlabelled in the second batch."""

    def forward(self, x, rows):
        out = super().forward(x, rows)
        batch = len(self.seen) - 1
        losses = {t: v for t, v in out["task_losses"].items() if t != "loop" or batch % 2}
        counts = {t: 0 if t == "digit" and batch == 1 else len(rows) for t in losses}
        return {"loss": sum(losses.values()), "task_losses": losses, "task_counts": counts}


def test_task_counts_mark_absent_tasks_and_a_later_task_names_the_fix(tmp_path):
    x, labels = digits_labels()
    trainer = AffinityTrainer(
        model=PartialDigits(Net(), labels),
        args=arguments(tmp_path / "a", steps=2),
        train_dataset=Rows(x),
        shared="net.trunk",
        meter_kwargs={"window": 1},
    )
    with pytest.raises(TaskAffinityError, match="unknown task 'loop' in task_losses .* give tasks="):
        trainer.train()
    trainer = AffinityTrainer(
        model=PartialDigits(Net(), labels),
        args=arguments(tmp_path / "b", steps=4),
        train_dataset=Rows(x),
        shared="net.trunk",
        tasks=TASKS,
        meter_kwargs={"window": 1},
    )
    trainer.train()
    meta = trainer.meter.store.metadata
    assert meta["present_steps"] == {"digit": 3, "parity": 4, "ge5": 4, "loop": 2}
    assert meta["skipped_steps"] == {"digit": {"no_examples": 1, "non_finite": 0}}


def test_loss_scaling_options_are_refused_for_the_trainer(tmp_path):
    x, labels = digits_labels()
    with pytest.raises(TaskAffinityError, match="meter_kwargs key 'accumulation' is not for this front"):
        AffinityTrainer(
            model=DigitsModel(Net(), labels),
            args=arguments(tmp_path / "hf", steps=2),
            train_dataset=Rows(x),
            shared="net.trunk",
            meter_kwargs={"accumulation": 4},
        )


# -- the held-out probe ---------------------------------------------------------------------------
class Snapshots(transformers.TrainerCallback):
    """The net's state right after each optimizer step."""

    def __init__(self):
        self.states = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.states[state.global_step] = copy.deepcopy(model.net.state_dict())


@pytest.mark.parametrize("accumulate", [1, 2])
def test_held_out_probes_are_the_known_answer_at_every_second_optimizer_step(tmp_path, accumulate):
    """6 optimizer steps, probe_every=2: first_order_sgd at global steps 2, 4, 6 (meter steps: micro-batches),
    each η g_i·g_j / L_j by hand on the probe batch with the weights of a run without probes at that step; that
    run ends with the same weights, bit for bit (batch norm and dropout included)."""
    x, labels = digits_labels()
    probed = DigitsModel(Net(seed=4, norm=True), labels)
    trainer = AffinityTrainer(
        model=probed,
        args=arguments(tmp_path / "a", 6, gradient_accumulation_steps=accumulate),
        train_dataset=Rows(x),
        shared="net.trunk",
        meter_kwargs={"window": 2},
        probe_losses=probe_losses_of(x, labels),
        probe_every=2,
    )
    trainer.train()
    snapshots = Snapshots()
    plain = DigitsModel(Net(seed=4, norm=True), labels)
    AffinityTrainer(
        model=plain,
        args=arguments(tmp_path / "b", 6, gradient_accumulation_steps=accumulate),
        train_dataset=Rows(x),
        shared="net.trunk",
        meter_kwargs={"window": 2},
        callbacks=[snapshots],
    ).train()

    assert len(probed.seen) == len(plain.seen) == 6 * accumulate
    for (name, p), q in zip(probed.net.state_dict().items(), plain.net.state_dict().values()):
        assert torch.equal(p, q), name  # the probes changed nothing
    records = trainer.meter.store.records
    sgd = records[records["estimator"] == "first_order_sgd"]
    assert sorted(sgd["step"].unique()) == [2 * accumulate, 4 * accumulate, 6 * accumulate]
    assert (sgd.groupby("step").size() == len(TASKS) ** 2).all()  # one probe per optimizer step
    assert set(records["estimator"]) >= {"first_order_sgd", "gram", "cosine"}
    assert "first_order_optimizer" not in set(records["estimator"])  # probe_rules default: sgd only
    for step in (2, 4, 6):
        at = sgd[sgd["step"] == step * accumulate].pivot(index="source", columns="target", values="value")
        want = first_order_sgd_by_hand(snapshots.states[step], x, labels, lr=LR)
        np.testing.assert_allclose(at.loc[TASKS, TASKS].to_numpy(), want, rtol=1e-4, atol=1e-9)


def test_probe_options_are_refused_before_the_trainer_is_made(tmp_path):
    x, labels = digits_labels()
    losses = probe_losses_of(x, labels)

    def make(**probe):
        AffinityTrainer(
            model=DigitsModel(Net(), labels),
            args=arguments(tmp_path / "hf", steps=2),
            train_dataset=Rows(x),
            shared="net.trunk",
            **probe,
        )

    with pytest.raises(TaskAffinityError, match="AffinityTrainer: probe_every=2 needs probe_losses"):
        make(probe_every=2)
    with pytest.raises(TaskAffinityError, match="AffinityTrainer: probe_every must be an integer >= 1, got 0"):
        make(probe_losses=losses, probe_every=0)
    with pytest.raises(TaskAffinityError, match="AffinityTrainer: probe_losses needs probe_every"):
        make(probe_losses=losses)
    with pytest.raises(TaskAffinityError, match="AffinityTrainer: probe_rules must be a non-empty list"):
        make(probe_losses=losses, probe_every=2, probe_rules="sgd")
