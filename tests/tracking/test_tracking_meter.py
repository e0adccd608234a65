"""``AffinityMeter(..., log_to=...)`` in a plain loop (digits data): a SummaryWriter, an MLflow run, a W&B run or
a function receives every closed window and probe, equal to ``meter.store`` (what ``affinity.parquet`` holds)."""

import logging

import pytest
import torch
from affinity.test_meter import TASKS, Net, digits_labels
from torch import nn
from tracker_readers import (
    mlflow_history,
    offline_env,
    require_backends,
    tensorboard_scalars,
    wandb_history,
    wandb_runs,
)

from taskaffinity import AffinityMeter
from taskaffinity.errors import TaskAffinityError
from taskaffinity.tracking import affinity_key

require_backends()


def run_loop(log_to, steps=6, window=2):
    """Six steps on digits, windows of two, one exact probe at the end; returns the meter."""
    x, labels = digits_labels()
    net = Net(seed=1)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)
    meter = AffinityMeter(net, net.trunk, tasks=TASKS, optimizer=optimizer, window=window, log_to=log_to)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        rows = torch.randint(0, len(x), (32,), generator=gen)
        z = net.trunk(x[rows])
        optimizer.zero_grad()
        meter.backward({t: nn.functional.cross_entropy(net.heads[t](z), labels[t][rows]) for t in TASKS})
        optimizer.step()
    probe = torch.arange(64)
    meter.probe(
        lambda m: {t: nn.functional.cross_entropy(m.heads[t](m.trunk(x[probe])), labels[t][probe]) for t in TASKS},
        rules=("sgd",),
    )
    return meter


def expected(meter) -> dict[str, dict[int, float]]:
    want: dict[str, dict[int, float]] = {}
    for r in meter.store.records.itertuples():
        want.setdefault(affinity_key(r.estimator, r.source, r.target), {})[r.step] = r.value
    assert {step for values in want.values() for step in values} == {2, 4, 6}  # three windows, the probe at 6
    return want


def test_a_function_gets_every_window_and_probe():
    calls = []
    meter = run_loop(lambda values, step: calls.append((step, dict(values))))
    got: dict[str, dict[int, float]] = {}
    for step, values in calls:
        for key, value in values.items():
            got.setdefault(key, {})[step] = value
    assert got == expected(meter)


def test_a_summary_writer(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(tmp_path / "tb")
    meter = run_loop(writer)
    writer.close()
    got = tensorboard_scalars(tmp_path / "tb")
    want = expected(meter)
    assert set(got) == set(want)
    for key, values in want.items():
        assert got[key] == pytest.approx(values, rel=1e-6, abs=1e-30), key


def test_an_mlflow_run(tmp_path, monkeypatch):
    import mlflow

    offline_env(monkeypatch, tmp_path)
    mlflow.set_experiment("meter")
    with mlflow.start_run() as run:
        meter = run_loop(run)
    for key, values in expected(meter).items():
        assert mlflow_history(f"file:{tmp_path / 'mlruns'}", run.info.run_id, key) == values, key


def test_a_wandb_run(tmp_path, monkeypatch):
    import wandb

    offline_env(monkeypatch, tmp_path)
    run = wandb.init(project="meter", reinit="create_new")
    meter = run_loop(run)
    run.finish()
    history = wandb_history(wandb_runs(tmp_path / "wandb_dir")[0])
    for key, values in expected(meter).items():
        assert history[key] == pytest.approx(values, rel=1e-12, abs=1e-300), key


def test_a_failing_logger_is_dropped_and_the_records_are_kept(caplog):
    calls = []

    def full_disk(values, step):
        calls.append(step)
        raise OSError(28, "No space left on device")

    with caplog.at_level(logging.WARNING, logger="taskaffinity.tracking"):
        meter = run_loop(full_disk)
    assert calls == [2]  # tried once, then left out
    assert len(meter.store.records) == len(run_loop(None).store.records)
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "taskaffinity.tracking"]
    assert "callable stopped (log_scalars: OSError: [Errno 28] No space left on device)" in warning


def test_log_to_must_be_a_logger():
    net = Net()
    with pytest.raises(TaskAffinityError, match="log_to must be a TensorBoard SummaryWriter, an MLflow run, a W&B run"):
        AffinityMeter(net, net.trunk, tasks=TASKS, lr=0.1, log_to=42)
