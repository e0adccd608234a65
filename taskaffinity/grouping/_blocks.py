"""Block values: the reduction that makes TAG network selection solvable exactly.

Fifty et al. (2021) choose at most ``k`` groups (overlap allowed), serve each
task by its best chosen group, and maximise the total served score. Overlap does
matter: a task can sit in a group only as a *helper* (a source for the others)
while being served by another group. Look at a solution through the sets of
tasks each group serves, the blocks ``P_1 .. P_m`` (m <= k): they partition the
tasks, and a group ``G`` serving block ``P`` has ``G = P + X`` with helpers ``X``
outside ``P``. Every member's score in ``G`` has the same denominator
``|G| - 1``, so the served total is::

    (W(P) + sum_{x in X} c_x(P)) / (|P| - 1 + |X|)

with ``W(P)`` the affinity within ``P`` and ``c_x(P) = sum_{t in P} A[x, t]``.
For a fixed number ``m = |X|`` of helpers the best ``X`` is the ``m`` largest
``c_x``, so the best group for a block, ``w(P)``, is a max over ``m`` of prefix
sums: exact and cheap. Hence

    optimum of TAG selection = max over partitions into <= k blocks of sum w(P)

(a solution's value is at most the sum of its blocks' ``w``; conversely the best
group of every block, chosen together, serves each task at least that well).
"""

from __future__ import annotations

import numpy as np

CHUNK = 1 << 14  # masks per batch when enumerating all subsets: bounded memory


def block_values(A: np.ndarray, members: np.ndarray, singleton_score: float, return_helpers: bool = False):
    """``w(P)`` for a batch of blocks given as a boolean matrix (blocks x tasks).

    With ``return_helpers`` also return the number of helpers of the best group
    (0 when the block alone is best; ties go to fewer helpers: smaller groups).
    An empty block has value 0.
    """
    members = np.asarray(members, dtype=bool)
    M = members.astype(float)
    C = M @ A.T  # C[b, x] = sum_{t in P_b} A[x, t]
    size = M.sum(axis=1)
    within = (C * M).sum(axis=1)  # W(P): diagonal of A is 0
    with np.errstate(divide="ignore", invalid="ignore"):
        alone = np.where(size >= 2, within / np.maximum(size - 1, 1), float(singleton_score))
        outside = -np.sort(-np.where(members, -np.inf, C), axis=1)  # helpers, best first
        prefix = np.cumsum(outside, axis=1)
        denom = size[:, None] - 1 + np.arange(1, A.shape[0] + 1)[None, :]
        helped = (within[:, None] + prefix) / denom  # -inf past the last outsider
    if helped.shape[1]:
        n_help = np.argmax(helped, axis=1)  # first max: fewest helpers
        best_helped = helped[np.arange(len(helped)), n_help]
    else:
        n_help, best_helped = np.zeros(len(size), dtype=int), np.full(len(size), -np.inf)
    use_help = best_helped > alone + 1e-12 * (1 + np.abs(alone))
    values = np.where(use_help, best_helped, alone)
    values = np.where(size == 0, 0.0, values)
    if return_helpers:
        return values, np.where(use_help, n_help + 1, 0)
    return values


def best_group(A: np.ndarray, block, singleton_score: float) -> tuple[int, ...]:
    """The group (block plus its best helpers) that realises ``w(block)``."""
    n = len(A)
    mask = np.zeros(n, dtype=bool)
    mask[list(block)] = True
    _, n_help = block_values(A, mask[None, :], singleton_score, return_helpers=True)
    outside = np.flatnonzero(~mask)
    c = A[np.ix_(outside, np.flatnonzero(mask))].sum(axis=1)
    order = outside[np.argsort(-c, kind="stable")]
    return tuple(sorted(np.flatnonzero(mask).tolist() + order[: int(n_help[0])].tolist()))


def mask_matrix(lo: int, hi: int, n: int) -> np.ndarray:
    """Boolean membership of the integer masks ``lo .. hi-1`` (bit t = task t)."""
    return ((np.arange(lo, hi, dtype=np.int64)[:, None] >> np.arange(n)) & 1).astype(bool)


def all_block_values(A: np.ndarray, singleton_score: float) -> np.ndarray:
    """``w`` of every subset, indexed by integer mask (entry 0, the empty set, is -inf)."""
    n = len(A)
    total = 1 << n
    out = np.empty(total)
    for lo in range(0, total, CHUNK):
        hi = min(total, lo + CHUNK)
        out[lo:hi] = block_values(A, mask_matrix(lo, hi, n), singleton_score)
    out[0] = -np.inf
    return out


def subset_sums(values: np.ndarray) -> np.ndarray:
    """``s[mask] = sum of values[t] for bits t of mask``, for every mask (doubling)."""
    s = np.zeros(1)
    for v in values:
        s = np.concatenate([s, s + v])
    return s


def mask_to_members(mask: int, n: int) -> tuple[int, ...]:
    return tuple(t for t in range(n) if mask >> t & 1)


def members_to_mask(members) -> int:
    return sum(1 << int(t) for t in members)
