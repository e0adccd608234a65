"""Hugging Face ``Trainer`` that records task affinities (needs ``accelerate``, as the Trainer does).

Contract: the model's forward returns a mapping (or ``ModelOutput``) with the loss the
Trainer backpropagates under ``"loss"`` and the per-task scalar losses it is made of
under ``"task_losses"``::

    class MultiTask(nn.Module):
        def forward(self, input_ids, attention_mask, labels_a, labels_b):
            z = self.encoder(input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]
            task_losses = {"a": F.cross_entropy(self.head_a(z), labels_a), "b": ...}
            return {"loss": sum(task_losses.values()), "task_losses": task_losses}

    trainer = AffinityTrainer(model=model, args=args, train_dataset=data, shared="encoder",
                              tasks=["a", "b"], affinity_out="runs/aff", meter_kwargs={"window": 10, "start": 200})
    trainer.train()                       # trainer.meter.store; affinity_out written at the end

:meth:`compute_loss` hands ``task_losses`` of every training micro-batch to
:meth:`AffinityMeter.record <taskaffinity.loops.meter.AffinityMeter.record>` (per-task gradients
of the shared parameters, graph kept) and returns ``"loss"``: the Trainer's own backward,
gradient accumulation, mixed precision and clipping run unchanged, at the cost of the
per-task gradients (``docs/own_loop.md``). Evaluation passes are not recorded. The
meter counts micro-batches: with gradient accumulation a, ``start``, ``every`` and ``window``
are in micro-batches (a × the Trainer's ``global_step``). The
meter's state is written into every Trainer checkpoint (``affinity_meter.json``) and read
back by ``train(resume_from_checkpoint=...)``, so an interrupted run loses no window. Each closed
window also goes to the Trainer's ``report_to`` callbacks (TensorBoard, MLflow, W&B ...) at the
``global_step`` of the optimizer step that closed it; they prefix names as for every training log
(``train/affinity/<estimator>/<source>_to_<target>``). A ``log_to`` in ``meter_kwargs`` replaces this.

Held-out probe (the library's default estimator, ``first_order_sgd`` = η g_i·g_j / L_j from
per-task gradients of a held-out batch): with ``probe_losses`` (``model -> {task: scalar loss}``
on a batch the caller fixes) and ``probe_every``, a ``TrainerCallback`` calls
:meth:`AffinityMeter.probe <taskaffinity.loops.meter.AffinityMeter.probe>` in ``on_step_end`` when
``state.global_step % probe_every == 0``: after the optimizer step, once per step also with
gradient accumulation. The probe leaves parameters, buffers, ``.grad``, the optimizer, the RNG
and the training mode as they were; its records go into checkpoints and to ``report_to`` as the
windows do::

    val = default_data_collator([eval_data[i] for i in range(128)])     # one fixed held-out batch
    def probe_losses(model):
        device = next(model.parameters()).device
        return model(**{k: v.to(device) for k, v in val.items()})["task_losses"]

    AffinityTrainer(..., shared="encoder", probe_losses=probe_losses, probe_every=20)
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import transformers
from transformers.trainer_utils import get_last_checkpoint

from ..errors import TaskAffinityError
from .fronts import HeldOutProbe, check_meter_kwargs, check_step_tasks
from .meter import AffinityMeter

STATE_FILE = "affinity_meter.json"
log = logging.getLogger(__name__)


class AffinityTrainer(transformers.Trainer):
    """``transformers.Trainer`` plus an :class:`AffinityMeter` fed from the model's ``task_losses``.

    ``shared``: attribute name of the module holding the shared parameters (dotted paths
    allowed, e.g. ``"encoder.layer"``), or a function ``model -> module or parameters``.
    ``tasks``: task order of the matrices (default: the first step's ``task_losses`` order; give
    it when a batch may hold only some of the tasks).
    ``optimizer_rule``: also record ``stream_first_order_optimizer`` with the Trainer's
    optimizer. ``affinity_out``: folder for :meth:`AffinityMeter.save` after ``train``.
    ``meter_kwargs`` go to :class:`AffinityMeter` (``lr``, ``window``, ``start``, ``every``,
    ``estimators``, ``vmap``, ``sketch_dim``); ``lr`` defaults to ``args.learning_rate``.
    ``probe_losses``: ``model -> {task: scalar loss}`` on a fixed held-out batch;
    ``probe_every``: optimizer steps (``global_step``) between probes (required with
    ``probe_losses``); ``probe_rules`` (default ``["sgd"]``) and ``probe_lookahead``
    (``"first_order"``) go to :meth:`AffinityMeter.probe` as ``rules`` and ``lookahead``. Each
    probe adds, at the meter's step (micro-batches), one k × k matrix per estimator
    (``first_order_sgd``, ``gram``, ``cosine``; ``first_order_optimizer`` with ``"optimizer"``;
    ``lookahead_<rule>`` with ``"exact"``) to ``meter.store``.
    """

    def __init__(
        self,
        *args,
        shared,
        tasks: list[str] | None = None,
        optimizer_rule: bool = True,
        affinity_out: str | Path | None = None,
        meter_kwargs: dict | None = None,
        probe_losses=None,
        probe_every: int | None = None,
        probe_rules=None,
        probe_lookahead: str = "first_order",
        **kwargs,
    ):
        check_meter_kwargs(
            dict(meter_kwargs or {}), "AffinityTrainer", "meter_kwargs key"
        )  # before the Trainer sets up
        probe = HeldOutProbe(
            probe_losses,
            probe_every,
            probe_rules,
            probe_lookahead,
            where="AffinityTrainer",
            optimizer_rule=optimizer_rule,
        )
        super().__init__(*args, **kwargs)
        self.shared, self.tasks, self.optimizer_rule = shared, tasks, optimizer_rule
        self.affinity_out, self.meter_kwargs = affinity_out, dict(meter_kwargs or {})
        self.meter: AffinityMeter | None = None
        self._meter_state: dict | None = None
        self.add_callback(_SaveMeterState(self))
        self.add_callback(_Probe(self, probe))  # before the reporter: a probe's values go out with its step
        self._report = _ReportAffinity(self)
        self.add_callback(self._report)

    def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
        outputs = model(**inputs)
        task_losses = outputs.get("task_losses") if hasattr(outputs, "get") else None
        if not isinstance(task_losses, dict) or outputs.get("loss") is None:
            raise TaskAffinityError(
                f"AffinityTrainer: {type(self.model).__name__}.forward must return a mapping with 'loss' and "
                "'task_losses' (task -> scalar loss), got "
                + (f"keys {sorted(outputs.keys())}" if hasattr(outputs, "keys") else type(outputs).__name__)
            )
        if model.training:
            if self.meter is None:
                self.meter = self._make_meter(task_losses)
            check_step_tasks(task_losses, self.meter.tasks, self.tasks is not None, "AffinityTrainer")
            self.meter.record(task_losses, present=outputs.get("task_counts"))
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

    def _make_meter(self, task_losses) -> AffinityMeter:
        model = self.model  # the unwrapped module: the parameters the meter reads are the trained ones
        shared = self.shared(model) if callable(self.shared) else _attribute(model, self.shared)
        optimizer = self.optimizer if self.optimizer_rule else None
        optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wrapper
        kwargs = {"lr": self.args.learning_rate, "log_to": self._report, **self.meter_kwargs}
        meter = AffinityMeter(model, shared, tasks=self.tasks or list(task_losses), optimizer=optimizer, **kwargs)
        if self._meter_state is not None:
            meter.load_state_dict(self._meter_state)
        return meter

    def train(self, resume_from_checkpoint=None, **kwargs):
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
        if resume_from_checkpoint:
            path = Path(resume_from_checkpoint) / STATE_FILE
            if path.exists():
                self._meter_state = json.loads(path.read_text())
                if self.meter is not None:
                    self.meter.load_state_dict(self._meter_state)
        result = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        if self.affinity_out is not None and self.is_world_process_zero():
            meter = self.meter
            if meter is not None and meter.records:
                meter.save(self.affinity_out)
            else:  # training is done and kept: say why there is nothing to write, do not fail
                log.warning(
                    "AffinityTrainer: no affinity recorded in %d micro-batches (meter start=%s, window=%s): "
                    "nothing written to %s",
                    meter.step if meter else 0,
                    meter.start if meter else "-",
                    meter.window if meter else "-",
                    self.affinity_out,
                )
        return result


class _SaveMeterState(transformers.TrainerCallback):
    """Writes the meter's state next to each checkpoint the Trainer saves."""

    def __init__(self, trainer: AffinityTrainer):
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        meter = self.trainer.meter
        if meter is not None and state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{transformers.trainer_utils.PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / (STATE_FILE + ".tmp")
            tmp.write_text(json.dumps(meter.state_dict()))
            os.replace(tmp, folder / STATE_FILE)


class _Probe(transformers.TrainerCallback):
    """The held-out probe after every ``probe_every``-th optimizer step."""

    def __init__(self, trainer: AffinityTrainer, probe: HeldOutProbe):
        self.trainer, self.probe = trainer, probe

    def on_train_begin(self, args, state, control, **kwargs):
        self.probe.start(state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        self.probe.after_step(self.trainer.meter, state.global_step)


class _ReportAffinity(transformers.TrainerCallback):
    """The meter's ``log_to``: closed windows wait for the end of their optimizer step, then go to the
    callbacks that ``args.report_to`` installed (not to the console printer or ``log_history``)."""

    def __init__(self, trainer: AffinityTrainer):
        self.trainer = trainer
        self.pending: list[dict] = []

    def __call__(self, values: dict, step: int) -> None:
        self.pending.append(values)

    def on_step_end(self, args, state, control, **kwargs):
        self.flush(args, state, control)

    def flush(self, args, state, control) -> None:
        from transformers.integrations import get_reporting_integration_callbacks

        if not self.pending:
            return
        logs, self.pending = self.pending, []
        kinds = tuple(get_reporting_integration_callbacks(args.report_to))
        for callback in self.trainer.callback_handler.callbacks if kinds else ():
            if isinstance(callback, kinds):
                for values in logs:
                    callback.on_log(args, state, control, logs=dict(values))


def _attribute(model, name: str):
    module = model
    for part in name.split("."):
        module = getattr(module, part, None)
        if module is None:
            raise TaskAffinityError(
                f"AffinityTrainer: {type(model).__name__} has no attribute '{name}' "
                "(shared= names the module holding the shared parameters)"
            )
    return module
