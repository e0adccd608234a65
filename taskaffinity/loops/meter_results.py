"""What ``AffinityMeter`` keeps and hands over: its store's metadata, the folder ``save`` writes, and
the JSON-able state a checkpoint holds (refused under other settings, where its records and open
window would be read as another meter's)."""

from __future__ import annotations

from pathlib import Path

from ..affinity import folder as owned_folder
from ..affinity.outputs import affinity_files, summaries_of, trust_report
from ..errors import TaskAffinityError
from ..report.affinity_outputs import write_affinity_outputs


def meter_metadata(meter) -> dict:
    return {
        "tasks": meter.tasks,
        "lookahead_lr_sgd": meter.lr,
        "stream_window": meter.window,
        "start_step": meter.start,
        "every": meter.every,
        "steps": meter.step,
        "vmap": meter.vmap,
        "shared_parameters": int(sum(p.numel() for _, p in meter.shared)),
        "sketch_dim": meter.sketch_dim,
        "frozen_shared_left_out": [n for n, _ in meter._frozen],
        "optimizer": type(meter.optimizer).__name__ if meter.optimizer is not None else None,
        **meter.scale.metadata(),
        **meter.counts.metadata(),
        "probe_skipped": {t: n for t, n in meter.probe_skipped.items() if n},
        "probe_batch_changes": meter._probe_inputs.changes,
        "meter_seconds": meter.seconds,
        "source": "AffinityMeter",
    }


def save_meter(meter, folder: str | Path, *, n_boot: int, level: float, seed: int, metadata: dict | None):
    """The body of :meth:`AffinityMeter.save <taskaffinity.loops.meter.AffinityMeter.save>` (see there)."""
    store = meter.store
    if store.records.empty:
        raise TaskAffinityError("AffinityMeter.save: nothing recorded yet (no finished window or probe)")
    store.metadata.update(metadata or {})
    files = affinity_files(store.estimators)
    out = owned_folder.prepare(folder, files, where="AffinityMeter.save")
    summaries = summaries_of(store, n_boot=n_boot, level=level, seed=seed)
    write_affinity_outputs(store, summaries, trust_report(store, summaries, seed=seed), out, confidence=level)
    owned_folder.finish(out, files)
    return store


def meter_settings(meter) -> dict:
    """What the saved records and open window mean: resuming under other settings would mix them."""
    return {
        "tasks": list(meter.tasks),
        "window": meter.window,
        "start": meter.start,
        "every": meter.every,
        "estimators": list(meter.estimators),
        "lr": meter.lr,
        "sketch_dim": meter.sketch_dim,
    }


def meter_state(meter) -> dict:
    return {
        "step": meter.step,
        "records": list(meter.records),
        "seconds": meter.seconds,
        **meter.stream.state_dict(),
        "probe_skipped": dict(meter.probe_skipped),
        "settings": meter_settings(meter),
    }


def load_meter_state(meter, state: dict) -> None:
    saved = state.get("settings")
    if saved is not None:
        settings = meter_settings(meter)
        changed = [k for k, v in settings.items() if saved.get(k) != v]
        if changed:
            key = changed[0]
            raise TaskAffinityError(
                f"AffinityMeter.load_state_dict: the state was saved with {key}="
                f"{saved.get(key)!r}, this meter has {key}={settings[key]!r}; "
                "resume with the same meter settings, or start a new run"
            )
    meter.step, meter.records, meter.seconds = state["step"], list(state["records"]), state["seconds"]
    meter.stream.load_state_dict(state)
    meter.probe_skipped.update(state.get("probe_skipped") or {})
