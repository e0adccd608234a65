"""The trainer -> recorder contract: what a callback is told, what it may read, when it is called.

A callback (an affinity recorder, a logger) subclasses :class:`Callback` and overrides the
hooks it needs. Every hook's first argument is the run's :class:`TrainingContext`: the only
view of the training a callback gets (tasks, model, optimizer, device, processes, learning
rate, per-task loss scales), created by the trainer before :meth:`Callback.check` and the first
step. While a step runs, ``context.step_context`` (:class:`StepContext`) says which step it is,
its phase and how many examples of each task it holds.

The order of calls inside one step::

    on_step_begin(context, step, batches)             task -> collated sub-batch (this process's rows)
    on_task_gradients(context, step, task, loss, grads)   once per task, if some callback wants them
    on_before_optimizer_step(context, step, losses)   .grad holds the update (summed, or aggregated)
    on_after_optimizer_step(context, step, losses)
    on_evaluate(context, step, metrics)               when the trainer evaluates (below)

``grads`` are the gradients of the task's *unweighted* mean loss L_i with respect to
``context.trainable_parameters`` (encoder then heads, in order; ``None`` for parameters the
task does not touch). Per-task gradients cost one extra pass over the parameters per task, so
the trainer only computes them when some callback sets ``wants_task_gradients = True``; they
come from one backward pass per task on CPU, or are split from one packed pass on CUDA
(:mod:`taskaffinity.training.task_gradients`): a callback sees the same numbers either way.

The trainer decides when to evaluate: every ``training.eval_every`` steps, after the head
warm-up, at the end, and after every step for which a callback's :meth:`Callback.wants_evaluation`
is true (step 0: before training). ``state_dict`` / ``load_state_dict`` are saved in and
restored from checkpoints, so an interrupted run resumes its callbacks too.

A complete recorder in one file: ``examples/recorders/gradient_norms.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain
from typing import Any


@dataclass(frozen=True)
class StepContext:
    """The step in progress (``context.step_context`` from ``on_step_begin`` to ``on_after_optimizer_step``).

    ``counts``: examples of each task in the *global* batch of this step (b_i; sums to
    ``training.batch_size``), in the sampler's task order; under torchrun each process holds a
    shard of them. ``shard_weights``: b_i^r / b_i, this process's share of task i's rows (1.0
    in one process; absent for tasks with no rows here): weights that sum per-process losses
    and gradients to the global ones. ``loss_weights``: m_i, the weight of each task's mean loss
    L_i in this update's objective Σ_i m_i L_i (:mod:`taskaffinity.training.weighting`; Muppet's default:
    b_i / B / s_i).
    """

    step: int
    phase: str  # "head_warmup" (encoder frozen) or "joint"
    counts: dict[str, int]
    shard_weights: dict[str, float]
    loss_weights: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainingContext:
    """What callbacks may read about a joint run; fixed for the run except ``step_context``.

    ``tasks``: name -> :class:`~taskaffinity.tasks.data.TaskData` (splits, spec, label names);
    ``model``: the :class:`~taskaffinity.model.multitask.MultiTaskModel` (``shared_parameters()`` is the
    encoder, ``head(task)`` a task's head); ``tokenizer`` and ``max_length`` encode probe batches
    as training does (:func:`taskaffinity.training.batching.collate`); ``optimizer``: the AdamW that
    updates encoder and heads (read its state, never step it); ``lr``: ``training.lr``, the
    configured encoder learning rate (η of SGD-rule lookaheads by default; the scheduled value
    is in ``optimizer.param_groups``); ``loss_scales``: s_i, each task's loss is divided by it
    (1/log(n_classes), Aghajanyan et al. 2021); ``dist``: this process (``rank``, ``world``,
    ``main``, ``active``, ``sum_``; :mod:`taskaffinity.training.distributed`); ``packs_tasks``: the
    trainer runs all tasks' sub-batches in one encoder pass; ``use_amp``: bf16 autocast is on;
    ``aggregator``: ``training.aggregator`` (not ``sum``: the encoder's ``.grad`` before the
    optimizer step is the aggregated direction, :mod:`taskaffinity.training.aggregation`).
    """

    tasks: dict[str, Any]
    model: Any
    tokenizer: Any
    optimizer: Any
    device: Any
    dist: Any
    lr: float
    max_length: int
    loss_scales: dict[str, float]
    packs_tasks: bool
    use_amp: bool
    head_warmup_steps: int
    total_steps: int
    aggregator: str = "sum"
    step_context: StepContext | None = field(default=None, compare=False)

    def phase(self, step: int) -> str:
        """``head_warmup`` for steps up to ``head_warmup_steps`` (encoder frozen), then ``joint``."""
        return "head_warmup" if step <= self.head_warmup_steps else "joint"

    @property
    def trainable_parameters(self) -> list[tuple[str, Any]]:
        """(name, parameter) updated at this phase: encoder (unless frozen) then heads; the order of ``grads``."""
        named = chain(self.model.encoder.named_parameters(prefix="encoder"), self.model.head_parameters())
        return [(n, p) for n, p in named if p.requires_grad]


def training_context(trainer_or_context) -> TrainingContext:
    """The :class:`TrainingContext` of a :class:`~taskaffinity.training.loop.JointTrainer` (its ``context``),
    or the context itself: recorder methods called directly with a trainer keep working."""
    return getattr(trainer_or_context, "context", trainer_or_context)


class Callback:
    """Base class: every hook does nothing; override the ones you need (see the module docstring)."""

    wants_task_gradients: bool = False

    def check(self, context: TrainingContext) -> None:
        """Raise a TaskAffinityError if this callback cannot work with this run (before any output)."""

    def wants_evaluation(self, step: int) -> bool:
        """True to have the trainer evaluate after ``step`` (0: before the first step)."""
        return False

    def on_train_begin(self, context: TrainingContext) -> None: ...

    def on_step_begin(self, context: TrainingContext, step: int, batches: dict) -> None: ...

    def on_task_gradients(self, context: TrainingContext, step: int, task: str, loss, grads) -> None: ...

    def on_before_optimizer_step(self, context: TrainingContext, step: int, losses: dict) -> None: ...

    def on_after_optimizer_step(self, context: TrainingContext, step: int, losses: dict) -> None: ...

    def on_evaluate(self, context: TrainingContext, step: int, metrics) -> None: ...

    def on_train_end(self, context: TrainingContext) -> None: ...

    # Callbacks that accumulate results keep them in the trainer's checkpoints, so an
    # interrupted run resumes them too. Return None to keep nothing; JSON-able data only.
    def state_dict(self) -> dict | None:
        return None

    def load_state_dict(self, state: dict) -> None: ...


class CallbackList(Callback):
    """Calls every hook on a list of callbacks, in order."""

    def __init__(self, callbacks=()):
        self.callbacks = list(callbacks)

    @property
    def wants_task_gradients(self) -> bool:  # type: ignore[override]
        return any(cb.wants_task_gradients for cb in self.callbacks)

    def check(self, context):
        for cb in self.callbacks:
            cb.check(context)

    def wants_evaluation(self, step):
        return any(cb.wants_evaluation(step) for cb in self.callbacks)

    def on_train_begin(self, context):
        for cb in self.callbacks:
            cb.on_train_begin(context)

    def on_step_begin(self, context, step, batches):
        for cb in self.callbacks:
            cb.on_step_begin(context, step, batches)

    def on_task_gradients(self, context, step, task, loss, grads):
        for cb in self.callbacks:
            cb.on_task_gradients(context, step, task, loss, grads)

    def on_before_optimizer_step(self, context, step, losses):
        for cb in self.callbacks:
            cb.on_before_optimizer_step(context, step, losses)

    def on_after_optimizer_step(self, context, step, losses):
        for cb in self.callbacks:
            cb.on_after_optimizer_step(context, step, losses)

    def on_evaluate(self, context, step, metrics):
        for cb in self.callbacks:
            cb.on_evaluate(context, step, metrics)

    def on_train_end(self, context):
        for cb in self.callbacks:
            cb.on_train_end(context)

    def state_dict(self) -> dict:
        states = {f"{i}:{type(cb).__name__}": cb.state_dict() for i, cb in enumerate(self.callbacks)}
        return {key: state for key, state in states.items() if state is not None}

    def load_state_dict(self, state: dict) -> None:
        for i, cb in enumerate(self.callbacks):
            key = f"{i}:{type(cb).__name__}"
            if key in state:
                cb.load_state_dict(state[key])
