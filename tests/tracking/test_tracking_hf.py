"""AffinityTrainer hands each closed window to the Trainer's ``report_to`` callbacks (TensorBoard, MLflow,
W&B offline at once), at the global step that closed it, with the values ``trainer.meter.store`` holds."""

import os

import pytest

try:
    import accelerate  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("accelerate is not installed", allow_module_level=True)

from affinity.test_meter import Net, digits_labels  # noqa: E402
from test_hf_trainer import DigitsModel, Rows, arguments  # noqa: E402
from tracker_readers import (  # noqa: E402
    mlflow_history,
    mlflow_runs,
    offline_env,
    require_backends,
    tensorboard_scalars,
    wandb_history,
    wandb_runs,
)

from taskaffinity.loops.hf_trainer import AffinityTrainer  # noqa: E402
from taskaffinity.tracking import affinity_key  # noqa: E402

require_backends()


def test_windows_go_to_the_report_to_callbacks(tmp_path, monkeypatch):
    import dataclasses

    import wandb

    offline_env(monkeypatch, tmp_path)
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "hf")
    monkeypatch.setenv("WANDB_PROJECT", "hf")
    x, labels = digits_labels()
    args = dataclasses.replace(arguments(tmp_path / "hf", steps=6), report_to=["tensorboard", "mlflow", "wandb"])
    trainer = AffinityTrainer(
        model=DigitsModel(Net(seed=5), labels),
        args=args,
        train_dataset=Rows(x),
        shared="net.trunk",
        meter_kwargs={"window": 2},
    )
    trainer.train()
    wandb.finish()  # the Trainer leaves the W&B run open; finishing flushes its log
    # not printed, not in the Trainer's own log history: only the trackers get the windows
    assert not [key for entry in trainer.state.log_history for key in entry if "affinity" in key]

    want: dict[str, dict[int, float]] = {}
    for r in trainer.meter.store.records.itertuples():
        want.setdefault(affinity_key(r.estimator, r.source, r.target), {})[r.step] = r.value
    assert {step for values in want.values() for step in values} == {2, 4, 6}
    board = tensorboard_scalars(tmp_path / "tb")
    uri = f"file:{tmp_path / 'mlruns'}"
    (run_id,) = mlflow_runs(uri, "hf")["run_id"]
    history = wandb_history(wandb_runs(tmp_path / "wandb_dir")[0], step_key="train/global_step")
    for key, values in want.items():  # TensorBoard and W&B callbacks prefix training logs with train/
        assert board[f"train/{key}"] == pytest.approx(values, rel=1e-6, abs=1e-30), key
        assert mlflow_history(uri, run_id, key) == pytest.approx(values, rel=1e-12), key
        assert history[f"train/{key}"] == pytest.approx(values, rel=1e-12, abs=1e-300), key
