"""Bad inputs give GroupingError (a TaskAffinityError) with a message naming the culprit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from taskaffinity.errors import TaskAffinityError
from taskaffinity.grouping import GroupingError, TagGrouping, make_grouping
from taskaffinity.grouping.sources import rank_source_groups, rank_sources

NAMES = ["a", "b", "c", "d"]


def good():
    A = np.arange(16, dtype=float).reshape(4, 4) / 10
    np.fill_diagonal(A, np.nan)
    return pd.DataFrame(A, index=NAMES, columns=NAMES)


def test_grouping_error_is_a_user_error():
    assert issubclass(GroupingError, TaskAffinityError)


@pytest.mark.parametrize("method", ["tag", "hierarchical", "spectral", "louvain"])
def test_non_square(method):
    with pytest.raises(GroupingError, match="square"):
        make_grouping(method, k=2).fit(good().iloc[:3])


def test_different_task_sets():
    frame = good()
    frame.columns = ["a", "b", "c", "x"]
    with pytest.raises(GroupingError, match=r"only as source: \['d'\]; only as target: \['x'\]"):
        TagGrouping(k=2).fit(frame)


def test_columns_in_other_order_are_aligned():
    frame = good()
    shuffled = frame.loc[["c", "a", "d", "b"], ["b", "d", "a", "c"]]
    assert TagGrouping(k=2).fit(shuffled).objective_ == pytest.approx(TagGrouping(k=2).fit(frame).objective_)


def test_nan_off_diagonal_named():
    frame = good()
    frame.loc["b", "d"] = np.nan
    with pytest.raises(GroupingError, match=r"NaN.*b->d"):
        TagGrouping(k=2).fit(frame)


def test_duplicate_names():
    frame = good()
    frame.index = ["a", "a", "c", "d"]
    with pytest.raises(GroupingError, match="duplicate"):
        TagGrouping(k=2).fit(frame)


@pytest.mark.parametrize("k", [0, -1, 5, 2.5])
def test_bad_k(k):
    with pytest.raises(GroupingError, match="k must be"):
        TagGrouping(k=k).fit(good())


def test_unknown_method_and_solver():
    with pytest.raises(GroupingError, match="unknown grouping method 'kmeans'"):
        make_grouping("kmeans", k=2)
    with pytest.raises(GroupingError, match="unknown TAG solver"):
        TagGrouping(k=2, solver="fast").fit(good())


def test_exact_refuses_too_many_tasks():
    names = [f"t{i}" for i in range(23)]
    frame = pd.DataFrame(np.zeros((23, 23)), index=names, columns=names)
    with pytest.raises(GroupingError, match="heuristic"):
        TagGrouping(k=2, solver="exact").fit(frame)


def test_not_a_frame_and_unknown_target():
    with pytest.raises(GroupingError, match="DataFrame"):
        TagGrouping(k=2).fit(np.zeros((3, 3)))
    with pytest.raises(GroupingError, match="unknown target task 'nope'"):
        rank_sources(good(), "nope")
    with pytest.raises(GroupingError, match="group size"):
        rank_source_groups(good(), "a", size=4)
