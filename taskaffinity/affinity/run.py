"""One joint run with affinity recorders: which recorders a run config asks for, and the store,
summaries and trust report it produces.

``OUT/`` holds the data files of :mod:`.outputs` (store, matrices, summaries, ``fidelity.json``),
``conflicts.parquet`` with ``affinity.conflicts`` (:mod:`.conflicts`), the same data files of every
further draw of probe examples in ``draws/probe_seed_<s>/`` with ``affinity.probe_draws`` > 1 (the
probes of one training drawing other examples of the same pool, or the same ones in another split
and order: how much a matrix owes to which examples met which probes),
plus the training outputs of
:func:`taskaffinity.training.joint.train_joint_model`;
:func:`taskaffinity.api.record_affinity` adds the heatmaps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import RunConfig
from ..storage import write_parquet
from ..training.callbacks import Callback
from ..training.evaluate import gain_over_baseline
from ..training.joint import train_joint_model
from .conflicts import COLUMNS as CONFLICT_COLUMNS
from .conflicts import ConflictRecorder
from .outputs import draws_report, summaries_of, trust_report, write_data
from .probe import LookaheadRecorder
from .store import AffinityStore
from .stream import StreamRecorder


@dataclass
class AffinityResult:
    store: AffinityStore
    fidelity: dict  # the content of fidelity.json (see .outputs.trust_report)
    out_dir: Path | None
    summaries: dict[str, pd.DataFrame] | None = None  # per estimator, see AffinityStore.summary
    conflicts: pd.DataFrame | None = None  # per-step conflict statistics (affinity.conflicts), see .conflicts
    writes: bool = False  # this process wrote out_dir (under torchrun only rank 0 does)
    draws: list[AffinityStore] = field(default_factory=list)  # further held-out draws (affinity.probe_draws)


class StartOfRecording(Callback):
    """Has the trainer evaluate just before recording starts (after step ``start_step − 1``), so the
    store says which tasks had been learned when their affinities were first measured."""

    def __init__(self, start_step: int):
        self.start_step = start_step
        self.learned: dict | None = None

    def wants_evaluation(self, step):
        return step == self.start_step - 1 and self.learned is None

    def on_evaluate(self, context, step, metrics):
        if step == self.start_step - 1 and self.learned is None:
            primary = metrics[metrics["primary"]].reset_index(drop=True)
            gains = gain_over_baseline(primary)
            self.learned = {
                row.task: {
                    "metric": row.metric,
                    "value": row.value,
                    "baseline": row.baseline,
                    "learned": bool(gain > 0),
                }
                for row, gain in zip(primary.itertuples(), gains)
            }

    def state_dict(self):
        return {"learned": self.learned}

    def load_state_dict(self, state):
        self.learned = state["learned"]


def default_start_step(config: RunConfig) -> int:
    """First recorded step: after the head warm-up, and, when the optimizer rule is recorded,
    after ``settle_steps`` joint steps (at most half of them).

    The encoder's Adam state starts at the first joint step. While its second-moment
    estimate averages only a few gradients, the optimizer rule's step for g_i alone has a
    denominator set largely by g_i itself, so the source-independent part of that step
    (momentum, weight decay) is largest for the source with the smallest gradient: a
    shuffled-label task then looks like everyone's helper (measured in ``docs/affinity.md``).
    """
    training, affinity = config.training, config.affinity
    settle = min(affinity.settle_steps, training.steps // 2) if "optimizer" in affinity.rules else 0
    return training.head_warmup_steps + 1 + settle


def probe_seeds(config: RunConfig) -> list[int]:
    """The seeds of the run's held-out draws: ``affinity.probe_seed`` (default the run's seed) + d for
    d < ``affinity.probe_draws``. Draw 0 is the run's store; every draw sees the same training."""
    base = config.affinity.probe_seed if config.affinity.probe_seed is not None else config.seed
    return [base + d for d in range(config.affinity.probe_draws)] if config.affinity.rules else []


def recorders_for(config: RunConfig) -> tuple[list[Callback], int]:
    """The callbacks an affinity run needs, and the first recorded step.

    One :class:`LookaheadRecorder` per held-out draw (:func:`probe_seeds`; the first is the run's
    store, the others its ``draws``), then the stream and conflict recorders.
    """
    affinity = config.affinity  # its options are checked when the config is made (config.AffinityConfig)
    start = affinity.start_step if affinity.start_step is not None else default_start_step(config)
    common = dict(start_step=start, parameters=affinity.parameters, lookahead_lr=affinity.lookahead_lr)
    callbacks: list[Callback] = [StartOfRecording(start)]
    for draw, seed in enumerate(probe_seeds(config)):
        callbacks.append(
            LookaheadRecorder(
                rules=affinity.rules,
                every=affinity.probe_every,
                batch_size=affinity.probe_batch_size,
                split=affinity.probe_split,
                sources=affinity.probe_sources,
                targets=affinity.probe_targets,
                exact=affinity.lookahead == "exact",
                seed=seed,
                pair_seed=config.seed,
                draw=draw,
                **common,
            )
        )
    if affinity.stream:
        callbacks.append(
            StreamRecorder(
                window=affinity.stream_window,
                optimizer_rule="optimizer" in affinity.rules,
                sketch_dim=affinity.sketch_dim,
                seed=config.seed,
                **common,
            )
        )
    if affinity.conflicts:
        callbacks.append(ConflictRecorder(start_step=start))
    return callbacks, start


def recording_cost(metadata: dict) -> dict:
    """``recording_seconds`` (probes + further held-out draws + streams, host seconds inside the training steps) and
    ``overhead``: the run's step time over the same steps without the recorders (× a plain run;
    an estimate from inside the run: ``bench/affinity_overhead.py`` measures it side by side)."""
    recording = sum(metadata.get(k) or 0.0 for k in ("probe_seconds", "stream_seconds", "draws_probe_seconds"))
    training = metadata.get("training_seconds")
    plain = (training - recording) if training else None
    return {"recording_seconds": recording, "overhead": training / plain if plain and plain > 0 else None}


def record_affinity(
    config: RunConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
    tasks=None,
    tracking=None,
) -> AffinityResult:
    """Run the joint training with recorders; write the store, matrices, summaries and fidelity.

    ``tasks``: already prepared task data (default: prepared from ``config``); ``tracking``: a
    :class:`~taskaffinity.tracking.run.TrackingRun` that also receives every record as it is made.
    """
    callbacks, start = recorders_for(config)
    result = train_joint_model(
        config, out_dir, resume=resume, callbacks=callbacks, progress=progress, tasks=tasks, tracking=tracking
    )
    trainer = result.trainer
    probe, *draws = [cb for cb in callbacks if isinstance(cb, LookaheadRecorder)] or [None]
    records = [r for cb in callbacks if not getattr(cb, "draw", 0) for r in getattr(cb, "records", [])]
    stream = next((cb for cb in callbacks if isinstance(cb, StreamRecorder)), None)
    metadata = {
        "model": config.model.name,
        "tasks": list(trainer.tasks),
        "seed": config.seed,
        "run_fingerprint": trainer.fingerprint,  # configuration + data: a study reuses the run only for both
        "lr": config.training.lr,
        "lookahead_lr_sgd": config.affinity.lookahead_lr or config.training.lr,
        "rules": list(config.affinity.rules),
        "lookahead": config.affinity.lookahead,
        "probe_every": config.affinity.probe_every,
        "probe_batch_size": config.affinity.probe_batch_size,
        "probe_split": config.affinity.probe_split,
        "probe_pool_halves": True,  # probes alternate between disjoint halves of the pool (pool_half)
        "probe_seed": probe.seed if probe else None,  # which held-out examples the probes drew
        "probe_draws": len(draws) + 1 if probe else 0,
        "probe_sources": config.affinity.probe_sources,
        "probe_targets": config.affinity.probe_targets,
        "tasks_per_step": config.training.tasks_per_step,
        "weighting": config.training.weighting,
        "aggregator": config.training.aggregator,
        "head_warmup_steps": config.training.head_warmup_steps,
        "start_step": start,
        "steps": trainer.step,
        "parameters": config.affinity.parameters,
        "sketch_dim": config.affinity.sketch_dim,
        "stream_window": config.affinity.stream_window,
        "learned_at_start": next((cb.learned for cb in callbacks if hasattr(cb, "learned")), None),
        "probe_seconds_median": float(np.median(probe.seconds)) if probe and probe.seconds else None,
        # what each recorder added to the run (host seconds): the cost column of validation tables
        "probe_seconds": float(np.sum(probe.seconds)) if probe else None,
        "stream_seconds": float(stream.seconds) if stream else None,
        "draws_probe_seconds": float(sum(np.sum(cb.seconds) for cb in draws)) if draws else None,
        "training_seconds": float(pd.DataFrame(trainer.step_log).drop_duplicates("step")["seconds"].sum())
        if trainer.step_log
        else None,
        "families": {name: task.spec.family for name, task in trainer.tasks.items()},
        "data_fingerprints": dict(trainer.data_fingerprints),  # which data each task's affinities are of
        "skipped_steps": dict(stream.skipped) if stream else {},  # NaN or infinite values, left out by name
        "probe_skipped": dict(probe.skipped) if probe else {},
    }
    metadata.update(recording_cost(metadata))
    store = AffinityStore(pd.DataFrame(records), metadata)
    summaries = summaries_of(
        store, n_boot=config.affinity.bootstrap, level=config.affinity.confidence, seed=config.seed
    )
    report = trust_report(store, summaries, seed=config.seed)
    writes = bool(result.out_dir) and trainer.dist.main
    conflict = next((cb for cb in callbacks if isinstance(cb, ConflictRecorder)), None)
    conflicts = pd.DataFrame(conflict.steps, columns=list(CONFLICT_COLUMNS)) if conflict else None
    draw_stores = [_draw_store(cb, metadata) for cb in draws]
    if draw_stores:
        report["draws"] = draws_report([store, *draw_stores])
    if writes:
        _remove_other_draws(result.out_dir, [d.metadata["probe_seed"] for d in draw_stores])
        for draw in draw_stores:  # before the run's own store: its presence says the draws are complete
            draw_summaries = summaries_of(
                draw, n_boot=config.affinity.bootstrap, level=config.affinity.confidence, seed=config.seed
            )
            folder = result.out_dir / draw_folder(draw.metadata["probe_seed"])
            write_data(draw, draw_summaries, trust_report(draw, draw_summaries, seed=config.seed), folder)
        write_data(store, summaries, report, result.out_dir)
        _add_cost_to_summary(result.out_dir / "summary.json", metadata)
        if conflicts is not None:
            write_parquet(result.out_dir / "conflicts.parquet", conflicts)
    return AffinityResult(
        store=store,
        fidelity=report,
        out_dir=result.out_dir,
        summaries=summaries,
        writes=writes,
        conflicts=conflicts,
        draws=draw_stores,
    )


def draw_folder(probe_seed: int) -> str:
    """Where a run's further held-out draw is written, relative to the run's folder."""
    return f"draws/probe_seed_{probe_seed}"


def load_draws(folder: str | Path) -> list[AffinityStore]:
    """The further held-out draws of the affinity run in ``folder`` (``affinity.probe_draws`` > 1), in
    order of probe seed; empty when it recorded one draw.

    Only the draws the run's own store names (its ``probe_seed`` and ``probe_draws``) and that were
    recorded in the same run (``run_fingerprint``): a draw left by an earlier run is never taken
    for one of this run. Raises :class:`~taskaffinity.errors.TaskAffinityError`, naming the file,
    when one is missing, belongs to another run or is damaged (:func:`_check_draw`).
    """
    from ..errors import TaskAffinityError

    folder = Path(folder)
    run = AffinityStore.load(folder / "affinity.parquet")
    meta = run.metadata
    first, count = meta.get("probe_seed"), meta.get("probe_draws") or 1
    stores = []
    for seed in range(first + 1, first + count) if first is not None else ():
        path = folder / draw_folder(seed) / "affinity.parquet"
        draw = AffinityStore.load(path) if path.is_file() else None
        if draw is None or draw.metadata.get("run_fingerprint") != meta.get("run_fingerprint"):
            raise TaskAffinityError(
                f"{path}: the held-out draw with probe seed {seed} of the run in {folder} is missing or "
                "belongs to another run; record the run again (resuming from its last checkpoint rewrites "
                "its draws)"
            )
        _check_draw(path, draw, run)
        stores.append(draw)
    return stores


def _check_draw(path: Path, draw: AffinityStore, run: AffinityStore) -> None:
    """A draw is the run's probe recorder at the run's steps with other held-out examples: it records
    every held-out estimator of the run, at the same steps, every off-diagonal pair the run measured
    (but those of a task its probes left out, ``probe_skipped``), once, with finite values. A damaged
    or edited draw file is named here, not met later as a NaN or a silently missing draw."""
    from ..errors import TaskAffinityError
    from .estimators import STREAMED

    def fail(problem: str):
        raise TaskAffinityError(f"{path}: {problem}; the draw file is damaged, record the run again")

    records = draw.records
    skipped = {t for t, n in (draw.metadata.get("probe_skipped") or {}).items() if n}
    values = records["value"].to_numpy(dtype=float)
    for bad, problem in (
        (records.duplicated(["estimator", "step", "source", "target"]), "recorded twice"),
        (~np.isfinite(values), "a non-finite value"),
    ):
        if bad.any():
            row = records[bad].iloc[0]
            fail(f"'{row['estimator']}' {row['source']} -> {row['target']} at step {row['step']}: {problem}")
    for estimator in (e for e in run.estimators if e not in STREAMED):
        ours, theirs = (s.records[s.records["estimator"] == estimator] for s in (draw, run))
        if ours.empty:
            fail(f"no '{estimator}' records (the run's probes record it)")
        steps, expected = sorted(set(ours["step"])), sorted(set(theirs["step"]))
        if steps != expected:
            fail(f"'{estimator}' at steps {steps}, the run's probes at {expected}")
        pairs = {(a, b) for a, b in zip(theirs["source"], theirs["target"], strict=True) if a != b}
        missing = pairs - set(zip(ours["source"], ours["target"], strict=True))
        missing = {(a, b) for a, b in missing if a not in skipped and b not in skipped}
        if missing:
            source, target = min(missing)
            fail(
                f"'{estimator}' lacks {len(missing)} pair(s) the run measured (e.g. source {source} -> target {target})"
            )


def _remove_other_draws(out: Path, seeds: list[int]) -> None:
    """Draw folders an earlier run left that this run did not record (another ``probe_draws`` or seed)."""
    import shutil

    keep = {out / draw_folder(seed) for seed in seeds}
    for path in (out / "draws").glob("probe_seed_*"):
        if path not in keep:
            shutil.rmtree(path)


def _draw_store(recorder: LookaheadRecorder, metadata: dict) -> AffinityStore:
    """A further held-out draw as a store of its own: the run's metadata with this draw's probe seed,
    seconds and skipped tasks (no streamed estimators: they see the training batches, not held-out ones)."""
    seconds = recorder.seconds
    return AffinityStore(
        pd.DataFrame(recorder.records),
        {
            **metadata,
            "probe_seed": recorder.seed,
            "probe_seconds": float(np.sum(seconds)),
            "probe_seconds_median": float(np.median(seconds)) if seconds else None,
            "probe_skipped": dict(recorder.skipped),
            "draw_of": metadata["probe_seed"],  # the run's own draw (its store)
            "stream_seconds": None,  # the run's streams are in its own store
            "skipped_steps": {},
        },
    )


def _add_cost_to_summary(path: Path, metadata: dict) -> None:
    """The run's ``summary.json`` (written by the joint training) gains what recording cost."""
    from ..storage import read_json, write_json

    if path.is_file():
        summary = read_json(path)
        summary["recording"] = {
            key: metadata.get(key)
            for key in (
                "training_seconds",
                "probe_seconds",
                "draws_probe_seconds",
                "stream_seconds",
                "recording_seconds",
                "overhead",
            )
        }
        write_json(path, summary)
