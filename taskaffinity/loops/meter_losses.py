"""Which tasks a step's losses measure: present, absent (no labelled example) or non-finite.

With partially labelled multi-task data a task often has no labelled row in a batch.
Its loss then says so: exactly 0 (a masked mean, ``(l * mask).sum() / mask.sum().clamp(min=1)``,
or a constant ``torch.tensor(0.)``) or NaN (a mean over no element, ``ignore_index`` on every
row). Recorded as present, such a task would dilute its Gram and cosine rows with zeros and
turn its first-order windows (η G_ij / L_j) into NaN that a run mean drops without a word.
So a task is *present* at a step (enters the estimators) only when its loss is finite and
not exactly 0 and the caller did not say it had no example (``present=``); it is counted
either way (:class:`TaskCounts`, the store's metadata).

``.grad`` keeps the plain backward's meaning for every finite loss; a NaN or infinite loss
is left out of it (its gradient would make every parameter NaN) and named in a warning.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch

from ..affinity.lookahead import task_losses
from ..affinity.windows import finite_tasks
from ..errors import TaskAffinityError

log = logging.getLogger("taskaffinity.loops.meter")

NO_EXAMPLES, NON_FINITE = "no_examples", "non_finite"


@dataclass
class StepLosses:
    """One step's losses sorted out (tasks in the meter's order).

    ``graded``: tasks whose loss enters ``.grad`` (finite, depends on a parameter);
    ``present``: those of them that enter the estimators; ``values``: every finite loss
    (host floats, as passed); ``skipped``: task -> why it is not present.
    """

    graded: list[str]
    present: list[str]
    values: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def screen_losses(
    losses: dict, tasks: list[str], present: dict | None = None, *, where: str, read_values: bool = True
) -> StepLosses:
    """Sort a step's ``losses`` (task -> scalar tensor) into graded / present / skipped tasks.

    ``present``: task -> bool or number of labelled examples in this step (0 or False:
    absent); tasks it leaves out are judged from their loss. ``read_values=False`` (an
    unrecorded step whose ``.grad`` is the caller's) reads no loss value: every loss that
    depends on a parameter counts as graded and present. Raises TaskAffinityError naming the
    task for a constant non-zero loss (it cannot be differentiated and is not "no example").
    """
    order = task_losses(losses, tasks, where=where)
    flags = _present_flags(present, tasks, where)
    constant = [t for t in order if not losses[t].requires_grad]
    values = {}
    if read_values or constant:
        wanted = order if read_values else constant
        device = losses[wanted[0]].device
        numbers = torch.stack([losses[t].detach().reshape(()).float().to(device) for t in wanted]).tolist()
        values = dict(zip(wanted, numbers))
    step = StepLosses(graded=[], present=[])
    for task in order:
        value = values.get(task)
        if task in constant:
            if value == 0 or not math.isfinite(value):  # torch.tensor(0.) / NaN: no labelled example
                step.skipped[task] = NO_EXAMPLES
                continue
            raise TaskAffinityError(
                f"{where}: the loss of task '{task}' is a constant {value:g} that depends on no "
                "parameter; pass the loss computed from the model, or leave the task out of "
                "this step's losses (or give it as absent: present={task: 0})"
            )
        if value is not None and not math.isfinite(value):
            step.skipped[task] = NO_EXAMPLES if flags.get(task) is False else NON_FINITE
            continue
        step.graded.append(task)
        if value is not None:
            step.values[task] = value
        if flags.get(task) is False or value == 0:
            step.skipped[task] = NO_EXAMPLES
        else:
            step.present.append(task)
    return step


def _present_flags(present, tasks, where) -> dict[str, bool]:
    if present is None:
        return {}
    if not isinstance(present, dict):
        raise TaskAffinityError(
            f"{where}: present= must be a dict task -> bool or count of labelled examples, got {type(present).__name__}"
        )
    flags = {}
    for task, value in present.items():
        if task not in tasks:
            raise TaskAffinityError(
                f"{where}: present= names unknown task '{task}' (the meter's tasks: {', '.join(tasks)})"
            )
        if torch.is_tensor(value) and value.numel() == 1:
            value = value.item()
        if isinstance(value, bool):
            flags[task] = value
        elif isinstance(value, (int, float)) and math.isfinite(value) and value >= 0:
            flags[task] = value > 0
        else:
            raise TaskAffinityError(f"{where}: present['{task}'] must be a bool or a count >= 0, got {value!r}")
    return flags


class TaskCounts:
    """Per task, over recorded steps: how often it entered the estimators, and why not otherwise.

    ``present_steps[task]``: recorded steps whose estimators hold the task;
    ``skipped_steps[task][reason]``: recorded steps where its loss was given but left out,
    reason ``no_examples`` (0 or constant loss, ``present=`` 0) or ``non_finite`` (NaN or
    ±inf loss or gradient). Warns once per task and reason, naming them.
    """

    def __init__(self, tasks: list[str], where: str = "AffinityMeter"):
        self.tasks, self.where = list(tasks), where
        self.present = {t: 0 for t in self.tasks}
        self.skipped = {t: {NO_EXAMPLES: 0, NON_FINITE: 0} for t in self.tasks}
        self._warned: set[tuple[str, str]] = set()

    def add(self, present: list[str], skipped: dict[str, str]) -> None:
        for task in present:
            self.present[task] += 1
        for task, reason in skipped.items():
            self.skipped[task][reason] += 1
            self.warn(task, reason)

    def warn(self, task: str, reason: str, *, recorded: bool = True) -> None:
        if (task, reason) in self._warned:
            return
        self._warned.add((task, reason))
        counted = " (counted in the store's metadata, skipped_steps)" if recorded else ""
        if reason == NON_FINITE:
            log.warning(
                "%s: the loss or gradient of task '%s' is NaN or infinite (no labelled example in the batch, "
                "or divergence?): the task is left out of such steps%s, and a NaN or infinite loss is left "
                "out of .grad",
                self.where,
                task,
                counted,
            )
        else:
            log.info(
                "%s: task '%s' has no labelled example in a step (zero or constant loss, or present=0): it is "
                "absent from such steps%s",
                self.where,
                task,
                counted,
            )

    def metadata(self) -> dict:
        return {
            "present_steps": dict(self.present),
            "skipped_steps": {t: dict(v) for t, v in self.skipped.items() if any(v.values())},
        }

    def state_dict(self) -> dict:
        return {"present": dict(self.present), "skipped": {t: dict(v) for t, v in self.skipped.items()}}

    def load_state_dict(self, state: dict | None) -> None:
        if state:  # states saved before counts were kept have none
            self.present.update(state["present"])
            for task, reasons in state["skipped"].items():
                self.skipped[task].update(reasons)


def task_weights(weights: dict | None, losses: dict, graded: list[str]) -> list[float]:
    """w_i of the ``graded`` tasks (default 1); every task of ``losses`` needs a finite weight."""
    if weights is None:
        return [1.0] * len(graded)
    missing = [t for t in losses if t not in weights]
    if missing:
        raise TaskAffinityError(f"AffinityMeter.backward: no weight for task '{missing[0]}'")
    bad = next((t for t in losses if not math.isfinite(float(weights[t]))), None)
    if bad is not None:
        raise TaskAffinityError(
            f"AffinityMeter.backward: the weight of task '{bad}' must be finite, got {weights[bad]!r}"
        )
    return [float(weights[t]) for t in graded]


def finite_probe(probed: list[str], arrays: dict, skipped: dict[str, int]) -> tuple[list[str], dict]:
    """The probe's tasks and k × k arrays without the tasks that have a NaN or infinite value in it
    (a NaN or 0 loss, a NaN gradient): named in a warning, counted in ``skipped``."""
    keep = finite_tasks({e: torch.from_numpy(m) for e, m in arrays.items()})
    if all(keep):
        return probed, arrays
    for task, ok in zip(probed, keep):
        if not ok:
            skipped[task] += 1
            log.warning(
                "AffinityMeter.probe: task '%s' has a NaN or infinite loss, gradient or lookahead in this "
                "probe (no labelled example in the probe batch?): left out of it (counted in the store's "
                "metadata, probe_skipped)",
                task,
            )
    at = [k for k, ok in enumerate(keep) if ok]
    return [probed[k] for k in at], {e: m[at][:, at] for e, m in arrays.items()}
