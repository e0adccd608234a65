"""Seeded stratified splits, stratified caps, and texts shared between tasks.

Splits and caps of a task depend only on its own rows and seed, except for texts
it shares with other tasks of the study (compared as in :mod:`.text`), which
:func:`assign_shared_splits` places in the same split in every task, or
:func:`deduplicate_across_tasks` gives to one task; either looks only at the
tasks that contain the shared text.
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np
import pandas as pd

from .text import text_key

SPLIT_NAMES = ("train", "validation", "test")


def strata_of(frame: pd.DataFrame, stratify: bool) -> np.ndarray:
    """Labels to stratify on (one stratum when the task has no classes)."""
    if not stratify:
        return np.zeros(len(frame), dtype=int)
    return pd.factorize(frame["label"].astype(str), sort=True)[0]


def split_frame(
    frame: pd.DataFrame,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    stratify: bool,
    fixed: pd.Series | np.ndarray | None = None,
) -> dict[str, pd.DataFrame]:
    """Split per stratum so every class keeps at least one training example.

    A class with too few examples for all three splits goes to train first: labels
    seen only in validation or test would make the task unscoreable. ``fixed`` gives
    some rows their split already (a split name, or None for a free row: texts shared
    with other tasks); free rows then fill each stratum's validation and test up to
    their fractions of the whole stratum. Without fixed rows the result is the plain
    seeded stratified split.
    """
    rng = np.random.default_rng(seed)
    fixed = np.full(len(frame), None, dtype=object) if fixed is None else np.asarray(fixed, dtype=object)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLIT_NAMES}
    strata = strata_of(frame, stratify)
    for stratum in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == stratum))
        placed = {name: members[fixed[members] == name] for name in SPLIT_NAMES}
        free = members[np.array([fixed[m] is None for m in members], dtype=bool)]
        n = len(members)
        n_val = min(max(int(round(n * val_fraction)) - len(placed["validation"]), 0), len(free))
        n_test = min(max(int(round(n * test_fraction)) - len(placed["test"]), 0), len(free) - n_val)
        needs_train = 1 if len(placed["train"]) == 0 else 0
        while len(free) - n_val - n_test < needs_train and n_val + n_test > 0:
            if n_test >= n_val and n_test > 0:
                n_test -= 1
            else:
                n_val -= 1
        parts["validation"] += [placed["validation"], free[:n_val]]
        parts["test"] += [placed["test"], free[n_val : n_val + n_test]]
        parts["train"] += [placed["train"], free[n_val + n_test :]]
    # Sorting keeps the source order inside each split: stable across numpy versions.
    return {k: frame.iloc[np.sort(np.concatenate(v))].reset_index(drop=True) for k, v in parts.items()}


def stratified_cap(frame: pd.DataFrame, n: int | None, *, seed: int, stratify: bool) -> pd.DataFrame:
    """Keep ``n`` rows with class proportions preserved, and every class while ``n`` allows it.

    Rows are ordered by their relative rank inside their class, so any prefix of
    the order is a proportional sample; when ``n`` is at least the number of classes,
    each class's first row is taken before the prefix fills the rest, so a rare class
    is never capped away. With fewer rows than classes some class must go: callers
    say which (see ``prepare``).
    """
    if n is None or len(frame) <= n:
        return frame
    rng = np.random.default_rng(seed)
    strata = strata_of(frame, stratify)
    rank = np.empty(len(frame))
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        rank[rng.permutation(members)] = (np.arange(len(members)) + 0.5) / len(members)
    order = np.lexsort((rng.random(len(frame)), rank))
    classes = np.unique(strata)
    if stratify and n >= len(classes):
        _, first = np.unique(strata[order], return_index=True)  # each class's first row in the order
        firsts = order[first]
        rest = order[~np.isin(order, firsts)]
        order = np.concatenate([firsts, rest])
    return frame.iloc[np.sort(order[:n])].reset_index(drop=True)


def _unit_hash(*parts: str) -> float:
    """A stable number in [0, 1) from strings (same on every machine, Python and numpy version)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign_shared_splits(
    frames: dict[str, pd.DataFrame],
    stratified: dict[str, bool],
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    given: dict[str, dict[str, pd.DataFrame]] | None = None,
) -> dict[str, np.ndarray]:
    """The split of every text shared by several tasks: the same in each of them.

    ``frames`` are the tasks to be split (rows with ``text`` [, ``text_pair``] and
    ``label``); ``given`` are tasks that come with their own splits, whose shared texts
    keep the split they were given there. Texts shared by the same tasks with the same
    labels (for stratified tasks) form a group; inside a group texts are ordered by a
    hash of (seed, text) and cut at the split fractions from a hashed offset, so each
    group, and so each class, is split in proportion (Fifty et al. 2021 share inputs
    across tasks the same way: every task sees one train/test partition of the images).
    A class of a stratified task left without a training row gets its shared text
    closest to train moved there, in every task. Returns, per task in ``frames``, the
    split of each row (None for rows whose text no other task has).
    """
    given = given or {}
    keys = {name: text_key(frame).to_numpy() for name, frame in frames.items()}
    members: dict[str, dict[str, str]] = {}  # text -> {task: label (stratified tasks) or ""}
    for name in sorted(frames):
        labels = frames[name]["label"].astype(str).to_numpy() if stratified[name] else [""] * len(frames[name])
        for key, label in zip(keys[name], labels):
            members.setdefault(key, {})[name] = label
    split_of: dict[str, str] = {}
    for name in sorted(given):
        for split, part in given[name].items():
            for key in text_key(part):
                if key in members:
                    split_of.setdefault(key, split)
    groups: dict[tuple, list[str]] = {}
    for key, tasks in members.items():
        if len(tasks) > 1 and key not in split_of:
            groups.setdefault(tuple(sorted(tasks.items())), []).append(key)
    position: dict[str, float] = {}
    for signature, group in groups.items():
        group.sort(key=lambda k: _unit_hash(str(seed), k))
        offset = _unit_hash(str(seed), *map("/".join, signature))
        for i, key in enumerate(group):
            position[key] = (i + offset) / len(group)
            split_of[key] = (
                "validation"
                if position[key] < val_fraction
                else "test"
                if position[key] < val_fraction + test_fraction
                else "train"
            )
    for name in sorted(frames):  # every class keeps a training row
        labels = frames[name]["label"].astype(str).to_numpy() if stratified[name] else np.zeros(len(frames[name]))
        for label in pd.unique(labels):
            class_keys = keys[name][labels == label]
            if any(k not in split_of for k in class_keys) or any(split_of[k] == "train" for k in class_keys):
                continue  # a free row (split_frame keeps one in train) or a shared one already there
            movable = [k for k in class_keys if k in position]
            if movable:
                split_of[max(movable, key=position.get)] = "train"
    return {name: np.array([split_of.get(k) for k in keys[name]], dtype=object) for name in frames}


def deduplicate_across_tasks(frames: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """Give every text shared by several tasks to exactly one of them (``shared_inputs: one_task``).

    For studies that want disjoint inputs. The owner is chosen by a stable hash of
    the text among the tasks containing it, so each task keeps a fair share and the
    choice does not depend on unrelated tasks. Returns the filtered frames and the
    number of rows each task lost.
    """
    keys = {name: text_key(frame) for name, frame in frames.items()}
    owners: dict[str, list[str]] = {}
    for name in sorted(frames):
        for key in set(keys[name]):
            owners.setdefault(key, []).append(name)
    result, removed = {}, {}
    for name, frame in frames.items():

        def owns(key: str, name: str = name) -> bool:
            tasks = owners[key]
            return len(tasks) == 1 or tasks[zlib.crc32(key.encode()) % len(tasks)] == name

        keep = keys[name].map(owns).to_numpy(dtype=bool)
        result[name] = frame[keep].reset_index(drop=True)
        removed[name] = int((~keep).sum())
    return result, removed


def shared_counts(frames: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Rows of each task whose text also occurs in another of the tasks."""
    keys = {name: set(text_key(frame)) for name, frame in frames.items()}
    counts = {}
    for name, frame in frames.items():
        others = set().union(*(k for other, k in keys.items() if other != name)) if len(keys) > 1 else set()
        counts[name] = int(text_key(frame).isin(others).sum())
    return counts


def task_seed(base: int, *parts: str) -> int:
    """A per-task seed that does not depend on which other tasks are loaded."""
    return (base * 1_000_003 + zlib.crc32("/".join(parts).encode())) % 2**32
