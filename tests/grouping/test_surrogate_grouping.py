"""Groups and source rankings chosen from a surrogate's predicted group gains."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from taskaffinity.grouping import GroupingError, LinearSurrogate, SurrogateGrouping
from taskaffinity.grouping._base import member_scores
from taskaffinity.grouping.output import grouping_document
from taskaffinity.grouping.sources import rank_source_groups_by_surrogate, rank_sources_by_surrogate


def planted_surrogate(n: int = 8, blocks: int = 2, seed: int = 0, within: float = 1.0, across: float = -0.5):
    """A linear surrogate fitted on every subset of 2-4 tasks of an additive world with planted
    blocks: mates of the same block add ``within`` to a member's gain, others ``across``."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % blocks
    A = np.where(labels[:, None] == labels[None, :], within, across) + rng.normal(0, 0.05, (n, n))
    np.fill_diagonal(A, 0.0)
    subsets = [c for r in (2, 3, 4) for c in itertools.combinations(range(n), r)]
    M = np.array([[t in c for t in range(n)] for c in subsets])
    G = member_scores(A, M) * (M.sum(axis=1, keepdims=True) - 1)  # sums of pair effects: additive
    tasks = [f"t{i}" for i in range(n)]
    truth = {frozenset(tasks[i] for i in np.flatnonzero(labels == b)) for b in range(blocks)}
    return LinearSurrogate(tasks=tasks).fit(M.astype(int), G), truth, A


def brute_force_partitions(model: SurrogateGrouping, n: int, k: int, alone: bool) -> float:
    best = -np.inf
    labels_range = range(k + 1) if alone else range(k)
    for labels in itertools.product(labels_range, repeat=n):
        labels = np.array(labels)
        total = 0.0
        for b in range(k):
            if (labels == b).any():
                total += model._values((labels == b)[None, :])[0]
        total += model.singleton_score * (labels == k).sum() if alone else 0.0
        best = max(best, total)
    return best


@pytest.mark.parametrize("solver", ["exact", "heuristic"])
def test_planted_blocks_recovered_from_predicted_gains(solver):
    surrogate, truth, _ = planted_surrogate()
    model = SurrogateGrouping(k=2, solver=solver).fit(surrogate)
    assert {frozenset(g) for g in model.groups_} == truth and model.solver_ == solver
    assert sum(model.scores_) == pytest.approx(model.objective_)
    assert grouping_document(model)["method"] == "surrogate"


@pytest.mark.parametrize("leave_alone", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_matches_brute_force_over_partitions(leave_alone, seed):
    rng = np.random.default_rng(seed)
    n, k = 5, 2
    tasks = [f"t{i}" for i in range(n)]
    subsets = [c for r in (2, 3) for c in itertools.combinations(range(n), r)]
    M = np.array([[t in c for t in range(n)] for c in subsets])
    G = np.where(M, rng.normal(size=M.shape), np.nan)
    surrogate = LinearSurrogate(tasks=tasks).fit(M.astype(int), G)
    model = SurrogateGrouping(k=k, solver="exact", leave_alone=leave_alone, singleton_score=0.1).fit(surrogate)
    expected = brute_force_partitions(model, n, k, leave_alone)
    solved = sum(model._values(np.array([[t in g for t in tasks]]))[0] for g in model.groups_) + 0.1 * (
        n - sum(len(g) for g in model.groups_)
    )
    assert solved == pytest.approx(expected, abs=1e-9)
    heuristic = SurrogateGrouping(k=k, solver="heuristic", leave_alone=leave_alone, singleton_score=0.1).fit(surrogate)
    assert heuristic.objective_ == pytest.approx(model.objective_, abs=1e-9)


def test_predicted_losses_leave_every_task_alone():
    surrogate, _, _ = planted_surrogate(within=-0.2, across=-0.5)  # every mate hurts every member
    grouping = SurrogateGrouping(k=2, leave_alone=True).fit(surrogate)
    assert grouping.groups_ == [] and len(grouping.alone_) == 8 and grouping.objective_ == 0.0
    reasons = grouping_document(grouping)["alone"]
    assert len(reasons) == 8 and all("no pair is predicted to help" in r["why"] for r in reasons)
    forced = SurrogateGrouping(k=2).fit(surrogate)
    assert forced.alone_ == [] and forced.objective_ < 0


def test_sources_ranked_by_surrogate():
    surrogate, _, A = planted_surrogate()
    ranking = rank_sources_by_surrogate(surrogate, "t0")
    assert list(ranking["rank"]) == list(range(1, 8))
    assert set(ranking["source"][:3]) == {"t2", "t4", "t6"}  # t0's block mates
    np.testing.assert_allclose(
        ranking.set_index("source")["effect"], surrogate.coef_["t0"].drop("t0").loc[ranking["source"]], atol=1e-10
    )
    groups = rank_source_groups_by_surrogate(surrogate, "t0", size=3, top=2)
    assert groups["exact"].all() and set(groups["sources"][0]) == {"t2", "t4", "t6"}
    greedy = rank_source_groups_by_surrogate(surrogate, "t0", size=3, top=2, max_enumerate=5)
    assert not greedy["exact"].any() and set(greedy["sources"][0]) == {"t2", "t4", "t6"}
    with pytest.raises(GroupingError, match="group size must be between 1 and 7"):
        rank_source_groups_by_surrogate(surrogate, "t0", size=8)
    with pytest.raises(GroupingError, match="unknown target task 'zz'"):
        rank_sources_by_surrogate(surrogate, "zz")


def test_surrogate_grouping_refuses_bad_settings():
    surrogate, _, _ = planted_surrogate()
    for kwargs, match in (
        ({"k": 0}, "k must be between 1"),
        ({"k": 2, "solver": "best"}, "unknown solver"),
        ({"k": 2, "leave_alone": 1}, "leave_alone must be True or False"),
    ):
        with pytest.raises(GroupingError, match=match):
            SurrogateGrouping(**kwargs).fit(surrogate)
    with pytest.raises(GroupingError, match="surrogate is not fitted"):
        SurrogateGrouping(k=2).fit(LinearSurrogate())
    with pytest.raises(GroupingError, match="n = 17 > 16"):
        tasks = [f"t{i}" for i in range(17)]
        M = np.eye(17, dtype=int) + np.roll(np.eye(17, dtype=int), 1, axis=1)
        big = LinearSurrogate(tasks=tasks, min_subsets=2).fit(np.vstack([M, np.roll(M, 2, axis=1)]), np.zeros((34, 17)))
        SurrogateGrouping(k=2, solver="exact").fit(big)
    assert isinstance(pd.DataFrame(SurrogateGrouping(k=2).fit(surrogate).pair_gains()), pd.DataFrame)
