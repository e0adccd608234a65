"""TAG's group score (Fifty et al. 2021) and serving tasks by their best chosen group.

A group's score for a member ``t`` is the mean affinity onto ``t`` from the other members;
a group of one scores ``singleton_score``. Every grouping method is scored with it.
"""

from __future__ import annotations

import numpy as np

from ..errors import TaskAffinityError


class GroupingError(TaskAffinityError):
    """Unusable input to a grouping method (matrix shape, NaN, task names, k ...)."""


def group_scores(A: np.ndarray, members, singleton_score: float) -> np.ndarray:
    """Score of a group for each of its members: mean affinity from the other members.

    A group of one task gets ``singleton_score`` (alone, it receives no transfer).
    """
    members = np.asarray(members, dtype=int)
    if len(members) == 1:
        return np.array([float(singleton_score)])
    sub = A[np.ix_(members, members)]  # diagonal is 0, so column sums are sums over the others
    return sub.sum(axis=0) / (len(members) - 1)


def member_scores(A: np.ndarray, members: np.ndarray, singleton_score: float = 0.0) -> np.ndarray:
    """:func:`group_scores` of many groups at once: for a boolean (n_groups, n_tasks) ``members``
    matrix, the TAG score of every member (mean of ``A[mate, member]`` over its mates), NaN for
    non-members: TAG's mean-of-pairs prediction of each member's group gain."""
    members = np.asarray(members, dtype=bool)
    out = np.full(members.shape, np.nan)
    for r, row in enumerate(members):
        idx = np.flatnonzero(row)
        if len(idx):
            out[r, idx] = group_scores(A, idx, singleton_score)
    return out


def evaluate_groups(
    A: np.ndarray, groups, singleton_score: float, leave_alone: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Serve every task by its best chosen group: return (group index per task, score per task).

    Ties go to the earlier group. Without ``leave_alone`` every task must be in some group
    (TAG needs a cover); with it, a task in no group, or whose best group scores it no higher
    than ``singleton_score``, is trained alone: index -1, score ``singleton_score``.
    """
    return serve(
        lambda members: group_scores(A, members, singleton_score), groups, len(A), singleton_score, leave_alone
    )


def serve(scores_of, groups, n: int, singleton_score: float, leave_alone: bool = False):
    """:func:`evaluate_groups` for any group score ``scores_of(members) -> score per member``."""
    best = np.full(n, -np.inf)
    serving = np.full(n, -1)
    for g, members in enumerate(groups):
        scores = scores_of(members)
        for t, s in zip(members, scores):
            if serving[t] < 0 or s > best[t]:
                best[t], serving[t] = s, g
    if leave_alone:
        alone = (serving < 0) | ~(best > singleton_score)
        serving[alone], best[alone] = -1, float(singleton_score)
    elif (serving < 0).any():
        raise GroupingError(f"groups do not cover task index(es) {np.flatnonzero(serving < 0).tolist()}")
    return serving, best
