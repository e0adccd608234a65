"""What the Lightning callback and the Hugging Face Trainer share: checks of their meter options
and of the tasks a step brings, so that both refuse the same things with the same words, and
their held-out probe (when to probe, with which options)."""

from __future__ import annotations

import inspect

import torch

from ..errors import TaskAffinityError

# Set by the front itself; the frameworks scale (GradScaler) and divide (accumulation) only the loss they
# backpropagate, so task_losses arrive unscaled and the meter must not undo a scale they do not carry.
FRONT_OWNED = ("model", "shared", "tasks", "optimizer", "scaler", "accumulation")


def check_meter_kwargs(meter_kwargs: dict, where: str, label: str) -> None:
    """Refuse, before training, meter options that do not exist (``label`` names them, e.g. ``meter_kwargs key``)
    or that the front sets itself."""
    from .meter import AffinityMeter

    unknown = sorted(set(meter_kwargs) - set(inspect.signature(AffinityMeter).parameters))
    if unknown:
        raise TaskAffinityError(
            f"{where}: unknown {label} '{unknown[0]}' (AffinityMeter takes lr, estimators, "
            "window, vmap, start, every, sketch_dim, seed)"
        )
    owned = sorted(set(meter_kwargs) & set(FRONT_OWNED))
    if owned:
        raise TaskAffinityError(
            f"{where}: {label} '{owned[0]}' is not for this front: task_losses are the unscaled "
            "per-task losses (loss scaling and accumulation apply to the backpropagated loss "
            "only), and model, shared, tasks and the optimizer are the front's arguments"
        )


def check_step_tasks(losses: dict, tasks: list[str], given: bool, where: str) -> None:
    """Refuse a task the meter does not know, saying where its task order came from."""
    unknown = [t for t in losses if t not in tasks]
    if unknown:
        origin = (
            ""
            if given
            else f" It is not in the first step's task_losses ({', '.join(tasks)}), from which the "
            "task order was taken: give tasks=[...] (every task) when a batch may hold only some of them."
        )
        raise TaskAffinityError(
            f"{where}: unknown task '{unknown[0]}' in task_losses (the meter's tasks: {', '.join(tasks)}).{origin}"
        )


class HeldOutProbe:
    """A front's held-out probe: ``meter.probe(probe_losses, ...)`` after every ``probe_every``-th optimizer step.

    The options are checked here, when the front is made, so that a bad one fails before training.
    ``probe_losses``: ``model -> {task: scalar loss}`` on a held-out batch the caller fixes;
    ``probe_every``: optimizer steps between probes (required with ``probe_losses``, refused without);
    ``probe_rules``: the update rules of :meth:`AffinityMeter.probe` (default ``["sgd"]``: ``first_order_sgd``,
    with ``gram`` and ``cosine``); ``probe_lookahead``: ``"first_order"`` or ``"exact"``.
    """

    def __init__(self, probe_losses, probe_every, probe_rules, probe_lookahead, *, where: str, optimizer_rule: bool):
        from ..affinity.updates import RULES

        if probe_losses is None:
            if probe_every is not None:
                raise TaskAffinityError(
                    f"{where}: probe_every={probe_every!r} needs probe_losses (a function "
                    "model -> {task: scalar loss} on a fixed held-out batch)"
                )
        elif not callable(probe_losses):
            raise TaskAffinityError(
                f"{where}: probe_losses must be a function model -> {{task: scalar loss}}, got "
                f"{type(probe_losses).__name__}"
            )
        elif probe_every is None:
            raise TaskAffinityError(f"{where}: probe_losses needs probe_every (optimizer steps between probes)")
        elif isinstance(probe_every, bool) or not isinstance(probe_every, int) or probe_every < 1:
            raise TaskAffinityError(f"{where}: probe_every must be an integer >= 1, got {probe_every!r}")
        rules = ["sgd"] if probe_rules is None else probe_rules
        if not isinstance(rules, (list, tuple)) or not rules or not all(isinstance(r, str) for r in rules):
            raise TaskAffinityError(
                f"{where}: probe_rules must be a non-empty list of {', '.join(RULES)}, got {probe_rules!r}"
            )
        bad = [r for r in rules if r not in RULES]
        if bad:
            raise TaskAffinityError(f"{where}: unknown probe_rules entry '{bad[0]}' (use {', '.join(RULES)})")
        if "optimizer" in rules and not optimizer_rule:
            raise TaskAffinityError(f"{where}: probe_rules 'optimizer' needs the optimizer (optimizer_rule=True)")
        if probe_lookahead not in ("first_order", "exact"):
            raise TaskAffinityError(f"{where}: probe_lookahead must be first_order or exact, got {probe_lookahead!r}")
        self.losses, self.every = probe_losses, probe_every
        self.rules, self.lookahead = tuple(rules), probe_lookahead
        self.last: int | None = None  # the optimizer step probed last (accumulation: several batches end there)

    def start(self, optimizer_steps: int) -> None:
        """Training (re)starts at ``optimizer_steps``: a step probed before a resume is not probed again."""
        self.last = optimizer_steps

    def after_step(self, meter, optimizer_steps: int) -> None:
        """Probe if ``optimizer_steps`` is a new multiple of ``probe_every`` and the meter exists."""
        if (
            self.losses is None
            or meter is None
            or optimizer_steps < 1
            or optimizer_steps == self.last
            or optimizer_steps % self.every
        ):
            return
        self.last = optimizer_steps
        with torch.enable_grad():
            meter.probe(self.losses, rules=self.rules, lookahead=self.lookahead, step=meter.step)
