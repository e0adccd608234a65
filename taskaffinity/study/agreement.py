"""How well each estimator of a validation study's affinity run predicts the measured gains, what it
cost, and whether the best one is better than the others beyond these targets' noise."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .results import affinity_agreement, paired_difference, per_target_agreement


def estimator_differences(store, gains: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """Every estimator against the one with the best within-target agreement: the mean over targets
    of the difference of their per-target Spearman correlations, with a bootstrap CI over targets
    (``excludes_zero``: the difference is more than these targets' noise)."""
    per = {e: per_target_agreement(gains, store.matrix(e)) for e in store.estimators}
    per = {e: v for e, v in per.items() if not v.empty}
    if not per:
        return pd.DataFrame(
            columns=["estimator", "versus", "difference", "ci_low", "ci_high", "n_targets", "excludes_zero"]
        )
    best = max(per, key=lambda e: per[e].mean())
    rows = []
    for estimator, values in per.items():
        diff = paired_difference(values, per[best], seed=seed)
        rows.append(
            {
                "estimator": estimator,
                "versus": best,
                **diff,
                "excludes_zero": bool(diff["ci_high"] < 0 or diff["ci_low"] > 0),
            }
        )
    return pd.DataFrame(rows).sort_values("difference", ascending=False).reset_index(drop=True)


def agreement_table(store, gains: pd.DataFrame, noise: dict, *, seed: int = 0) -> pd.DataFrame:
    """Per estimator: Spearman of affinity vs measured gain (pooled and within target, with CIs and a
    permutation p-value), read against the noise ceiling of the gains and the ceiling that the
    estimator's own reliability leaves, and what the estimator cost in the affinity run."""
    from ..affinity.reliability import estimator_reliability

    meta = store.metadata
    training = meta.get("training_seconds") or float("nan")
    rows = []
    for estimator in store.estimators:
        agreement = affinity_agreement(gains, store.matrix(estimator), seed=seed)
        reliability = estimator_reliability(store, estimator, seed=seed)
        ci = agreement["ci"] or [None, None]
        within_ci = agreement["within_target_ci"] or [None, None]
        own = reliability["within_target_reliability"]
        gain_rel = noise["within_target_reliability"]
        attainable = (
            float(np.sqrt(max(own, 0.0) * max(gain_rel, 0.0)))
            if np.isfinite(own) and np.isfinite(gain_rel)
            else float("nan")
        )
        seconds = meta.get("stream_seconds" if estimator.startswith("stream_") else "probe_seconds")
        plain = training - (meta.get("recording_seconds") or 0.0)  # the same steps without any recorder
        rows.append(
            {
                "estimator": estimator,
                "spearman": agreement["spearman"],
                "ci_low": ci[0],
                "ci_high": ci[1],
                "ceiling": noise["ceiling"],
                "within_target": agreement["within_target"],
                "within_ci_low": within_ci[0],
                "within_ci_high": within_ci[1],
                "within_p": agreement["within_target_p"],
                "within_ceiling": noise["within_target_ceiling"],
                "estimator_reliability": own,
                "attainable": attainable,
                "n_pairs": agreement["n_pairs"],
                "cost_seconds": seconds,
                "cost_share_of_run": (seconds / training) if seconds else None,
                "overhead": 1 + seconds / plain if seconds and plain > 0 else None,
            }
        )
    return pd.DataFrame(rows)
