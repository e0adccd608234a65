"""The numbers behind the study figures: seed summaries, the transfer table, critical points, groups.

Conventions (as in :mod:`taskaffinity.study.results`): test split and each target's
primary metric by default; ``delta`` is signed so that positive always means better
(lower-is-better metrics such as ``mae`` are negated).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import TaskAffinityError
from ..study.plan import BASELINE
from ..tasks.spec import LOWER_IS_BETTER, signed_gain

SUMMARY_COLUMNS = ["target", "fraction", "label", "metric", "n_pretrain_tasks", "mean", "std", "n_seeds",
                   "baseline_mean", "delta", "lower_is_better"]


def select_rows(results: pd.DataFrame, *, split: str = "test", metric: str | None = None) -> pd.DataFrame:
    """Rows of ``split`` for ``metric``, or for each target's primary metric when ``metric`` is None."""
    rows = results[results["split"] == split]
    rows = rows[rows["primary"].astype(bool)] if metric is None else rows[rows["metric"] == metric]
    if rows.empty:
        what = f"metric '{metric}'" if metric else "primary metric"
        raise TaskAffinityError(f"no results for split '{split}' and {what} "
                                f"(splits: {sorted(results['split'].unique())}, metrics: {sorted(results['metric'].unique())})")
    return rows


def seed_summary(results: pd.DataFrame, *, split: str = "test", metric: str | None = None) -> pd.DataFrame:
    """Mean, std and count over seeds per (target, fraction, label, metric), with ``delta`` vs the
    ``baseline`` label of the same target and fraction (positive = better)."""
    rows = select_rows(results, split=split, metric=metric)
    keys = ["target", "fraction", "label", "metric"]
    summary = (rows.groupby(keys, sort=False, dropna=False)
               .agg(n_pretrain_tasks=("n_pretrain_tasks", "first"), mean=("value", "mean"),
                    std=("value", "std"), n_seeds=("value", "count"))
               .reset_index())
    base = summary.loc[summary["label"] == BASELINE, ["target", "fraction", "metric", "mean"]]
    summary = summary.merge(base.rename(columns={"mean": "baseline_mean"}), on=["target", "fraction", "metric"],
                            how="left", validate="many_to_one")
    summary["lower_is_better"] = summary["metric"].isin(LOWER_IS_BETTER)
    summary["delta"] = signed_gain(summary["mean"], summary["baseline_mean"], summary["metric"])
    return summary[SUMMARY_COLUMNS]


def label_order(labels) -> list[str]:
    """``baseline`` first, then the other labels in the order they appear."""
    labels = list(dict.fromkeys(labels))
    return ([BASELINE] if BASELINE in labels else []) + [label for label in labels if label != BASELINE]


def at_fraction(summary: pd.DataFrame, fraction: float | None) -> pd.DataFrame:
    """Rows of one training-data fraction: ``fraction``, or the largest one when None."""
    fraction = summary["fraction"].max() if fraction is None else fraction
    rows = summary[np.isclose(summary["fraction"].astype(float), float(fraction))]
    if rows.empty:
        raise TaskAffinityError(f"no results at fraction {fraction} (have {sorted(summary['fraction'].unique())})")
    return rows


def transfer_table(results: pd.DataFrame, *, split: str = "test", metric: str | None = None,
                   fraction: float | None = None, families: dict[str, str] | None = None) -> pd.DataFrame:
    """Tidy target × label table (Padmakumar et al. 2022, Table 2): mean, std, n_seeds, delta vs
    baseline and ``best`` (the best label of each target, lower-is-better respected).

    Rows follow ``families`` (targets of a family together, families in order of first
    appearance) when given, else the order targets appear; labels follow :func:`label_order`.
    """
    table = at_fraction(seed_summary(results, split=split, metric=metric), fraction).copy()
    score = np.where(table["lower_is_better"], -table["mean"], table["mean"])
    table["best"] = False
    table.loc[pd.Series(score, index=table.index).groupby(table["target"]).idxmax(), "best"] = True
    targets = list(dict.fromkeys(table["target"]))
    table["family"] = [families.get(t, "") if families else "" for t in table["target"]]
    if families:
        order = list(dict.fromkeys(families.get(t, "") for t in targets))
        targets = sorted(targets, key=lambda t: order.index(families.get(t, "")))
    table["target"] = pd.Categorical(table["target"], targets, ordered=True)
    table["label"] = pd.Categorical(table["label"], label_order(table["label"]), ordered=True)
    table = table.sort_values(["target", "label"]).reset_index(drop=True)
    table["target"], table["label"] = table["target"].astype(str), table["label"].astype(str)
    return table[["target", "family", "label", "metric", "mean", "std", "n_seeds", "delta", "best",
                  "lower_is_better"]]


def critical_point(curve: pd.Series, baseline: float, lower_is_better: bool = False) -> int | None:
    """The first k (index of ``curve``, sorted) from which every later value beats ``baseline``
    (strictly above; below when ``lower_is_better``); None when the last value does not.

    Aghajanyan et al. 2021 (§5.1): below a critical number of tasks pre-finetuning hurts.
    """
    curve = curve.sort_index()
    better = (curve < baseline) if lower_is_better else (curve > baseline)
    better = better.to_numpy(dtype=bool)  # NaN compares False: never counts as better
    if not better.size or not better[-1]:
        return None
    worse = np.flatnonzero(~better)
    first = worse[-1] + 1 if worse.size else 0
    return int(curve.index[first])


def groups_frame(document: dict) -> pd.DataFrame:
    """One row per group of a grouping document: name (G1, G2 ...), tasks, served tasks, score."""
    groups = document.get("groups") or []
    return pd.DataFrame({
        "group": [f"G{i + 1}" for i in range(len(groups))],
        "tasks": [list(g["tasks"]) for g in groups],
        "serves": [list(g.get("serves", g["tasks"])) for g in groups],
        "score": [float(g["score"]) for g in groups],
    })
