"""Prepared tasks as a table: one row per task (``tasks.parquet`` of every run, ``tasks list``)."""

from __future__ import annotations

import pandas as pd

from .data import TaskData

STAT_COLUMNS = (
    "rows_read",
    "dropped_empty",
    "dropped_duplicates",
    "dropped_conflicting",
    "shared_texts",
    "removed_shared",
)


def task_table(tasks: dict[str, TaskData]) -> pd.DataFrame:
    """One row per task: what it is, how many examples each split holds, and what preparation did.

    ``rows_read`` .. ``removed_shared``: see ``TaskData.stats`` (0 for tasks derived from
    another); ``data_fingerprint``: the hash of the prepared data that enters the run's identity.
    """
    return pd.DataFrame(
        [
            {
                "name": t.name,
                "family": t.spec.family,
                "type": t.spec.type,
                "metric": t.spec.primary_metric,
                "n_train": len(t.train),
                "n_val": len(t.validation),
                "n_test": len(t.test),
                "n_classes": t.n_classes,
                "source": t.spec.source,
                **{k: int(t.stats.get(k, 0)) for k in STAT_COLUMNS},
                "data_fingerprint": t.fingerprint(),
            }
            for t in tasks.values()
        ]
    )
