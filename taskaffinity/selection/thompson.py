"""Non-stationary Beta–Bernoulli Thompson sampling over source tasks (AutoSeM stage 1).

Guo, Pasunuru & Bansal 2019, "AutoSeM: Automatic Task Selection and Mixing in
Multi-Task Learning" (NAACL), §3.1: every candidate source k holds a posterior
Beta(α_k, β_k) over the chance that a round trained with it improves the target,
prior Beta(α₀, β₀) = Beta(1, 1). Each round draws θ_k ~ Beta(α_k, β_k), pulls
k* = argmax θ_k, observes a binary reward r and updates every arm with the
discounted rule of non-stationary bandits (decay γ pulls each posterior back
towards the prior, so old evidence from an earlier model state fades):

    α_k ← (1 − γ) α_k + γ α₀ + r · [k = k*]
    β_k ← (1 − γ) β_k + γ β₀ + (1 − r) · [k = k*]

The source ranking is the posterior mean α/(α + β). With γ > 0 the posterior never
holds more than about 1/γ observations' worth of evidence per arm: its credible
interval says how far to trust a rank, the raw ``pulls`` and ``rewards`` say what
was observed. This module is maths only (numpy, scipy): the reward is a function
the caller passes, so the sampler is testable on rewards with a known answer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.stats import beta as beta_distribution

RANKING_COLUMNS = (
    "rank",
    "source",
    "posterior_mean",
    "posterior_std",
    "ci_low",
    "ci_high",
    "pulls",
    "rewards",
    "reward_rate",
    "alpha",
    "beta",
)


class ThompsonSampler:
    """Beta–Bernoulli Thompson sampling with a discounted (non-stationary) update; see the module docstring.

    ``arms``: names of the candidate sources (at least two, distinct); ``decay``: γ in [0, 1)
    (0: the stationary bandit, every observation kept); ``seed``: the draws' only randomness.
    """

    def __init__(self, arms, *, decay: float = 0.3, prior: tuple[float, float] = (1.0, 1.0), seed: int = 0):
        self.arms = tuple(arms)
        if len(self.arms) < 2 or len(set(self.arms)) != len(self.arms):
            raise ValueError(f"Thompson sampling needs at least two distinct arms, got {list(self.arms)}")
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if min(prior) <= 0:
            raise ValueError(f"prior parameters must be > 0, got {prior}")
        self.decay, self.prior = float(decay), (float(prior[0]), float(prior[1]))
        self.alpha = np.full(len(self.arms), self.prior[0])
        self.beta = np.full(len(self.arms), self.prior[1])
        self.pulls = np.zeros(len(self.arms), dtype=int)
        self.rewards = np.zeros(len(self.arms), dtype=int)
        self.rng = np.random.default_rng([seed, 0xA0735])

    def choose(self) -> tuple[str, np.ndarray]:
        """Draw θ_k ~ Beta(α_k, β_k) for every arm; return the arm with the largest draw and the draws."""
        theta = self.rng.beta(self.alpha, self.beta)
        return self.arms[int(np.argmax(theta))], theta

    def update(self, arm: str, reward: int) -> None:
        """Discount every posterior towards the prior, then add the pulled arm's binary reward."""
        if reward not in (0, 1):
            raise ValueError(f"the reward must be 0 or 1, got {reward!r}")
        k = self.arms.index(arm)
        self.alpha = (1 - self.decay) * self.alpha + self.decay * self.prior[0]
        self.beta = (1 - self.decay) * self.beta + self.decay * self.prior[1]
        self.alpha[k] += reward
        self.beta[k] += 1 - reward
        self.pulls[k] += 1
        self.rewards[k] += reward

    def ranking(self, credible: float = 0.9) -> pd.DataFrame:
        """Arms by posterior mean (best first), with the posterior's std and central ``credible`` interval.

        Columns :data:`RANKING_COLUMNS`; ``reward_rate`` is rewards / pulls (undiscounted, NaN if never pulled).
        """
        return posterior_table(self.arms, self.alpha, self.beta, self.pulls, self.rewards, credible=credible)


def posterior_table(arms, alpha, beta, pulls, rewards, *, credible: float = 0.9) -> pd.DataFrame:
    """The ranking table of Beta(alpha, beta) posteriors (see :meth:`ThompsonSampler.ranking`)."""
    if not 0 < credible < 1:
        raise ValueError(f"credible must be in (0, 1), got {credible}")
    alpha, beta = np.asarray(alpha, dtype=float), np.asarray(beta, dtype=float)
    pulls, rewards = np.asarray(pulls, dtype=int), np.asarray(rewards, dtype=int)
    tail = (1 - credible) / 2
    frame = pd.DataFrame(
        {
            "source": list(arms),
            "posterior_mean": beta_distribution.mean(alpha, beta),
            "posterior_std": beta_distribution.std(alpha, beta),
            "ci_low": beta_distribution.ppf(tail, alpha, beta),
            "ci_high": beta_distribution.ppf(1 - tail, alpha, beta),
            "pulls": pulls,
            "rewards": rewards,
            "reward_rate": np.divide(rewards, pulls, out=np.full(len(pulls), np.nan), where=pulls > 0),
            "alpha": alpha,
            "beta": beta,
        }
    )
    frame = frame.sort_values(["posterior_mean", "source"], ascending=[False, True], kind="stable")
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame.reset_index(drop=True)


def run_thompson(
    arms,
    reward: Callable[[str, int], tuple[int, float]],
    rounds: int,
    *,
    decay: float = 0.3,
    seed: int = 0,
    credible: float = 0.9,
    on_round: Callable[[dict], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``rounds`` rounds of Thompson sampling; return (ranking, rounds log).

    ``reward(arm, round)`` (round counted from 1) trains/evaluates with the pulled arm and
    returns ``(r, value)``: the binary reward and the measurement it came from (logged).
    The log has one row per round: ``round, source, value, reward, theta`` (the pulled arm's
    draw) and the pulled arm's ``alpha, beta`` after the update; ``on_round`` sees each row.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    sampler = ThompsonSampler(arms, decay=decay, seed=seed)
    log = []
    for round_ in range(1, rounds + 1):
        arm, theta = sampler.choose()
        r, value = reward(arm, round_)
        sampler.update(arm, int(r))
        k = sampler.arms.index(arm)
        row = {
            "round": round_,
            "source": arm,
            "value": float(value),
            "reward": int(r),
            "theta": float(theta[k]),
            "alpha": float(sampler.alpha[k]),
            "beta": float(sampler.beta[k]),
        }
        log.append(row)
        if on_round is not None:
            on_round(row)
    return sampler.ranking(credible), pd.DataFrame(log)
