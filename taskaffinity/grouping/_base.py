"""Shared pieces of every grouping method: input checks, the TAG objective, the fit plumbing.

The objective every method is scored with is the one of TAG network selection
(Fifty et al. 2021, "Efficiently Identifying Task Groupings for Multi-Task
Learning"): a group's score for one of its members ``t`` is the mean affinity
onto ``t`` from the *other* members; a task is served by the chosen group that
scores it best; the objective is the total over tasks of that best score.
Affinity convention: ``A[i, j]`` is the affinity of source ``i`` onto target
``j`` (positive: ``i``'s update lowers ``j``'s loss).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .scores import GroupingError, evaluate_groups, group_scores, member_scores, serve  # noqa: F401


def validate_affinity(affinity) -> tuple[list[str], np.ndarray]:
    """Check a square source x target affinity frame; return task names and values.

    Rows and columns may be in different orders (they are aligned to the row
    order). The diagonal is ignored (set to 0): a task is never its own source.
    """
    if not isinstance(affinity, pd.DataFrame):
        raise GroupingError(f"affinity must be a pandas DataFrame (sources x targets), got {type(affinity).__name__}")
    rows, cols = affinity.shape
    if rows != cols:
        raise GroupingError(f"affinity matrix must be square, got {rows} source rows x {cols} target columns")
    if rows == 0:
        raise GroupingError("affinity matrix is empty: no tasks")
    sources = [str(x) for x in affinity.index]
    targets = [str(x) for x in affinity.columns]
    for what, names in (("row (source)", sources), ("column (target)", targets)):
        dup = sorted({x for x in names if names.count(x) > 1})
        if dup:
            raise GroupingError(f"duplicate {what} task name(s): {', '.join(dup)}")
    if set(sources) != set(targets):
        only_src = sorted(set(sources) - set(targets))
        only_tgt = sorted(set(targets) - set(sources))
        raise GroupingError(
            "affinity rows and columns must name the same tasks; "
            f"only as source: {only_src or '-'}; only as target: {only_tgt or '-'}"
        )
    frame = affinity.copy()
    frame.index, frame.columns = sources, targets
    frame = frame.loc[sources, sources]
    try:
        values = np.array(frame.to_numpy(dtype=float), dtype=float, copy=True)
    except (TypeError, ValueError) as err:
        raise GroupingError(f"affinity matrix has non-numeric entries: {err}") from None
    off = ~np.eye(rows, dtype=bool)
    bad = np.argwhere(off & ~np.isfinite(values))
    if len(bad):
        pairs = ", ".join(f"{sources[i]}->{sources[j]}" for i, j in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise GroupingError(
            f"affinity matrix has {len(bad)} NaN/infinite off-diagonal entr"
            f"{'y' if len(bad) == 1 else 'ies'} (source->target): {pairs}{more}; "
            "was every pair measured?"
        )
    values[~off] = 0.0
    return sources, values


def affinity_distance(A: np.ndarray) -> np.ndarray:
    """Square (n, n) distance ``max(S) − S`` of the symmetrised affinity ``S = (A + Aᵀ) / 2``: tasks
    with high mutual affinity are close. The maximum is over the finite off-diagonal entries;
    an unmeasured (NaN) pair gets the largest distance; the diagonal is 0. Hierarchical
    grouping, the heuristic's start and the report's clustered heatmaps all cluster on it
    (``scipy.spatial.distance.squareform(D, checks=False)`` gives the condensed form)."""
    S = (A + A.T) / 2
    off = ~np.eye(len(S), dtype=bool)
    finite = S[off & np.isfinite(S)]
    if not finite.size:
        return np.zeros_like(S)
    D = finite.max() - np.where(np.isfinite(S), S, finite.min())
    np.fill_diagonal(D, 0.0)
    return D


def check_k(k, n: int) -> int:
    """k must be an integer with 1 <= k <= n (n tasks)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise GroupingError(f"k must be an integer, got {k!r}")
    if not 1 <= k <= n:
        raise GroupingError(f"k must be between 1 and the number of tasks ({n}), got {k}")
    return int(k)


class BaseGrouping:
    """scikit-learn style: settings in ``__init__``, ``fit(affinity)``, results in attributes.

    After ``fit``: ``tasks_`` (task order), ``groups_`` (list of tuples of task
    names), ``scores_`` (per group: total TAG score of the tasks it serves, so
    they add up to ``objective_`` with the alone tasks' scores), ``serves_`` (per
    group: tasks it serves), ``assignment_`` (task -> index of its serving group;
    None for a task trained alone), ``per_task_score_``, ``objective_`` (total over
    tasks, Fifty et al. 2021) and ``alone_`` (tasks trained alone, see below).

    ``leave_alone`` (keyword, default False): training alone is an option, worth
    ``singleton_score`` (0: the single-task model every gain is measured against) and
    not counted against ``k``, which then bounds the groups of two or more tasks; a task
    is served by a group only where that group scores it above training alone
    (:mod:`.alone`). Without it, every task is covered by one of at most ``k`` groups
    (groups of one included), TAG's original selection.
    """

    method = "base"
    # Whether _fit_groups already optimises with tasks left alone; otherwise fit prunes
    # harmed members of the groups it returns (:func:`.alone.prune_harmed`).
    optimises_alone = False

    def __init__(self, *, k: int, singleton_score: float = 0.0, leave_alone: bool = False):
        self.k = k
        self.singleton_score = singleton_score
        self.leave_alone = leave_alone

    def _fit_groups(self, A: np.ndarray) -> list[tuple[int, ...]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, affinity: pd.DataFrame) -> BaseGrouping:
        tasks, A = validate_affinity(affinity)
        check_k(self.k, len(tasks))
        if not isinstance(self.leave_alone, (bool, np.bool_)):
            raise GroupingError(f"leave_alone must be True or False, got {self.leave_alone!r}")
        groups = self._fit_groups(A)
        if self.leave_alone and not self.optimises_alone:
            from .alone import prune_harmed

            groups = prune_harmed(A, groups, self.singleton_score)
        self._set_results(tasks, A, groups)
        if self.leave_alone:
            from .alone import alone_reasons

            self.alone_reasons_ = alone_reasons(self, A)
        return self

    def _scores_of(self, A):
        """The group score the results are reported with: TAG's mean of pairs."""
        return lambda members: group_scores(A, members, self.singleton_score)

    def _set_results(self, tasks: list[str], A, groups) -> None:
        # Canonical form: members in task order, no duplicate groups, groups ordered by first member.
        leave_alone = bool(self.leave_alone)
        unique = sorted({tuple(sorted(int(t) for t in g)) for g in groups if len(g) > leave_alone})
        scores_of, n = self._scores_of(A), len(tasks)
        serving, per_task = serve(scores_of, unique, n, self.singleton_score, leave_alone)
        used = [g for g in range(len(unique)) if (serving == g).any()]  # a group serving nobody is dropped
        unique = [unique[g] for g in used]
        serving, per_task = serve(scores_of, unique, n, self.singleton_score, leave_alone)
        self.tasks_ = list(tasks)
        self.groups_ = [tuple(tasks[t] for t in g) for g in unique]
        self.serves_ = [tuple(tasks[t] for t in np.flatnonzero(serving == g)) for g in range(len(unique))]
        self.scores_ = [float(per_task[serving == g].sum()) for g in range(len(unique))]
        self.assignment_ = {tasks[t]: (int(serving[t]) if serving[t] >= 0 else None) for t in range(n)}
        self.per_task_score_ = {tasks[t]: float(per_task[t]) for t in range(n)}
        self.objective_ = float(per_task.sum())
        self.alone_ = [tasks[t] for t in range(n) if serving[t] < 0]
