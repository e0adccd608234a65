"""The results store of a study and the tables computed from it.

``results.parquet``: one row per measurement, tidy::

    experiment_id, kind, label, arm, pretrain_set, n_pretrain_tasks, target, seed, fraction,
    split, metric, value, baseline, primary, wall_seconds, device

``label`` is the column of the study's tables (``baseline``, ``G1+G2``, ``k=4``,
``pair``, ``source:trec6``, ``chosen:a+b`` ...); ``pretrain_set`` the tasks trained
on before (fine-tuning) or together with (joint runs) the target, joined by ``+``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ..tasks.spec import signed_gain
from .jobs import is_done, read_result

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


def label_summary(results: pd.DataFrame, by: tuple[str, ...] = ("target", "label"), split: str = "test") -> pd.DataFrame:
    """Mean, standard deviation and count over seeds of each target's primary metric, per label,
    with the difference from the baseline label (same target and fraction) when there is one."""
    rows = primary_test(results, split)
    keys = [*by, "metric"]
    summary = (rows.groupby(keys, sort=False)["value"].agg(mean="mean", std="std", n_seeds="count")
               .reset_index())
    summary["n_pretrain_tasks"] = rows.groupby(keys, sort=False)["n_pretrain_tasks"].first().to_numpy()
    base = summary[summary["label"] == "baseline"]
    if not base.empty:
        on = [k for k in by if k != "label"] + ["metric"]
        merged = summary.merge(base[on + ["mean"]].rename(columns={"mean": "baseline_mean"}), on=on, how="left")
        summary["delta_vs_baseline"] = signed_gain(merged["mean"], merged["baseline_mean"], merged["metric"]).to_numpy()
    return summary


def transfer_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Targets × labels of mean metric (Padmakumar et al. 2022, Table 2 layout), labels in plan order."""
    return summary.pivot(index="target", columns="label", values="mean")[list(dict.fromkeys(summary["label"]))]


# -- validation studies ----------------------------------------------------------------------------
def measured_gains(results: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """``source, target, gain``: how much training with (pairs) or pre-finetuning on (transfer) the
    source improves the target over training it alone (pairs) or from the base model (transfer),
    averaged over seeds."""
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
        return pd.DataFrame(columns=["source", "target", "gain", "n_seeds"])
    frame = pd.DataFrame(out)
    frame["gain"] = signed_gain(frame["value"], frame["reference"], frame["metric"])
    return (frame.dropna(subset=["gain"]).groupby(["source", "target"], sort=False)["gain"]
            .agg(gain="mean", n_seeds="count").reset_index())


def affinity_agreement(gains: pd.DataFrame, matrix: pd.DataFrame, *, n_boot: int = 1000, level: float = 0.95,
                       seed: int = 0) -> dict:
    """Spearman correlation between affinity i→j and measured gain of j from i, with a bootstrap CI over pairs."""
    frame = gains.assign(affinity=[matrix.loc[s, t] if s in matrix.index and t in matrix.columns else np.nan
                                   for s, t in zip(gains["source"], gains["target"])]).dropna(subset=["affinity"])
    if len(frame) < 3:
        return {"spearman": None, "ci": None, "n_pairs": len(frame)}
    rho = float(spearmanr(frame["affinity"], frame["gain"]).statistic)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        sample = frame.iloc[rng.integers(0, len(frame), len(frame))]
        if sample["affinity"].nunique() > 1 and sample["gain"].nunique() > 1:
            boots.append(spearmanr(sample["affinity"], sample["gain"]).statistic)
    tail = (1 - level) / 2
    ci = [float(np.quantile(boots, tail)), float(np.quantile(boots, 1 - tail))] if boots else None
    return {"spearman": rho, "ci": ci, "level": level, "n_pairs": len(frame)}


def arm_summary(results: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per grouping arm (chosen, all, single, random1, ...): mean gain of the measured tasks over
    their single-task models, and the mean metric."""
    rows = primary_test(results, split)
    alone = rows[rows["label"] == "alone"].set_index(["target", "seed"])["value"]
    arms = rows[rows["arm"].isin(["single", "all", "chosen"]) | rows["arm"].str.startswith("random")].copy()
    if arms.empty:
        return pd.DataFrame(columns=["arm", "mean_gain_over_single", "mean_value", "n_tasks"])
    reference = pd.Series([alone.get((t, s), np.nan) for t, s in zip(arms["target"], arms["seed"])], index=arms.index)
    arms["gain"] = signed_gain(arms["value"], reference, arms["metric"])
    return (arms.groupby("arm", sort=False)
            .agg(mean_gain_over_single=("gain", "mean"), mean_value=("value", "mean"), n_tasks=("target", "nunique"))
            .reset_index())
