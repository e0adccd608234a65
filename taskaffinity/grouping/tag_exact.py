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
"""

from __future__ import annotations

import time

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from ._base import GroupingError
from ._blocks import all_block_values, mask_to_members, members_to_mask, subset_sums

MAX_EXACT_N = 22          # 2^22 block values: ~32 MiB, a few seconds
COLUMNS_PER_ROUND = 200
MAX_MILP_COLUMNS = 3_000_000


def _membership(masks: np.ndarray, n: int) -> sparse.csr_matrix:
    """Task x column 0/1 matrix of the given block masks."""
    bits = ((masks[None, :] >> np.arange(n)[:, None]) & 1).astype(float)
    return sparse.csr_matrix(bits)


def _master_lp(w_cols, masks, n, k):
    """Restricted master LP; returns (duals pi, mu, value)."""
    res = linprog(-w_cols, A_ub=np.ones((1, len(masks))), b_ub=[k], A_eq=_membership(masks, n),
                  b_eq=np.ones(n), bounds=(0, None), method="highs")
    if res.status != 0:  # cannot happen: the all-tasks block alone is feasible
        raise GroupingError(f"exact TAG solver: master LP failed ({res.message})")
    # linprog minimises -w: marginals are sensitivities of -value, hence the signs.
    return -res.eqlin.marginals, max(0.0, -res.ineqlin.marginals[0]), -res.fun


def solve_exact(A: np.ndarray, k: int, singleton_score: float, *, incumbent=None,
                time_limit: float | None = None, stats: dict | None = None):
    """Optimal blocks (tuples of task indices) of TAG selection with <= k groups, and the value.

    ``incumbent`` (list of blocks partitioning the tasks) speeds up step 3; without
    one the heuristic is run. ``stats`` (a dict) receives counters for reports.
    """
    n = len(A)
    if n > MAX_EXACT_N:
        raise GroupingError(f"exact TAG selection enumerates 2^n blocks: n = {n} > {MAX_EXACT_N}; "
                            "use solver='heuristic'")
    start = time.perf_counter()
    w = all_block_values(A, singleton_score)
    full = (1 << n) - 1
    if k == 1:
        return [tuple(range(n))], float(w[full])
    if incumbent is None:
        from .tag_heuristic import solve_heuristic

        incumbent, _ = solve_heuristic(A, k, singleton_score, n_starts=4, n_kicks=5)
    inc_masks = [members_to_mask(b) for b in incumbent]
    z_inc = float(sum(w[m] for m in inc_masks))

    # Step 2: column generation over all blocks (pricing is one vectorised pass).
    cols = set(inc_masks) | {1 << t for t in range(n)} | {full}
    scale = 1.0 + np.abs(w[1:]).max()
    rounds = 0
    while True:
        rounds += 1
        masks = np.fromiter(sorted(cols), dtype=np.int64)
        pi, mu, lp_value = _master_lp(w[masks], masks, n, k)
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

    # Step 3: reduced-cost fixing, with slack for floating point.
    slack = 1e-7 * scale * n
    keep = np.flatnonzero(rc >= z_inc - bound - slack)
    keep = np.union1d(keep, inc_masks).astype(np.int64)
    if len(keep) > MAX_MILP_COLUMNS:
        raise GroupingError(f"exact TAG solver: {len(keep)} candidate blocks survive the LP bound; "
                            "use solver='heuristic'")

    # Step 4: the integer program over the surviving blocks.
    remaining = None if time_limit is None else max(1.0, time_limit - (time.perf_counter() - start))
    options = {"mip_rel_gap": 0.0, "presolve": True}
    if remaining is not None:
        options["time_limit"] = remaining
    res = milp(-w[keep], integrality=np.ones(len(keep)), bounds=Bounds(0, 1),
               constraints=[LinearConstraint(_membership(keep, n), 1, 1),
                            LinearConstraint(np.ones((1, len(keep))), 0, k)], options=options)
    if res.status != 0 or res.x is None:
        raise GroupingError(f"exact TAG solver: integer program not solved to optimality ({res.message})")
    chosen = keep[res.x > 0.5]
    blocks = [mask_to_members(int(m), n) for m in chosen]
    value = float(w[chosen].sum())
    if value < z_inc:  # MILP tolerances: never return worse than the incumbent
        blocks, value = [tuple(b) for b in incumbent], z_inc
    if stats is not None:
        stats.update(blocks_total=full, cg_rounds=rounds, lp_columns=len(cols), lp_bound=bound,
                     lp_value=float(lp_value), incumbent=z_inc, milp_columns=int(len(keep)),
                     seconds=time.perf_counter() - start)
    return blocks, value
