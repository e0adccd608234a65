"""The results store of a study and the tables computed from it.

``results.parquet``: one row per measurement, tidy::

    experiment_id, kind, label, arm, pretrain_set, n_pretrain_tasks, target, seed, fraction,
    split, metric, value, baseline, primary, wall_seconds, device

``label`` is the column of the study's tables (``baseline``, ``G1+G2``, ``k=4``,
``pair``, ``source:trec6``, ``chosen:a+b`` ...); ``pretrain_set`` the tasks trained
on before (fine-tuning) or together with (joint runs) the target, joined by ``+``.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ..stats import spearman_brown, within_target_spearman
from ..tasks.spec import signed_gain
from .layout import is_done, read_result

PLAN_KEYS = ["experiment_id", "target"]


def collect_results(root: str | Path, plan: pd.DataFrame) -> pd.DataFrame:
    """Join every finished job's measurements with the plan rows that describe them."""
    done = [job for job in plan["experiment_id"].unique() if is_done(root, job)]
    if not done:
        return pd.DataFrame(columns=[*plan.columns, "split", "metric", "value", "baseline", "primary",
                                     "wall_seconds", "device"])
    measured = pd.concat([read_result(root, job) for job in done], ignore_index=True)
    measured = measured.drop(columns=["seed", "fraction"])  # the plan's own columns describe them
    return plan.merge(measured, on=PLAN_KEYS, how="inner")


def primary_test(results: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    return results[results["primary"].astype(bool) & (results["split"] == split)]


# -- validation studies ----------------------------------------------------------------------------
def seed_gains(results: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """``source, target, seed, gain``: how much training with (pairs) or pre-finetuning on (transfer)
    the source improves the target over training it alone (pairs) or from the base model
    (transfer), per seed. The reference shares the seed (paired: same head initialisation and
    example order), so each gain is a paired difference (positive = better, any metric direction)."""
    rows = primary_test(results, split)
    pairs = rows[rows["label"] == "pair"]
    alone = rows[rows["label"] == "alone"].set_index(["target", "seed"])["value"]
    out = []
    if not pairs.empty:
        for row in pairs.itertuples():
            source = next(t for t in row.pretrain_set.split("+") if t != row.target)
            out.append({"source": source, "target": row.target, "seed": row.seed, "metric": row.metric,
                        "value": row.value, "reference": alone.get((row.target, row.seed), np.nan)})
    transfer = rows[rows["label"].str.startswith("source:")]
    if not transfer.empty:
        base = rows[rows["label"] == "baseline"].set_index(["target", "seed"])["value"]
        for row in transfer.itertuples():
            out.append({"source": row.pretrain_set, "target": row.target, "seed": row.seed, "metric": row.metric,
                        "value": row.value, "reference": base.get((row.target, row.seed), np.nan)})
    if not out:
        return pd.DataFrame(columns=["source", "target", "seed", "gain"])
    frame = pd.DataFrame(out)
    frame["gain"] = signed_gain(frame["value"], frame["reference"], frame["metric"])
    return frame.dropna(subset=["gain"]).reset_index(drop=True)


def measured_gains(results: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """``source, target, gain, se, n_seeds``: the mean over seeds of :func:`seed_gains` and its
    standard error (standard deviation of the paired per-seed gains / √n; NaN for one seed)."""
    per_seed = seed_gains(results, split)
    if per_seed.empty:
        return pd.DataFrame(columns=["source", "target", "gain", "se", "n_seeds"])
    grouped = per_seed.groupby(["source", "target"], sort=False)["gain"]
    out = grouped.agg(gain="mean", sd="std", n_seeds="count").reset_index()
    out["se"] = out["sd"] / np.sqrt(out["n_seeds"])
    return out[["source", "target", "gain", "se", "n_seeds"]]


def _within_target(frame: pd.DataFrame, x: str, y: str) -> float:
    """Mean over targets of the Spearman correlation of ``x`` and ``y`` across that target's rows."""
    mean = within_target_spearman(frame, x, y, n_boot=0)["mean"]
    return float("nan") if mean is None else mean


def gain_reliability(results: pd.DataFrame, split: str = "test") -> dict:
    """How well measured pair gains agree with themselves across seeds: the noise ceiling of
    :func:`seed_reliability` over the (source, target) gains of :func:`seed_gains`."""
    return seed_reliability(seed_gains(results, split), keys=["source", "target"])


def seed_reliability(per_seed: pd.DataFrame, keys: list[str]) -> dict:
    """How well measured gains agree with themselves across seeds: the noise ceiling.

    ``per_seed``: one row per measured unit and seed, with the ``keys`` columns (which must
    include ``target``; e.g. ``source, target`` for pairs, ``group, target`` for groups),
    ``seed`` and ``gain``. For every pair of seeds, the Spearman correlation of their per-seed
    gains (pooled over units, and within target: how each target ranks its sources or groups)
    is the reliability of a one-seed measurement; its mean, stepped up to the number of seeds
    by Spearman–Brown, is the reliability of the seed-averaged gains. No predictor can correlate
    with those gains better than ``ceiling`` = √reliability (Spearman's attenuation bound; the
    "noise ceiling" of Nili et al. 2014). NaN with fewer than 2 seeds.
    """
    seeds = sorted(per_seed["seed"].unique()) if not per_seed.empty else []
    out = {"seeds": len(seeds), "seed_pair_spearman": float("nan"), "within_target_seed_pair_spearman": float("nan")}
    if len(seeds) >= 2:
        wide = per_seed.pivot_table(index=list(keys), columns="seed", values="gain").dropna()
        pooled, within = [], []
        for a, b in combinations(seeds, 2):
            if wide[a].nunique() > 1 and wide[b].nunique() > 1:
                pooled.append(spearmanr(wide[a], wide[b]).statistic)
            within.append(_within_target(wide.reset_index(), a, b))
        out["seed_pair_spearman"] = float(np.mean(pooled)) if pooled else float("nan")
        out["within_target_seed_pair_spearman"] = float(np.nanmean(within)) if np.isfinite(within).any() else np.nan
    for key, r in (("", out["seed_pair_spearman"]), ("within_target_", out["within_target_seed_pair_spearman"])):
        reliability = spearman_brown(r, factor=len(seeds)) if len(seeds) >= 2 else float("nan")
        out[f"{key}reliability"] = reliability
        out[f"{key}ceiling"] = float(np.sqrt(max(reliability, 0.0))) if np.isfinite(reliability) else float("nan")
    return out


def _permutation_p(frame: pd.DataFrame, observed: float, permutations: int, rng) -> float:
    """One-sided p-value of a mean within-target Spearman ``observed`` under shuffled sources.

    Spearman's ρ is Pearson's r of ranks, and shuffling a target's gains permutes their ranks,
    so each permutation is one matrix product per target."""
    from scipy.stats import rankdata

    null = np.zeros(permutations)
    used = 0
    for _, group in frame.groupby("target"):
        if len(group) < 3 or group["affinity"].nunique() < 2 or group["gain"].nunique() < 2:
            continue
        a = rankdata(group["affinity"]) - (len(group) + 1) / 2
        g = rankdata(group["gain"]) - (len(group) + 1) / 2
        shuffled = np.array([rng.permutation(g) for _ in range(permutations)])
        null += shuffled @ a / (np.linalg.norm(a) * np.linalg.norm(g))
        used += 1
    null /= max(used, 1)
    return float((1 + np.sum(null >= observed - 1e-12)) / (1 + permutations))


def affinity_agreement(gains: pd.DataFrame, matrix: pd.DataFrame, *, n_boot: int = 1000, level: float = 0.95,
                       seed: int = 0, permutations: int = 1000) -> dict:
    """How well affinity i→j predicts the measured gain of j from i.

    ``spearman`` over all (source, target) pairs with a bootstrap CI over pairs;
    ``within_target``: the mean over targets of the Spearman correlation across each target's
    sources (what source ranking and grouping read), with a bootstrap CI over targets and a
    one-sided permutation p-value (sources shuffled within each target: the chance that a
    predictor with no information ranks as well).
    """
    frame = gains.assign(affinity=[matrix.loc[s, t] if s in matrix.index and t in matrix.columns else np.nan
                                   for s, t in zip(gains["source"], gains["target"])]).dropna(subset=["affinity"])
    out = {"spearman": None, "ci": None, "within_target": None, "within_target_ci": None,
           "within_target_p": None, "level": level, "n_pairs": len(frame)}
    if len(frame) < 3:
        return out
    rng = np.random.default_rng(seed)
    tail = (1 - level) / 2
    out["spearman"] = float(spearmanr(frame["affinity"], frame["gain"]).statistic)
    boots = []
    for _ in range(n_boot):
        sample = frame.iloc[rng.integers(0, len(frame), len(frame))]
        if sample["affinity"].nunique() > 1 and sample["gain"].nunique() > 1:
            boots.append(spearmanr(sample["affinity"], sample["gain"]).statistic)
    out["ci"] = [float(np.quantile(boots, tail)), float(np.quantile(boots, 1 - tail))] if boots else None
    within = within_target_spearman(frame, "affinity", "gain", n_boot=n_boot, level=level, rng=rng)
    if within["mean"] is not None:
        out["within_target"], out["within_target_ci"] = within["mean"], within["ci"]
        out["within_target_p"] = _permutation_p(frame, out["within_target"], permutations, rng)
    return out


def arm_summary(results: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per arm (single, chosen, all, random1, ..., and the study's recipe arms): mean gain of the measured tasks over
    their single-task models (same seed), its standard error over seeds (of the per-seed mean
    gains; NaN for one seed), and the mean metric."""
    rows = primary_test(results, split)
    alone = rows[rows["label"] == "alone"].set_index(["target", "seed"])["value"]
    # every arm but the brute-force pairs and transfer runs: single, all, chosen, random1..., recipe arms
    arms = rows[rows["arm"].fillna("").ne("") & ~rows["arm"].isin(["pair", "transfer"])].copy()
    if arms.empty:
        return pd.DataFrame(columns=["arm", "mean_gain_over_single", "se", "n_seeds", "mean_value", "n_tasks"])
    reference = pd.Series([alone.get((t, s), np.nan) for t, s in zip(arms["target"], arms["seed"])], index=arms.index)
    arms["gain"] = signed_gain(arms["value"], reference, arms["metric"])
    per_seed = arms.groupby(["arm", "seed"], sort=False)["gain"].mean().groupby(level="arm", sort=False)
    spread = pd.DataFrame({"se": per_seed.std() / np.sqrt(per_seed.count()), "n_seeds": per_seed.count()})
    summary = (arms.groupby("arm", sort=False)
               .agg(mean_gain_over_single=("gain", "mean"), mean_value=("value", "mean"),
                    n_tasks=("target", "nunique"))
               .reset_index())
    summary = summary.merge(spread.reset_index(), on="arm", how="left")
    return summary[["arm", "mean_gain_over_single", "se", "n_seeds", "mean_value", "n_tasks"]]
