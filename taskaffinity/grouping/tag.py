"""TAG network selection (Fifty et al. 2021, "Efficiently Identifying Task Groupings
for Multi-Task Learning", NeurIPS).

Candidate groups are task subsets. A group's score for a member ``t`` is the mean
affinity onto ``t`` from the other members (``singleton_score``, default 0.0, for
a group of one: a task trained alone receives no transfer). Choose at most ``k``
groups, overlap allowed, covering every task; each task is served by its best
chosen group containing it; maximise the total over tasks of the serving score.

Overlap matters: a task may sit in a group only to help the others (as a
source) while it is served elsewhere. The exact solver therefore does *not*
restrict to partitions of groups; it partitions the *served* tasks into blocks
and gives each block its best helpers (see :mod:`._blocks` for why this is
exact, :mod:`.tag_exact` for the integer program, :mod:`.tag_heuristic` for the
local search used beyond ~20 tasks).
"""

from __future__ import annotations

import numpy as np

from ._base import BaseGrouping, GroupingError
from ._blocks import best_group
from .tag_exact import MAX_EXACT_N, solve_exact
from .tag_heuristic import solve_heuristic

SOLVERS = ("auto", "exact", "heuristic")
AUTO_EXACT_N = 20


class TagGrouping(BaseGrouping):
    """TAG network selection of at most ``k`` groups.

    Parameters (keyword-only): ``k``; ``solver`` ``"exact"`` (optimal, n <= 22),
    ``"heuristic"`` (local search, any n) or ``"auto"`` (exact up to 20 tasks);
    ``singleton_score``; ``leave_alone`` (training alone is a free option and ``k``
    bounds the groups of two or more tasks; see :mod:`.alone`); ``seed``,
    ``n_starts``, ``n_kicks`` of the heuristic; ``time_limit`` (seconds) of the exact solver.

    After ``fit``, besides the attributes of :class:`BaseGrouping`: ``solver_``
    (the one that ran), ``blocks_`` (the served blocks) and ``stats_`` (exact
    solver counters: LP bound, surviving columns ...).
    """

    method = "tag"
    optimises_alone = True

    def __init__(
        self,
        *,
        k: int,
        solver: str = "auto",
        singleton_score: float = 0.0,
        leave_alone: bool = False,
        seed: int = 0,
        n_starts: int = 16,
        n_kicks: int = 50,
        time_limit: float | None = None,
    ):
        super().__init__(k=k, singleton_score=singleton_score, leave_alone=leave_alone)
        self.solver = solver
        self.seed = seed
        self.n_starts = n_starts
        self.n_kicks = n_kicks
        self.time_limit = time_limit

    def _fit_groups(self, A: np.ndarray):
        if self.solver not in SOLVERS:
            raise GroupingError(f"unknown TAG solver '{self.solver}' (choose from {', '.join(SOLVERS)})")
        if not np.isfinite(self.singleton_score):
            raise GroupingError(f"singleton_score must be finite, got {self.singleton_score}")
        n = len(A)
        solver = self.solver
        if solver == "auto":
            solver = "exact" if n <= AUTO_EXACT_N else "heuristic"
        if solver == "exact" and n > MAX_EXACT_N:
            raise GroupingError(
                f"exact TAG selection supports at most {MAX_EXACT_N} tasks, got {n}; use the heuristic solver"
            )
        leave_alone = bool(self.leave_alone)
        blocks, alone, _ = solve_heuristic(
            A,
            self.k,
            self.singleton_score,
            n_starts=self.n_starts,
            n_kicks=self.n_kicks,
            seed=self.seed,
            leave_alone=leave_alone,
        )
        self.stats_ = {}
        if solver == "exact":
            blocks, alone, _ = solve_exact(
                A,
                self.k,
                self.singleton_score,
                incumbent=(blocks, alone),
                time_limit=self.time_limit,
                stats=self.stats_,
                leave_alone=leave_alone,
            )
        self.solver_ = solver
        self.blocks_ = blocks
        # Each served block gets its best group: the block plus helper tasks (possibly none).
        return [best_group(A, b, self.singleton_score) for b in blocks]

    def _set_results(self, tasks, A, groups):
        super()._set_results(tasks, A, groups)
        self.blocks_ = [tuple(tasks[t] for t in b) for b in self.blocks_]
