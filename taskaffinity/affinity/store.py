"""Affinity records: one tidy table, its run metadata, and the views analyses need.

Schema of ``affinity.parquet`` (one row per measurement)::

    step       int    training step of the probe / end of the streaming window
    estimator  str    e.g. lookahead_sgd, first_order_optimizer, cosine, stream_cosine
    source     str    task whose update is applied (i in Z_{i->j})
    target     str    task whose loss is measured (j)
    value      float

Run metadata (model, tasks, learning rate, update rules, probe interval, warm-up,
which tasks had learned when recording started ...) travels inside the Parquet
file's schema metadata under the key ``taskaffinity``, so one file is complete.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import TaskAffinityError

COLUMNS = ("step", "estimator", "source", "target", "value")
METADATA_KEY = b"taskaffinity"


class AffinityStore:
    """Affinity records with aggregation, trajectories and bootstrap intervals."""

    def __init__(self, records: pd.DataFrame | None = None, metadata: dict | None = None):
        records = pd.DataFrame(columns=list(COLUMNS)) if records is None else records
        missing = [c for c in COLUMNS if c not in records]
        if missing:
            raise TaskAffinityError(f"affinity records lack column(s) {missing} (need {list(COLUMNS)})")
        self.records = records[list(COLUMNS)].astype(
            {"step": "int64", "estimator": str, "source": str, "target": str, "value": "float64"}
        )
        self.metadata = dict(metadata or {})

    # -- I/O -----------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> AffinityStore:
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.is_file():
            raise TaskAffinityError(f"affinity file not found: {path}")
        try:
            table = pq.read_table(path)
        except Exception as err:  # not Parquet, truncated ...
            raise TaskAffinityError(f"cannot read affinity file {path}: {err}") from None
        raw = (table.schema.metadata or {}).get(METADATA_KEY)
        try:
            return cls(table.to_pandas(), json.loads(raw) if raw else {})
        except TaskAffinityError as err:
            raise TaskAffinityError(f"{path}: {err}") from None

    def save(self, path: str | Path) -> None:
        from ..storage import write_parquet

        write_parquet(path, self.records, metadata={METADATA_KEY: json.dumps(self.metadata, default=str).encode()})

    # -- views ---------------------------------------------------------------------------------
    @property
    def estimators(self) -> list[str]:
        return sorted(self.records["estimator"].unique())

    @property
    def tasks(self) -> list[str]:
        if self.metadata.get("tasks"):
            return list(self.metadata["tasks"])
        return sorted(set(self.records["source"]) | set(self.records["target"]))

    def select(self, estimator: str, window: tuple[int | None, int | None] | None = None) -> pd.DataFrame:
        """Records of one estimator, optionally restricted to steps ``start <= step <= end``."""
        if estimator not in self.estimators:
            raise TaskAffinityError(
                f"unknown estimator '{estimator}' (recorded: {', '.join(self.estimators) or 'none'})"
            )
        rows = self.records[self.records["estimator"] == estimator]
        if window is not None:
            start, end = window
            rows = rows[
                (rows["step"] >= (start if start is not None else -np.inf))
                & (rows["step"] <= (end if end is not None else np.inf))
            ]
        return rows

    def matrix(self, estimator: str, *, window=None, symmetric: bool = False) -> pd.DataFrame:
        """Mean affinity over probes: rows are sources, columns targets (NaN where never measured)."""
        rows = self.select(estimator, window)
        table = rows.pivot_table(index="source", columns="target", values="value", aggfunc="mean")
        table = table.reindex(index=self.tasks, columns=self.tasks)
        table.index.name, table.columns.name = "source", "target"
        return symmetrise(table) if symmetric else table

    def trajectories(self, estimator: str, *, sources=None, targets=None) -> pd.DataFrame:
        """Values over steps, tidy, for the chosen pairs (all pairs by default)."""
        rows = self.select(estimator)
        if sources is not None:
            rows = rows[rows["source"].isin(sources)]
        if targets is not None:
            rows = rows[rows["target"].isin(targets)]
        return rows.sort_values(["source", "target", "step"]).reset_index(drop=True)

    def summary(
        self, estimator: str, *, window=None, n_boot: int = 1000, level: float = 0.95, seed: int = 0
    ) -> pd.DataFrame:
        """Per pair: mean over probes, standard error, bootstrap CI and whether it excludes 0.

        Probes are resampled jointly for all pairs (the same resampled steps for
        every pair), so intervals of different pairs stay comparable.
        """
        rows = self.select(estimator, window)
        wide = rows.pivot_table(index="step", columns=["source", "target"], values="value", aggfunc="mean")
        values = wide.to_numpy()
        n = np.sum(~np.isnan(values), axis=0)
        mean = np.nanmean(values, axis=0)
        se = np.nanstd(values, axis=0, ddof=1) / np.sqrt(n) if len(values) > 1 else np.full(values.shape[1], np.nan)
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, len(values), size=(n_boot, len(values)))
        with np.errstate(all="ignore"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                boot = np.nanmean(values[picks], axis=1)
                low, high = np.nanquantile(boot, [(1 - level) / 2, (1 + level) / 2], axis=0)
        frame = pd.DataFrame(
            {
                "source": wide.columns.get_level_values(0),
                "target": wide.columns.get_level_values(1),
                "mean": mean,
                "se": se,
                "low": low,
                "high": high,
                "n": n,
            }
        )
        frame["significant"] = (frame["low"] > 0) | (frame["high"] < 0)
        return frame

    def bootstrap_matrices(self, estimator: str, *, n_boot: int = 100, seed: int = 0, window=None):
        """Yield ``n_boot`` run-averaged matrices, each over a bootstrap resample of the probes (or
        streamed windows): the matrices another set of samples of the same run could have given.

        Samples are resampled jointly for all pairs, as in :meth:`summary`; a pair that a
        resample happens not to measure (sampled probe pairs) keeps its full-run mean.
        """
        rows = self.select(estimator, window)
        wide = rows.pivot_table(index="step", columns=["source", "target"], values="value", aggfunc="mean")
        values = wide.to_numpy()
        full = self.matrix(estimator, window=window)
        rng = np.random.default_rng(seed)
        for _ in range(n_boot):
            picks = rng.integers(0, len(values), size=len(values))
            with warnings.catch_warnings():  # an unmeasured pair is NaN here, filled below
                warnings.simplefilter("ignore", RuntimeWarning)
                means = np.nanmean(values[picks], axis=0)
            matrix = (
                pd.Series(means, index=wide.columns).unstack("target").reindex(index=full.index, columns=full.columns)
            )
            yield matrix.fillna(full).rename_axis(index="source", columns="target")

    def covers_zero(self, estimator: str, *, summary: pd.DataFrame | None = None, **kwargs) -> pd.DataFrame:
        """Boolean source x target matrix (in :meth:`matrix` order): True where the pair's bootstrap
        interval covers 0 or the pair was never measured: the cells a heatmap hatches.

        ``summary``: an already computed :meth:`summary` of ``estimator``; else one is computed
        with ``kwargs`` (``n_boot``, ``level``, ``seed``, ``window``).
        """
        summary = self.summary(estimator, **kwargs) if summary is None else summary
        significant = summary.pivot(index="source", columns="target", values="significant")
        significant = significant.reindex(index=self.tasks, columns=self.tasks).fillna(False).astype(bool)
        significant.index.name, significant.columns.name = "source", "target"
        return ~significant

    def significant_matrix(self, estimator: str, **kwargs) -> pd.DataFrame:
        """The mean matrix with entries whose CI covers zero masked as NaN."""
        table = self.summary(estimator, **kwargs)
        table.loc[~table["significant"], "mean"] = np.nan
        wide = table.pivot(index="source", columns="target", values="mean").reindex(
            index=self.tasks, columns=self.tasks
        )
        wide.index.name, wide.columns.name = "source", "target"
        return wide


def symmetrise(matrix: pd.DataFrame) -> pd.DataFrame:
    """(A + Aᵀ) / 2: the undirected view that partitioning methods need."""
    return (matrix + matrix.T) / 2
