"""An affinity run logged to TensorBoard, MLflow and W&B (offline): every estimator's value per probe or
window and pair equals ``affinity.parquet``; heatmaps, reliability and fidelity figures arrive as images."""

import dataclasses
import json

import pytest
from conftest import tiny_config
from tracker_readers import (
    mlflow_artifacts,
    mlflow_history,
    mlflow_runs,
    offline_env,
    require_backends,
    tensorboard_run,
    tensorboard_scalars,
    wandb_history,
    wandb_images,
    wandb_runs,
    wandb_summary,
)

from taskaffinity.affinity.store import AffinityStore
from taskaffinity.api import record_affinity
from taskaffinity.config import AffinityConfig
from taskaffinity.report.trackers import affinity_numbers
from taskaffinity.tracking import BACKENDS, TrackingConfig, affinity_key

require_backends()

TASKS = ["trec6", "sms_spam", "vader_tweets"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("affinity")
    with pytest.MonkeyPatch.context() as patch:
        offline_env(patch, root)
        config = dataclasses.replace(
            tiny_config(TASKS, steps=4),
            affinity=AffinityConfig(  # a further held-out draw: in draws/, never logged under the run's names
                rules=("sgd",),
                lookahead="exact",
                probe_every=2,
                probe_batch_size=8,
                stream_window=2,
                bootstrap=50,
                probe_draws=2,
            ),
            tracking=TrackingConfig(report_to=BACKENDS, project="affinity-test", run_name="aff"),
        )
        record_affinity(config, root / "out", progress=False)
        yield root


def expected(out) -> dict[str, dict[int, float]]:
    store = AffinityStore.load(out / "affinity.parquet")
    want: dict[str, dict[int, float]] = {}
    for r in store.records.itertuples():
        want.setdefault(affinity_key(r.estimator, r.source, r.target), {})[r.step] = r.value
    assert len(store.estimators) == 7 and len(want) == 7 * len(TASKS) ** 2  # diagonals included, as in the store
    return want


def numbers(out) -> dict[str, float]:
    """The reliability numbers of ``fidelity.json`` logged at the end (the finite ones)."""
    found = affinity_numbers(json.loads((out / "fidelity.json").read_text()))
    assert "reliability/stream_gram/significant_share" in found
    return found


def figures(out) -> set[str]:
    estimators = AffinityStore.load(out / "affinity.parquet").estimators
    return {*(f"affinity/heatmap/{e}" for e in estimators), "affinity/reliability", "affinity/fidelity/lookahead_sgd"}


def test_tensorboard_holds_every_record_and_the_figures(run):
    got = tensorboard_scalars(run / "out" / "tensorboard")
    for key, values in expected(run / "out").items():
        assert got[key] == pytest.approx(values, rel=1e-6, abs=1e-30), key
    assert set(tensorboard_run(run / "out" / "tensorboard").Tags()["images"]) == figures(run / "out")
    for key, value in numbers(run / "out").items():
        assert got[key] == {4: pytest.approx(value, rel=1e-6)}, key


def test_mlflow_holds_every_record_and_the_figures(run):
    uri = f"file:{run / 'mlruns'}"
    (run_id,) = mlflow_runs(uri, "affinity-test")["run_id"]
    for key, values in expected(run / "out").items():
        assert mlflow_history(uri, run_id, key) == values, key
    assert set(mlflow_artifacts(uri, run_id)) == {f"{name}.png" for name in figures(run / "out")}
    for key, value in numbers(run / "out").items():
        assert mlflow_history(uri, run_id, key) == {4: value}, key
    params = mlflow_runs(uri, "affinity-test").iloc[0]
    assert params["params.affinity.rules"] == "sgd" and params["params.affinity.probe_every"] == "2"


def test_wandb_offline_run_holds_every_record_and_the_figures(run):
    (run_dir,) = wandb_runs(run / "wandb_dir")
    history = wandb_history(run_dir)
    for key, values in expected(run / "out").items():
        assert history[key] == pytest.approx(values, rel=1e-12, abs=1e-300), key
    images = wandb_images(run_dir)
    assert set(images) == figures(run / "out") and all(path.stat().st_size > 5_000 for path in images.values())
    summary = wandb_summary(run_dir)
    assert {key: summary[key] for key in numbers(run / "out")} == pytest.approx(numbers(run / "out"), rel=1e-12)
