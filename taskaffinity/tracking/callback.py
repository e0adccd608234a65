"""The trainer's side of tracking: a :class:`~taskaffinity.training.callbacks.Callback` that logs a joint run.

Per training step (every ``log_every`` steps and the last), what ``steps.parquet`` holds:
``loss/<task>`` (L_i, unweighted mean loss), ``weight/<task>`` (m_i) and ``lr`` (the encoder's
scheduled learning rate, 0 during the head warm-up); per evaluation, what ``eval.parquet``
holds: ``<split>/<task>/<metric>``; and every record the recorders given in ``records_from``
produced (their ``records`` lists: probes and streamed windows, as in ``affinity.parquet``) as
``affinity/<estimator>/<source>_to_<target>`` at its step. Only the main process logs. Run ids
are kept in checkpoints, so a resumed run continues the same tracker runs.
"""

from __future__ import annotations

from ..training.callbacks import Callback
from .run import TrackingRun


class TrackingCallback(Callback):
    """Logs the run to ``run`` (module docstring). ``records_from``: callbacks with a ``records`` list."""

    def __init__(self, run: TrackingRun, *, records_from=(), log_every: int = 1):
        self.run, self.log_every = run, log_every
        self.sources = [  # a further held-out draw would repeat the run's own names: not logged
            cb for cb in records_from if isinstance(getattr(cb, "records", None), list) and not getattr(cb, "draw", 0)
        ]
        self.logged = [0] * len(self.sources)  # records of each source already logged
        self.active = False
        self.step = 0

    def on_train_begin(self, context):
        self.active = context.dist.main
        if not self.active:
            return
        self.run.start()
        # records restored from a checkpoint were logged before the interruption
        self.logged = [len(source.records) for source in self.sources]

    def on_after_optimizer_step(self, context, step, losses):
        if not self.active:
            return
        self.flush_records()
        self.step = step
        if step % self.log_every and step != context.total_steps:
            return
        info = context.step_context
        lr = context.optimizer.param_groups[0]["lr"] if info.phase == "joint" else 0.0  # as steps.parquet
        values = {f"loss/{task}": loss for task, loss in losses.items()}
        values.update({f"weight/{task}": info.loss_weights[task] for task in losses})
        values["lr"] = lr
        self.run.log_scalars(values, step)

    def on_evaluate(self, context, step, metrics):
        if self.active:
            self.run.log_scalars(
                {f"{row.split}/{row.task}/{row.metric}": row.value for row in metrics.itertuples()}, step
            )

    def on_train_end(self, context):
        if self.active:
            self.flush_records()

    def flush_records(self) -> None:
        """Log the records the recorders added since the last call."""
        for k, source in enumerate(self.sources):
            new = source.records[self.logged[k] :]
            if new:
                self.run.log_records(new)
                self.logged[k] = len(source.records)

    def state_dict(self):
        return {"runs": self.run.state(), "step": self.step}

    def load_state_dict(self, state):
        if not self.run.started:
            self.run.resume = dict(state.get("runs", {}))
