"""AffinityCallback logs each closed window through the Lightning trainer's own loggers (TensorBoard,
MLflow, W&B offline at once), with the values ``callback.meter.store`` holds."""

import os

import pytest
import torch

try:
    import pytorch_lightning as pl
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("pytorch-lightning is not installed", allow_module_level=True)

from affinity.test_meter import Net, digits_labels  # noqa: E402
from test_lightning import DigitsModule, batches  # noqa: E402
from tracker_readers import (  # noqa: E402
    mlflow_history,
    offline_env,
    require_backends,
    tensorboard_scalars,
    wandb_history,
    wandb_runs,
)

from taskaffinity.loops.lightning import AffinityCallback  # noqa: E402
from taskaffinity.tracking import affinity_key  # noqa: E402

require_backends()


def test_windows_go_to_every_logger_of_the_trainer(tmp_path, monkeypatch):
    from pytorch_lightning.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger

    offline_env(monkeypatch, tmp_path)
    x, labels = digits_labels()
    uri = f"file:{tmp_path / 'mlruns'}"
    loggers = [
        TensorBoardLogger(tmp_path / "tb", name="", version=""),
        MLFlowLogger(experiment_name="lightning", tracking_uri=uri),
        WandbLogger(project="lightning", offline=True, save_dir=str(tmp_path / "wandb_dir")),
    ]
    callback = AffinityCallback(lambda m: m.net.trunk, window=2)
    trainer = pl.Trainer(
        max_steps=6,
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=loggers,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    trainer.fit(
        DigitsModule(Net(seed=2), labels),
        train_dataloaders=torch.utils.data.DataLoader(batches(x), batch_size=None, shuffle=False),
    )
    for logger in loggers:
        logger.finalize("success")
    loggers[2].experiment.finish()  # Lightning leaves the W&B run open; finishing flushes its log

    want: dict[str, dict[int, float]] = {}
    for r in callback.meter.store.records.itertuples():
        want.setdefault(affinity_key(r.estimator, r.source, r.target), {})[r.step] = r.value
    assert {step for values in want.values() for step in values} == {2, 4, 6}
    board = tensorboard_scalars(tmp_path / "tb")
    flow = loggers[1].run_id
    history = wandb_history(wandb_runs(tmp_path / "wandb_dir")[0], step_key="trainer/global_step")
    for key, values in want.items():
        assert board[key] == pytest.approx(values, rel=1e-6, abs=1e-30), key
        assert mlflow_history(uri, flow, key) == values, key
        assert history[key] == pytest.approx(values, rel=1e-12, abs=1e-300), key
