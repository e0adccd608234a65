"""PyTorch Lightning callback that records task affinities (``pip install 'taskaffinity[lightning]'``).

Contract: the LightningModule's ``training_step`` returns a dict with the loss Lightning
backpropagates under ``"loss"`` and the per-task scalar losses it is made of under
``"task_losses"``::

    def training_step(self, batch, batch_idx):
        z = self.backbone(batch["x"])
        task_losses = {t: F.cross_entropy(self.heads[t](z), batch[t]) for t in self.tasks}
        return {"loss": sum(task_losses.values()), "task_losses": task_losses}

    trainer = pl.Trainer(callbacks=[AffinityCallback("backbone", out="runs/aff")])

Right before Lightning's backward (``on_before_backward``, automatic and manual
optimization alike) the callback hands ``task_losses`` to
:meth:`AffinityMeter.record <taskaffinity.loops.meter.AffinityMeter.record>`: per-task
gradients of the shared parameters, graph kept, ``.grad`` left to Lightning. Lightning's
own backward, precision plugin, gradient accumulation and clipping run unchanged; the
per-task gradients cost extra (``docs/own_loop.md``). Each micro-batch is one recorded
step. An optional ``"task_counts"`` (task -> labelled examples in the batch) marks tasks
with none as absent. Results: ``callback.meter.store``; with ``out``, written at the end
of fitting (a run that recorded nothing logs a warning instead). Each closed window is also logged
through the trainer's own loggers (``trainer.loggers``: TensorBoard, MLflow, W&B, CSV ...) as
``affinity/<estimator>/<source>_to_<target>`` at the meter's step, unless ``meter_kwargs`` hold
another ``log_to``.

Held-out probe (the library's default estimator, ``first_order_sgd`` = η g_i·g_j / L_j from
per-task gradients of a held-out batch): with ``probe_losses`` (``pl_module -> {task: scalar
loss}`` on a batch the caller fixes) and ``probe_every``, the callback calls
:meth:`AffinityMeter.probe <taskaffinity.loops.meter.AffinityMeter.probe>` in ``on_train_batch_end``
once ``trainer.global_step`` (optimizer steps) reaches each multiple of ``probe_every``: once per
optimizer step, also with gradient accumulation. The probe leaves parameters, buffers, ``.grad``,
the optimizer, the RNG and the training mode as they were::

    val = next(iter(val_loader))                            # one fixed held-out batch
    def probe_losses(module):
        z = module.backbone(val["x"].to(module.device))
        return {t: F.cross_entropy(module.heads[t](z), val[t].to(module.device)) for t in module.tasks}

    AffinityCallback("backbone", probe_losses=probe_losses, probe_every=20)
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl

from ..errors import TaskAffinityError
from .fronts import HeldOutProbe, check_meter_kwargs, check_step_tasks
from .meter import AffinityMeter

log = logging.getLogger(__name__)


class AffinityCallback(pl.Callback):
    """Records task affinities from a LightningModule whose ``training_step`` returns ``task_losses``.

    ``shared``: the name of the module attribute holding the shared parameters (e.g.
    ``"backbone"``), or a function ``pl_module -> module or parameters``. ``tasks``: task
    order of the matrices (default: the order of the first step's ``task_losses``).
    ``optimizer_rule``: record ``stream_first_order_optimizer`` with the module's
    (first) optimizer. ``out``: folder for :meth:`AffinityMeter.save` at the end of fitting.
    ``probe_losses``: ``pl_module -> {task: scalar loss}`` on a fixed held-out batch;
    ``probe_every``: optimizer steps between probes (required with ``probe_losses``);
    ``probe_rules`` (default ``["sgd"]``) and ``probe_lookahead`` (``"first_order"``) go to
    :meth:`AffinityMeter.probe` as ``rules`` and ``lookahead``. Each probe adds, at the meter's
    step (micro-batches), one k × k matrix per estimator (``first_order_sgd``, ``gram``,
    ``cosine``; ``first_order_optimizer`` with ``"optimizer"``; ``lookahead_<rule>`` with
    ``"exact"``) to ``meter.store``.
    Other keywords go to :class:`AffinityMeter` (``lr``, ``window``, ``vmap``,
    ``start``, ``every``, ``estimators``, ``sketch_dim``, ``seed``); others are refused here.
    """

    def __init__(
        self,
        shared,
        *,
        tasks: list[str] | None = None,
        optimizer_rule: bool = True,
        out: str | Path | None = None,
        probe_losses=None,
        probe_every: int | None = None,
        probe_rules=None,
        probe_lookahead: str = "first_order",
        **meter_kwargs,
    ):
        check_meter_kwargs(meter_kwargs, "AffinityCallback", "keyword")
        self.probe = HeldOutProbe(
            probe_losses,
            probe_every,
            probe_rules,
            probe_lookahead,
            where="AffinityCallback",
            optimizer_rule=optimizer_rule,
        )
        self.shared, self.tasks, self.optimizer_rule = shared, tasks, optimizer_rule
        self.out, self.meter_kwargs = out, meter_kwargs
        self.meter: AffinityMeter | None = None
        self._pending: dict | None = None
        self._state: dict | None = None

    # -- catching task_losses on their way from training_step to the backward -------------------
    def setup(self, trainer, pl_module, stage):
        if stage != "fit" or "training_step" in vars(pl_module):
            return
        step = pl_module.training_step

        def training_step(*args, **kwargs):
            output = step(*args, **kwargs)
            if not isinstance(output, dict) or not isinstance(output.get("task_losses"), dict):
                raise TaskAffinityError(
                    f"AffinityCallback: {type(pl_module).__name__}.training_step must return a dict with "
                    "'loss' and 'task_losses' (task -> scalar loss), got "
                    + (f"keys {sorted(output)}" if isinstance(output, dict) else type(output).__name__)
                )
            self._pending = (output["task_losses"], output.get("task_counts"))
            return output

        pl_module.training_step = training_step  # an instance attribute: the class stays as it is

    def teardown(self, trainer, pl_module, stage):
        if stage == "fit" and "training_step" in vars(pl_module):
            del pl_module.training_step

    def on_before_backward(self, trainer, pl_module, loss):
        if self._pending is None:
            return
        (losses, counts), self._pending = self._pending, None
        if self.meter is None:
            self.meter = self._make_meter(trainer, pl_module, losses)
        check_step_tasks(losses, self.meter.tasks, self.tasks is not None, "AffinityCallback")
        self.meter.record(losses, present=counts)

    # -- the held-out probe, after the optimizer step ---------------------------------------------
    def on_train_start(self, trainer, pl_module):
        self.probe.start(trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.probe.after_step(self.meter, trainer.global_step)

    def _make_meter(self, trainer, pl_module, losses) -> AffinityMeter:
        shared = self.shared(pl_module) if callable(self.shared) else getattr(pl_module, self.shared, None)
        if shared is None:
            raise TaskAffinityError(
                f"AffinityCallback: {type(pl_module).__name__} has no attribute '{self.shared}' "
                "(shared= names the module holding the shared parameters)"
            )
        optimizer = trainer.optimizers[0] if self.optimizer_rule and trainer.optimizers else None
        if optimizer is not None and hasattr(optimizer, "optimizer"):  # Lightning's wrapper
            optimizer = optimizer.optimizer
        logs = {"log_to": _loggers(trainer)} if trainer.loggers and "log_to" not in self.meter_kwargs else {}
        meter = AffinityMeter(
            pl_module, shared, tasks=self.tasks or list(losses), optimizer=optimizer, **logs, **self.meter_kwargs
        )
        if self._state is not None:
            meter.load_state_dict(self._state)
        return meter

    # -- results and checkpoints ----------------------------------------------------------------
    def on_train_end(self, trainer, pl_module):
        if self.out is None or not trainer.is_global_zero:
            return
        if self.meter is not None and self.meter.records:
            self.meter.save(self.out)
        else:  # the fit is done and kept: say why there is nothing to write, do not fail
            meter = self.meter
            log.warning(
                "AffinityCallback: no affinity recorded in %d micro-batches (meter start=%s, window=%s): "
                "nothing written to %s",
                meter.step if meter else 0,
                meter.start if meter else "-",
                meter.window if meter else "-",
                self.out,
            )

    def state_dict(self) -> dict:
        return {"meter": self.meter.state_dict()} if self.meter is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        self._state = state_dict.get("meter")
        if self.meter is not None and self._state is not None:
            self.meter.load_state_dict(self._state)


def _loggers(trainer):
    """The trainer's loggers as one ``log_to`` function (rank 0 logs, as Lightning's loggers do)."""

    def log(values: dict, step: int) -> None:
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(values, step=step)

    return log
