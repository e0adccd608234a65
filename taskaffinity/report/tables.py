"""The numbers behind the study figures: critical points and groups; seed summaries and the
transfer table live in :mod:`taskaffinity.study.tables` (re-exported here for the figures).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..study.tables import SUMMARY_COLUMNS, at_fraction, label_order, seed_summary, select_rows, transfer_table  # noqa: F401


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
    return pd.DataFrame(
        {
            "group": [f"G{i + 1}" for i in range(len(groups))],
            "tasks": [list(g["tasks"]) for g in groups],
            "serves": [list(g.get("serves", g["tasks"])) for g in groups],
            "score": [float(g["score"]) for g in groups],
        }
    )
