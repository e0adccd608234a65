"""A tracker that fails (a bad URI, a full disk) never costs the run its own files, and an interrupted run
resumed continues the same tracker runs."""

import dataclasses
import logging

import pandas as pd
import pytest
from conftest import tiny_config
from tests_support import StopAfter
from tracker_readers import (
    mlflow_history,
    mlflow_runs,
    offline_env,
    require_backends,
    tensorboard_scalars,
    wandb_run_info,
    wandb_runs,
)

from taskaffinity.api import train_joint_model
from taskaffinity.tracking import TrackingConfig

require_backends()

TASKS = ["trec6", "sms_spam"]


def config(**tracking):
    return dataclasses.replace(tiny_config(TASKS, steps=6), tracking=TrackingConfig(**tracking))


def losses(out) -> dict[int, float]:
    steps = pd.read_parquet(out / "steps.parquet")
    return dict(zip(steps[steps["task"] == "trec6"]["step"], steps[steps["task"] == "trec6"]["loss"]))


def test_a_bad_mlflow_uri_leaves_the_run_and_the_other_trackers_alone(tmp_path, monkeypatch, caplog):
    offline_env(monkeypatch, tmp_path)
    with caplog.at_level(logging.WARNING, logger="taskaffinity.tracking"):
        train_joint_model(
            config(report_to=("mlflow", "tensorboard"), mlflow_uri="nosuchscheme://nowhere"),
            tmp_path / "run",
            progress=False,
        )
    assert sorted(losses(tmp_path / "run")) == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "run" / "eval.parquet").is_file() and (tmp_path / "run" / "summary.json").is_file()
    logged = tensorboard_scalars(tmp_path / "run" / "tensorboard")["loss/trec6"]
    assert logged == pytest.approx(losses(tmp_path / "run"))
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "taskaffinity.tracking"]
    assert warning.startswith("tracking: mlflow stopped (cannot open: ") and "nosuchscheme" in warning
    assert warning.endswith(f"the run goes on without it; its results are still written to {tmp_path / 'run'}")


def test_a_full_disk_mid_run_drops_that_tracker_only(tmp_path, monkeypatch, caplog):
    from torch.utils.tensorboard import SummaryWriter

    offline_env(monkeypatch, tmp_path)
    real = SummaryWriter.add_scalar
    calls = []

    def add_scalar(self, tag, value, global_step=None, **kwargs):
        calls.append(global_step)
        if global_step == 3:
            raise OSError(28, "No space left on device")
        return real(self, tag, value, global_step=global_step, **kwargs)

    monkeypatch.setattr(SummaryWriter, "add_scalar", add_scalar)
    with caplog.at_level(logging.WARNING, logger="taskaffinity.tracking"):
        train_joint_model(config(report_to=("tensorboard", "mlflow"), project="disk"), tmp_path / "run", progress=False)
    assert max(calls) == 3  # dropped at its first failure
    want = losses(tmp_path / "run")
    assert sorted(want) == [1, 2, 3, 4, 5, 6]
    (run_id,) = mlflow_runs(f"file:{tmp_path / 'mlruns'}", "disk")["run_id"]
    assert mlflow_history(f"file:{tmp_path / 'mlruns'}", run_id, "loss/trec6") == want
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "taskaffinity.tracking"]
    assert "tensorboard stopped (log_scalars: OSError: [Errno 28] No space left on device)" in warning


def test_an_interrupted_run_resumes_into_the_same_tracker_runs(tmp_path, monkeypatch):
    offline_env(monkeypatch, tmp_path)
    settings = config(report_to=("tensorboard", "mlflow", "wandb"), project="resume")
    with pytest.raises(KeyboardInterrupt):  # after step 5; the last checkpoint is at step 3
        train_joint_model(settings, tmp_path / "run", callbacks=[StopAfter(5)], progress=False)
    uri = f"file:{tmp_path / 'mlruns'}"
    assert list(mlflow_runs(uri, "resume")["status"]) == ["FAILED"]
    # the same callbacks (their checkpointed states are matched by position), this time not interrupting
    train_joint_model(settings, tmp_path / "run", callbacks=[StopAfter(99)], progress=False)
    runs = mlflow_runs(uri, "resume")
    assert list(runs["status"]) == ["FINISHED"]  # one run, reopened
    want = losses(tmp_path / "run")
    assert mlflow_history(uri, runs["run_id"][0], "loss/trec6") == want
    # steps 4 and 5 were logged twice: TensorBoard purges the first time, so each step shows once
    assert tensorboard_scalars(tmp_path / "run" / "tensorboard")["loss/trec6"] == pytest.approx(want)
    ids = {wandb_run_info(path)["run_id"] for path in wandb_runs(tmp_path / "wandb_dir")}
    assert len(wandb_runs(tmp_path / "wandb_dir")) == 2 and len(ids) == 1  # W&B's offline resume: same id
