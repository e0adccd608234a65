"""Gradient aggregation: one update direction of the shared encoder from the per-task gradients.

The trainer's default update is the sum of the weighted per-task gradients, Σ_i m_i ∇L_i
(``training.aggregator: sum``, one plain backward pass). Any other aggregator combines the
k × P matrix J of one update instead, row i = m_i ∇_θs L_i over the shared (encoder)
parameters θ_s that train at this step (the Jacobian of the weighted loss vector), with
torchjd's implementation (Quinton & Rey 2024, ``torchjd.aggregation``):

    mean         J rows averaged
    upgrad       UPGrad: each row projected onto the dual cone of the rows, averaged (Quinton & Rey 2024)
    pcgrad       PCGrad: conflicting rows projected onto each other's normal planes (Yu et al. 2020)
    mgda         MGDA: the minimum-norm point of the rows' convex hull (Désidéri 2012; Sener & Koltun 2018)
    cagrad       CAGrad: conflict-averse direction within radius c of the mean (Liu et al. 2021)
    imtl_g       IMTL-G: equal projections of the update on every row (Liu et al. 2021)
    dualproj     DualProj: the mean projected onto the dual cone of the rows
    aligned_mtl  Aligned-MTL: the rows' condition number made 1 (Senushkin et al. 2023)
    config       ConFIG: a conflict-free direction with equal cosines to the rows (Liu et al. 2024)
    graddrop     GradDrop: sign-consistency dropout of gradient entries (Chen et al. 2020)

The P-vector it returns is written into the shared parameters' ``.grad``; heads keep
Σ_i m_i ∇L_i (a head is touched by its own task only, so its gradient has nothing to
combine). Under torchrun every process's rows are summed first (``dist.sum_``), so every
process aggregates the same matrix. Aggregators that draw random numbers (PCGrad's task
order, GradDrop's masks) draw them from a generator seeded by the run's seed and the step,
the same on every process and on a resumed run.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError

TORCHJD_CLASSES = {
    "mean": "Mean",
    "upgrad": "UPGrad",
    "pcgrad": "PCGrad",
    "mgda": "MGDA",
    "cagrad": "CAGrad",
    "imtl_g": "IMTLG",
    "dualproj": "DualProj",
    "aligned_mtl": "AlignedMTL",
    "config": "ConFIG",
    "graddrop": "GradDrop",
}


def make_aggregator(name: str, *, cagrad_c: float = 0.4):
    """torchjd's aggregator for ``training.aggregator`` ``name`` (a callable: k × P matrix → P-vector)."""
    try:
        from torchjd import aggregation
    except ImportError:
        raise ConfigError(
            f"training.aggregator {name} needs torchjd: pip install 'taskaffinity[aggregators]'"
        ) from None
    cls = getattr(aggregation, TORCHJD_CLASSES[name])
    try:
        return cls(c=cagrad_c) if name == "cagrad" else cls()
    except ImportError as err:  # a solver torchjd needs for this aggregator
        raise ConfigError(f"training.aggregator {name}: {err}") from None


def aggregate(aggregator, matrix: torch.Tensor, *, seed: int) -> torch.Tensor:
    """``aggregator(matrix)`` with the global random generators forked and seeded by ``seed``."""
    devices = [matrix.device] if matrix.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        with torch.no_grad():
            return aggregator(matrix)


class TaskGradientMatrix:
    """The k × P rows m_i ∇L_i of one update over ``params`` (a subset of the trainable ones).

    ``positions``: index of each of ``params`` in the trainer's trainable parameters (the order of
    the per-task ``grads`` lists); ``tasks``: the step's tasks, in the order of the rows.
    Memory: k·P·4 bytes.
    """

    def __init__(self, params: list[torch.Tensor], positions: list[int], tasks: list[str]):
        self.params, self.positions, self.tasks = params, positions, list(tasks)
        self.sizes = [p.numel() for p in params]
        device = params[0].device if params else None
        self.matrix = torch.zeros(len(self.tasks), sum(self.sizes), device=device)

    def write(self, task: str, grads, weight: float) -> None:
        """Row of ``task`` := ``weight`` · its gradients (``grads``: one per trainable parameter, None = 0)."""
        row = self.matrix[self.tasks.index(task)]
        for part, index in zip(row.split(self.sizes), self.positions):
            grad = grads[index]
            if grad is None:
                part.zero_()
            else:
                part.copy_(grad.reshape(-1)).mul_(weight)

    def columns(self, param: torch.Tensor) -> slice:
        """The columns of one of ``params``."""
        k = next(i for i, p in enumerate(self.params) if p is param)
        start = sum(self.sizes[:k])
        return slice(start, start + self.sizes[k])

    def set_gradients(self, vector: torch.Tensor) -> None:
        """``.grad`` of ``params`` := ``vector`` (P,), cut and shaped like the parameters."""
        for p, part in zip(self.params, vector.split(self.sizes)):
            p.grad = part.view_as(p).to(p.dtype).clone()
