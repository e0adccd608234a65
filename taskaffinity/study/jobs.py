"""Run one planned job where an executor put it, and write its result files.

Layout under the study folder::

    data/                       the prepared task pool (shared, read-only here)
    experiments/<id>/run/       training outputs (checkpoints while running: an interrupted job resumes)
    experiments/<id>/encoder.safetensors   a TrainJob's encoder, for the fine-tuning jobs that start from it
    experiments/<id>/result.parquet        written last: its presence means the job is done

``result.parquet`` rows: ``experiment_id, target, seed, fraction, split, metric,
value, baseline, primary, wall_seconds, device``: the final validation scores of
every trained task, and test scores of the measured ones (fine-tuning targets,
members of measured joint runs).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..storage import write_parquet, write_safetensors
from ..tracking.study import job_results, job_run
from ..training.checkpoint import run_fingerprint
from ..training.evaluate import evaluate
from ..training.joint import train_joint_model
from .layout import is_done, job_folder, set_aside_stale_run
from .plan import FinetuneJob, TrainJob
from .pool import load_pool, subsample_train


@dataclass(frozen=True)
class JobOptions:
    """How a job runs (never what it computes: results do not depend on these)."""

    reuse_worker: bool = True  # this process's JobWorker keeps models and data across jobs
    checkpoint_seconds: float = 60.0  # reusing worker: checkpoint a running job at most this often


def run_job(item: tuple, device: str | None = None) -> None:
    """Train and measure one job; a finished job is left alone.

    ``item``: ``(job, root)`` or ``(job, root, JobOptions)``; by default this process's
    reusing worker runs it (:mod:`taskaffinity.study.worker`), else :func:`run_job_fresh`.
    """
    job, root, *rest = item
    options = rest[0] if rest else JobOptions()
    tracking = job_run(job, root) if not is_done(root, job.id) else None  # a run nested under the study's
    try:
        if not options.reuse_worker:
            run_job_fresh((job, root), device, tracking=tracking)
        else:
            from .worker import worker

            worker(options.checkpoint_seconds).run(job, root, device, tracking=tracking)
    except BaseException:
        if tracking is not None:
            tracking.close(failed=True)
        raise
    if tracking is not None:
        tracking.log_summary(job_results(pd.read_parquet(job_folder(root, job.id) / "result.parquet")))
        tracking.close()


def run_job_fresh(item: tuple[TrainJob | FinetuneJob, str], device: str | None = None, *, tracking=None) -> None:
    """The reference path: load everything for this job alone, checkpoint every ``checkpoint_every`` steps.
    ``tracking``: the job's :class:`~taskaffinity.tracking.run.TrackingRun` (left open)."""

    job, root = item
    folder = job_folder(root, job.id)
    if is_done(root, job.id):
        return
    config = job.config
    if device:
        config = dataclasses.replace(config, training=dataclasses.replace(config.training, device=device))
    tasks = load_pool(config, Path(root) / "data")
    init = None
    fraction = 1.0
    if isinstance(job, FinetuneJob):
        fraction = job.fraction
        if fraction < 1.0:
            tasks = {name: subsample_train(task, fraction, config.data.split_seed) for name, task in tasks.items()}
        if job.pretrain is not None:
            init = job_folder(root, job.pretrain) / "encoder.safetensors"
            if not init.is_file():
                raise FileNotFoundError(f"pre-finetuning job {job.pretrain} has no saved encoder ({init})")
    set_aside_stale_run(folder / "run", run_fingerprint(config, tasks))
    started = time.perf_counter()
    result = train_joint_model(
        config, folder / "run", tasks=tasks, init_encoder=init, progress=False, tracking=tracking
    )
    trainer = result.trainer
    metrics = result.metrics.drop(columns=["step", "phase"])  # the trainer's final validation scores
    if isinstance(job, FinetuneJob) or job.measure:
        test = evaluate(
            trainer.model,
            tasks,
            trainer.tokenizer,
            splits=("test",),
            max_length=config.model.max_length,
            batch_size=config.training.eval_batch_size,
            device=trainer.device,
            autocast=trainer.autocast,
        )
        metrics = pd.concat([metrics, test], ignore_index=True)
    if isinstance(job, TrainJob) and job.save_encoder:
        write_safetensors(folder / "encoder.safetensors", trainer.model.encoder.state_dict())
    rows = metrics.rename(columns={"task": "target"}).assign(
        experiment_id=job.id,
        seed=config.seed,
        fraction=fraction,
        wall_seconds=time.perf_counter() - started,
        device=str(trainer.device),
    )
    write_parquet(folder / "result.parquet", rows)
    shutil.rmtree(folder / "run" / "checkpoints", ignore_errors=True)  # done: optimizer state is not needed
