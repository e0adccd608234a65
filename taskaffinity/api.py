"""The Python API behind the CLI: one call per user-facing job.

    train_joint_model(config, out)      one joint multi-task model (taskaffinity train)
    record_affinity(config, out)        a joint run with affinity recorders, its data and heatmaps
                                        (taskaffinity affinity)
    run_study(study, out)               a subset pre-finetuning study (taskaffinity study run)
    build_report(folder)                report.html + report.md of a run or study folder

Nothing in the library imports this module: it sits on top and composes the layers below.
"""

from __future__ import annotations

from pathlib import Path

from .affinity import run as _affinity_run
from .affinity.outputs import summaries_of
from .affinity.run import AffinityResult
from .affinity.store import AffinityStore
from .config import RunConfig
from .joint import TrainResult, build, summarise, train_joint_model
from .report.affinity_outputs import write_heatmaps
from .report.assemble import build_report
from .study.runner import StudyResult
from .study.runner import run_study as _run_study
from .tasks.table import STAT_COLUMNS, task_table

train_study = train_joint_model  # its earlier name: it trains one joint model, not a study


def record_affinity(config: RunConfig, out_dir: str | Path | None = None, *, resume: bool = True,
                    progress: bool = True, tasks=None) -> AffinityResult:
    """:func:`taskaffinity.affinity.run.record_affinity`, plus ``heatmap_<estimator>.png`` in ``out_dir``."""
    result = _affinity_run.record_affinity(config, out_dir, resume=resume, progress=progress, tasks=tasks)
    if result.writes:
        write_heatmaps(result.store, result.summaries, result.out_dir, confidence=config.affinity.confidence)
    return result


def run_study(study, out: str | Path, *, progress: bool = True) -> StudyResult:
    """:func:`taskaffinity.study.runner.run_study`, plus the heatmaps of its affinity run."""
    result = _run_study(study, out, progress=progress)
    folder = Path(out) / "affinity"
    if (folder / "affinity.parquet").is_file():
        store = AffinityStore.load(folder / "affinity.parquet")
        affinity = study.config.affinity
        summaries = summaries_of(store, n_boot=affinity.bootstrap, level=affinity.confidence, seed=study.config.seed)
        write_heatmaps(store, summaries, folder, confidence=affinity.confidence)
    return result


__all__ = ["AffinityResult", "RunConfig", "STAT_COLUMNS", "StudyResult", "TrainResult", "build", "build_report",
           "record_affinity", "run_study", "summarise", "task_table", "train_joint_model", "train_study"]
