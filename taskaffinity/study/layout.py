"""Where a study's jobs keep their outputs: ``OUT/experiments/<id>/`` with ``result.parquet`` once
done (``error.json`` when failed). Read by the runner, the workers and the read-only status."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)


def job_folder(root: str | Path, job_id: str) -> Path:
    return Path(root) / "experiments" / job_id


def is_done(root: str | Path, job_id: str) -> bool:
    return (job_folder(root, job_id) / "result.parquet").is_file()


def read_result(root: str | Path, job_id: str) -> pd.DataFrame:
    return pd.read_parquet(job_folder(root, job_id) / "result.parquet")


def set_aside_stale_run(run_dir: Path, fingerprint: str) -> bool:
    """Move a job's unfinished run aside when its checkpoint is of another run identity.

    A job's id hashes only what changes its result, while a checkpoint's run fingerprint hashes the
    whole job config (``training.checkpoint.run_fingerprint``), defaults included: after an upgrade that changes a
    default outside the job's identity, the same job finds a checkpoint it must not resume. It is no
    result (training is deterministic given the seed), so the job starts over; the old folder is kept
    as ``run.stale`` (replacing an earlier one) rather than deleted. Returns True when it moved one.
    """
    from ..training.checkpoint import checkpoint_fingerprint

    saved = checkpoint_fingerprint(run_dir) if run_dir.is_dir() else None
    if saved is None or saved == fingerprint:
        return False
    stale = run_dir.with_name(run_dir.name + ".stale")
    shutil.rmtree(stale, ignore_errors=True)
    run_dir.rename(stale)
    log.warning(
        "%s: checkpoint of another run identity (%s, this job is %s): started over, the old run kept in %s",
        run_dir.parent.name,
        saved,
        fingerprint,
        stale,
    )
    return True
