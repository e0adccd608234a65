"""Seed summaries and the transfer table of a study's results: the one home of both.

Conventions: the test split and each target's primary metric by default; ``delta`` is
signed so that positive always means better (lower-is-better metrics such as ``mae``
are negated); the reference is the ``baseline`` label of the same target (and fraction).
The study's ``tables/summary.csv`` names that column ``delta_vs_baseline``
(:func:`label_summary`); ``tables/transfer.csv`` is :func:`transfer_means`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import TaskAffinityError
from ..tasks.spec import LOWER_IS_BETTER, signed_gain
from .plan import BASELINE

SUMMARY_COLUMNS = [
    "target",
    "fraction",
    "label",
    "metric",
    "n_pretrain_tasks",
    "mean",
    "std",
    "n_seeds",
    "baseline_mean",
    "delta",
    "lower_is_better",
]


def select_rows(
    results: pd.DataFrame, *, split: str = "test", metric: str | None = None, required: bool = True
) -> pd.DataFrame:
    """Rows of ``split`` for ``metric``, or for each target's primary metric when ``metric`` is None.
    Raises a TaskAffinityError when nothing is left, unless ``required`` is False."""
    rows = results[results["split"] == split]
    rows = rows[rows["primary"].astype(bool)] if metric is None else rows[rows["metric"] == metric]
    if rows.empty and required:
        what = f"metric '{metric}'" if metric else "primary metric"
        raise TaskAffinityError(
            f"no results for split '{split}' and {what} "
            f"(splits: {sorted(results['split'].unique())}, metrics: {sorted(results['metric'].unique())})"
        )
    return rows


def summarise_seeds(rows: pd.DataFrame, by=("target", "fraction", "label"), *, dropna: bool = True) -> pd.DataFrame:
    """Mean, std and count over seeds per ``by`` + metric group of already selected ``rows``, with
    ``n_pretrain_tasks``, ``baseline_mean`` (the ``baseline`` label of the same other keys; NaN
    where there is none), ``delta`` (signed, positive = better) and ``lower_is_better``."""
    keys = [*by, "metric"]
    summary = (
        rows.groupby(keys, sort=False, dropna=dropna)
        .agg(
            n_pretrain_tasks=("n_pretrain_tasks", "first"),
            mean=("value", "mean"),
            std=("value", "std"),
            n_seeds=("value", "count"),
        )
        .reset_index()
    )
    on = [k for k in by if k != "label"] + ["metric"]
    base = summary.loc[summary["label"] == BASELINE, on + ["mean"]]
    summary = summary.merge(base.rename(columns={"mean": "baseline_mean"}), on=on, how="left", validate="many_to_one")
    summary["lower_is_better"] = summary["metric"].isin(LOWER_IS_BETTER)
    summary["delta"] = signed_gain(summary["mean"], summary["baseline_mean"], summary["metric"])
    return summary


def seed_summary(results: pd.DataFrame, *, split: str = "test", metric: str | None = None) -> pd.DataFrame:
    """:func:`summarise_seeds` per (target, fraction, label, metric) of ``split`` and ``metric``
    (each target's primary metric by default); columns :data:`SUMMARY_COLUMNS`."""
    rows = select_rows(results, split=split, metric=metric)
    return summarise_seeds(rows, ("target", "fraction", "label"), dropna=False)[SUMMARY_COLUMNS]


def label_summary(
    results: pd.DataFrame, by: tuple[str, ...] = ("target", "label"), split: str = "test"
) -> pd.DataFrame:
    """The study's ``tables/summary.csv``: mean, std and count over seeds of each target's primary
    metric per ``by`` group, and ``delta_vs_baseline`` (the signed ``delta``) when a baseline was run."""
    summary = summarise_seeds(select_rows(results, split=split, required=False), by)
    columns = [*by, "metric", "mean", "std", "n_seeds", "n_pretrain_tasks"]
    if (summary["label"] == BASELINE).any():
        summary, columns = summary.rename(columns={"delta": "delta_vs_baseline"}), columns + ["delta_vs_baseline"]
    return summary[columns]


def transfer_means(summary: pd.DataFrame) -> pd.DataFrame:
    """Targets × labels of mean metric (Padmakumar et al. 2022, Table 2 layout), labels in plan order:
    the study's ``tables/transfer.csv``, from a :func:`label_summary`."""
    return summary.pivot(index="target", columns="label", values="mean")[list(dict.fromkeys(summary["label"]))]


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


def transfer_table(
    results: pd.DataFrame,
    *,
    split: str = "test",
    metric: str | None = None,
    fraction: float | None = None,
    families: dict[str, str] | None = None,
) -> pd.DataFrame:
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
    return table[["target", "family", "label", "metric", "mean", "std", "n_seeds", "delta", "best", "lower_is_better"]]
