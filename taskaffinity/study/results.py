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

from ..grouping.subsets import SEPARATOR
from ..stats import spearman_brown, within_target_spearman
from ..tasks.spec import signed_gain
from .layout import is_done, read_result

PLAN_KEYS = ["experiment_id", "target"]


def collect_results(root: str | Path, plan: pd.DataFrame) -> pd.DataFrame:
    """Join every finished job's measurements with the plan rows that describe them."""
    done = [job for job in plan["experiment_id"].unique() if is_done(root, job)]
    if not done:
        return pd.DataFrame(
            columns=[*plan.columns, "split", "metric", "value", "baseline", "primary", "wall_seconds", "device"]
        )
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
            out.append(
                {
                    "source": source,
                    "target": row.target,
                    "seed": row.seed,
                    "metric": row.metric,
                    "value": row.value,
                    "reference": alone.get((row.target, row.seed), np.nan),
                }
            )
    transfer = rows[rows["label"].str.startswith("source:")]
    if not transfer.empty:
        base = rows[rows["label"] == "baseline"].set_index(["target", "seed"])["value"]
        for row in transfer.itertuples():
            out.append(
                {
                    "source": row.pretrain_set,
                    "target": row.target,
                    "seed": row.seed,
                    "metric": row.metric,
                    "value": row.value,
                    "reference": base.get((row.target, row.seed), np.nan),
                }
            )
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


def per_target_agreement(gains: pd.DataFrame, matrix: pd.DataFrame) -> pd.Series:
    """Per target j: the Spearman correlation, across j's sources, of affinity i→j and the measured gain
    of j from i (targets with fewer than 3 sources or constant values left out)."""
    frame = gains.assign(
        affinity=[
            matrix.loc[s, t] if s in matrix.index and t in matrix.columns else np.nan
            for s, t in zip(gains["source"], gains["target"])
        ]
    ).dropna(subset=["affinity"])
    return pd.Series(
        {
            t: spearmanr(g["affinity"], g["gain"]).statistic
            for t, g in frame.groupby("target")
            if len(g) >= 3 and g["affinity"].nunique() > 1 and g["gain"].nunique() > 1
        },
        dtype=float,
    )


def paired_difference(a: pd.Series, b: pd.Series, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Mean over targets of ``a − b`` (two per-target agreements on the same targets) with a bootstrap
    CI over targets: whether one estimator ranks sources better than another on these targets."""
    d = (a - b.reindex(a.index)).dropna().to_numpy()
    out = {
        "difference": float(d.mean()) if len(d) else float("nan"),
        "ci_low": float("nan"),
        "ci_high": float("nan"),
        "n_targets": len(d),
    }
    if len(d) >= 2:
        means = d[np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
        tail = (1 - level) / 2
        out["ci_low"], out["ci_high"] = float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))
    return out


def affinity_agreement(
    gains: pd.DataFrame,
    matrix: pd.DataFrame,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    permutations: int = 1000,
) -> dict:
    """How well affinity i→j predicts the measured gain of j from i.

    ``spearman`` over all (source, target) pairs with a bootstrap CI over pairs;
    ``within_target``: the mean over targets of the Spearman correlation across each target's
    sources (what source ranking and grouping read), with a bootstrap CI over targets and a
    one-sided permutation p-value (sources shuffled within each target: the chance that a
    predictor with no information ranks as well).
    """
    frame = gains.assign(
        affinity=[
            matrix.loc[s, t] if s in matrix.index and t in matrix.columns else np.nan
            for s, t in zip(gains["source"], gains["target"])
        ]
    ).dropna(subset=["affinity"])
    out = {
        "spearman": None,
        "ci": None,
        "within_target": None,
        "within_target_ci": None,
        "within_target_p": None,
        "level": level,
        "n_pairs": len(frame),
    }
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


ARM_COLUMNS = [
    "arm",
    "mean_gain_over_single",
    "se",
    "n_seeds",
    "mean_value",
    "n_tasks",
    "p_vs_single",
    "vs_random",
    "vs_random_se",
    "p_vs_random",
    "n_paired",
]


def arm_gains(results: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """``arm, target, seed, value, gain``: every grouping or recipe arm's measured tasks (single, all,
    chosen, oracle, random1..., recipe arms; not the brute-force pairs, transfer runs or sampled
    groups), with the gain over the task's single-task model of the same seed (a paired difference)."""
    rows = primary_test(results, split)
    alone = rows[rows["label"] == "alone"].set_index(["target", "seed"])["value"]
    arms = rows[rows["arm"].fillna("").ne("") & ~rows["arm"].isin(["pair", "transfer", "group"])].copy()
    reference = pd.Series([alone.get((t, s), np.nan) for t, s in zip(arms["target"], arms["seed"])], index=arms.index)
    arms["gain"] = signed_gain(arms["value"], reference, arms["metric"]) if not arms.empty else []
    return arms[["arm", "target", "seed", "value", "gain"]]


def arm_summary(results: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per arm: mean gain of the measured tasks over their single-task models (same seed), its
    standard error over seeds (of the per-seed mean gains; NaN for one seed), the mean metric, and
    two paired comparisons over (task, seed): against the single-task models (``p_vs_single``) and
    against random groupings (``vs_random``: the arm's gain minus the mean gain of the random arms
    for the same task and seed, its standard error over seeds and ``p_vs_random``). p-values are
    two-sided Wilcoxon signed-rank tests (None with fewer than 6 pairs or all differences 0)."""
    from scipy.stats import wilcoxon

    arms = arm_gains(results, split)
    if arms.empty:
        return pd.DataFrame(columns=ARM_COLUMNS)

    def p_value(d):
        d = np.asarray(d, dtype=float)
        d = d[np.isfinite(d)]
        return float(wilcoxon(d).pvalue) if len(d) >= 6 and np.any(d != 0) else None

    per_seed = arms.groupby(["arm", "seed"], sort=False)["gain"].mean().groupby(level="arm", sort=False)
    spread = pd.DataFrame({"se": per_seed.std() / np.sqrt(per_seed.count()), "n_seeds": per_seed.count()})
    summary = (
        arms.groupby("arm", sort=False)
        .agg(mean_gain_over_single=("gain", "mean"), mean_value=("value", "mean"), n_tasks=("target", "nunique"))
        .reset_index()
    )
    summary = summary.merge(spread.reset_index(), on="arm", how="left")
    summary["p_vs_single"] = [
        p_value(arms[arms["arm"] == a]["gain"]) if a != "single" else None for a in summary["arm"]
    ]
    randoms = arms[arms["arm"].str.fullmatch(r"random\d+")]
    random_mean = randoms.groupby(["target", "seed"])["gain"].mean()
    vs, vs_se, vs_p, n = [], [], [], []
    for arm in summary["arm"]:
        own = arms[arms["arm"] == arm].set_index(["target", "seed"])["gain"]
        d = (own - random_mean.reindex(own.index)).dropna()
        if randoms.empty or d.empty or arm.startswith("random"):
            vs.append(np.nan), vs_se.append(np.nan), vs_p.append(None), n.append(0)
            continue
        seeds = d.groupby(level="seed").mean()
        vs.append(float(d.mean()))
        vs_se.append(float(seeds.std() / np.sqrt(len(seeds))) if len(seeds) > 1 else np.nan)
        vs_p.append(p_value(d))
        n.append(len(d))
    summary["vs_random"], summary["vs_random_se"], summary["p_vs_random"], summary["n_paired"] = vs, vs_se, vs_p, n
    return summary[ARM_COLUMNS]


def pair_subsets(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pair gains (``source, target, gain`` and any ``seed``) as measured subsets, tidy like
    :func:`group_gains`: ``group`` is ``"source+target"`` (``SEPARATOR``), the member whose gain it is the target."""
    out = pd.DataFrame({"group": pairs["source"].astype(str) + SEPARATOR + pairs["target"].astype(str)})
    out["target"] = pairs["target"].astype(str).to_numpy()
    if "seed" in pairs:
        out["seed"] = pairs["seed"].to_numpy()
    out["gain"] = pairs["gain"].to_numpy()
    return out


def group_gains(results: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """``group, target, seed, gain``: each member's gain in a sampled group (validation
    ``group_samples``) over its single-task model of the same seed (a paired difference)."""
    rows = primary_test(results, split)
    alone = rows[rows["label"] == "alone"].set_index(["target", "seed"])["value"]
    groups = rows[rows["arm"] == "group"]
    if groups.empty:
        return pd.DataFrame(columns=["group", "target", "seed", "gain"])
    reference = pd.Series(
        [alone.get((t, s), np.nan) for t, s in zip(groups["target"], groups["seed"])], index=groups.index
    )
    out = pd.DataFrame(
        {
            "group": groups["pretrain_set"],
            "target": groups["target"],
            "seed": groups["seed"],
            "gain": signed_gain(groups["value"], reference, groups["metric"]),
        }
    )
    return out.dropna(subset=["gain"]).reset_index(drop=True)
