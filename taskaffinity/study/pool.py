"""The study's task pool, prepared once and shared by every experiment.

Splits, caps and cross-task de-duplication are computed over the whole pool
(targets included), so a target's test texts never appear in any pre-finetuning
set, and every experiment sees identical splits. Stored as one Parquet file per
task and split plus a JSON index of label metadata (no pickles).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from ..config import StudyConfig
from ..storage import read_json, write_json, write_parquet
from ..tasks.data import SPLITS, TaskData
from ..tasks.prepare import prepare_tasks


def prepare_pool(config: StudyConfig, folder: str | Path, *, progress: bool = True) -> None:
    """Prepare every task of the study into ``folder`` (skipped when already there)."""
    folder = Path(folder)
    index_path = folder / "index.json"
    if index_path.is_file() and read_json(index_path).get("fingerprint") == _fingerprint(config):
        return
    tasks = prepare_tasks(config.tasks, config.data, progress=progress)
    for name, task in tasks.items():
        for split in SPLITS:
            write_parquet(folder / f"{name}.{split}.parquet", task.split(split))
    write_json(index_path, {  # last: its presence means the pool is complete
        "fingerprint": _fingerprint(config),
        # type, family and metric as prepared: derived tasks (duplicate_of, one_vs_rest) only know them now
        "tasks": {name: {"type": t.spec.type, "family": t.spec.family, "metric": t.spec.metric,
                         "label_names": list(t.label_names), "n_choices": t.n_choices,
                         "removed_as_duplicates": t.removed_as_duplicates} for name, t in tasks.items()}})


def load_pool(config: StudyConfig, folder: str | Path) -> dict[str, TaskData]:
    """The prepared TaskData of ``config.tasks`` (a subset of the pool) from ``folder``."""
    folder = Path(folder)
    index = read_json(folder / "index.json")["tasks"]
    tasks = {}
    for spec in config.tasks:
        meta = index[spec.name]
        if "type" in meta:
            spec = dataclasses.replace(spec, type=meta["type"], family=meta["family"], metric=meta["metric"])
        frames = {split: pd.read_parquet(folder / f"{spec.name}.{split}.parquet") for split in SPLITS}
        tasks[spec.name] = TaskData(spec=spec, label_names=tuple(meta["label_names"]), n_choices=meta["n_choices"],
                                    removed_as_duplicates=meta["removed_as_duplicates"], **frames)
    return tasks


def _fingerprint(config: StudyConfig) -> str:
    import dataclasses

    return dataclasses.replace(config, training=type(config.training)(), affinity=type(config.affinity)(),
                               model=type(config.model)(), seed=0, name="pool").fingerprint()
