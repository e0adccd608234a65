"""A joint run logged to TensorBoard, MLflow (file store) and W&B (offline) at once, read back with each
library's own reader: every logged value equals what ``steps.parquet`` and ``eval.parquet`` hold."""

import dataclasses

import pandas as pd
import pytest
from conftest import tiny_config
from tracker_readers import (
    mlflow_history,
    mlflow_runs,
    offline_env,
    require_backends,
    tensorboard_scalars,
    wandb_history,
    wandb_run_info,
    wandb_runs,
)

from taskaffinity.api import train_joint_model
from taskaffinity.tracking import BACKENDS, TrackingConfig

require_backends()

TASKS = ["trec6", "sms_spam", "vader_tweets"]


@pytest.fixture(scope="module")
def joint(tmp_path_factory):
    root = tmp_path_factory.mktemp("joint")
    with pytest.MonkeyPatch.context() as patch:
        offline_env(patch, root)
        config = dataclasses.replace(
            tiny_config(TASKS, steps=5, head_warmup_steps=2),
            tracking=TrackingConfig(report_to=BACKENDS, project="joint-test"),
        )
        train_joint_model(config, root / "run", progress=False)
        yield root


def expected(run) -> dict[str, dict[int, float]]:
    """Every scalar the run should have logged, from its own Parquet files: name -> step -> value."""
    want: dict[str, dict[int, float]] = {}
    for row in pd.read_parquet(run / "steps.parquet").itertuples():
        want.setdefault(f"loss/{row.task}", {})[row.step] = row.loss
        want.setdefault(f"weight/{row.task}", {})[row.step] = row.weight
        want.setdefault("lr", {})[row.step] = row.lr
    for row in pd.read_parquet(run / "eval.parquet").itertuples():
        want.setdefault(f"{row.split}/{row.task}/{row.metric}", {})[row.step] = row.value
    return want


def test_tensorboard_holds_the_parquet_values(joint):
    got = tensorboard_scalars(joint / "run" / "tensorboard")
    want = expected(joint / "run")
    assert set(got) == set(want)
    for key, values in want.items():  # event files keep float32
        assert got[key] == pytest.approx(values, rel=1e-6, abs=1e-12), key
    assert want["lr"][1] == 0.0 and want["lr"][3] > 0  # head warm-up logged as in steps.parquet


def test_mlflow_holds_the_parquet_values(joint):
    uri = f"file:{joint / 'mlruns'}"
    runs = mlflow_runs(uri, "joint-test")
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["status"] == "FINISHED" and run["tags.mlflow.runName"] == "run"
    assert run["params.training.steps"] == "5" and run["params.tasks"] == ",".join(TASKS)
    for key, values in expected(joint / "run").items():
        assert mlflow_history(uri, run["run_id"], key) == values, key


def test_wandb_offline_run_holds_the_parquet_values(joint):
    (run_dir,) = wandb_runs(joint / "wandb_dir")
    history = wandb_history(run_dir)
    for key, values in expected(joint / "run").items():
        assert history[key] == pytest.approx(values, rel=1e-12), key
    info = wandb_run_info(run_dir)
    assert info["display_name"] == "run" and info["project"] == "joint-test"
    assert info["config"]["training.steps"] == 5 and info["config"]["tasks"] == ",".join(TASKS)
