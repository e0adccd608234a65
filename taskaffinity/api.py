"""The Python API behind the CLI: one call per user-facing job.

    train_joint_model(config, out)      one joint multi-task model (taskaffinity train)
    record_affinity(config, out)        a joint run with affinity recorders, its data and heatmaps
                                        (taskaffinity affinity)
    run_study(study, out)               a subset pre-finetuning study (taskaffinity study run)
    build_report(folder)                report.html + report.md of a run or study folder

Nothing in the library imports this module: it sits on top and composes the layers below.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from .affinity import run as _affinity_run
from .affinity.outputs import summaries_of
from .affinity.run import AffinityResult
from .affinity.store import AffinityStore
from .config import RunConfig
from .report.affinity_outputs import write_heatmaps
from .report.assemble import build_report
from .report.trackers import log_affinity_run, log_study_run
from .study.runner import StudyResult
from .study.runner import run_study as _run_study
from .tasks.table import STAT_COLUMNS, task_table
from .tracking.run import open_config_run
from .training.joint import TrainResult, build, summarise, train_joint_model

train_study = train_joint_model  # its earlier name: it trains one joint model, not a study


def record_affinity(
    config: RunConfig, out_dir: str | Path | None = None, *, resume: bool = True, progress: bool = True, tasks=None
) -> AffinityResult:
    """:func:`taskaffinity.affinity.run.record_affinity`, plus ``heatmap_<estimator>.png`` in ``out_dir``;
    with ``tracking.report_to``, a tracker run with every record as it is made and, at the end, the
    heatmaps, reliability and fidelity figures (:mod:`taskaffinity.report.trackers`)."""
    run = open_config_run(config, out_dir, job_type="affinity", sections=("model", "data", "training", "affinity"))
    with _closing(run):
        result = _affinity_run.record_affinity(
            config, out_dir, resume=resume, progress=progress, tasks=tasks, tracking=run
        )
        if result.writes:
            write_heatmaps(result.store, result.summaries, result.out_dir, confidence=config.affinity.confidence)
            if run is not None:
                log_affinity_run(
                    run, result.store, result.summaries, result.fidelity, confidence=config.affinity.confidence
                )
    return result


def run_study(study, out: str | Path, *, progress: bool = True) -> StudyResult:
    """:func:`taskaffinity.study.runner.run_study`, plus the heatmaps of its affinity run; with
    ``tracking.report_to``, the study's tracker run also gets the report's figures and transfer table."""
    affinity = study.config.affinity

    def summaries(store):
        return summaries_of(store, n_boot=affinity.bootstrap, level=affinity.confidence, seed=study.config.seed)

    def log_results(run, result: StudyResult) -> None:  # into the study's tracker run, before it closes
        log_study_run(
            run, result.out_dir, result.results, result.tables, summaries=summaries, confidence=affinity.confidence
        )

    tracked = {"log_results": log_results} if study.config.tracking.report_to else {}
    result = _run_study(study, out, progress=progress, **tracked)
    folder = Path(out) / "affinity"
    if (folder / "affinity.parquet").is_file():
        store = AffinityStore.load(folder / "affinity.parquet")
        write_heatmaps(store, summaries(store), folder, confidence=affinity.confidence)
    return result


@contextmanager
def _closing(run):
    """Close a tracker run this module opened: as failed when the work raised."""
    if run is None:
        yield
        return
    try:
        yield
    except BaseException:
        run.close(failed=True)
        raise
    run.close()


__all__ = [
    "AffinityResult",
    "RunConfig",
    "STAT_COLUMNS",
    "StudyResult",
    "TrainResult",
    "build",
    "build_report",
    "record_affinity",
    "run_study",
    "summarise",
    "task_table",
    "train_joint_model",
    "train_study",
]
