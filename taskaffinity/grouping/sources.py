"""Target-aware selection: which source tasks (or groups of them) help one target most.

The affinity column of the target, ``A[:, target]``, ranks single sources (or a fitted
group-gain surrogate does: ``rank_sources_by_surrogate``). A
group of sources is ranked by the mean affinity of its members onto the target,
which is exactly the TAG score (Fifty et al. 2021) of ``group + target`` for the
target. With an :class:`~taskaffinity.affinity.store.AffinityStore`, single
sources also get the store's bootstrap summary (mean, se, CI, significant).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from ._base import GroupingError, validate_affinity

MAX_ENUMERATE = 200_000


def _target_column(affinity: pd.DataFrame, target: str) -> tuple[list[str], np.ndarray]:
    tasks, A = validate_affinity(affinity)
    if target not in tasks:
        raise GroupingError(f"unknown target task '{target}' (tasks: {', '.join(tasks)})")
    j = tasks.index(target)
    sources = [t for t in tasks if t != target]
    return sources, A[[tasks.index(s) for s in sources], j]


def rank_stability(resamples, target: str) -> pd.DataFrame:
    """How each source's rank onto ``target`` moves over resampled matrices.

    Columns: ``source``, ``top1_share`` (share of resamples ranking it first),
    ``rank_median`` and the 5–95 % range ``rank_low``, ``rank_high`` (1 = best).
    """
    ranks = []
    for matrix in resamples:
        sources, values = _target_column(matrix, target)
        order = np.argsort(-values, kind="stable")
        rank = np.empty(len(values), dtype=int)
        rank[order] = np.arange(1, len(values) + 1)
        ranks.append(rank)
    if not ranks:
        raise GroupingError("rank_stability needs at least one resampled matrix")
    ranks = np.array(ranks)
    return pd.DataFrame(
        {
            "source": sources,
            "top1_share": (ranks == 1).mean(axis=0),
            "rank_median": np.median(ranks, axis=0),
            "rank_low": np.quantile(ranks, 0.05, axis=0, method="lower"),
            "rank_high": np.quantile(ranks, 0.95, axis=0, method="higher"),
        }
    )


def rank_sources(
    affinity: pd.DataFrame,
    target: str,
    *,
    top: int | None = None,
    store=None,
    estimator: str | None = None,
    resamples=None,
    **summary_kwargs,
) -> pd.DataFrame:
    """Sources ranked by affinity onto ``target`` (best first).

    Columns: ``rank, source, affinity``; with ``store`` and ``estimator``, the store's
    ``mean, se, low, high, n, significant`` for the pair; with ``resamples`` (bootstrap
    matrices), the rank stability of :func:`rank_stability`.
    """
    sources, values = _target_column(affinity, target)
    if top is not None and top < 1:
        raise GroupingError(f"top must be >= 1, got {top}")
    frame = pd.DataFrame({"source": sources, "affinity": values})
    frame = frame.sort_values(["affinity", "source"], ascending=[False, True], kind="stable")
    if store is not None:
        if estimator is None:
            raise GroupingError("rank_sources: a store needs an estimator name for its summary")
        summary = store.summary(estimator, **summary_kwargs)
        summary = summary[summary["target"] == target].drop(columns="target")
        frame = frame.merge(summary, on="source", how="left")
    if resamples is not None:
        frame = frame.merge(rank_stability(resamples, target), on="source", how="left")
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame.head(top).reset_index(drop=True) if top else frame.reset_index(drop=True)


def rank_source_groups(
    affinity: pd.DataFrame, target: str, *, size: int, top: int = 10, max_enumerate: int = MAX_ENUMERATE
) -> pd.DataFrame:
    """Groups of ``size`` sources ranked by their mean affinity onto ``target``.

    Exact enumeration while ``C(n - 1, size) <= max_enumerate``. Beyond, greedy:
    the best group is still exact (the ``size`` best single sources maximise a
    mean of ``size`` values), and the runners-up are its single-swap neighbours,
    which may miss some groups (``exact`` column is False then).
    """
    sources, values = _target_column(affinity, target)
    combos, exact = _candidate_groups(
        len(sources), size, top, max_enumerate, lambda: np.argsort(-values, kind="stable")
    )
    scores = values[combos].mean(axis=1)
    pick = np.argsort(-scores, kind="stable")[:top]
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(pick) + 1),
            "sources": [tuple(sources[i] for i in combos[p]) for p in pick],
            "score": scores[pick],
            "exact": exact,
        }
    )


def rank_sources_by_surrogate(surrogate, target: str, *, top: int | None = None) -> pd.DataFrame:
    """Sources ranked for ``target`` by a fitted group-gain surrogate (:mod:`.surrogate`), best first.

    Columns: ``rank, source, effect`` (mean change of the target's predicted gain when the source
    joins one of the target's training subsets: Li et al. 2023's relevance score, the linear
    surrogate's coefficient) and ``pair_gain`` (predicted gain of the target trained with the
    source alone, an extrapolation when no pairs were measured).
    """
    if top is not None and top < 1:
        raise GroupingError(f"top must be >= 1, got {top}")
    effects = surrogate.source_effects(target)
    tasks = surrogate.tasks_
    members = np.zeros((len(effects), len(tasks)), dtype=bool)
    t = tasks.index(target)
    for r, source in enumerate(effects.index):
        members[r, [t, tasks.index(source)]] = True
    frame = pd.DataFrame(
        {"source": effects.index, "effect": effects.to_numpy(), "pair_gain": surrogate.predict_members(members)[:, t]}
    )
    frame = frame.sort_values(["effect", "source"], ascending=[False, True], kind="stable")
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame.head(top).reset_index(drop=True) if top else frame.reset_index(drop=True)


def rank_source_groups_by_surrogate(
    surrogate, target: str, *, size: int, top: int = 10, max_enumerate: int = MAX_ENUMERATE
) -> pd.DataFrame:
    """Groups of ``size`` sources ranked by the surrogate's predicted gain of ``target`` trained
    with them. Exact enumeration while ``C(n - 1, size) <= max_enumerate``; beyond, the ``size``
    sources of largest effect (:func:`rank_sources_by_surrogate`) and their single-swap
    neighbours (``exact`` False: other groups may predict higher)."""
    tasks = surrogate.tasks_
    if target not in tasks:
        raise GroupingError(f"unknown target task '{target}' (tasks: {', '.join(tasks)})")
    sources = [s for s in tasks if s != target]
    combos, exact = _candidate_groups(
        len(sources),
        size,
        top,
        max_enumerate,
        lambda: np.array([sources.index(s) for s in rank_sources_by_surrogate(surrogate, target)["source"]]),
    )
    members = np.zeros((len(combos), len(tasks)), dtype=bool)
    index = np.array([tasks.index(s) for s in sources])
    members[np.arange(len(combos))[:, None], index[combos]] = True
    members[:, tasks.index(target)] = True
    scores = surrogate.predict_members(members)[:, tasks.index(target)]
    pick = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[:top]
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(pick) + 1),
            "sources": [tuple(sources[i] for i in combos[p]) for p in pick],
            "score": scores[pick],
            "exact": exact,
        }
    )


def _candidate_groups(n: int, size: int, top: int, max_enumerate: int, order) -> tuple[np.ndarray, bool]:
    """Index groups of ``size`` of ``n`` sources to score, and whether they are all of them: every
    combination while ``C(n, size) <= max_enumerate``, else the ``size`` first of ``order()`` (source
    indices, best first) and their single-swap neighbours. Checks ``size`` and ``top``."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= n:
        raise GroupingError(f"group size must be between 1 and {n} (the other tasks), got {size}")
    if top < 1:
        raise GroupingError(f"top must be >= 1, got {top}")
    if math.comb(n, size) <= max_enumerate:
        return np.array(list(itertools.combinations(range(n), size)), dtype=int), True
    ranked = order()
    best, rest = ranked[:size], ranked[size:]
    swaps = [np.sort(np.r_[np.delete(best, i), o]) for i in range(size) for o in rest]
    return np.array([np.sort(best)] + swaps, dtype=int), False
