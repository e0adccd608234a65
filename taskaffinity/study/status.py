"""Read-only status of a study folder: which planned jobs are done, pending or failed (and why).
Reads ``jobs.parquet``, ``plan.parquet`` and the job folders; imports nothing that runs jobs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..storage import read_json
from .layout import job_folder


def study_status(out_dir: str | Path) -> pd.DataFrame:
    """``experiment_id, job_type, tasks, labels, status, error`` for every planned job."""
    out = Path(out_dir)
    jobs = pd.read_parquet(out / "jobs.parquet")
    plan = pd.read_parquet(out / "plan.parquet")
    labels = plan.groupby("experiment_id", sort=False)["label"].agg(lambda v: ", ".join(dict.fromkeys(v)))
    rows = []
    for job in jobs.itertuples():
        folder = job_folder(out, job.experiment_id)
        if (folder / "result.parquet").is_file():
            status, error = "done", None
        elif (folder / "error.json").is_file():
            status, error = "failed", read_json(folder / "error.json")["error"]
        else:
            status, error = "pending", None
        rows.append(
            {
                "experiment_id": job.experiment_id,
                "job_type": job.job_type,
                "tasks": job.tasks,
                "labels": labels.get(job.experiment_id, ""),
                "status": status,
                "error": error,
            }
        )
    return pd.DataFrame(rows)
