"""Knowing when not to group: training alone as an option, and why a task was left alone.

Affinities and measured gains are both read against the task trained alone (score
``singleton_score``, 0 by default: the single-task model every gain is measured against).
With ``leave_alone=True`` a grouping method treats training alone as a free option: ``k``
bounds the groups of two or more tasks, and any number of tasks may stay alone.

The criterion is the TAG objective itself (Fifty et al. 2021) with that option. For TAG's
selection it is exact: a task ``t`` served by a group that scores it below training alone could
stay in that group as a helper (every other member keeps its score) while being served alone,
which raises the objective; so an optimal selection serves a task by a group only where the
group's predicted score for it is above training alone, and leaves every task alone when no
group is predicted to help. The baselines (clustering, communities) do not optimise the
objective, so their groups are pruned instead (:func:`prune_harmed`): the member scored lowest,
if at or below training alone, leaves its group, until every member of every group gains.

The decision uses the point estimates; how far to trust it is reported beside it: the
stability over bootstrap resamples (:mod:`.stability`) says how often each task came out alone.
"""

from __future__ import annotations

import numpy as np

from .scores import group_scores


def prune_harmed(A: np.ndarray, groups, singleton_score: float) -> list[tuple[int, ...]]:
    """Groups with every member scored above ``singleton_score`` by its mates (TAG's mean of
    pairs): repeatedly remove the lowest-scored member of any group while it is at or below;
    groups left with one task are dropped (that task is trained alone)."""
    groups = [list(g) for g in groups if len(g) >= 2]
    while True:
        worst = None
        for g, members in enumerate(groups):
            if len(members) < 2:
                continue
            scores = group_scores(A, members, singleton_score)
            i = int(np.argmin(scores))
            if scores[i] <= singleton_score and (worst is None or scores[i] < worst[0]):
                worst = (scores[i], g, i)
        if worst is None:
            return [tuple(g) for g in groups if len(g) >= 2]
        del groups[worst[1]][worst[2]]


def alone_reasons(grouping, A: np.ndarray, bound: bool = True) -> list[dict]:
    """Why each task of a fitted grouping (``alone_``) is trained alone.

    ``best_source``/``best_score``: the source with the highest pair score ``A[source, task]``
    onto the task, and that score. For TAG's mean of pairs (``bound``) it bounds the score of
    *every* group for the task (a mean over mates is at most their maximum); for a surrogate's
    predicted pair gains it speaks for pairs only. ``why``: nothing is predicted to help (best
    score at or below training alone), or a group would help but the ``k`` groups serve other
    tasks better, or its group scored it at or below training alone (a baseline's pruning).
    """
    nothing = "no group" if bound else "no pair"
    tasks, singleton = grouping.tasks_, float(grouping.singleton_score)
    out = []
    for task in grouping.alone_:
        t = tasks.index(task)
        column = np.where(np.arange(len(tasks)) == t, -np.inf, A[:, t])
        s = int(np.argmax(column)) if len(tasks) > 1 else t
        best = float(column[s]) if len(tasks) > 1 else float("nan")
        if not best > singleton:
            why = (
                f"{nothing} is predicted to help: the best source, {tasks[s]}, scores {best:.4g} "
                f"<= training alone ({singleton:.4g})"
            )
        elif grouping.optimises_alone:
            why = (
                f"a group with {tasks[s]} would score {best:.4g} > training alone, but the "
                f"at most k = {grouping.k} groups serve other tasks better"
            )
        else:
            why = (
                f"its {grouping.method} cluster scored it at or below training alone ({singleton:.4g}), "
                "or it was clustered on its own"
            )
        out.append({"task": task, "best_source": tasks[s] if len(tasks) > 1 else None, "best_score": best, "why": why})
    return out
