"""Target-aware source ranking and the result document."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from taskaffinity.affinity.store import AffinityStore
from taskaffinity.grouping import GroupingError, TagGrouping
from taskaffinity.grouping.output import grouping_document, write_document
from taskaffinity.grouping.sources import rank_source_groups, rank_sources


def random_frame(n, seed):
    rng = np.random.default_rng(seed)
    names = [f"t{i}" for i in range(n)]
    return pd.DataFrame(rng.normal(size=(n, n)), index=names, columns=names)


def test_rank_sources_orders_the_target_column():
    frame = random_frame(6, 0)
    table = rank_sources(frame, "t2", top=3)
    column = frame["t2"].drop("t2").sort_values(ascending=False)
    assert list(table["source"]) == list(column.index[:3])
    assert np.allclose(table["affinity"], column.to_numpy()[:3])
    assert list(table["rank"]) == [1, 2, 3]


def test_rank_sources_with_store_confidence():
    rows = []
    rng = np.random.default_rng(1)
    for step in range(8):
        for s, t in itertools.permutations("abc", 2):
            base = 1.0 if (s, t) == ("a", "c") else 0.0
            rows.append({"step": step, "estimator": "e", "source": s, "target": t, "value": base + rng.normal(0, 0.05)})
    store = AffinityStore(pd.DataFrame(rows), {"tasks": ["a", "b", "c"]})
    table = rank_sources(store.matrix("e"), "c", store=store, estimator="e")
    assert list(table["source"]) == ["a", "b"]
    assert bool(table.loc[0, "significant"]) and table.loc[0, "low"] > 0.5
    assert table.loc[0, "n"] == 8


@pytest.mark.parametrize("size", [1, 2, 3])
def test_source_groups_match_enumeration(size):
    frame = random_frame(7, size)
    table = rank_source_groups(frame, "t0", size=size, top=5)
    column = frame["t0"].drop("t0")
    scores = sorted((column[list(c)].mean() for c in itertools.combinations(column.index, size)), reverse=True)
    assert np.allclose(table["score"], scores[:5])
    assert table["exact"].all()


def test_source_groups_greedy_beyond_enumeration_keeps_the_best():
    frame = random_frame(30, 9)
    greedy = rank_source_groups(frame, "t3", size=6, top=4, max_enumerate=10)
    exact = rank_source_groups(frame, "t3", size=6, top=4, max_enumerate=10**6)
    assert not greedy["exact"].any() and exact["exact"].all()
    # The best and the runner-up (always one swap away from the best) are found exactly.
    for i in (0, 1):
        assert set(greedy.loc[i, "sources"]) == set(exact.loc[i, "sources"])
        assert greedy.loc[i, "score"] == pytest.approx(exact.loc[i, "score"])
    assert (np.diff(greedy["score"]) <= 1e-12).all()


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_document_round_trip(tmp_path, suffix):
    model = TagGrouping(k=2).fit(random_frame(6, 3))
    document = grouping_document(model, estimator="lookahead_sgd")
    path = write_document(tmp_path / f"groups{suffix}", document)
    loaded = json.loads(path.read_text()) if suffix == ".json" else yaml.safe_load(path.read_text())
    assert loaded == document
    assert set(document) == {"method", "estimator", "k", "objective", "groups", "assignment", "per_task_score"}
    assert sum(g["score"] for g in document["groups"]) == pytest.approx(document["objective"])
    for task, g in document["assignment"].items():
        assert task in document["groups"][g]["serves"]
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temp file


def test_document_errors(tmp_path):
    with pytest.raises(GroupingError, match="not fitted"):
        grouping_document(TagGrouping(k=2))
    with pytest.raises(GroupingError, match=r"\.json, \.yaml"):
        write_document(tmp_path / "groups.txt", {})
