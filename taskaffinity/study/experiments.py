"""What a study plan is made of: its jobs (``TrainJob``, ``FinetuneJob``), the measurements it
expects, and :class:`Plan`, which collects them keyed by a hash of what changes each job's result
(``_job_id``): re-running a study skips finished jobs, and jobs shared between studies are found
again. The planners of each study kind are in :mod:`.plan`.

``TrainJob``     joint (pre-)finetuning on a task set; its encoder is saved for the
                 fine-tuning jobs that start from it, and (validation studies) its
                 members are measured on their test splits.
``FinetuneJob``  a fresh head (and the encoder) trained on one target, from a
                 TrainJob's encoder or from the base model (the baseline).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

import pandas as pd

from ..config import AffinityConfig, RunConfig, TrainConfig
from .settings import Study

BASELINE = "baseline"


@dataclass(frozen=True)
class TrainJob:
    id: str
    config: RunConfig  # tasks: the set; training: study.pretrain
    save_encoder: bool = True  # fine-tuning jobs start from it
    measure: bool = False  # score the members on test (validation studies)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.config.tasks)


@dataclass(frozen=True)
class FinetuneJob:
    id: str
    config: RunConfig  # tasks: the target; training: study.finetune; seed: the fine-tuning seed
    fraction: float = 1.0
    pretrain: str | None = None  # TrainJob id whose encoder this run starts from; None: the base model

    @property
    def target(self) -> str:
        return self.config.tasks[0].name


@dataclass(frozen=True)
class Measurement:
    """One planned measurement: job ``job`` scores ``targets`` under ``label``."""

    job: str
    kind: str
    label: str  # a column of the study's tables: "baseline", "G1+G2", "k=4", "pair", "source:trec6", ...
    pretrain_set: tuple[str, ...]  # tasks trained on before (fine-tuning) or together with (joint) the target
    targets: tuple[str, ...]
    seed: int
    fraction: float = 1.0
    arm: str = ""  # validation: single, pair, all, chosen, random1, ...


@dataclass
class Plan:
    train_jobs: dict[str, TrainJob] = field(default_factory=dict)
    finetune_jobs: dict[str, FinetuneJob] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    data: dict[str, str] = field(default_factory=dict)  # task -> prepared-data fingerprint (pool.prepare_pool)

    def frame(self) -> pd.DataFrame:
        """One row per (measurement, target): the plan as a tidy table."""
        rows = [
            {
                "experiment_id": m.job,
                "kind": m.kind,
                "label": m.label,
                "arm": m.arm,
                "pretrain_set": "+".join(m.pretrain_set),
                "n_pretrain_tasks": len(m.pretrain_set),
                "target": target,
                "seed": m.seed,
                "fraction": m.fraction,
                "job_type": "train" if m.job in self.train_jobs else "finetune",
            }
            for m in self.measurements
            for target in m.targets
        ]
        return pd.DataFrame(rows)

    def jobs_frame(self) -> pd.DataFrame:
        """One row per job: what it trains, and what it starts from."""
        rows = [
            {
                "experiment_id": j.id,
                "job_type": "train",
                "tasks": "+".join(j.tasks),
                "pretrain": None,
                "seed": j.config.seed,
                "fraction": 1.0,
            }
            for j in self.train_jobs.values()
        ]
        rows += [
            {
                "experiment_id": j.id,
                "job_type": "finetune",
                "tasks": j.target,
                "pretrain": j.pretrain,
                "seed": j.config.seed,
                "fraction": j.fraction,
            }
            for j in self.finetune_jobs.values()
        ]
        return pd.DataFrame(rows)

    # -- building blocks ---------------------------------------------------------------------
    def train(
        self,
        study: Study,
        tasks,
        *,
        seed: int,
        save_encoder: bool = True,
        measure: bool = False,
        per_task_budget: bool = False,
        training: TrainConfig | None = None,
    ) -> TrainJob:
        """The job that trains ``tasks`` jointly with ``training`` (default: ``study.pretrain``)."""
        training = training or study.settings.pretrain
        if per_task_budget:
            training = per_task_training(training, len(tuple(tasks)))
        config = _job_config(study.config, tasks, training, seed)
        job_id = _job_id("train", config, self.data, save_encoder=save_encoder, measure=measure)
        job = TrainJob(id=job_id, config=config, save_encoder=save_encoder, measure=measure)
        return self.train_jobs.setdefault(job.id, job)

    def finetune(self, study: Study, target: str, seed: int, fraction: float, pretrain: TrainJob | None) -> FinetuneJob:
        config = _job_config(study.config, (target,), study.settings.finetune, seed)
        job_id = _job_id("finetune", config, self.data, fraction=fraction, pretrain=pretrain.id if pretrain else None)
        job = FinetuneJob(id=job_id, config=config, fraction=fraction, pretrain=pretrain.id if pretrain else None)
        return self.finetune_jobs.setdefault(job.id, job)


def per_task_training(training: TrainConfig, n_tasks: int) -> TrainConfig:
    """A joint run in which every task keeps its single-task budget: ``batch_size`` examples of each
    task per step (uniform sampling, global batch n·b) for the same steps.

    Validation ground truth must not mix help with dilution: with a shared batch, each task of
    a pair would get only its sampling share, which depends on the partner's size, and the
    measured "gain of j from i" would partly be the examples i took from j.
    """
    if n_tasks <= 1:
        return training
    return dataclasses.replace(
        training, batch_size=training.batch_size * n_tasks, sampling="uniform", tasks_per_step=None
    )


# -- identity ------------------------------------------------------------------------------------
def _job_config(config: RunConfig, tasks, training: TrainConfig, seed: int) -> RunConfig:
    """The study config narrowed to one job: only what changes that job's result is left in."""
    wanted = set(tasks)
    return dataclasses.replace(
        config,
        tasks=tuple(t for t in config.tasks if t.name in wanted),
        training=training,
        seed=seed,
        name="experiment",
        affinity=AffinityConfig(),
        source_file=None,
    )


def _job_id(kind: str, config: RunConfig, data: dict[str, str], **extra) -> str:
    """Hash of what changes a job's result: its config, extras, and the data of exactly its tasks."""
    own = {t.name: data[t.name] for t in config.tasks if t.name in data}
    # A job records no affinities: the affinity section (and its defaults) never changes its result.
    identity = {k: v for k, v in config.identity().items() if k != "affinity"}
    blob = json.dumps(
        {"job": kind, "config": identity, **extra, **({"data": own} if own else {})}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
