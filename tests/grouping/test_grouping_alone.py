"""Knowing when not to group: training alone as a free option (leave_alone)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from taskaffinity.grouping import METHODS, TagGrouping, make_grouping
from taskaffinity.grouping.alone import prune_harmed
from taskaffinity.grouping.output import grouping_document
from taskaffinity.grouping.stability import choose_groups


def frame(A: np.ndarray) -> pd.DataFrame:
    names = [f"task{i}" for i in range(len(A))]
    return pd.DataFrame(A, index=names, columns=names)


def brute_force_alone(A: np.ndarray, k: int, singleton_score: float) -> float:
    """Every choice of 0..k groups of two or more tasks; each task served by its best chosen
    group containing it, or alone (``singleton_score``) when that is at least as good."""
    n = len(A)
    subsets = [c for r in range(2, n + 1) for c in itertools.combinations(range(n), r)]
    score = np.full((len(subsets), n), -np.inf)
    for i, members in enumerate(subsets):
        for t in members:
            score[i, t] = np.mean([A[s, t] for s in members if s != t])
    best = n * singleton_score
    for r in range(1, k + 1):
        for combo in itertools.combinations(range(len(subsets)), r):
            best = max(best, np.maximum(score[list(combo)].max(axis=0), singleton_score).sum())
    return float(best)


@pytest.mark.parametrize("case", range(40))
def test_exact_and_heuristic_match_brute_force_with_tasks_left_alone(case):
    rng = np.random.default_rng(500 + case)
    n, k = int(rng.integers(3, 6)), int(rng.integers(1, 3))
    A = rng.normal(-0.2, 1.0, size=(n, n)) if case % 2 else np.round(rng.normal(size=(n, n)), 1)
    np.fill_diagonal(A, 0.0)
    singleton = float(rng.choice([0.0, -0.3, 0.2]))
    expected = brute_force_alone(A, k, singleton)
    for solver in ("exact", "heuristic"):
        model = TagGrouping(k=k, solver=solver, singleton_score=singleton, leave_alone=True).fit(frame(A))
        assert model.objective_ == pytest.approx(expected, abs=1e-9), (case, solver)
        assert len(model.groups_) <= k and all(len(g) >= 2 for g in model.groups_)
        for task, g in model.assignment_.items():  # served only where the group beats training alone
            assert (g is None) == (task in model.alone_)
            assert g is None or model.per_task_score_[task] > singleton


def test_joint_training_that_hurts_everyone_leaves_every_task_alone():
    rng = np.random.default_rng(0)
    A = -np.abs(rng.normal(0.2, 0.1, size=(6, 6)))
    for method in sorted(METHODS):
        model = make_grouping(method, k=2, leave_alone=True).fit(frame(A))
        assert model.groups_ == [] and model.alone_ == [f"task{i}" for i in range(6)], method
        assert model.objective_ == 0.0 and set(model.assignment_.values()) == {None}
        # the original selection still forces a cover by at most k groups
        forced = make_grouping(method, k=2).fit(frame(A))
        assert forced.alone_ == [] and forced.objective_ < 0


def test_a_group_only_where_it_helps():
    """a and b help each other; c and d hurt everyone and are hurt: k = 2 is an upper bound."""
    names = ["a", "b", "c", "d"]
    A = np.full((4, 4), -0.5)
    A[0, 1] = A[1, 0] = 1.0
    np.fill_diagonal(A, 0.0)
    affinity = pd.DataFrame(A, index=names, columns=names)
    for method in ("tag", "hierarchical", "spectral", "louvain"):
        model = make_grouping(method, k=2, leave_alone=True).fit(affinity)
        assert model.groups_ == [("a", "b")] and model.alone_ == ["c", "d"], method
        assert model.objective_ == pytest.approx(2.0)
    document = grouping_document(TagGrouping(k=2, leave_alone=True).fit(affinity))
    assert document["leave_alone"] is True and [g["tasks"] for g in document["groups"]] == [["a", "b"]]
    assert document["assignment"]["c"] is None
    why = {entry["task"]: entry for entry in document["alone"]}
    assert set(why) == {"c", "d"} and why["c"]["best_score"] == pytest.approx(-0.5)
    assert "no group is predicted to help" in why["c"]["why"]


def test_alone_for_lack_of_group_slots_says_so():
    names = ["a", "b", "c", "d"]
    A = np.full((4, 4), -1.0)
    A[0, 1] = A[1, 0] = 2.0
    A[2, 3] = A[3, 2] = 1.0
    np.fill_diagonal(A, 0.0)
    model = TagGrouping(k=1, leave_alone=True).fit(pd.DataFrame(A, index=names, columns=names))
    assert model.groups_ == [("a", "b")] and model.alone_ == ["c", "d"]
    why = grouping_document(model)["alone"]
    assert all("at most k = 1 groups serve other tasks better" in entry["why"] for entry in why)


def test_prune_harmed_keeps_helpful_members():
    A = np.array([[0, 1, -2], [1, 0, -2], [1, 1, 0]], dtype=float)  # task 2 is hurt by 0 and 1 (column 2)
    assert prune_harmed(A, [(0, 1, 2)], 0.0) == [(0, 1)]
    assert prune_harmed(A, [(0, 2)], 0.0) == []


def test_stability_reports_how_often_each_task_is_left_alone():
    rng = np.random.default_rng(1)
    A = np.full((4, 4), -0.5)
    A[0, 1] = A[1, 0] = 1.0
    np.fill_diagonal(A, 0.0)
    resamples = [frame(A + rng.normal(0, 0.05, A.shape)) for _ in range(20)]
    document = choose_groups(frame(A), "tag", resamples=resamples, k=2, leave_alone=True)
    shares = document["stability"]["alone_shares"]
    assert shares == {"task0": 0.0, "task1": 0.0, "task2": 1.0, "task3": 1.0}


def test_leave_alone_must_be_a_boolean():
    from taskaffinity.grouping import GroupingError

    with pytest.raises(GroupingError, match="leave_alone must be True or False"):
        TagGrouping(k=2, leave_alone="yes").fit(frame(np.zeros((3, 3))))
