"""Exact TAG network selection (Fifty et al. 2021) by price-and-branch on the block reduction.

By :mod:`._blocks` the problem is a set partitioning over all ``2^n - 1`` blocks
``P`` with values ``w(P)`` (best group containing ``P``, helpers included)::

    max  sum_P w(P) x_P   s.t.  sum_{P ∋ t} x_P = 1 (every task),  sum_P x_P <= k,  x binary

1. ``w`` of every block is computed once, vectorised (n <= ~22).
2. Column generation solves the LP relaxation: a restricted master LP (HiGHS)
   gives duals ``pi_t`` and ``mu >= 0``; pricing evaluates the reduced cost
   ``rc(P) = w(P) - sum_{t in P} pi_t - mu`` of *every* block at once and adds the
   most positive ones, until none is positive. Its dual value ``D`` then bounds
   every integer solution.
3. Reduced-cost fixing: for any feasible ``x``,
   ``value(x) = D + sum_P rc(P) x_P - mu (k - #blocks) <= D + sum_P rc(P) x_P``,
   and every ``rc <= 0``. A solution at least as good as the incumbent ``z``
   (from the heuristic) can only use blocks with ``rc(P) >= z - D``; all other
   blocks are dropped without loss of optimality.
4. The remaining columns go to ``scipy.optimize.milp`` with ``mip_rel_gap = 0``.

Tasks left alone (``leave_alone``): n more columns, "task t alone", cover one task each at
``singleton_score`` and do not count against ``k``; their reduced costs are never positive at
the LP optimum (they are always in the master), so the bound and the fixing hold unchanged.
:func:`solve_blocks` is the same program for any block valuation ``w`` (e.g. surrogate gains).
"""

from __future__ import annotations

import time

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from ._base import GroupingError
from ._blocks import all_block_values, mask_to_members, members_to_mask, subset_sums

MAX_EXACT_N = 22  # 2^22 block values: ~32 MiB, a few seconds
COLUMNS_PER_ROUND = 200
MAX_MILP_COLUMNS = 3_000_000


def _membership(masks: np.ndarray, n: int) -> sparse.csr_matrix:
    """Task x column 0/1 matrix of the given block masks."""
    bits = ((masks[None, :] >> np.arange(n)[:, None]) & 1).astype(float)
    return sparse.csr_matrix(bits)


def _master_lp(w_cols, masks, n, k, alone_value):
    """Restricted master LP; returns (duals pi, mu, value). With ``alone_value``, n more columns
    (task t alone) cover one task each at that value and are not counted against k."""
    A_eq, A_ub, c = _membership(masks, n), np.ones((1, len(masks))), -w_cols
    if alone_value is not None:
        A_eq = sparse.hstack([A_eq, sparse.identity(n, format="csr")]).tocsr()
        A_ub = np.hstack([A_ub, np.zeros((1, n))])
        c = np.concatenate([c, np.full(n, -float(alone_value))])
    res = linprog(c, A_ub=A_ub, b_ub=[k], A_eq=A_eq, b_eq=np.ones(n), bounds=(0, None), method="highs")
    if res.status != 0:  # cannot happen: the all-tasks block alone is feasible
        raise GroupingError(f"exact TAG solver: master LP failed ({res.message})")
    # linprog minimises -w: marginals are sensitivities of -value, hence the signs.
    return -res.eqlin.marginals, max(0.0, -res.ineqlin.marginals[0]), -res.fun


def solve_exact(
    A: np.ndarray,
    k: int,
    singleton_score: float,
    *,
    incumbent=None,
    time_limit: float | None = None,
    stats: dict | None = None,
    leave_alone: bool = False,
):
    """Optimal TAG selection with <= k groups: ``(blocks, alone, value)``.

    ``blocks``: tuples of task indices, each served by its best group (helpers included); with
    ``leave_alone``, ``alone`` holds the tasks trained alone (``singleton_score`` each, not counted
    against k). ``incumbent`` ((blocks, alone) of a feasible solution) speeds up step 3; without
    one the heuristic is run. ``stats`` (a dict) receives counters for reports.
    """
    n = len(A)
    if n > MAX_EXACT_N:
        raise GroupingError(
            f"exact TAG selection enumerates 2^n blocks: n = {n} > {MAX_EXACT_N}; use solver='heuristic'"
        )
    start = time.perf_counter()
    w = all_block_values(A, singleton_score)
    if incumbent is None:
        from .tag_heuristic import solve_heuristic

        incumbent = solve_heuristic(A, k, singleton_score, n_starts=4, n_kicks=5, leave_alone=leave_alone)[:2]
    return solve_blocks(
        w,
        n,
        k,
        incumbent=incumbent,
        alone_value=singleton_score if leave_alone else None,
        time_limit=time_limit,
        stats=stats,
        start=start,
    )


def solve_blocks(
    w: np.ndarray,
    n: int,
    k: int,
    *,
    incumbent,
    alone_value: float | None = None,
    time_limit: float | None = None,
    stats: dict | None = None,
    start: float | None = None,
):
    """Optimal partition of n tasks into at most ``k`` blocks valued by ``w`` (indexed by the
    block's integer mask, ``w[0]`` unused): ``(blocks, alone, value)``. With ``alone_value``, a
    task may instead be left alone at that value, not counted against ``k``. ``incumbent``:
    ``(blocks, alone)`` of a feasible solution (its value prunes columns in step 3)."""
    start = time.perf_counter() if start is None else start
    full = (1 << n) - 1
    inc_blocks, inc_alone = [tuple(b) for b in incumbent[0]], tuple(incumbent[1]) if alone_value is not None else ()
    alone_total = 0.0 if alone_value is None else float(alone_value)
    if k == 1 and alone_value is None:
        return [tuple(range(n))], (), float(w[full])
    inc_masks = [members_to_mask(b) for b in inc_blocks]
    z_inc = float(sum(w[m] for m in inc_masks)) + alone_total * len(inc_alone)

    # Step 2: column generation over all blocks (pricing is one vectorised pass).
    cols = set(inc_masks) | {1 << t for t in range(n)} | {full}
    finite = w[1:][np.isfinite(w[1:])]
    scale = 1.0 + (np.abs(finite).max() if finite.size else 0.0)
    rounds = 0
    while True:
        rounds += 1
        masks = np.fromiter(sorted(cols), dtype=np.int64)
        pi, mu, lp_value = _master_lp(w[masks], masks, n, k, alone_value)
        rc = w - subset_sums(pi) - mu
        rc[0] = -np.inf
        per_round = min(COLUMNS_PER_ROUND, len(rc) - 1)
        top = np.argpartition(-rc, per_round)[:per_round]
        new = [int(m) for m in top if rc[m] > 1e-9 * scale and int(m) not in cols]
        if not new:
            break
        cols.update(new)
        if time_limit is not None and time.perf_counter() - start > time_limit:
            raise GroupingError(f"exact TAG solver hit the time limit ({time_limit} s) in column generation")
    bound = float(pi.sum() + k * mu + max(0.0, rc.max()) * k)  # valid LP bound, pricing slack included

    # Step 3: reduced-cost fixing, with slack for floating point (alone columns are always kept).
    slack = 1e-7 * scale * n
    keep = np.flatnonzero(rc >= z_inc - bound - slack)
    keep = np.union1d(keep, inc_masks).astype(np.int64)
    if len(keep) > MAX_MILP_COLUMNS:
        raise GroupingError(
            f"exact TAG solver: {len(keep)} candidate blocks survive the LP bound; use solver='heuristic'"
        )

    # Step 4: the integer program over the surviving blocks (and the alone columns).
    remaining = None if time_limit is None else max(1.0, time_limit - (time.perf_counter() - start))
    options = {"mip_rel_gap": 0.0, "presolve": True}
    if remaining is not None:
        options["time_limit"] = remaining
    cover, count, c = _membership(keep, n), np.ones((1, len(keep))), -w[keep]
    if alone_value is not None:
        cover = sparse.hstack([cover, sparse.identity(n, format="csr")]).tocsr()
        count = np.hstack([count, np.zeros((1, n))])
        c = np.concatenate([c, np.full(n, -alone_total)])
    res = milp(
        c,
        integrality=np.ones(len(c)),
        bounds=Bounds(0, 1),
        constraints=[LinearConstraint(cover, 1, 1), LinearConstraint(count, 0, k)],
        options=options,
    )
    if res.status != 0 or res.x is None:
        raise GroupingError(f"exact TAG solver: integer program not solved to optimality ({res.message})")
    chosen = keep[res.x[: len(keep)] > 0.5]
    blocks = [mask_to_members(int(m), n) for m in chosen]
    alone = tuple(np.flatnonzero(res.x[len(keep) :] > 0.5).tolist()) if alone_value is not None else ()
    value = float(w[chosen].sum()) + alone_total * len(alone)
    if value < z_inc:  # MILP tolerances: never return worse than the incumbent
        blocks, alone, value = inc_blocks, inc_alone, z_inc
    if stats is not None:
        stats.update(
            blocks_total=full,
            cg_rounds=rounds,
            lp_columns=len(cols),
            lp_bound=bound,
            lp_value=float(lp_value),
            incumbent=z_inc,
            milp_columns=int(len(keep)),
            seconds=time.perf_counter() - start,
        )
    return blocks, alone, value
