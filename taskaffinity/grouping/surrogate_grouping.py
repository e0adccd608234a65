"""Task groups chosen by a surrogate's predicted group gains instead of averages of pairs.

TAG network selection (Fifty et al. 2021) with the group score replaced: a group ``G``'s value
is the sum over its members of their predicted gains ``g_t(G)`` from a fitted surrogate
(:mod:`.surrogate`: Li et al. 2023; kernel surrogate models, ICLR 2026), where TAG uses the mean
affinity onto each member from its mates. Choose at most ``k`` groups, maximise the total.

A surrogate's gain of a member depends on the whole group, so TAG's helper reduction
(:mod:`._blocks`, exact only for means of pairs) does not apply: the groups partition the tasks.
With ``leave_alone`` a member predicted to lose may stay in its group only as a helper (the
others' gains may depend on it) and is served by its single-task model, so a group is worth
``sum_t max(g_t(G), singleton_score)`` and groups only form where some member gains
(:mod:`.alone`). The solver is the exact set-partitioning program of :mod:`.tag_exact` over a
table of every subset's value up to ``MAX_TABLE_N`` tasks (``solver="auto"``), the local
search of :mod:`.tag_heuristic` (calling the surrogate) beyond.

Predictions outside the subsets the surrogate was fitted on are extrapolations: a surrogate
fitted on groups of 3-4 tasks says little about groups of 10; keep ``k`` such that the chosen
groups resemble the training ones, and read the surrogate's held-out accuracy
(:func:`.gain_accuracy.held_out_accuracy`) before trusting its choice.
"""

from __future__ import annotations

import numpy as np

from ._base import BaseGrouping, GroupingError, check_k
from ._blocks import CHUNK, mask_matrix
from .tag import SOLVERS
from .tag_exact import solve_blocks
from .tag_heuristic import solve_values

MAX_TABLE_N = 16  # 2^16 subsets predicted once for the exact solver


class SurrogateGrouping(BaseGrouping):
    """At most ``k`` groups maximising the surrogate's predicted member gains.

    Keyword-only: ``k``; ``singleton_score`` (value of a task alone, default 0: the reference
    every gain is measured against); ``leave_alone``; ``solver`` (``auto``: exact up to
    ``MAX_TABLE_N`` tasks, ``exact``, ``heuristic``); ``seed``, ``n_starts``, ``n_kicks`` of the
    heuristic; ``time_limit`` of the exact solver. ``fit(surrogate)`` takes a fitted
    :class:`~.surrogate.GroupGainSurrogate`; a target without a model is scored as trained alone.

    After ``fit``: the attributes of :class:`BaseGrouping` (scores are predicted gains),
    ``solver_`` and ``stats_``.
    """

    method = "surrogate"
    optimises_alone = True

    def __init__(
        self,
        *,
        k: int,
        singleton_score: float = 0.0,
        leave_alone: bool = False,
        solver: str = "auto",
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

    def _member_gains(self, members: np.ndarray) -> np.ndarray:
        """Predicted gains (NaN off the group), a group of one at ``singleton_score``."""
        gains = self.surrogate_.predict_members(members)
        size = members.sum(axis=1)
        gains = np.where(members & np.isnan(gains), self.singleton_score, gains)  # no model: as alone
        return np.where(members & (size == 1)[:, None], self.singleton_score, gains)

    def _values(self, members: np.ndarray) -> np.ndarray:
        members = np.asarray(members, dtype=bool)
        gains = self._member_gains(members)
        if self.leave_alone:  # a member that would lose is a helper, served alone
            gains = np.maximum(gains, self.singleton_score)
        return np.where(members, gains, 0.0).sum(axis=1)

    def fit(self, surrogate) -> SurrogateGrouping:
        if not hasattr(surrogate, "models_"):
            raise GroupingError("surrogate is not fitted: call fit(subsets, gains) first")
        if self.solver not in SOLVERS:
            raise GroupingError(f"unknown solver '{self.solver}' (choose from {', '.join(SOLVERS)})")
        if not isinstance(self.leave_alone, (bool, np.bool_)):
            raise GroupingError(f"leave_alone must be True or False, got {self.leave_alone!r}")
        if not np.isfinite(self.singleton_score):
            raise GroupingError(f"singleton_score must be finite, got {self.singleton_score}")
        self.surrogate_ = surrogate
        tasks = list(surrogate.tasks_)
        n, k = len(tasks), check_k(self.k, len(surrogate.tasks_))
        solver = self.solver if self.solver != "auto" else ("exact" if n <= MAX_TABLE_N else "heuristic")
        if solver == "exact" and n > MAX_TABLE_N:
            raise GroupingError(f"exact selection tabulates 2^n subsets: n = {n} > {MAX_TABLE_N}; use the heuristic")
        alone_value = float(self.singleton_score) if self.leave_alone else None
        blocks, alone, _ = solve_values(
            self._values, n, k, alone_value=alone_value, n_starts=self.n_starts, n_kicks=self.n_kicks, seed=self.seed
        )
        self.stats_ = {}
        if solver == "exact":
            table = np.empty(1 << n)
            for lo in range(0, len(table), CHUNK):
                hi = min(len(table), lo + CHUNK)
                table[lo:hi] = self._values(mask_matrix(lo, hi, n))
            blocks, alone, _ = solve_blocks(
                table,
                n,
                k,
                incumbent=(blocks, alone),
                alone_value=alone_value,
                time_limit=self.time_limit,
                stats=self.stats_,
            )
        self.solver_ = solver
        self._set_results(tasks, None, blocks)
        if self.leave_alone:
            self.alone_reasons_ = self._alone_reasons()
        return self

    def _scores_of(self, A):
        n = len(self.surrogate_.tasks_)

        def scores_of(members):
            row = np.zeros((1, n), dtype=bool)
            row[0, list(members)] = True
            return self._member_gains(row)[0, list(members)]

        return scores_of

    def pair_gains(self) -> np.ndarray:
        """``P[s, t]``: predicted gain of ``t`` trained with ``s`` alone (sources x targets)."""
        n = len(self.surrogate_.tasks_)
        pairs = [(s, t) for s in range(n) for t in range(s + 1, n)]
        members = np.zeros((len(pairs), n), dtype=bool)
        for r, (s, t) in enumerate(pairs):
            members[r, [s, t]] = True
        gains = self._member_gains(members)
        P = np.zeros((n, n))
        for r, (s, t) in enumerate(pairs):
            P[s, t], P[t, s] = gains[r, t], gains[r, s]
        return P

    def _alone_reasons(self) -> list[dict]:
        from .alone import alone_reasons

        return alone_reasons(self, self.pair_gains(), bound=False)
