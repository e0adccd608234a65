"""Would the grouping (or the source ranking) come back with other probes or windows?

A grouping is chosen from one run-averaged affinity matrix, itself a mean over a
few probes or streamed windows. Re-solving the same problem on bootstrap
resamples of those samples (``AffinityStore.bootstrap_matrices``) shows how much
of the choice is signal: how often each pair of tasks lands in a common group
(co-membership), how often the chosen grouping comes back exactly, and how well
the resampled serving assignments agree with the chosen one (adjusted Rand index,
1 = identical partitions, 0 = chance; Hubert & Arabie 1985). A grouping that comes
back in a minority of resamples is not a finding.

Pure functions over matrices: the caller supplies the resampled matrices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from ._base import BaseGrouping, GroupingError

#: Below this share of resamples a grouping is reported as unstable.
STABLE_SHARE = 0.5


@dataclass
class GroupingStability:
    """Bootstrap stability of a fitted grouping.

    ``comembership``: tasks × tasks, the share of resamples in which the two tasks are
    members of a common group (diagonal 1). ``chosen_share``: share of resamples whose
    groups equal the chosen groups exactly (members as sets, order ignored).
    ``group_shares``: per chosen group, the share of resamples that contain it.
    ``assignment_ari``: mean adjusted Rand index between the chosen and resampled
    serving assignments (task → group that serves it; a task alone is a cluster of its own).
    ``alone_shares``: with ``leave_alone``, per task the share of resamples in which it
    was trained alone (None otherwise).
    """

    comembership: pd.DataFrame
    chosen_share: float
    group_shares: list[float]
    assignment_ari: float
    resamples: int
    alone_shares: dict | None = None

    @property
    def stable(self) -> bool:
        return self.chosen_share >= STABLE_SHARE

    def to_dict(self) -> dict:
        return {
            "resamples": self.resamples,
            "chosen_share": self.chosen_share,
            "group_shares": self.group_shares,
            "assignment_ari": self.assignment_ari,
            "stable": self.stable,
            "alone_shares": self.alone_shares,
            "comembership": {
                t: {u: float(v) for u, v in row.items()} for t, row in self.comembership.to_dict("index").items()
            },
        }


def groups_key(groups) -> frozenset:
    """A grouping as a set of task sets: equal for the same groups in any order."""
    return frozenset(frozenset(g) for g in groups)


def grouping_stability(
    make: Callable[[], BaseGrouping], chosen: BaseGrouping, resamples: Iterable[pd.DataFrame]
) -> GroupingStability:
    """Re-fit ``make()`` on every resampled matrix and compare with the fitted ``chosen``.

    ``make`` builds an unfitted grouping with the same settings as ``chosen``;
    ``resamples`` are source × target matrices over the same tasks.
    """
    if not hasattr(chosen, "groups_"):
        raise GroupingError("grouping_stability needs a fitted grouping (call fit first)")
    tasks = list(chosen.tasks_)
    at = {t: i for i, t in enumerate(tasks)}
    together = np.zeros((len(tasks), len(tasks)))
    chosen_key = groups_key(chosen.groups_)
    group_keys = [frozenset(g) for g in chosen.groups_]
    group_hits = np.zeros(len(group_keys))
    reference = [_label(chosen.assignment_[t], i) for i, t in enumerate(tasks)]
    alone = np.zeros(len(tasks))
    same, aris, count = 0, [], 0
    for matrix in resamples:
        fitted = make().fit(matrix)
        count += 1
        pairs = np.zeros_like(together, dtype=bool)
        for group in fitted.groups_:
            members = [at[t] for t in group]
            pairs[np.ix_(members, members)] = True
        together += pairs
        key = groups_key(fitted.groups_)
        same += key == chosen_key
        group_hits += [g in key for g in group_keys]
        aris.append(adjusted_rand_score(reference, [_label(fitted.assignment_[t], i) for i, t in enumerate(tasks)]))
        alone += [fitted.assignment_[t] is None for t in tasks]
    if count == 0:
        raise GroupingError("grouping_stability needs at least one resampled matrix")
    comembership = pd.DataFrame(together / count, index=tasks, columns=tasks)
    return GroupingStability(
        comembership=comembership,
        chosen_share=same / count,
        group_shares=(group_hits / count).tolist(),
        assignment_ari=float(np.mean(aris)),
        resamples=count,
        alone_shares=(
            {t: float(a / count) for t, a in zip(tasks, alone)} if getattr(chosen, "leave_alone", False) else None
        ),
    )


def _label(group, task: int) -> int:
    return -1 - task if group is None else int(group)  # a task alone is a cluster of its own


def choose_groups(
    matrix: pd.DataFrame,
    method: str,
    *,
    resamples: Iterable[pd.DataFrame] | None = None,
    estimator: str | None = None,
    reliability: dict | None = None,
    **settings,
) -> dict:
    """Fit ``method`` (settings it does not accept are ignored) on ``matrix``; return the grouping
    document (:mod:`.output`) with the stability over ``resamples`` and the given ``reliability``."""
    from . import accepted_settings, make_grouping
    from .output import grouping_document

    settings = accepted_settings(method, **settings)
    grouping = make_grouping(method, **settings).fit(matrix)
    stability = None
    if resamples is not None:
        stability = grouping_stability(lambda: make_grouping(method, **settings), grouping, resamples)
    return grouping_document(grouping, estimator=estimator, stability=stability, reliability=reliability)
