"""Bootstrap stability of groupings and source rankings: known answers."""

import itertools

import numpy as np
import pandas as pd
import pytest

from taskaffinity.affinity.store import AffinityStore
from taskaffinity.grouping import make_grouping
from taskaffinity.grouping.sources import rank_sources
from taskaffinity.grouping.stability import choose_groups, grouping_stability

TASKS = ["a1", "a2", "a3", "b1", "b2", "b3"]


def blocks(noise: float, samples: int = 12, seed: int = 0, effect: float = 1.0) -> AffinityStore:
    """Two blocks of mutually helpful tasks (+effect inside, -effect across) plus noise per sample."""
    rng = np.random.default_rng(seed)
    rows = [
        {
            "step": step,
            "estimator": "x",
            "source": s,
            "target": t,
            "value": (effect if s[0] == t[0] else -effect) + rng.normal(0, noise),
        }
        for step in range(samples)
        for s, t in itertools.product(TASKS, repeat=2)
    ]
    return AffinityStore(pd.DataFrame(rows), {"tasks": TASKS})


@pytest.mark.parametrize("method", ["tag", "hierarchical"])
def test_clear_blocks_come_back_in_every_resample(method):
    store = blocks(noise=0.1)
    chosen = make_grouping(method, k=2).fit(store.matrix("x"))
    stability = grouping_stability(lambda: make_grouping(method, k=2), chosen, store.bootstrap_matrices("x", n_boot=30))
    assert stability.chosen_share == 1.0 and stability.stable and stability.assignment_ari == 1.0
    assert stability.group_shares == [1.0, 1.0]
    assert stability.comembership.loc["a1", "a2"] == 1.0 and stability.comembership.loc["a1", "b1"] == 0.0


def test_pure_noise_groupings_do_not_come_back():
    store = blocks(noise=1.0, effect=0.0, samples=8)
    chosen = make_grouping("hierarchical", k=2).fit(store.matrix("x"))
    stability = grouping_stability(
        lambda: make_grouping("hierarchical", k=2), chosen, store.bootstrap_matrices("x", n_boot=60)
    )
    assert stability.chosen_share < 0.5 and not stability.stable
    off = stability.comembership.to_numpy()[~np.eye(6, dtype=bool)]
    assert 0.05 < off.mean() < 0.95  # pairs land together sometimes, apart other times


def test_choose_groups_document_carries_stability_and_reliability():
    store = blocks(noise=0.1)
    document = choose_groups(
        store.matrix("x"),
        "tag",
        resamples=store.bootstrap_matrices("x", n_boot=10),
        estimator="x",
        reliability={"within_target_reliability": 0.9},
        k=2,
        seed=0,
        linkage="average",
    )  # linkage is not a tag setting: ignored
    assert document["stability"]["resamples"] == 10 and document["stability"]["chosen_share"] == 1.0
    assert document["stability"]["comembership"]["a1"]["a3"] == 1.0
    assert document["reliability"] == {"within_target_reliability": 0.9}


def test_rank_stability_of_sources():
    store = blocks(noise=0.05)
    table = rank_sources(store.matrix("x"), "a1", resamples=store.bootstrap_matrices("x", n_boot=40))
    top = table.iloc[0]
    assert top["source"] in ("a2", "a3") and table.iloc[:2]["top1_share"].sum() == pytest.approx(1.0)
    assert (table.iloc[2:]["top1_share"] == 0).all() and (table.iloc[2:]["rank_low"] >= 3).all()


def test_trust_lines_give_a_prophecy_only_where_it_means_something():
    from taskaffinity.grouping.output import trust_lines

    def line(within, needed):
        return trust_lines(
            {
                "estimator": "x",
                "reliability": {"within_target_reliability": within, "samples": 15, "samples_for_0.9": needed},
            }
        )[0]

    assert "0.9 would need about 90" in line(0.6, 90.0)  # 15 * 0.9 * 0.4 / (0.6 * 0.1)
    assert "would need" not in line(1e-17, 9.7e18) and "barely agree" in line(1e-17, 9.7e18)
    assert "do not agree at all" in line(-0.2, None)
