"""The study's task pool, prepared once per invocation and shared by every experiment.

Splits, caps and texts shared between tasks are settled over the whole pool
(targets included), so a target's test texts never appear in any pre-finetuning
training set, and every experiment sees identical splits. Stored as one Parquet
file per task and split plus a JSON index of label metadata and data fingerprints
(no pickles).

Every ``study run`` prepares the pool again from its sources (seconds) and rewrites
only the tasks whose prepared data changed, so an edited file, a changed cap or a
new version of a catalog package is never served from an old pool; the data
fingerprints enter the job ids (``plan``), so exactly the jobs whose tasks changed
run again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from ..config import RunConfig
from ..storage import read_json, write_json, write_parquet
from ..tasks.data import CLASS_TYPES, SPLITS, TaskData
from ..tasks.prepare import prepare_tasks
from ..tasks.splits import stratified_cap


def prepare_pool(config: RunConfig, folder: str | Path, *, progress: bool = True) -> dict[str, str]:
    """Prepare every task of the study into ``folder``; return each task's data fingerprint."""
    folder = Path(folder)
    index_path = folder / "index.json"
    old = read_json(index_path).get("tasks", {}) if index_path.is_file() else {}
    tasks = prepare_tasks(config.tasks, config.data, progress=progress)
    entries = {}
    for name, task in tasks.items():
        # type, family and metric as prepared: derived tasks (duplicate_of, one_vs_rest) only know them now
        entries[name] = {
            "type": task.spec.type,
            "family": task.spec.family,
            "metric": task.spec.metric,
            "label_names": list(task.label_names),
            "n_choices": task.n_choices,
            "stats": task.stats,
            "fingerprint": task.fingerprint(),
        }
        files_there = all((folder / f"{name}.{split}.parquet").is_file() for split in SPLITS)
        if old.get(name) != entries[name] or not files_there:
            for split in SPLITS:
                write_parquet(folder / f"{name}.{split}.parquet", task.split(split))
    write_json(index_path, {"tasks": entries})  # last: it describes files that are all written
    return {name: entry["fingerprint"] for name, entry in entries.items()}


def load_pool(config: RunConfig, folder: str | Path) -> dict[str, TaskData]:
    """The prepared TaskData of ``config.tasks`` (a subset of the pool) from ``folder``."""
    folder = Path(folder)
    index = read_json(folder / "index.json")["tasks"]
    tasks = {}
    for spec in config.tasks:
        meta = index[spec.name]
        spec = dataclasses.replace(spec, type=meta["type"], family=meta["family"], metric=meta["metric"])
        frames = {split: pd.read_parquet(folder / f"{spec.name}.{split}.parquet") for split in SPLITS}
        tasks[spec.name] = TaskData(
            spec=spec,
            label_names=tuple(meta["label_names"]),
            n_choices=meta["n_choices"],
            stats=dict(meta.get("stats", {})),
            **frames,
        )
    return tasks


def subsample_train(task: TaskData, fraction: float, seed: int) -> TaskData:
    """A fixed, stratified share of the training split (the same for every seed and checkpoint):
    the low-resource fine-tuning arms."""
    n = max(1, round(len(task.train) * fraction))
    train = stratified_cap(task.train, n, seed=seed, stratify=task.spec.type in CLASS_TYPES)
    return dataclasses.replace(task, train=train.reset_index(drop=True))
