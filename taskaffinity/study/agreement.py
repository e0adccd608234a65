"""How well each estimator of a validation study's affinity run predicts the measured gains, what it
cost, how much that owes to which held-out examples the probes drew (further draws of the same
training, ``study.validation.probe_draws``), and whether the best estimator is better than the others
beyond these targets' noise."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .results import affinity_agreement, paired_difference, per_target_agreement


def _draws_of(estimator: str, store, draws) -> list:
    """The stores that hold ``estimator``: the run's own, then each further draw that recorded it
    (streamed estimators read training batches, not held-out ones: only the run's own)."""
    return [store, *(d for d in draws if estimator in d.estimators)]


def estimator_differences(store, gains: pd.DataFrame, *, seed: int = 0, draws=()) -> pd.DataFrame:
    """Every estimator against the one with the best within-target agreement: the mean over targets
    of the difference of their per-target Spearman correlations (each averaged over the held-out
    ``draws`` that recorded it), with a bootstrap CI over targets (``excludes_zero``: the difference
    is more than these targets' noise)."""
    per = {}
    for e in store.estimators:
        values = [per_target_agreement(gains, s.matrix(e)) for s in _draws_of(e, store, draws)]
        values = [v for v in values if not v.empty]
        if values:
            per[e] = pd.concat(values, axis=1).mean(axis=1)
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
                "draws": len(_draws_of(estimator, store, draws)),
            }
        )
    return pd.DataFrame(rows).sort_values("difference", ascending=False).reset_index(drop=True)


def agreement_draws(store, gains: pd.DataFrame, draws, *, seed: int = 0) -> pd.DataFrame:
    """One row per held-out draw and estimator: its within-target Spearman (CI over targets,
    permutation p) and pooled Spearman, by probe seed (the run's own draw first)."""
    rows = []
    for draw, s in enumerate([store, *draws]):
        for estimator in s.estimators:
            if draw and estimator not in set(store.estimators):
                continue
            agreement = affinity_agreement(gains, s.matrix(estimator), seed=seed)
            within_ci = agreement["within_target_ci"] or [None, None]
            rows.append(
                {
                    "estimator": estimator,
                    "draw": draw,
                    # runs recorded before probe_seed existed drew with the run's seed
                    "probe_seed": s.metadata.get("probe_seed", s.metadata.get("seed")),
                    "within_target": agreement["within_target"],
                    "within_ci_low": within_ci[0],
                    "within_ci_high": within_ci[1],
                    "within_p": agreement["within_target_p"],
                    "spearman": agreement["spearman"],
                    "probe_seconds": s.metadata.get("probe_seconds"),
                }
            )
    return pd.DataFrame(rows)


def _mean_of_draws(gains: pd.DataFrame, matrices: list[pd.DataFrame], seed: int) -> dict:
    """Within-target agreement (CI over targets, permutation p) of the mean of the draws' matrices."""
    first = matrices[0]
    stacked = np.stack([m.reindex(index=first.index, columns=first.columns).to_numpy(float) for m in matrices])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a pair no draw measured stays NaN
        values = np.nanmean(stacked, axis=0)  # a sampled probe pair: the draws that measured it
    mean = pd.DataFrame(values, index=first.index, columns=first.columns)
    agreement = affinity_agreement(gains, mean, seed=seed)
    ci = agreement["within_target_ci"] or [None, None]
    return {
        "mean_of_draws_within_target": agreement["within_target"],
        "mean_of_draws_ci_low": ci[0],
        "mean_of_draws_ci_high": ci[1],
        "mean_of_draws_p": agreement["within_target_p"],
    }


def agreement_table(
    store, gains: pd.DataFrame, noise: dict, *, seed: int = 0, draws=(), per_draw: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per estimator: Spearman of affinity vs measured gain (pooled and within target, with CIs and a
    permutation p-value), read against the noise ceiling of the gains and the ceiling that the
    estimator's own reliability leaves, and what the estimator cost in the affinity run.

    ``draws``: further held-out draws of the same training (stores, e.g. the study's
    ``affinity_draws/``): ``within_target_draws_mean`` / ``_sd`` / ``_min`` / ``_max`` over the run's
    own draw and these (``draws``: how many; an estimator recorded in one draw has sd NaN),
    ``draws_reliability`` (one draw's within-target reliability between draws,
    :func:`~taskaffinity.affinity.reliability.draw_reliability`) and ``mean_of_draws_*``: the
    agreement of the matrix averaged over the draws (their held-out examples pooled). ``per_draw``:
    :func:`agreement_draws` of the same stores, when the caller has it already.
    """
    from ..affinity.reliability import draw_reliability, estimator_reliability

    meta = store.metadata
    recorded = meta.get("training_seconds") or float("nan")
    plain = recorded - (meta.get("recording_seconds") or 0.0)  # the same steps without any recorder
    # the training steps of one draw's run: draws recorded in the affinity run itself are not its cost
    training = recorded - (meta.get("draws_probe_seconds") or 0.0)
    if per_draw is None:
        per_draw = agreement_draws(store, gains, draws, seed=seed)
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
        drawn = [s.matrix(estimator) for s in _draws_of(estimator, store, draws)]
        pooled = _mean_of_draws(gains, drawn, seed) if len(drawn) > 1 else {}
        seconds = meta.get("stream_seconds" if estimator.startswith("stream_") else "probe_seconds")
        mine = per_draw[per_draw["estimator"] == estimator]
        over = mine["within_target"].astype(float).dropna()
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
                "draws": len(mine),
                "within_target_draws_mean": float(over.mean()) if len(over) else float("nan"),
                "within_target_draws_sd": float(over.std(ddof=1)) if len(over) > 1 else float("nan"),
                "within_target_draws_min": float(over.min()) if len(over) else float("nan"),
                "within_target_draws_max": float(over.max()) if len(over) else float("nan"),
                "draws_reliability": draw_reliability(drawn),
                **pooled,
                "estimator_reliability": own,
                "attainable": attainable,
                "n_pairs": agreement["n_pairs"],
                "cost_seconds": seconds,
                "cost_share_of_run": (seconds / training) if seconds else None,
                "overhead": 1 + seconds / plain if seconds and plain > 0 else None,
            }
        )
    return pd.DataFrame(rows)
