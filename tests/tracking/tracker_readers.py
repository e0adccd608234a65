"""Read tracker runs back with each library's own reader: TensorBoard's EventAccumulator, MLflow's
``search_runs`` and ``MlflowClient``, and ``wandb leet inspect --json`` (W&B's reader of an offline
run's ``.wandb`` log)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path


def require_backends() -> None:
    """Skip the calling test module when a back-end is not installed, except on CI (scripts/setup.sh
    installs the tensorboard, mlflow and wandb extras there, so their tests must run)."""
    import importlib.util

    import pytest

    missing = [m for m in ("tensorboard", "mlflow", "wandb") if importlib.util.find_spec(m) is None]
    if missing and os.environ.get("CI"):
        raise ImportError(f"tracking back-ends not installed: {', '.join(missing)} (run scripts/setup.sh)")
    if missing:
        pytest.skip(
            f"not installed: {', '.join(missing)} (pip install 'taskaffinity[tracking]')", allow_module_level=True
        )


def offline_env(monkeypatch, tmp_path) -> Path:
    """Every back-end writes under ``tmp_path`` and nothing reaches a network."""
    if "mlflow" in sys.modules:  # a URI or active run an earlier test left (HF's MLflowCallback sets both) would win
        mlflow = sys.modules["mlflow"]
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
    if "wandb" in sys.modules:  # wandb reads its environment once per process set-up: set it up again
        sys.modules["wandb"].teardown()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's file store, kept for offline tests
    uri = f"file:{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    (tmp_path / "wandb_dir").mkdir(exist_ok=True)
    return tmp_path


# -- TensorBoard ---------------------------------------------------------------------------------
def tensorboard_run(logdir):
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, SCALARS, TENSORS, EventAccumulator

    accumulator = EventAccumulator(str(logdir), size_guidance={SCALARS: 0, IMAGES: 0, TENSORS: 0})
    accumulator.Reload()
    return accumulator


def tensorboard_scalars(logdir) -> dict[str, dict[int, float]]:
    """tag -> step -> value (all events kept)."""
    accumulator = tensorboard_run(logdir)
    return {tag: {e.step: e.value for e in accumulator.Scalars(tag)} for tag in accumulator.Tags()["scalars"]}


# -- MLflow --------------------------------------------------------------------------------------
def mlflow_runs(uri: str, experiment: str):
    """``mlflow.search_runs`` of one experiment (the store is MLFLOW_TRACKING_URI: no global URI is set,
    so no other test inherits this one's store)."""
    import mlflow

    assert mlflow.get_tracking_uri() == uri
    return mlflow.search_runs(experiment_names=[experiment], output_format="pandas")


def mlflow_history(uri: str, run_id: str, key: str) -> dict[int, float]:
    from mlflow.tracking import MlflowClient

    return {m.step: m.value for m in MlflowClient(uri).get_metric_history(run_id, key)}


def mlflow_artifacts(uri: str, run_id: str, path: str = "") -> list[str]:
    from mlflow.tracking import MlflowClient

    client, out, todo = MlflowClient(uri), [], [path or None]
    while todo:
        for item in client.list_artifacts(run_id, todo.pop()):
            (todo.append(item.path) if item.is_dir else out.append(item.path))
    return sorted(out)


# -- W&B -----------------------------------------------------------------------------------------
def wandb_runs(wandb_dir) -> list[Path]:
    return sorted(Path(wandb_dir).glob("wandb/offline-run-*"))


def wandb_records(run_dir) -> list[dict]:
    """Every record of an offline run, as ``wandb leet inspect --json`` prints them."""
    log = next(Path(run_dir).glob("run-*.wandb"))
    return _records(str(run_dir), log.stat().st_size)


@functools.lru_cache(maxsize=64)
def _records(run_dir: str, size: int) -> list[dict]:  # read once per run and size of its log
    done = subprocess.run(
        [str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", run_dir],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def wandb_history(run_dir, step_key: str | None = None) -> dict[str, dict[int, object]]:
    """key -> step -> value of every ``run.log``; ``step_key``: a logged key that holds the step
    (Lightning's ``trainer/global_step``, the Trainer's ``train/global_step``) instead of W&B's own."""
    out: dict[str, dict[int, object]] = defaultdict(dict)
    for record in wandb_records(run_dir):
        if record["type"] == "history":
            item = record["history"]["item"]
            step = int(item[step_key] if step_key else record["history"]["step"]["num"])
            for key, value in item.items():
                if not key.startswith("_"):
                    out[key][step] = value
    return dict(out)


def wandb_images(run_dir) -> dict[str, Path]:
    """name -> the image file of every ``wandb.Image`` logged (history flattens it to ``<name>._type`` ...)."""
    history = wandb_history(run_dir)
    return {
        key[: -len("._type")]: Path(run_dir) / "files" / next(iter(history[key[: -len("._type")] + ".path"].values()))
        for key, steps in history.items()
        if key.endswith("._type") and "image-file" in steps.values()
    }


def wandb_run_info(run_dir) -> dict:
    """The run record: display_name, run_group, job_type, config ..."""
    info = next(r["run"] for r in wandb_records(run_dir) if r["type"] == "run")
    info["config"] = {k: v for k, v in info.get("config", {}).get("update", {}).items() if k != "_wandb"}
    for record in wandb_records(run_dir):
        if record["type"] == "config":
            info["config"].update(record["config"].get("update", {}))
    return info


def wandb_summary(run_dir) -> dict:
    out = {}
    for record in wandb_records(run_dir):
        if record["type"] == "summary":
            out.update(record["summary"].get("update", {}))
    return out
