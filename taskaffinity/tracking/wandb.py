"""Weights & Biases: a run from ``wandb.init`` (extra ``wandb``).

Runs of one study share a W&B group (the study's run name), each with a job type (``study``,
``affinity``, ``pretrain``, ``finetune``); several runs may be open in one process
(``reinit="create_new"``). Without a network, set ``tracking.wandb_mode: offline`` (or
``WANDB_MODE=offline``): the run is written under ``WANDB_DIR`` (default: the run's output folder)
and ``wandb sync`` uploads it later; ``wandb leet inspect --json`` reads it back as it is.
A resumed run reuses its id (``resume="allow"``).
"""

from __future__ import annotations

import os

from .base import Tracker
from .settings import missing_backend


def _wandb():
    try:
        import wandb
    except ImportError:
        raise missing_backend("wandb") from None
    return wandb


class WandbTracker(Tracker):
    """Logs to a W&B run (``wandb.init``'s). ``owns``: finish it when closed."""

    backend = "wandb"

    def __init__(self, run, *, owns: bool = False):
        self.run, self.owns = run, owns
        self.last_step = 0

    @classmethod
    def open(cls, spec, resume: dict | None = None) -> WandbTracker:
        wandb = _wandb()
        run_id = (resume or {}).get("id")
        # read now, not when wandb first set itself up in this process: a later run may have moved them
        directory = os.environ.get("WANDB_DIR") or spec.out_dir
        if directory is not None:
            os.makedirs(directory, exist_ok=True)
        run = wandb.init(
            project=spec.project,
            name=spec.name,
            group=spec.group,
            job_type=spec.job_type,
            dir=None if directory is None else str(directory),
            mode=spec.settings.wandb_mode or os.environ.get("WANDB_MODE"),
            id=run_id,
            resume="allow" if run_id else None,
            reinit="create_new",
        )
        return cls(run, owns=True)

    def log_scalars(self, values, step):
        # W&B keeps steps increasing: a step below the last one is dropped with a warning of its own
        self.run.log({k: float(v) for k, v in values.items()}, step=int(step))
        self.last_step = max(self.last_step, step)

    def log_params(self, params):
        self.run.config.update(params, allow_val_change=True)

    def log_image(self, name, image, step=None):
        wandb = _wandb()
        self.run.log({name: wandb.Image(image)}, step=self.last_step if step is None else int(step))

    def log_summary(self, values):
        self.run.summary.update({k: float(v) for k, v in values.items()})

    def state(self):
        return {"id": self.run.id}

    def close(self, failed=False):
        if self.owns:
            self.run.finish(exit_code=1 if failed else 0)
