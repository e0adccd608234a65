"""The exact TAG solver against a plain brute force over all choices of <= k groups."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from taskaffinity.grouping import TagGrouping


def frame(A: np.ndarray) -> pd.DataFrame:
    names = [f"task{i}" for i in range(len(A))]
    return pd.DataFrame(A, index=names, columns=names)


def brute_force(A: np.ndarray, k: int, singleton_score: float) -> float:
    """Every combination of 1..k non-empty subsets; each task served by its best chosen group
    containing it (score = mean affinity onto it from the other members); cover required."""
    n = len(A)
    subsets = [c for r in range(1, n + 1) for c in itertools.combinations(range(n), r)]
    score = np.full((len(subsets), n), -np.inf)  # -inf: task not in the group
    for i, members in enumerate(subsets):
        for t in members:
            others = [s for s in members if s != t]
            score[i, t] = np.mean([A[s, t] for s in others]) if others else singleton_score
    best = -np.inf
    for r in range(1, k + 1):
        combos = itertools.combinations(range(len(subsets)), r)
        while True:
            chunk = np.array(list(itertools.islice(combos, 200_000)), dtype=np.int32)
            if not len(chunk):
                break
            served = score[chunk].max(axis=1)  # best chosen group per task
            covered = np.isfinite(served).all(axis=1)  # every task in some chosen group
            if covered.any():
                best = max(best, served[covered].sum(axis=1).max())
    return best


def independent_objective(A, groups, names, singleton_score):
    index = {t: i for i, t in enumerate(names)}
    total = 0.0
    for t in names:
        options = []
        for g in groups:
            if t in g:
                others = [index[s] for s in g if s != t]
                options.append(np.mean(A[others, index[t]]) if others else singleton_score)
        assert options, f"{t} not covered"
        total += max(options)
    return total


def cases():
    rng = np.random.default_rng(2021)
    out = []
    for i in range(220):
        n = int(rng.integers(3, 7)) if i < 200 else (7 if i < 214 else 8)
        k = int(rng.integers(1, 4)) if not (n == 8 and i < 218) else int(rng.integers(1, 3))
        out.append((i, n, min(k, n)))
    return out


def random_matrix(rng, n):
    kind = rng.integers(0, 3)
    if kind == 0:
        return rng.normal(size=(n, n))
    if kind == 1:  # mostly helpful, some strongly directed pairs
        return rng.normal(0.3, 0.5, size=(n, n)) + 2 * (rng.random((n, n)) < 0.15)
    return np.round(rng.normal(size=(n, n)), 1)  # ties


@pytest.mark.parametrize("chunk", range(4))
def test_exact_matches_brute_force(chunk):
    all_cases = cases()
    mine = all_cases[chunk::4]
    for i, n, k in mine:
        rng = np.random.default_rng(1000 + i)
        A = random_matrix(rng, n)
        np.fill_diagonal(A, np.nan)
        singleton = float(rng.choice([0.0, -0.5, 0.25]))
        model = TagGrouping(k=k, solver="exact", singleton_score=singleton).fit(frame(A))
        A0 = np.nan_to_num(A)
        expected = brute_force(A0, k, singleton)
        assert model.objective_ == pytest.approx(expected, abs=1e-9), (i, n, k)
        # The returned groups really achieve it, with at most k groups covering every task.
        assert len(model.groups_) <= k
        assert independent_objective(A0, model.groups_, model.tasks_, singleton) == pytest.approx(expected)
        assert sum(model.per_task_score_.values()) == pytest.approx(expected)
    assert len(all_cases) >= 200


def test_overlap_beats_every_partition():
    # b helps a and c a lot, but a and c hurt each other: the optimum puts b in two groups.
    names = ["a", "b", "c"]
    A = np.array([[0, 0, -3], [2, 0, 2], [-3, 0, 0]], dtype=float)
    model = TagGrouping(k=2, solver="exact").fit(pd.DataFrame(A, index=names, columns=names))
    best_partition = -np.inf
    for labels in itertools.product(range(2), repeat=3):
        groups = [[t for t, label in zip(names, labels) if label == g] for g in range(2)]
        groups = [g for g in groups if g]
        best_partition = max(best_partition, independent_objective(A, groups, names, 0.0))
    assert model.objective_ == pytest.approx(4.0)
    assert model.objective_ > best_partition + 1
    assert sorted(model.groups_) == [("a", "b"), ("b", "c")]
    assert model.serves_[model.assignment_["a"]] != model.serves_[model.assignment_["c"]]


def test_exact_n20_k4_is_fast():
    import time

    rng = np.random.default_rng(7)
    A = rng.normal(size=(20, 20))
    start = time.perf_counter()
    model = TagGrouping(k=4, solver="exact").fit(frame(A))
    assert time.perf_counter() - start < 60
    heuristic = TagGrouping(k=4, solver="heuristic").fit(frame(A))
    assert model.objective_ >= heuristic.objective_ - 1e-9
    assert model.stats_["lp_bound"] >= model.objective_ - 1e-7
