"""Heuristic TAG network selection for many tasks: multi-start local search over blocks.

Uses the block reduction of :mod:`._blocks` (Fifty et al. 2021's selection is a
partition of the tasks into <= k served blocks, each valued by its best group,
helpers included). The search moves one task to another block (or to an empty
block while fewer than k are used), and when no move improves, swaps two tasks
of different blocks. Every candidate of a round is valued in one batched numpy
call, so n = 100 takes seconds. Starts: average-linkage clusters of the
symmetrised matrix, everything in one block, and random labellings; the best
local optimum is then perturbed (a few random reassignments) and re-searched.

With tasks allowed to be trained alone (``leave_alone``), label ``k`` means "alone": such a
task is worth ``singleton_score`` and takes no group slot, so ``k`` bounds the groups of two or
more tasks only. The same search runs on any block valuation (:func:`solve_values`), e.g. a
surrogate's predicted group gains.
"""

from __future__ import annotations

import numpy as np

from ._base import affinity_distance
from ._blocks import block_values

TOL = 1e-10


def _evaluate(value, members: np.ndarray, alone_rows, alone_value) -> np.ndarray:
    """Values of block rows; an "alone" row is worth ``alone_value`` per task in it (none counted)."""
    if alone_rows is None or not np.any(alone_rows):
        return value(members)
    out = np.empty(len(members))
    alone_rows = np.asarray(alone_rows, dtype=bool)
    if (~alone_rows).any():
        out[~alone_rows] = value(members[~alone_rows])
    out[alone_rows] = alone_value * members[alone_rows].sum(axis=1)
    return out


def _values(value, labels, k, alone_value):
    labels_all = np.arange(k + (alone_value is not None))
    members = labels[None, :] == labels_all[:, None]
    alone_rows = None if alone_value is None else labels_all == k
    return members, _evaluate(value, members, alone_rows, alone_value)


def _best_move(value, labels, k, alone_value, members, values):
    """Best single-task move: (gain, task, destination)."""
    n, K = len(labels), len(members)
    removed = members[labels].copy()  # row t: t's block without t
    removed[np.arange(n), np.arange(n)] = False
    alone = None if alone_value is None else labels == k
    v_removed = _evaluate(value, removed, alone, alone_value)
    added = np.repeat(members[None, :, :], n, axis=0)  # [t, d]: block d with t
    added[np.arange(n), :, np.arange(n)] = True
    alone_added = None if alone_value is None else np.tile(np.arange(K) == k, n)
    v_added = _evaluate(value, added.reshape(n * K, n), alone_added, alone_value).reshape(n, K)
    gain = v_removed[:, None] + v_added - values[labels][:, None] - values[None, :]
    gain[np.arange(n), labels] = -np.inf  # staying put is no move
    empty = np.flatnonzero(~members[:k].any(axis=1))
    if len(empty) > 1:  # all empty blocks are alike: try one
        gain[:, empty[1:]] = -np.inf
    t, d = np.unravel_index(np.argmax(gain), gain.shape)
    return gain[t, d], t, d


def _best_swap(value, labels, k, alone_value, members, values):
    """Best exchange of two tasks in different blocks: (gain, t, u)."""
    t_idx, u_idx = np.nonzero(labels[:, None] < labels[None, :])
    if not len(t_idx):
        return -np.inf, 0, 0
    a, b = labels[t_idx], labels[u_idx]
    first = members[a].copy()  # block a: - t + u
    first[np.arange(len(t_idx)), t_idx] = False
    first[np.arange(len(t_idx)), u_idx] = True
    second = members[b].copy()  # block b: - u + t
    second[np.arange(len(t_idx)), u_idx] = False
    second[np.arange(len(t_idx)), t_idx] = True
    alone = alone_value is not None
    gain = (
        _evaluate(value, first, (a == k) if alone else None, alone_value)
        + _evaluate(value, second, (b == k) if alone else None, alone_value)
        - values[a]
        - values[b]
    )
    i = int(np.argmax(gain))
    return gain[i], t_idx[i], u_idx[i]


def local_search(value, labels, k, alone_value=None, max_rounds: int = 10_000):
    """Improve a labelling (task -> block in 0..k-1, or k = alone when ``alone_value`` is given)
    until no move or swap helps. ``value(members)`` values boolean block rows."""
    labels = np.array(labels, dtype=int)
    members, values = _values(value, labels, k, alone_value)
    for _ in range(max_rounds):
        gain, t, d = _best_move(value, labels, k, alone_value, members, values)
        if gain > TOL * (1 + abs(values.sum())):
            labels[t] = d
        else:
            gain, t, u = _best_swap(value, labels, k, alone_value, members, values)
            if not gain > TOL * (1 + abs(values.sum())):
                break
            labels[t], labels[u] = labels[u], labels[t]
        members, values = _values(value, labels, k, alone_value)
    return labels, float(values.sum())


def _linkage_start(A, k):
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    n = len(A)
    if n < 2 or k < 2:
        return np.zeros(n, dtype=int)
    labels = fcluster(
        linkage(squareform(affinity_distance(A), checks=False), method="average"), k, criterion="maxclust"
    )
    return labels - 1


def solve_heuristic(
    A: np.ndarray,
    k: int,
    singleton_score: float,
    *,
    n_starts: int = 16,
    n_kicks: int = 50,
    seed: int = 0,
    leave_alone: bool = False,
):
    """``(blocks, alone, value)`` of a good TAG selection: blocks (tuples of task indices) of at
    most ``k`` groups, valued by their best groups (helpers included), and with ``leave_alone``
    the tasks trained alone (worth ``singleton_score`` each, not counted against ``k``)."""
    return solve_values(
        lambda members: block_values(A, members, singleton_score),
        len(A),
        k,
        alone_value=singleton_score if leave_alone else None,
        starts=[_linkage_start(A, k)],
        n_starts=n_starts,
        n_kicks=n_kicks,
        seed=seed,
    )


def solve_values(
    value,
    n: int,
    k: int,
    *,
    alone_value: float | None = None,
    starts=(),
    n_starts: int = 16,
    n_kicks: int = 50,
    seed: int = 0,
):
    """Multi-start local search over labellings for any block valuation ``value(members) -> values``
    (boolean rows blocks x tasks): ``(blocks, alone, value)`` with at most ``k`` blocks; with
    ``alone_value``, tasks may be left alone at that value each, not counted against ``k``."""
    rng = np.random.default_rng(seed)
    K = k + (alone_value is not None)
    starts = [np.asarray(s, dtype=int) for s in starts] + [np.zeros(n, dtype=int)]
    if alone_value is not None:
        starts.append(np.full(n, k))
    starts += [rng.integers(0, K, size=n) for _ in range(max(0, n_starts - len(starts)))]
    best_labels, best_value = None, -np.inf
    for start in starts:
        labels, total = local_search(value, start, k, alone_value)
        if total > best_value + TOL:
            best_labels, best_value = labels, total
    # Iterated local search: kick a few tasks of the best solution to random blocks.
    for _ in range(n_kicks if K > 1 else 0):
        kicked = best_labels.copy()
        moved = rng.choice(n, size=max(1, min(n, int(rng.integers(2, 5)))), replace=False)
        kicked[moved] = rng.integers(0, K, size=len(moved))
        labels, total = local_search(value, kicked, k, alone_value)
        if total > best_value + TOL * (1 + abs(best_value)):
            best_labels, best_value = labels, total
    blocks = [tuple(np.flatnonzero(best_labels == b).tolist()) for b in range(k)]
    alone = tuple(np.flatnonzero(best_labels == k).tolist()) if alone_value is not None else ()
    return [b for b in blocks if b], alone, best_value
