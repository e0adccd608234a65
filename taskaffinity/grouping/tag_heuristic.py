"""Heuristic TAG network selection for many tasks: multi-start local search over blocks.

Uses the block reduction of :mod:`._blocks` (Fifty et al. 2021's selection is a
partition of the tasks into <= k served blocks, each valued by its best group,
helpers included). The search moves one task to another block (or to an empty
block while fewer than k are used), and when no move improves, swaps two tasks
of different blocks. Every candidate of a round is valued in one batched numpy
call, so n = 100 takes seconds. Starts: average-linkage clusters of the
symmetrised matrix, everything in one block, and random labellings; the best
local optimum is then perturbed (a few random reassignments) and re-searched.
"""

from __future__ import annotations

import numpy as np

from ._base import affinity_distance
from ._blocks import block_values

TOL = 1e-10


def _values(A, labels, k, singleton_score):
    members = labels[None, :] == np.arange(k)[:, None]
    return members, block_values(A, members, singleton_score)


def _best_move(A, labels, k, singleton_score, members, values):
    """Best single-task move: (gain, task, destination)."""
    n = len(labels)
    removed = members[labels].copy()                 # row t: t's block without t
    removed[np.arange(n), np.arange(n)] = False
    v_removed = block_values(A, removed, singleton_score)
    added = np.repeat(members[None, :, :], n, axis=0)  # [t, d]: block d with t
    added[np.arange(n), :, np.arange(n)] = True
    v_added = block_values(A, added.reshape(n * k, n), singleton_score).reshape(n, k)
    gain = v_removed[:, None] + v_added - values[labels][:, None] - values[None, :]
    gain[np.arange(n), labels] = -np.inf               # staying put is no move
    empty = np.flatnonzero(~members.any(axis=1))
    if len(empty) > 1:                                 # all empty blocks are alike: try one
        gain[:, empty[1:]] = -np.inf
    t, d = np.unravel_index(np.argmax(gain), gain.shape)
    return gain[t, d], t, d


def _best_swap(A, labels, singleton_score, members, values):
    """Best exchange of two tasks in different blocks: (gain, t, u)."""
    t_idx, u_idx = np.nonzero(labels[:, None] < labels[None, :])
    if not len(t_idx):
        return -np.inf, 0, 0
    a, b = labels[t_idx], labels[u_idx]
    first = members[a].copy()                          # block a: - t + u
    first[np.arange(len(t_idx)), t_idx] = False
    first[np.arange(len(t_idx)), u_idx] = True
    second = members[b].copy()                         # block b: - u + t
    second[np.arange(len(t_idx)), u_idx] = False
    second[np.arange(len(t_idx)), t_idx] = True
    gain = (block_values(A, first, singleton_score) + block_values(A, second, singleton_score)
            - values[a] - values[b])
    i = int(np.argmax(gain))
    return gain[i], t_idx[i], u_idx[i]


def local_search(A, labels, k, singleton_score, max_rounds: int = 10_000):
    """Improve a labelling (task -> block in 0..k-1) until no move or swap helps."""
    labels = np.array(labels, dtype=int)
    members, values = _values(A, labels, k, singleton_score)
    for _ in range(max_rounds):
        gain, t, d = _best_move(A, labels, k, singleton_score, members, values)
        if gain > TOL * (1 + abs(values.sum())):
            labels[t] = d
        else:
            gain, t, u = _best_swap(A, labels, singleton_score, members, values)
            if not gain > TOL * (1 + abs(values.sum())):
                break
            labels[t], labels[u] = labels[u], labels[t]
        members, values = _values(A, labels, k, singleton_score)
    return labels, float(values.sum())


def _linkage_start(A, k):
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    n = len(A)
    if n < 2 or k < 2:
        return np.zeros(n, dtype=int)
    labels = fcluster(linkage(squareform(affinity_distance(A), checks=False), method="average"), k,
                      criterion="maxclust")
    return labels - 1


def solve_heuristic(A: np.ndarray, k: int, singleton_score: float, *, n_starts: int = 16,
                    n_kicks: int = 50, seed: int = 0) -> tuple[list[tuple[int, ...]], float]:
    """Blocks (tuples of task indices) of a good partition into <= k blocks, and its value."""
    n = len(A)
    rng = np.random.default_rng(seed)
    starts = [_linkage_start(A, k), np.zeros(n, dtype=int)]
    starts += [rng.integers(0, k, size=n) for _ in range(max(0, n_starts - 2))]
    best_labels, best_value = None, -np.inf
    for start in starts:
        labels, value = local_search(A, start, k, singleton_score)
        if value > best_value + TOL:
            best_labels, best_value = labels, value
    # Iterated local search: kick a few tasks of the best solution to random blocks.
    for _ in range(n_kicks if k > 1 else 0):
        kicked = best_labels.copy()
        moved = rng.choice(n, size=max(1, min(n, int(rng.integers(2, 5)))), replace=False)
        kicked[moved] = rng.integers(0, k, size=len(moved))
        labels, value = local_search(A, kicked, k, singleton_score)
        if value > best_value + TOL * (1 + abs(best_value)):
            best_labels, best_value = labels, value
    blocks = [tuple(np.flatnonzero(best_labels == b).tolist()) for b in range(k)]
    return [b for b in blocks if b], best_value
