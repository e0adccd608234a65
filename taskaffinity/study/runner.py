"""Run a whole study, resumably: pool → (affinity run → groups) → plan → jobs → results and tables.

Everything is keyed and written atomically, so re-running the same command after
an interruption (even SIGKILL) skips what is finished and resumes the rest:
the prepared pool, the affinity run (from its checkpoints), each job (from its own
checkpoints), the results table. A failed job is recorded with its error and
does not stop the others; fine-tuning jobs whose pre-finetuning job failed are
recorded as failed too.

Output folder::

    study.yaml  plan.parquet  jobs.parquet  results.parquet  summary.json  tables/*.csv
    data/  affinity/  groups.json  experiments/<id>/{result.parquet, error.json, encoder.safetensors}
    affinity_draws/   (validation probe_draws > 1: the same training, other draws of probe examples)
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from ..storage import read_json, write_json, write_parquet, write_text
from ..tracking.study import affinity_run, open_study_run
from .agreement import agreement_draws, agreement_table, estimator_differences
from .executors import make_executor
from .group_gains import group_gain_table
from .jobs import JobOptions, is_done, job_folder, run_job
from .measured_groupings import solved_groupings
from .plan import Plan, make_plan, wants_oracle
from .pool import load_pool, prepare_pool
from .results import arm_summary, collect_results, gain_reliability, group_gains, measured_gains
from .settings import Study
from .status import study_status
from .tables import label_summary, transfer_means


@dataclass
class StudyResult:
    plan: Plan
    results: pd.DataFrame
    status: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    out_dir: Path


def run_study(study: Study, out_dir: str | Path, *, progress: bool = True, log_results=None) -> StudyResult:
    """Run (or resume) every job of ``study`` in ``out_dir`` (module docstring).

    With ``tracking.report_to``, the study is a tracker run (:func:`taskaffinity.tracking.study.open_study_run`)
    with the affinity run and every job nested under it; ``log_results(run, result)`` adds what the
    caller draws (figures, tables) before that run is closed.
    """
    executor = make_executor(study.settings.executor)  # bad executor settings fail before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(
        out / "study.yaml", yaml.safe_dump({**study.config.to_dict(), "study": _plain(study.settings)}, sort_keys=False)
    )
    run = open_study_run(study, out)
    try:
        result = _run_study(study, out, executor, progress, run)
        if run is not None and log_results is not None:
            log_results(run, result)
    except BaseException:
        if run is not None:
            run.close(failed=True)
        raise
    if run is not None:
        run.close()
    return result


def _run_study(study: Study, out: Path, executor, progress: bool, tracking) -> StudyResult:
    data = prepare_pool(study.config, out / "data", progress=progress)
    groups, serves, affinity = None, None, None
    draws: list = []
    if study.settings.groups_from_affinity or study.settings.kind == "validation":
        affinity, own_draws = _affinity_run(study, out, progress, tracking)
        if study.settings.groups_from_affinity:
            groups, serves = _choose_groups(study, affinity, out, own_draws)
        draws = own_draws or _affinity_draws(study, out, progress)
    root = str(out)
    options = JobOptions(study.settings.executor.reuse_worker, study.settings.executor.checkpoint_seconds)
    plan = make_plan(study, groups, serves, data=data)
    try:
        if wants_oracle(study, groups):  # first the runs whose gains define the oracle, then the rest
            _write_plan(out, plan)
            _run_jobs(executor, plan, root, options, progress)
            solved = solved_groupings(study, collect_results(out, plan.frame()), out, store=affinity, progress=progress)
            plan = make_plan(study, groups, serves, data=data, solved=solved)
        _write_plan(out, plan)
        _run_jobs(executor, plan, root, options, progress)
    finally:
        from .worker import release_worker

        release_worker()  # the in-process worker's models and data (local executor)

    frame = plan.frame()
    results = collect_results(out, frame)
    write_parquet(out / "results.parquet", results)
    tables = study_tables(study, results, affinity, draws)
    (out / "tables").mkdir(exist_ok=True)
    for path in (out / "tables").glob("*.csv"):  # a table this run no longer makes (e.g. fewer draws)
        if path.stem not in tables:
            path.unlink()
    for name, table in tables.items():
        write_text(out / "tables" / f"{name}.csv", table.to_csv(index=name == "transfer"))
    status = study_status(out)
    write_json(out / "summary.json", _summary(study, status, results, out))
    return StudyResult(plan, results, status, tables, out)


def _write_plan(out: Path, plan: Plan) -> None:
    write_parquet(out / "plan.parquet", plan.frame())
    write_parquet(out / "jobs.parquet", plan.jobs_frame())


def _run_jobs(executor, plan: Plan, root: str, options: JobOptions, progress: bool) -> None:
    """Pre-finetuning jobs first, then the fine-tuning jobs whose encoders exist."""
    _run_wave(
        executor,
        [j for j in plan.train_jobs.values() if not is_done(root, j.id)],
        root,
        options,
        "pre-finetuning",
        progress,
    )
    ready, blocked = [], []
    for job in plan.finetune_jobs.values():
        if is_done(root, job.id):
            continue
        (ready if job.pretrain is None or is_done(root, job.pretrain) else blocked).append(job)
    for job in blocked:
        _record_failure(
            root,
            job.id,
            f"pre-finetuning job {job.pretrain} did not finish (see experiments/{job.pretrain}/error.json)",
            0.0,
        )
    _run_wave(executor, ready, root, options, "fine-tuning", progress)


def _run_wave(executor, jobs: list, root: str, options: JobOptions, desc: str, progress: bool) -> None:
    if not jobs:
        return
    outcomes = executor.map(run_job, [(job, root, options) for job in jobs], desc=desc, progress=progress)
    for job, outcome in zip(jobs, outcomes):
        if outcome.ok:
            (job_folder(root, job.id) / "error.json").unlink(missing_ok=True)
        else:
            _record_failure(root, job.id, outcome.error or "failed", outcome.seconds)


def _record_failure(root: str, job_id: str, error: str, seconds: float) -> None:
    write_json(
        job_folder(root, job_id) / "error.json",
        {"error": error, "seconds": round(seconds, 2), "time": time.strftime("%Y-%m-%dT%H:%M:%S")},
    )


def _pool_config(study: Study):
    pool = set(study.settings.pool(study.config))
    return dataclasses.replace(study.config, tasks=tuple(t for t in study.config.tasks if t.name in pool))


def _affinity_run(study: Study, out: Path, progress: bool, tracking=None) -> tuple:
    """One joint affinity run over the pre-finetuning pool (resumes from its checkpoints); logged as a
    run nested under ``tracking``, the study's run, when there is one. Its store, and its further
    held-out draws when its config records them (``affinity.probe_draws``)."""
    return _record(_pool_config(study), out / "affinity", out, progress, tracking)


def _affinity_draws(study: Study, out: Path, progress: bool) -> list:
    """``study.validation.probe_draws`` − 1 further held-out draws of the affinity run, in order of probe
    seed: one more training of the same configuration whose probes draw other held-out examples
    (probe seeds following the run's), in ``affinity_draws/``.

    A separate training, so that the affinity run the study groups by stays the one a user records
    (and a finished study's runs are reused); ``summary.json`` says whether its training matched."""
    from ..affinity.run import probe_seeds
    from ..affinity.store import AffinityStore
    from ..tracking.settings import TrackingConfig

    if study.settings.probe_draws < 2:
        return []
    config = _pool_config(study)
    first = probe_seeds(config)[0] + 1
    affinity = dataclasses.replace(config.affinity, probe_seed=first, probe_draws=study.settings.probe_draws - 1)
    # not logged to a tracker: its records are draws of the study's affinity run, not a run of their own
    config = dataclasses.replace(config, affinity=affinity, tracking=TrackingConfig())
    store, draws = _record(config, out / "affinity_draws", out, progress, None)
    # its streams repeat the affinity run's (the same training batches): only the held-out estimators are draws
    held_out = store.records[~store.records["estimator"].str.startswith("stream_")].reset_index(drop=True)
    return [AffinityStore(held_out, store.metadata), *draws]


def _record(config, folder: Path, out: Path, progress: bool, tracking) -> tuple:
    """``record_affinity`` into ``folder`` unless it holds a finished run of the same configuration and
    data with every held-out draw it names (else recorded again, from its last checkpoint); the run's
    store and its further draws."""
    from ..affinity.run import load_draws, record_affinity
    from ..affinity.store import AffinityStore
    from ..errors import TaskAffinityError
    from ..training.checkpoint import checkpoint_fingerprint, run_fingerprint

    tasks = load_pool(config, out / "data")
    identity = run_fingerprint(config, tasks)  # reused only for the same configuration and data
    if (folder / "affinity.parquet").is_file() and (folder / "summary.json").is_file():
        store = AffinityStore.load(folder / "affinity.parquet")
        if store.metadata.get("run_fingerprint") == identity:
            try:
                return store, load_draws(folder)
            except TaskAffinityError:
                pass  # a draw is missing: recorded again below
    resume = checkpoint_fingerprint(folder) in (None, identity)  # else the data changed: record again
    child = affinity_run(tracking, config)
    try:
        result = record_affinity(config, folder, resume=resume, progress=progress, tasks=tasks, tracking=child)
        return result.store, result.draws
    finally:
        if child is not None:
            child.close()


def _choose_groups(study: Study, store, out: Path, draws=()) -> tuple[dict, dict]:
    """``groups.json`` from the affinity run's store; ``draws``: the run's own further held-out draws,
    each grouped alike (``groups.json`` ``draws``)."""
    from ..grouping.output import write_document
    from .choose import study_grouping

    document = study_grouping(study, store, draws=list(draws))
    write_document(out / "groups.json", document)
    groups = {f"G{i + 1}": tuple(g["tasks"]) for i, g in enumerate(document["groups"])}
    serves = {f"G{i + 1}": tuple(g["serves"]) for i, g in enumerate(document["groups"])}
    return groups, serves


def study_tables(study: Study, results: pd.DataFrame, affinity=None, draws=()) -> dict[str, pd.DataFrame]:
    """The tables a study's kind calls for (empty dict while nothing is measured); ``draws``: further
    held-out draws of the affinity run (``agreement_draws.csv``, spreads in ``agreement.csv``)."""
    if results.empty:
        return {}
    kind = study.settings.kind
    if kind == "combinations":
        summary = label_summary(results)
        return {"summary": summary, "transfer": transfer_means(summary)}
    if kind == "scaling":
        return {"summary": label_summary(results)}
    if kind == "low_resource":
        return {"summary": label_summary(results, by=("target", "fraction", "label"))}
    tables = {"gains": measured_gains(results), "arms": arm_summary(results)}
    noise = gain_reliability(results)
    tables["noise_ceiling"] = pd.DataFrame([noise])
    if affinity is not None and not tables["gains"].empty:
        seed = study.config.seed
        per_draw = agreement_draws(affinity, tables["gains"], draws, seed=seed)
        tables["agreement"] = agreement_table(
            affinity, tables["gains"], noise, seed=seed, draws=draws, per_draw=per_draw
        )
        tables["estimator_differences"] = estimator_differences(affinity, tables["gains"], seed=seed, draws=draws)
        if draws:
            tables["agreement_draws"] = per_draw
    groups = group_gains(results)
    if groups["group"].nunique() >= 2 and not tables["gains"].empty:  # the sampled groups (validation group_samples)
        tables["group_gain_predictors"] = group_gain_table(groups, tables["gains"], affinity, seed=study.config.seed)
    return tables


def _summary(study: Study, status: pd.DataFrame, results: pd.DataFrame, out: Path) -> dict:
    counts = status["status"].value_counts().to_dict()
    walls = (
        results.drop_duplicates("experiment_id")["wall_seconds"] if not results.empty else pd.Series([], dtype=float)
    )
    summary = {
        "kind": study.settings.kind,
        "jobs": int(len(status)),
        **{k: int(v) for k, v in counts.items()},
        "experiment_seconds": round(float(walls.sum()), 1),
    }
    steps = out / "affinity" / "steps.parquet"
    if steps.is_file():
        affinity_seconds = float(pd.read_parquet(steps).drop_duplicates("step")["seconds"].sum())
        run_summary = out / "affinity" / "summary.json"
        recording = (read_json(run_summary).get("recording") or {}) if run_summary.is_file() else {}
        affinity_seconds -= recording.get("draws_probe_seconds") or 0.0  # affinity.probe_draws: not the run's cost
        summary["affinity_run_seconds"] = round(affinity_seconds, 1)
        if study.settings.kind == "validation" and affinity_seconds > 0:
            brute = results[results["arm"].isin(["single", "pair", "transfer"])].drop_duplicates("experiment_id")
            summary["brute_force_seconds"] = round(float(brute["wall_seconds"].sum()), 1)
            summary["brute_force_over_affinity_run"] = round(summary["brute_force_seconds"] / affinity_seconds, 2)
            groups = results[results["arm"] == "group"].drop_duplicates("experiment_id")
            if not groups.empty:  # the surrogate route: singles, pairs and the sampled groups
                summary["group_samples_seconds"] = round(float(groups["wall_seconds"].sum()), 1)
                route = summary["brute_force_seconds"] + summary["group_samples_seconds"]
                summary["surrogate_route_over_affinity_run"] = round(route / affinity_seconds, 2)
    if study.config.affinity.probe_draws > 1:  # the draws were recorded by the affinity run itself
        summary.update(draws_in_affinity_run=True, draws_same_training=True)
    elif study.settings.probe_draws > 1:
        summary.update(_draws_summary(out))
    return summary


def _draws_summary(out: Path) -> dict:
    """What the held-out draws cost (``draws_run_seconds``) and whether their training was the affinity
    run's: ``draws_same_training`` when every step's task losses match to 1e-6 (``draws_max_loss_difference``)."""
    steps = [out / folder / "steps.parquet" for folder in ("affinity", "affinity_draws")]
    if not all(p.is_file() for p in steps):
        return {}
    run, draws = (pd.read_parquet(p) for p in steps)
    key = ["step", "task"]
    merged = run[key + ["loss"]].merge(draws[key + ["loss"]], on=key, how="outer", suffixes=("", "_draws"))
    difference = float((merged["loss"] - merged["loss_draws"]).abs().max()) if not merged.empty else float("nan")
    complete = not merged[["loss", "loss_draws"]].isna().any().any()
    return {
        "draws_run_seconds": round(float(draws.drop_duplicates("step")["seconds"].sum()), 1),
        "draws_max_loss_difference": difference if complete else None,
        "draws_same_training": bool(complete and difference <= 1e-6),
    }


def _plain(settings) -> dict:
    from ..config.run import _plain as plain

    return plain(dataclasses.asdict(settings))
