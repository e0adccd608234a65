"""From task specs to ready :class:`TaskData`: read, clean, de-duplicate, split, cap, encode."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..config import DataConfig
from .data import CLASS_TYPES, SPLITS, TaskData, clean_examples, encode_labels, normalise_columns
from .derived import is_one_vs_rest, one_vs_rest_data
from .registry import read_source
from .spec import TaskSpec
from .splits import deduplicate_across_tasks, split_frame, stratified_cap, task_seed

log = logging.getLogger(__name__)


def prepare_tasks(specs: tuple[TaskSpec, ...] | list[TaskSpec], data: DataConfig, *, progress: bool = True) -> dict[str, TaskData]:
    """Load every task of a study, in order, into TaskData."""
    originals = [s for s in specs if s.duplicate_of is None and not is_one_vs_rest(s)]
    frames: dict[str, pd.DataFrame | dict[str, pd.DataFrame]] = {}
    where: dict[str, str] = {}
    for spec in tqdm(originals, desc="loading tasks", disable=not progress, leave=False):
        raw, where[spec.name] = read_source(spec)
        if isinstance(raw, dict):
            frames[spec.name] = {
                k: clean_examples(spec, normalise_columns(spec, v, f"{where[spec.name]} [{k}]"), f"{where[spec.name]} [{k}]")
                for k, v in raw.items()
            }
        else:
            frames[spec.name] = clean_examples(spec, normalise_columns(spec, raw, where[spec.name]), where[spec.name])

    removed = dict.fromkeys(frames, 0)
    if data.deduplicate and len(frames) > 1:
        frames, removed = _deduplicate(frames)

    tasks: dict[str, TaskData] = {}
    for spec in specs:
        if spec.duplicate_of is not None:
            tasks[spec.name] = _derive(spec, tasks[spec.duplicate_of])
            continue
        if is_one_vs_rest(spec):
            task = one_vs_rest_data(spec, tasks, split_seed=data.split_seed)
            tasks[spec.name] = _shuffled(task) if spec.shuffle_labels else task
            continue
        stratify = spec.type in CLASS_TYPES
        frame = frames[spec.name]
        if isinstance(frame, dict):
            splits = frame
        else:
            splits = split_frame(frame, val_fraction=data.val_fraction, test_fraction=data.test_fraction,
                                 seed=task_seed(data.split_seed, spec.name), stratify=stratify)
        caps = {"train": spec.max_train or data.max_train}
        caps["validation"] = caps["test"] = spec.max_eval or data.max_eval
        for split in SPLITS:
            if splits[split].empty:
                raise_empty(spec, split, where[spec.name])
            splits[split] = stratified_cap(splits[split], caps[split], seed=task_seed(data.split_seed, spec.name, split), stratify=stratify)
        splits, names, n_choices = encode_labels(spec, splits, where[spec.name])
        task = TaskData(spec=spec, label_names=names, n_choices=n_choices, removed_as_duplicates=removed[spec.name], **splits)
        tasks[spec.name] = _shuffled(task) if spec.shuffle_labels else task
    return tasks


def raise_empty(spec: TaskSpec, split: str, where: str) -> None:
    from ..errors import TaskDataError

    raise TaskDataError(
        f"task '{spec.name}': the {split} split of {where} is empty "
        "(too few examples; give more data or change val_fraction / test_fraction)"
    )


def _deduplicate(frames: dict) -> tuple[dict, dict[str, int]]:
    """Cross-task de-duplication over all splits of every task."""
    flat = {}
    for name, frame in frames.items():
        if isinstance(frame, dict):
            flat[name] = pd.concat([f.assign(_split=k) for k, f in frame.items()], ignore_index=True)
        else:
            flat[name] = frame
    kept, removed = deduplicate_across_tasks(flat)
    out = {}
    for name, frame in frames.items():
        if isinstance(frame, dict):
            out[name] = {k: kept[name][kept[name]["_split"] == k].drop(columns="_split").reset_index(drop=True) for k in frame}
        else:
            out[name] = kept[name]
    return out, removed


def _derive(spec: TaskSpec, original: TaskData) -> TaskData:
    """A copy of another task's prepared data under a new name (and head)."""
    copy_spec = dataclasses.replace(original.spec, name=spec.name, duplicate_of=original.name,
                                    shuffle_labels=spec.shuffle_labels)
    task = dataclasses.replace(original, spec=copy_spec, removed_as_duplicates=0)
    return _shuffled(task) if spec.shuffle_labels else task


def _shuffled(task: TaskData) -> TaskData:
    """Permute training labels with a fixed seed: the task keeps its inputs but loses its signal.

    Validation and test keep true labels, so the control scores at chance.
    """
    rng = np.random.default_rng(task_seed(0, task.name, "shuffle"))
    train = task.train.assign(label=rng.permutation(task.train["label"].to_numpy()))
    return dataclasses.replace(task, train=train)


