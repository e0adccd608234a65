"""Streamed affinity estimators from one step's products, and their window means.

One home for what every streaming client (the meter, the trainer's stream recorder)
does after it has a step's per-task gradient products:

* :func:`step_estimates` turns the Gram matrix G_ij = g_i·g_j (and, for the optimizer
  rule, P_ij = −Δ_i·g_j) plus the step's per-task losses L_j into the streamed
  estimators, matrices indexed [source i, target j]:

  ``stream_gram``                   G_ij                       (loss² / parameter² units)
  ``stream_cosine``                 G_ij / (‖g_i‖ ‖g_j‖)        (dimensionless, in [−1, 1])
  ``stream_first_order_sgd``        η G_ij / L_j               (relative loss change, Fifty et al. 2021
                                                                 Eq. 2 to first order)
  ``stream_first_order_optimizer``  P_ij / L_j = −Δ_i·g_j / L_j  (same, with the optimizer's step)

* :func:`feature_estimates` does the same for gradients with respect to the shared
  *representation* z (the trunk's output every head reads) instead of the shared
  parameters: c_i = ∂L_i/∂z, ``feature_gram`` = c_i·c_j and ``feature_cosine``. These cost
  k backward passes through the heads only; they ignore the trunk's Jacobian J
  (g_i·g_j = c_iᵀ J Jᵀ c_j), as MGDA-UB's bound does (Sener & Koltun 2018), so they are a
  different quantity from ``stream_gram``, measured against it in ``docs/own_loop.md``.

* :func:`finite_tasks` says which tasks of a step have finite estimates: a task with a NaN or
  infinite loss or gradient is left out of the step by name, never averaged away.

* :class:`WindowedMeans` sums them over ``window`` recorded steps and emits the means
  as tidy records (one per pair): windows are the samples behind standard errors,
  bootstrap intervals and reliability (``store``, ``reliability``).
"""

from __future__ import annotations

import numpy as np
import torch

from .estimators import FEATURE, STREAMED  # noqa: F401  (the names these functions write)
from .formulas import cosine_from_gram, first_order_from_products


def step_estimates(
    gram: torch.Tensor, losses: torch.Tensor, lr: float, products: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """The streamed estimators of one step (k × k each, rows sources, columns targets).

    ``gram``: k × k Gram matrix of the step's per-task gradients; ``losses``: the k
    per-task losses L_j the gradients are of; ``lr``: η of the SGD rule; ``products``:
    k × k matrix −Δ_i·g_j of the optimizer rule (omit to skip that estimator).
    """
    out = {
        "stream_gram": gram,
        "stream_cosine": cosine_from_gram(gram),
        "stream_first_order_sgd": first_order_from_products(lr * gram, losses),
    }
    if products is not None:
        out["stream_first_order_optimizer"] = first_order_from_products(products, losses)
    return out


def feature_estimates(gram: torch.Tensor) -> dict[str, torch.Tensor]:
    """``feature_gram`` and ``feature_cosine`` from the k × k Gram matrix of c_i = ∂L_i/∂z."""
    return {"feature_gram": gram, "feature_cosine": cosine_from_gram(gram)}


def finite_tasks(estimates: dict[str, torch.Tensor]) -> list[bool]:
    """Per task (rows = columns of the k × k ``estimates``): whether its row and column are finite in
    every estimator. A task with a NaN or infinite gradient (its Gram diagonal) is out first, then
    any whose entries with the remaining tasks are not finite."""
    finite = torch.stack([torch.isfinite(m) for m in estimates.values()]).all(0).cpu()
    keep = finite.diagonal().clone()
    inner = finite[keep][:, keep]
    if inner.numel():
        at = keep.nonzero().flatten()
        keep[at[~(inner.all(0) & inner.all(1))]] = False
    return keep.tolist()


class WindowedMeans:
    """Running sums of per-step estimator matrices over a window of steps; emits their means.

    ``add(estimates, present)`` adds one step's k × k matrices for the tasks at positions
    ``present`` (of ``tasks``); a pair's mean counts only the steps where both tasks were
    present. ``emit(step)`` returns one record per measured pair and estimator
    (``step, estimator, source, target, value``) and starts a new window.
    """

    def __init__(self, tasks: list[str]):
        self.tasks = list(tasks)
        self.counts: np.ndarray | None = None
        self.sums: dict[str, np.ndarray] = {}

    def add(self, estimates: dict[str, torch.Tensor], present) -> None:
        n = len(self.tasks)
        if self.counts is None:
            self.counts = np.zeros((n, n))
            self.sums = {}
        cells = np.ix_(np.asarray(present), np.asarray(present))
        self.counts[cells] += 1
        values = torch.stack(list(estimates.values())).double().cpu().numpy()  # one device-to-host copy
        for name, matrix in zip(estimates, values):
            total = self.sums.setdefault(name, np.zeros((n, n)))
            total[cells] += matrix

    def emit(self, step: int) -> list[dict]:
        records: list[dict] = []
        if self.counts is None:
            return records
        with np.errstate(invalid="ignore", divide="ignore"):
            for name, total in self.sums.items():
                mean = total / self.counts
                for i, source in enumerate(self.tasks):
                    for j, target in enumerate(self.tasks):
                        if self.counts[i, j] > 0:
                            records.append(
                                {
                                    "step": step,
                                    "estimator": name,
                                    "source": source,
                                    "target": target,
                                    "value": float(mean[i, j]),
                                }
                            )
        self.counts, self.sums = None, {}
        return records

    def state_dict(self) -> dict | None:
        """The open window (JSON-able), or None when no step was added since the last emit."""
        if self.counts is None:
            return None
        return {"counts": self.counts.tolist(), "sums": {k: v.tolist() for k, v in self.sums.items()}}

    def load_state_dict(self, state: dict | None) -> None:
        if state:
            self.counts = np.array(state["counts"])
            self.sums = {k: np.array(v) for k, v in state["sums"].items()}
        else:
            self.counts, self.sums = None, {}
