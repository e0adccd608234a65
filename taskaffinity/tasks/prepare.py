"""From task specs to ready :class:`TaskData`: read, clean, handle shared texts, split, cap, encode.

What happens to each task's rows is counted in ``TaskData.stats`` (and so in
``tasks.parquet``): rows read, dropped as empty, duplicate or conflicting, rows
whose text other tasks of the study share, rows given away to another task. A drop
of more than :data:`DROP_WARNING` of a task's rows, and a cap that removes a class,
are logged as warnings.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..errors import TaskDataError
from .data import CLASS_TYPES, SPLITS, TaskData, clean_examples, encode_labels, normalise_columns
from .data_config import DataConfig
from .derived import is_one_vs_rest, one_vs_rest_data
from .registry import read_source
from .spec import TaskSpec
from .splits import (
    assign_shared_splits,
    deduplicate_across_tasks,
    shared_counts,
    split_frame,
    stratified_cap,
    task_seed,
)

log = logging.getLogger(__name__)

#: Share of a task's rows whose silent loss (empty, duplicate, conflicting) is logged as a warning.
DROP_WARNING = 0.01


@dataclasses.dataclass
class _Rows:
    """One task's clean rows before splitting: splits it came with, and rows still to split."""

    given: dict[str, pd.DataFrame]
    to_split: pd.DataFrame | None
    stats: dict

    def frames(self) -> list[pd.DataFrame]:
        return list(self.given.values()) + ([self.to_split] if self.to_split is not None else [])


def prepare_tasks(
    specs: tuple[TaskSpec, ...] | list[TaskSpec], data: DataConfig, *, progress: bool = True
) -> dict[str, TaskData]:
    """Load every task of a study, in order, into TaskData."""
    originals = [s for s in specs if s.duplicate_of is None and not is_one_vs_rest(s)]
    rows: dict[str, _Rows] = {}
    where: dict[str, str] = {}
    for spec in tqdm(originals, desc="loading tasks", disable=not progress, leave=False):
        raw, where[spec.name] = read_source(spec)
        rows[spec.name] = _clean(spec, raw, where[spec.name])
        _warn_drops(spec.name, rows[spec.name].stats, where[spec.name])

    if len(rows) > 1 and data.shared_inputs != "independent":
        shared = shared_counts({name: pd.concat(r.frames(), ignore_index=True) for name, r in rows.items()})
        for name, r in rows.items():
            r.stats["shared_texts"] = shared[name]
    fixed: dict[str, np.ndarray] = {}
    if len(rows) > 1 and data.shared_inputs == "one_task":
        _give_to_one_task(rows)
    elif len(rows) > 1 and data.shared_inputs == "same_split":
        stratified = {s.name: s.type in CLASS_TYPES for s in originals}
        fixed = assign_shared_splits(
            {n: r.to_split for n, r in rows.items() if r.to_split is not None},
            stratified,
            val_fraction=data.val_fraction,
            test_fraction=data.test_fraction,
            seed=data.split_seed,
            given={n: r.given for n, r in rows.items() if r.given},
        )
    _log_shared(rows, data.shared_inputs)

    tasks: dict[str, TaskData] = {}
    for spec in specs:
        if spec.duplicate_of is not None:
            tasks[spec.name] = _derive(spec, tasks[spec.duplicate_of])
            continue
        if is_one_vs_rest(spec):
            task = one_vs_rest_data(spec, tasks, split_seed=data.split_seed)
            tasks[spec.name] = _shuffled(task) if spec.shuffle_labels else task
            continue
        task = _split_cap_encode(spec, rows[spec.name], fixed.get(spec.name), data, where[spec.name])
        tasks[spec.name] = _shuffled(task) if spec.shuffle_labels else task
    return tasks


def _clean(spec: TaskSpec, raw, where: str) -> _Rows:
    """Normalised, validated rows of one source (a frame to split, or given splits)."""
    if not isinstance(raw, dict):
        frame, stats = clean_examples(spec, normalise_columns(spec, raw, where), where)
        return _Rows({}, frame, stats)
    given, stats = {}, {}
    for split, part in raw.items():
        at = f"{where} [{split}]"
        given[split], counts = clean_examples(spec, normalise_columns(spec, part, at), at)
        stats = {k: stats.get(k, 0) + v for k, v in counts.items()}
    # A source without some split (a hub dataset with no labelled test) has it carved from train.
    to_split = given.pop("train") if len(given) < len(SPLITS) else None
    return _Rows(given, to_split, stats)


def _split_cap_encode(spec: TaskSpec, rows: _Rows, fixed, data: DataConfig, where: str) -> TaskData:
    stratify = spec.type in CLASS_TYPES
    splits = dict(rows.given)
    if rows.to_split is not None:
        parts = split_frame(
            rows.to_split,
            seed=task_seed(data.split_seed, spec.name),
            stratify=stratify,
            fixed=fixed,
            val_fraction=0.0 if "validation" in splits else data.val_fraction,
            test_fraction=0.0 if "test" in splits else data.test_fraction,
        )
        if rows.given:
            missing = [s for s in SPLITS if s not in rows.given]
            log.info(
                "task '%s': %s has no labelled %s split: carved from its train split",
                spec.name,
                where,
                " or ".join(missing),
            )
        splits = {s: pd.concat([splits[s], parts[s]], ignore_index=True) if s in splits else parts[s] for s in SPLITS}
    caps = {"train": spec.max_train or data.max_train}
    caps["validation"] = caps["test"] = spec.max_eval or data.max_eval
    for split in SPLITS:
        if splits[split].empty:
            raise_empty(spec, split, where)
        capped = stratified_cap(
            splits[split], caps[split], seed=task_seed(data.split_seed, spec.name, split), stratify=stratify
        )
        if stratify:
            _check_cap(spec, split, splits[split], capped, caps[split])
        splits[split] = capped
    splits, names, n_choices = encode_labels(spec, splits, where)
    return TaskData(spec=spec, label_names=names, n_choices=n_choices, stats=dict(rows.stats), **splits)


def _check_cap(spec: TaskSpec, split: str, before: pd.DataFrame, after: pd.DataFrame, cap: int | None) -> None:
    """A cap keeps every class while it can (stratified_cap); say so when it cannot."""
    classes = sorted(set(before["label"]))
    lost = sorted(set(classes) - set(after["label"]))
    if not lost:
        return
    key = "max_train" if split == "train" else "max_eval"
    shown = ", ".join(repr(c) for c in lost[:5]) + (f" and {len(lost) - 5} more" if len(lost) > 5 else "")
    message = (
        f"task '{spec.name}': {key} {cap} is smaller than the {len(classes)} classes of its {split} split: "
        f"the cap removes class(es) {shown}"
    )
    if split == "train":  # a class without training rows cannot be learned or scored
        raise TaskDataError(f"{message}; raise {key} to at least {len(classes)}")
    log.warning("%s from it", message)


def raise_empty(spec: TaskSpec, split: str, where: str) -> None:
    raise TaskDataError(
        f"task '{spec.name}': the {split} split of {where} is empty "
        "(too few examples; give more data or change val_fraction / test_fraction)"
    )


def _warn_drops(name: str, stats: dict, where: str) -> None:
    dropped = {k: stats[k] for k in ("dropped_empty", "dropped_duplicates", "dropped_conflicting") if stats.get(k)}
    if sum(dropped.values()) > DROP_WARNING * stats["rows_read"]:
        what = ", ".join(f"{n} {k.removeprefix('dropped_')}" for k, n in dropped.items())
        log.warning(
            "task '%s': %d of %d rows of %s dropped (%s; see tasks.parquet)",
            name,
            sum(dropped.values()),
            stats["rows_read"],
            where,
            what.replace("conflicting", "with conflicting labels"),
        )


def _log_shared(rows: dict[str, _Rows], mode: str) -> None:
    for name, r in rows.items():
        n = r.stats.get("shared_texts", 0)
        if not n:
            continue
        total = sum(len(f) for f in r.frames()) + r.stats.get("removed_shared", 0)
        what = {
            "same_split": "kept, in the same split as in every other task",
            "one_task": f"{r.stats.get('removed_shared', 0)} given to other tasks",
        }[mode]
        log.info(
            "task '%s': %d of %d texts also in other tasks of the study (data.shared_inputs: %s): %s",
            name,
            n,
            total,
            mode,
            what,
        )


def _give_to_one_task(rows: dict[str, _Rows]) -> None:
    """``shared_inputs: one_task``: each shared text stays in one task only (all splits searched)."""
    flat = {}
    for name, r in rows.items():
        parts = [f.assign(_part=s) for s, f in r.given.items()]
        if r.to_split is not None:
            parts.append(r.to_split.assign(_part=""))
        flat[name] = pd.concat(parts, ignore_index=True)
    kept, removed = deduplicate_across_tasks(flat)
    for name, r in rows.items():
        pick = {
            part: kept[name][kept[name]["_part"] == part].drop(columns="_part").reset_index(drop=True)
            for part in list(r.given) + ([""] if r.to_split is not None else [])
        }
        r.given = {s: pick[s] for s in r.given}
        r.to_split = pick.get("")
        r.stats["removed_shared"] = removed[name]


def _derive(spec: TaskSpec, original: TaskData) -> TaskData:
    """A copy of another task's prepared data under a new name (and head)."""
    copy_spec = dataclasses.replace(
        original.spec, name=spec.name, duplicate_of=original.name, shuffle_labels=spec.shuffle_labels
    )
    task = dataclasses.replace(original, spec=copy_spec, stats={})
    return _shuffled(task) if spec.shuffle_labels else task


def _shuffled(task: TaskData) -> TaskData:
    """Permute training labels with a fixed seed: the task keeps its inputs but loses its signal.

    Validation and test keep true labels, so the control scores at chance.
    """
    rng = np.random.default_rng(task_seed(0, task.name, "shuffle"))
    train = task.train.assign(label=rng.permutation(task.train["label"].to_numpy()))
    return dataclasses.replace(task, train=train)
