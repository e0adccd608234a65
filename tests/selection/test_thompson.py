"""The Thompson sampler on its own: rewards with known answers, no model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from taskaffinity.selection.bandit import pooled_ranking
from taskaffinity.selection.thompson import ThompsonSampler, run_thompson

SOURCES = ["dull_a", "helps", "dull_b", "dull_c"]


def bernoulli_reward(rates: dict[str, float], seed: int):
    """Reward 1 with a fixed probability per source: ``helps`` is the one that improves the target."""
    rng = np.random.default_rng(seed)

    def reward(source: str, round_: int) -> tuple[int, float]:
        r = int(rng.random() < rates[source])
        return r, float(r)

    return reward


@pytest.mark.parametrize("decay", [0.0, 0.1])
def test_the_source_that_helps_ranks_first(decay):
    rates = {"dull_a": 0.3, "helps": 0.8, "dull_b": 0.3, "dull_c": 0.3}
    ranking, log = run_thompson(SOURCES, bernoulli_reward(rates, seed=1), rounds=80, decay=decay, seed=0)
    assert ranking["source"].iloc[0] == "helps"
    assert ranking.set_index("source")["pulls"].idxmax() == "helps"  # exploited, not only ranked
    assert len(log) == 80 and ranking["pulls"].sum() == 80 and ranking["rewards"].sum() == log["reward"].sum()
    assert list(ranking["rank"]) == [1, 2, 3, 4]
    assert ranking["posterior_mean"].is_monotonic_decreasing


def top1_share(decay: float, runs: int = 60, rounds: int = 60) -> float:
    rates = {"dull_a": 0.3, "helps": 0.8, "dull_b": 0.3, "dull_c": 0.3}
    return np.mean(
        [
            run_thompson(SOURCES, bernoulli_reward(rates, seed=100 + s), rounds=rounds, decay=decay, seed=s)[0][
                "source"
            ].iloc[0]
            == "helps"
            for s in range(runs)
        ]
    )


def test_a_strong_discount_forgets_what_ranked_the_source():
    """γ = 0.3 keeps ~3 observations per arm: the final posterior ranks the helpful source first far
    less often than γ = 0.1 (the default) over the same seeded runs."""
    mild, strong = top1_share(0.1), top1_share(0.3)
    assert mild >= 0.85
    assert strong < mild - 0.1


def test_stationary_posterior_counts_the_rewards():
    """decay 0: Beta(1 + successes, 1 + failures) per arm, the conjugate update."""
    rates = {"dull_a": 0.2, "helps": 0.9, "dull_b": 0.5, "dull_c": 0.5}
    ranking, _ = run_thompson(SOURCES, bernoulli_reward(rates, seed=4), rounds=40, decay=0.0, seed=2)
    table = ranking.set_index("source")
    np.testing.assert_allclose(table["alpha"], 1 + table["rewards"])
    np.testing.assert_allclose(table["beta"], 1 + table["pulls"] - table["rewards"])


def test_discounted_update_by_hand():
    sampler = ThompsonSampler(["a", "b"], decay=0.5)
    sampler.update("a", 1)  # a: 0.5·1 + 0.5·1 + 1 = 2; b stays at the prior
    sampler.update("b", 0)  # a: 0.5·2 + 0.5 = 1.5; b: β = 0.5·1 + 0.5 + 1 = 2
    np.testing.assert_allclose(sampler.alpha, [1.5, 1.0])
    np.testing.assert_allclose(sampler.beta, [1.0, 2.0])
    table = sampler.ranking().set_index("source")
    assert table.loc["a", "posterior_mean"] == pytest.approx(0.6)
    assert table.loc["b", "posterior_mean"] == pytest.approx(1 / 3)
    assert table.loc["a", "posterior_std"] == pytest.approx(np.sqrt(1.5 * 1 / (2.5**2 * 3.5)))
    assert (table["pulls"].tolist(), table["rewards"].tolist()) == ([1, 1], [1, 0])


def test_an_unpulled_arm_keeps_the_uniform_prior():
    """Beta(1, 1): mean 1/2, 90 % central interval [0.05, 0.95]."""
    sampler = ThompsonSampler(["a", "b", "c"], decay=0.3)
    sampler.update("a", 1)
    row = sampler.ranking(credible=0.9).set_index("source").loc["c"]
    assert (row["posterior_mean"], row["ci_low"], row["ci_high"]) == pytest.approx((0.5, 0.05, 0.95))
    assert row["pulls"] == 0 and np.isnan(row["reward_rate"])


def test_draws_follow_the_seed():
    logs = [
        run_thompson(SOURCES, bernoulli_reward(dict.fromkeys(SOURCES, 0.5), seed=0), rounds=20, seed=s)[1]
        for s in (7, 7, 8)
    ]
    assert logs[0]["source"].tolist() == logs[1]["source"].tolist()
    assert logs[0]["source"].tolist() != logs[2]["source"].tolist()


@pytest.mark.parametrize(
    "arms, decay, message",
    [
        (["a"], 0.3, "at least two distinct arms"),
        (["a", "a"], 0.3, "at least two distinct arms"),
        (["a", "b"], 1.0, "decay must be in"),
        (["a", "b"], -0.1, "decay must be in"),
    ],
)
def test_bad_sampler_settings(arms, decay, message):
    with pytest.raises(ValueError, match=message):
        ThompsonSampler(arms, decay=decay)


def test_rewards_must_be_binary():
    with pytest.raises(ValueError, match="0 or 1"):
        ThompsonSampler(["a", "b"]).update("a", 0.5)


def test_seeds_pool_their_pseudo_counts():
    by_seed = pd.DataFrame(
        [
            {
                "seed": 0,
                "rank": 1,
                "source": "x",
                "alpha": 3.0,
                "beta": 1.0,
                "pulls": 3,
                "rewards": 2,
                "posterior_mean": 0.75,
            },
            {
                "seed": 0,
                "rank": 2,
                "source": "y",
                "alpha": 1.0,
                "beta": 2.0,
                "pulls": 1,
                "rewards": 0,
                "posterior_mean": 1 / 3,
            },
            {
                "seed": 1,
                "rank": 1,
                "source": "y",
                "alpha": 2.0,
                "beta": 1.0,
                "pulls": 2,
                "rewards": 1,
                "posterior_mean": 2 / 3,
            },
            {
                "seed": 1,
                "rank": 2,
                "source": "x",
                "alpha": 2.0,
                "beta": 2.0,
                "pulls": 2,
                "rewards": 1,
                "posterior_mean": 0.5,
            },
        ]
    )
    table = pooled_ranking(by_seed).set_index("source")
    # x: α = 1 + (3 − 1) + (2 − 1) = 4, β = 1 + 0 + 1 = 2; y: α = 1 + 0 + 1 = 2, β = 1 + 1 + 0 = 2
    assert (table.loc["x", "alpha"], table.loc["x", "beta"]) == (4.0, 2.0)
    assert (table.loc["y", "alpha"], table.loc["y", "beta"]) == (2.0, 2.0)
    assert table.loc["x", "rank"] == 1 and table.loc["x", "pulls"] == 5 and table.loc["x", "rewards"] == 3
    assert table["top1_share"].to_dict() == {"x": 0.5, "y": 0.5}
    assert table.loc["x", "seed_sd"] == pytest.approx(np.std([0.75, 0.5], ddof=1))
