"""Where a study's jobs keep their outputs: ``OUT/experiments/<id>/`` with ``result.parquet`` once
done (``error.json`` when failed). Read by the runner, the workers and the read-only status."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def job_folder(root: str | Path, job_id: str) -> Path:
    return Path(root) / "experiments" / job_id


def is_done(root: str | Path, job_id: str) -> bool:
    return (job_folder(root, job_id) / "result.parquet").is_file()


def read_result(root: str | Path, job_id: str) -> pd.DataFrame:
    return pd.read_parquet(job_folder(root, job_id) / "result.parquet")
