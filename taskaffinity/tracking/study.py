"""A study in the trackers: one run for the study and one nested run per job.

``OUT/tracking.json`` keeps the study run's ids (so a resumed study logs into the same run)
and what each job needs to nest under it, read by jobs in any process or on any Ray node::

    {"name": "quickstart", "project": "quickstart", "parent": {"mlflow": {"run_id": ...}, ...}}

TensorBoard: ``OUT/tensorboard/study``, ``OUT/tensorboard/affinity`` and
``OUT/tensorboard/jobs/<job>``: runs of one log directory. MLflow: job runs are children of
the study run. W&B: every run is in the group named after the study run.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from ..config.run import _plain
from ..storage import read_json, write_json
from .run import TrackingRun, config_params, flat_params, open_run

STATE_FILE = "tracking.json"


def open_study_run(study, out: str | Path) -> TrackingRun | None:
    """The started run of a study (``study.config.tracking``), resumed from ``OUT/tracking.json`` when
    there; ``None`` for ``report_to: none``. Writes ``OUT/tracking.json``."""
    config, out = study.config, Path(out)
    saved = read_json(out / STATE_FILE) if (out / STATE_FILE).is_file() else {}
    name = config.tracking.run_name or saved.get("name") or out.name
    params = flat_params(
        {
            "name": config.name,
            "seed": config.seed,
            "tasks": config.to_dict()["tasks"],
            "study": _plain(dataclasses.asdict(study.settings)),
        }
    )
    run = open_run(
        config.tracking,
        name=name,
        out_dir=out,
        project=config.name,
        params=params,
        job_type="study",
        group=name,
        tensorboard_dir=out / "tensorboard" / "study",
    )
    if run is None:
        return None
    run.resume = dict(saved.get("parent", {}))
    run.start()
    write_json(out / STATE_FILE, {"name": name, "project": run.spec.project, "parent": run.state()})
    return run


def affinity_run(study_run: TrackingRun | None, config) -> TrackingRun | None:
    """The study's affinity run, nested under ``study_run`` (None without one)."""
    if study_run is None:
        return None
    return study_run.child(
        "affinity", job_type="affinity", params=config_params(config, ("model", "data", "training", "affinity"))
    )


def job_run(job, root: str | Path) -> TrackingRun | None:
    """A run for one study job, nested under the study's run (``None`` when the study tracks nothing).

    Parameters: the job's id (the hash of its config), type, task set, target, seed, data
    fraction, the pre-finetuning job it starts from, and its training options.
    """
    config, root = job.config, Path(root)
    saved = read_json(root / STATE_FILE) if (root / STATE_FILE).is_file() else {}
    kind = "finetune" if hasattr(job, "target") else "pretrain"
    tasks = [t.name for t in config.tasks]
    params = {
        "job_id": job.id,
        "job_type": kind,
        "tasks": ",".join(tasks),
        "seed": config.seed,
        **flat_params({"training": config.to_dict()["training"]}),
    }
    if kind == "finetune":
        params.update(target=job.target, fraction=job.fraction, pretrain=job.pretrain or "base")
    name = job_name(job, kind, tasks)
    run = open_run(
        config.tracking,
        name=name,
        out_dir=root,
        project=saved.get("project", config.name),
        params=params,
        job_type=kind,
        group=saved.get("name"),
        tensorboard_dir=root / "tensorboard" / "jobs" / re.sub(r"[^\w.+=-]", "_", name),
    )
    if run is not None:
        run.spec = dataclasses.replace(run.spec, parent=saved.get("parent", {}))
    return run


def job_name(job, kind: str, tasks: list[str]) -> str:
    """``finetune trec6 from 3fa2c1 s0 f0.1 9b1e0a``, ``pretrain trec6+sms_spam s0 77c0d2``: readable and unique."""
    seed = f"s{job.config.seed}"
    if kind == "finetune":
        origin = job.pretrain[:6] if job.pretrain else "base"
        fraction = f" f{job.fraction:g}" if job.fraction < 1 else ""
        return f"finetune {job.target} from {origin} {seed}{fraction} {job.id[:6]}"
    what = "+".join(tasks) if len("+".join(tasks)) <= 48 else f"{len(tasks)}tasks"
    return f"pretrain {what} {seed} {job.id[:6]}"


def job_results(rows) -> dict[str, float]:
    """A job's ``result.parquet`` rows as final numbers: ``<split>/<target>/<metric>``."""
    return {f"{r.split}/{r.target}/{r.metric}": float(r.value) for r in rows.itertuples()}
