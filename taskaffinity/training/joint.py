"""Train one joint multi-task model and write its run folder: prepare tasks, build the model,
run :class:`~taskaffinity.training.loop.JointTrainer` with the given callbacks (recorders), write
``config.yaml``, ``tasks.parquet`` and ``summary.json``.

``OUT/config.yaml``       the run config (YAML keys as loaded)
``OUT/tasks.parquet``     one row per task (:func:`taskaffinity.tasks.table.task_table`)
``OUT/summary.json``      last evaluation per task against its baseline
plus the trainer's ``eval.parquet``, ``steps.parquet`` and ``checkpoints/``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import yaml

from ..config import RunConfig
from ..model.encoders import load_encoder
from ..model.multitask import MultiTaskModel
from ..storage import write_json, write_parquet, write_text
from ..tasks.data import TaskData
from ..tasks.prepare import prepare_tasks
from ..tasks.table import task_table
from ..tracking.run import TrackingRun, open_config_run
from .callbacks import Callback
from .evaluate import gain_over_baseline
from .loop import JointTrainer


@dataclass
class TrainResult:
    trainer: JointTrainer
    metrics: pd.DataFrame  # last evaluation, tidy (see evaluate.evaluate)
    out_dir: Path | None


def build(
    config: RunConfig, *, progress: bool = True, tasks: dict[str, TaskData] | None = None
) -> tuple[dict[str, TaskData], MultiTaskModel, object]:
    """Tasks (prepared here unless given), model and tokenizer of a run; raises a TaskAffinityError on bad input."""
    tasks = tasks if tasks is not None else prepare_tasks(config.tasks, config.data, progress=progress)
    torch.manual_seed(config.seed)  # fresh heads (and random-init encoders) are reproducible
    encoder, tokenizer = load_encoder(config.model)
    return tasks, MultiTaskModel(encoder, tasks, config.model, seed=config.seed), tokenizer


def train_joint_model(
    config: RunConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = True,
    callbacks: list[Callback] = (),
    progress: bool = True,
    tasks: dict[str, TaskData] | None = None,
    init_encoder: str | Path | None = None,
    tracking: TrackingRun | None = None,
) -> TrainResult:
    """Train one joint multi-task model (Muppet-style heterogeneous batches); write logs,
    checkpoints and a summary to ``out_dir``. ``callbacks`` are recorders (see :mod:`taskaffinity.training.callbacks`).

    ``tasks``: already prepared task data (default: prepared from ``config``);
    ``init_encoder``: a safetensors file of encoder weights to start from (a
    pre-finetuned encoder; heads stay fresh). Everything that can fail on bad
    input (config, data, model) is checked before ``out_dir`` is created, so a
    failed start leaves nothing behind.
    ``tracking``: the run to log to (its opener closes it); default: one of ``config.tracking``
    (:mod:`taskaffinity.tracking`), none for ``report_to: none``. The recorders in ``callbacks``
    are logged too.
    """
    tasks, model, tokenizer = build(config, progress=progress, tasks=tasks)
    run = tracking if tracking is not None else open_config_run(config, out_dir)
    if run is not None:
        from ..tracking.callback import TrackingCallback

        callbacks = [*callbacks, TrackingCallback(run, records_from=callbacks, log_every=config.tracking.log_every)]
    if init_encoder is not None:
        from safetensors.torch import load_file

        model.encoder.load_state_dict(load_file(str(init_encoder)))
    trainer = JointTrainer(
        config, tasks, model, tokenizer, out_dir=out_dir, callbacks=list(callbacks), progress=progress
    )
    if resume:  # a checkpoint of another configuration or other data is refused before anything is written
        trainer.resume()
    out = Path(out_dir) if out_dir else None
    if out and trainer.dist.main:  # under torchrun, one process writes
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
        write_parquet(out / "tasks.parquet", task_table(tasks))
    started = time.perf_counter()
    try:
        metrics = trainer.train(resume=resume)
    except BaseException:
        if run is not None and tracking is None:
            run.close(failed=True)
        raise
    if run is not None and tracking is None:
        run.close()
    if out and trainer.dist.main:
        write_json(out / "summary.json", summarise(trainer, metrics, time.perf_counter() - started))
    return TrainResult(trainer=trainer, metrics=metrics, out_dir=out)


def summarise(trainer: JointTrainer, metrics: pd.DataFrame, seconds: float) -> dict:
    primary = metrics[metrics["primary"]]
    gains = gain_over_baseline(primary)
    return {
        "steps": trainer.step,
        "device": str(trainer.device),
        "seconds_this_invocation": round(seconds, 2),
        "tasks": {
            row.task: {"metric": row.metric, "value": row.value, "baseline": row.baseline}
            for row in primary.itertuples()
        },
        "tasks_beating_baseline": int((gains > 0).sum()),
        "mean_gain_over_baseline": float(gains.mean()),
    }
