"""Window bookkeeping of ``AffinityMeter``: a recorded step's estimates into the open window, a full
window out as records, and which tasks each step counted or left out.

A step's estimates are the k × k matrices of the tasks it recorded (meter order). A task whose
row or column is NaN or infinite (a non-finite gradient) is left out of the step by name; a step
with fewer than two tasks left adds nothing. Every ``size`` added steps the window mean becomes
one record per estimator, source and target (``windows.WindowedMeans``): the sample unit of
standard errors, bootstrap intervals and reliability.
"""

from __future__ import annotations

import torch

from ..affinity.windows import WindowedMeans, finite_tasks
from .meter_losses import NON_FINITE, TaskCounts


class StreamWindows:
    """Streamed estimates of ``tasks`` averaged over windows of ``size`` recorded steps."""

    def __init__(self, tasks: tuple[str, ...], size: int):
        self.tasks, self.size = tasks, size
        self.means = WindowedMeans(tasks)
        self.counts = TaskCounts(tasks)
        self.recorded = 0  # steps added to the open window

    def add_step(
        self, step: int, estimates: dict[str, torch.Tensor], index: list[int], skipped: dict[str, str]
    ) -> list[dict]:
        """Add step ``step``'s ``estimates`` (over the tasks at positions ``index``); ``skipped``
        (task -> why) gains the tasks left out for a non-finite value. Returns the records of the
        window this step closed (none while it stays open)."""
        keep = finite_tasks(estimates)
        skipped.update({self.tasks[k]: NON_FINITE for k, ok in zip(index, keep) if not ok})
        if sum(keep) < 2:
            return []
        if not all(keep):
            at = torch.tensor([k for k, ok in enumerate(keep) if ok])
            estimates = {
                e: m.index_select(0, at.to(m.device)).index_select(1, at.to(m.device)) for e, m in estimates.items()
            }
        kept = [k for k, ok in zip(index, keep) if ok]
        self.means.add(estimates, kept)
        self.counts.add([self.tasks[k] for k in kept], {})
        self.recorded += 1
        if self.recorded < self.size:
            return []
        self.recorded = 0
        return self.means.emit(step)

    def state_dict(self) -> dict:
        return {
            "window": self.means.state_dict(),
            "recorded_in_window": self.recorded,
            "counts": self.counts.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.means.load_state_dict(state["window"])
        self.recorded = state["recorded_in_window"]
        self.counts.load_state_dict(state.get("counts"))
