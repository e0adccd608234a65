"""Gradient conflict statistics of every training step (``affinity.conflicts: true``).

From the per-task gradients the trainer already computes, the rows m_i g_i of one update
over the trainable encoder parameters (g_i = ∇L_i, m_i the task's loss weight: the terms the
update sums, or the rows an aggregator combines), per step:

    conflicting_share              share of task pairs with cos(g_i, g_j) < 0
    conflict_magnitude_similarity  mean over conflicting pairs of 2‖m_i g_i‖‖m_j g_j‖ / (‖m_i g_i‖² + ‖m_j g_j‖²)
                                   (Yu et al. 2020, PCGrad, Definition 2: 1 for equal norms, → 0 when one dominates)
    mean_cosine                    mean cos(g_i, g_j) over pairs
    update_cosine                  cos(Σ_i m_i g_i, the aggregated direction): how much the aggregator turned
                                   the update (only with ``training.aggregator`` other than ``sum``)

The Gram matrix comes from :class:`~.gradient_rows.GradientRows` (one blocked pass); under
torchrun the rows are summed over processes first, as for the streamed estimators.
``OUT/conflicts.parquet`` holds one row per step (``step, tasks, pairs`` and the columns above).
"""

from __future__ import annotations

import math

import torch

from ..training.callbacks import Callback
from .formulas import flatten
from .gradient_rows import GradientRows

COLUMNS = (
    "step",
    "tasks",
    "pairs",
    "conflicting_share",
    "conflict_magnitude_similarity",
    "mean_cosine",
    "update_cosine",
)


def conflict_statistics(gram: torch.Tensor) -> dict[str, float]:
    """Pair statistics of a k × k Gram matrix of update rows (see the module docstring); k ≥ 2."""
    gram = gram.double()
    norms = gram.diagonal().clamp(min=0).sqrt()
    i, j = torch.triu_indices(len(gram), len(gram), offset=1)
    cosine = gram[i, j] / (norms[i] * norms[j]).clamp(min=1e-300)
    conflicting = cosine < 0
    similarity = 2 * norms[i] * norms[j] / (norms[i] ** 2 + norms[j] ** 2).clamp(min=1e-300)
    return {
        "pairs": int(len(cosine)),
        "conflicting_share": float(conflicting.double().mean()),
        "conflict_magnitude_similarity": float(similarity[conflicting].mean()) if conflicting.any() else math.nan,
        "mean_cosine": float(cosine.mean()),
    }


class ConflictRecorder(Callback):
    """Records :data:`COLUMNS` for every joint step from ``start_step`` on (rows in ``self.steps``)."""

    wants_task_gradients = True

    def __init__(self, *, start_step: int = 1):
        self.start_step = start_step
        self.steps: list[dict] = []
        self.rows: GradientRows | None = None
        self.active = False

    def on_step_begin(self, context, step, batches):
        self.active = step >= self.start_step and context.step_context.phase == "joint"
        if not self.active:
            return
        if self.rows is None:
            self.tasks = list(context.tasks)
            self.params = [p for _, p in context.model.shared_parameters()]
            self.rows = GradientRows(self.params, len(self.tasks))
        ids = {id(p) for p in self.params}
        self.positions = [k for k, (_, p) in enumerate(context.trainable_parameters) if id(p) in ids]
        self.rows.g.zero_()  # a task with no rows on this process adds nothing to the sum over processes

    def on_task_gradients(self, context, step, task, loss, grads):
        if self.active:
            k = self.tasks.index(task)
            self.rows.write(k, [grads[i] for i in self.positions])
            self.rows.g[k].mul_(context.step_context.shard_weights[task])

    def on_before_optimizer_step(self, context, step, losses):
        counts = context.step_context.counts
        if not self.active or len(counts) < 2:
            return
        context.dist.sum_(self.rows.g)
        present = [self.tasks.index(t) for t in counts]
        weights = torch.tensor([context.step_context.loss_weights[t] for t in counts], device=self.rows.g.device)
        gram, _ = self.rows.products(present)
        record = {
            "step": step,
            "tasks": len(present),
            **conflict_statistics(weights[:, None] * gram * weights[None, :]),
            "update_cosine": math.nan,
        }
        if context.aggregator != "sum":
            total = weights @ self.rows.g[present]  # Σ_i m_i g_i
            update = flatten([p.grad for p in self.params], self.params)
            record["update_cosine"] = float(
                (total @ update / (total.norm() * update.norm()).clamp(min=1e-30)).clamp(-1.0, 1.0)
            )  # float32 rounding can pass ±1
        self.steps.append(record)

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = list(state["steps"])
