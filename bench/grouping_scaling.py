"""Scaling of TAG network selection (Fifty et al. 2021): exact solver vs heuristic.

For n tasks and k groups, the naive search space is every choice of k groups out
of the 2^n - 1 candidate subsets, C(2^n - 1, k) (shown as log10). The exact
solver (block reduction + column generation + reduced-cost fixing + MILP) runs
where n <= 22 within a per-case time limit; the heuristic (multi-start local
search) runs everywhere. Matrices: standard normal ("random") and noisy planted
blocks ("planted": within ~1, across -0.2, noise 0.3), fixed seed.

    python bench/grouping_scaling.py [--json] [--time-limit 60] [--sizes 8 12 ...]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import pandas as pd

from taskaffinity.grouping import GroupingError, TagGrouping
from taskaffinity.grouping.tag_exact import MAX_EXACT_N


def matrix(kind: str, n: int, k: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    if kind == "random":
        A = rng.normal(size=(n, n))
    else:
        labels = rng.integers(0, k, size=n)
        A = np.where(labels[:, None] == labels[None, :], 1.0, -0.2) + rng.normal(0, 0.3, (n, n))
    names = [f"t{i:03d}" for i in range(n)]
    return pd.DataFrame(A, index=names, columns=names)


def log10_comb(n: int, k: int) -> float:
    count = math.comb(2**n - 1, k)  # Python ints: exact however large
    return len(str(count)) - 1 + math.log10(int(str(count)[:15]) / 10 ** (min(15, len(str(count))) - 1))


def run_case(kind, n, k, seed, time_limit):
    frame = matrix(kind, n, k, seed)
    row = {"kind": kind, "n": n, "k": k, "log10_bruteforce": round(log10_comb(n, k), 2)}
    start = time.perf_counter()
    heuristic = TagGrouping(k=k, solver="heuristic", seed=seed).fit(frame)
    row.update(heuristic_s=round(time.perf_counter() - start, 3), heuristic_obj=round(heuristic.objective_, 4))
    row.update(exact_s=None, exact_obj=None, gap_pct=None, milp_columns=None)
    if n <= MAX_EXACT_N:
        start = time.perf_counter()
        try:
            exact = TagGrouping(k=k, solver="exact", time_limit=time_limit).fit(frame)
        except GroupingError as err:  # time limit or too many columns: reported as not finished
            row["exact_note"] = str(err)
        else:
            row.update(
                exact_s=round(time.perf_counter() - start, 3),
                exact_obj=round(exact.objective_, 4),
                milp_columns=exact.stats_.get("milp_columns"),
                gap_pct=round(100 * (exact.objective_ - heuristic.objective_) / abs(exact.objective_), 4),
            )
    return row


def table(rows) -> str:
    cols = [
        "kind",
        "n",
        "k",
        "log10_bruteforce",
        "exact_s",
        "exact_obj",
        "milp_columns",
        "heuristic_s",
        "heuristic_obj",
        "gap_pct",
    ]
    frame = pd.DataFrame(rows)[cols].astype(object).where(lambda f: f.notna(), "-")
    return frame.to_string(index=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 12, 16, 20, 30, 50, 100])
    parser.add_argument("--ks", type=int, nargs="+", default=[3, 4])
    parser.add_argument("--kinds", nargs="+", default=["random", "planted"])
    parser.add_argument("--time-limit", type=float, default=60.0, help="exact solver, seconds per case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = [
        run_case(kind, n, k, args.seed, args.time_limit) for kind in args.kinds for n in args.sizes for k in args.ks
    ]
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
