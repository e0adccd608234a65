"""Every method recovers planted blocks; the heuristic's gap to the exact optimum is small."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import dendrogram

from taskaffinity.grouping import METHODS, TagGrouping, make_grouping


def planted(seed: int, blocks=(4, 4, 4), within=1.0, across=-0.2, noise=0.1):
    rng = np.random.default_rng(seed)
    n = sum(blocks)
    labels = np.repeat(np.arange(len(blocks)), blocks)
    A = np.where(labels[:, None] == labels[None, :], within, across) + rng.normal(0, noise, (n, n))
    np.fill_diagonal(A, np.nan)
    perm = rng.permutation(n)  # hide the blocks from the task order
    names = [f"t{i:02d}" for i in range(n)]
    frame = pd.DataFrame(A[np.ix_(perm, perm)], index=[names[p] for p in perm], columns=[names[p] for p in perm])
    truth = {frozenset(names[i] for i in np.flatnonzero(labels == b)) for b in range(len(blocks))}
    return frame, truth


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_blocks_recovered(method, seed):
    frame, truth = planted(seed)
    model = make_grouping(method, k=3).fit(frame)
    assert {frozenset(g) for g in model.groups_} == truth
    assert sorted(model.assignment_) == sorted(frame.index)
    for task, g in model.assignment_.items():
        assert task in model.groups_[g] and task in model.serves_[g]
    assert sum(model.scores_) == pytest.approx(model.objective_)
    assert model.objective_ > 0.8 * 12  # within-block affinity ~1 onto every task


def test_tag_solvers_agree_on_planted_and_louvain_caps_k():
    frame, truth = planted(5, blocks=(3, 3, 3, 3))
    for solver in ("exact", "heuristic"):
        assert {frozenset(g) for g in TagGrouping(k=4, solver=solver).fit(frame).groups_} == truth
    capped = make_grouping("louvain", k=2).fit(frame)
    assert capped.n_communities_ == 4 and len(capped.groups_) == 2
    for g in capped.groups_:  # merging keeps planted blocks whole
        assert all(block <= set(g) or not (block & set(g)) for block in truth)


def test_hierarchical_exposes_dendrogram():
    frame, _ = planted(3)
    model = make_grouping("hierarchical", k=3).fit(frame)
    assert model.linkage_.shape == (11, 4)
    tree = dendrogram(model.linkage_, labels=model.dendrogram_labels_, no_plot=True)
    assert sorted(tree["ivl"]) == sorted(frame.index)


def test_heuristic_gap_to_exact_is_small():
    rng = np.random.default_rng(11)
    gaps = []
    for i in range(30):
        n, k = int(rng.integers(8, 15)), int(rng.integers(2, 5))
        A = rng.normal(size=(n, n))
        names = [f"t{j}" for j in range(n)]
        frame = pd.DataFrame(A, index=names, columns=names)
        exact = TagGrouping(k=k, solver="exact").fit(frame).objective_
        heuristic = TagGrouping(k=k, solver="heuristic", seed=i).fit(frame).objective_
        assert heuristic <= exact + 1e-9
        gaps.append((exact - heuristic) / abs(exact))
    print(f"heuristic gap over {len(gaps)} matrices: mean {np.mean(gaps):.4%}, max {np.max(gaps):.4%}")
    assert np.mean(gaps) < 0.02
    assert np.max(gaps) < 0.10


def test_heuristic_handles_100_tasks():
    rng = np.random.default_rng(4)
    n = 100
    A = rng.normal(size=(n, n))
    names = [f"t{j}" for j in range(n)]
    frame = pd.DataFrame(A, index=names, columns=names)
    model = TagGrouping(k=4).fit(frame)  # auto: heuristic beyond 20 tasks (its speed: bench/grouping_scaling.py)
    assert model.solver_ == "heuristic"
    assert len(model.groups_) <= 4
    assert set().union(*model.groups_) == set(names)
    baseline = make_grouping("hierarchical", k=4).fit(frame)
    assert model.objective_ >= baseline.objective_
