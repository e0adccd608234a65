"""How often the bandit's final ranking puts the one helpful source first, by decay γ and rounds.

A simulated target with known answer: one source earns reward 1 with probability ``--good``
per round, the others with ``--bad`` (stationary rewards). For each (rounds, γ) the Thompson
sampler of ``taskaffinity.selection.thompson`` runs ``--runs`` times (seeded); printed are the
shares of runs whose posterior-mean ranking and whose pull counts put the helpful source
first. The discounted update keeps at most ~1/γ observations per arm, so the final posterior
mean is read from the last few pulls: the reason ``sources --method bandit`` defaults to
γ = 0.1 rather than the 0.3 of AutoSeM's reference code. Example:

    python bench/bandit_decay.py --rounds 20 40 80 --decays 0 0.05 0.1 0.3 --runs 200
"""

from __future__ import annotations

import argparse

import numpy as np

from taskaffinity.selection.thompson import run_thompson


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=4, help="candidate sources (one of them helps)")
    parser.add_argument("--good", type=float, default=0.8, help="reward rate of the helpful source")
    parser.add_argument("--bad", type=float, default=0.3, help="reward rate of the others")
    parser.add_argument("--rounds", type=int, nargs="+", default=[20, 40, 80])
    parser.add_argument("--decays", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.3])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    arms = ["helps"] + [f"other_{i}" for i in range(1, args.sources)]
    rates = {arm: args.good if arm == "helps" else args.bad for arm in arms}
    print(f"{'rounds':>6} {'decay':>6} {'posterior-mean top1':>20} {'most-pulled top1':>17}")
    for rounds in args.rounds:
        for decay in args.decays:
            by_mean = by_pulls = 0
            for run in range(args.runs):
                rng = np.random.default_rng([run, 1])

                def reward(arm, _round, rng=rng):
                    r = int(rng.random() < rates[arm])
                    return r, float(r)

                ranking, _ = run_thompson(arms, reward, rounds, decay=decay, seed=run)
                by_mean += ranking["source"].iloc[0] == "helps"
                by_pulls += ranking.set_index("source")["pulls"].idxmax() == "helps"
            print(f"{rounds:>6} {decay:>6} {by_mean / args.runs:>20.3f} {by_pulls / args.runs:>17.3f}")


if __name__ == "__main__":
    main()
