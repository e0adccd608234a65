"""Seeded stratified splits, stratified caps and cross-task de-duplication.

All functions are deterministic given their seed and never depend on which other
tasks are loaded, except :func:`deduplicate_across_tasks`, which by design only
looks at the tasks that contain a shared text.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
import pandas as pd

_NON_WORD = re.compile(r"[\W_]+")


def strata_of(frame: pd.DataFrame, stratify: bool) -> np.ndarray:
    """Labels to stratify on (one stratum when the task has no classes)."""
    if not stratify:
        return np.zeros(len(frame), dtype=int)
    return pd.factorize(frame["label"].astype(str), sort=True)[0]


def split_frame(
    frame: pd.DataFrame, *, val_fraction: float, test_fraction: float, seed: int, stratify: bool
) -> dict[str, pd.DataFrame]:
    """Split per stratum so every class keeps at least one training example.

    A class with too few examples for all three splits goes to train first: labels
    seen only in validation or test would make the task unscoreable.
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "validation": [], "test": []}
    strata = strata_of(frame, stratify)
    for stratum in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == stratum))
        n = len(members)
        n_val = int(round(n * val_fraction))
        n_test = int(round(n * test_fraction))
        while n - n_val - n_test < 1:
            if n_test >= n_val and n_test > 0:
                n_test -= 1
            else:
                n_val -= 1
        parts["validation"].append(members[:n_val])
        parts["test"].append(members[n_val : n_val + n_test])
        parts["train"].append(members[n_val + n_test :])
    # Sorting keeps the source order inside each split: stable across numpy versions.
    return {k: frame.iloc[np.sort(np.concatenate(v))].reset_index(drop=True) for k, v in parts.items()}


def stratified_cap(frame: pd.DataFrame, n: int | None, *, seed: int, stratify: bool) -> pd.DataFrame:
    """Keep ``n`` rows with class proportions preserved (rare classes keep >= 1 row where n allows).

    Rows are ordered by their relative rank inside their class, so any prefix of
    the order is a proportional sample.
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
    return frame.iloc[np.sort(order[:n])].reset_index(drop=True)


def text_key(frame: pd.DataFrame) -> pd.Series:
    """Case- and punctuation-insensitive identity of an example's text(s)."""
    cols = [c for c in ("text", "text_pair") if c in frame]
    joined = frame[cols].astype(str).agg(" || ".join, axis=1)
    return joined.str.lower().map(lambda s: _NON_WORD.sub(" ", s).strip())


def deduplicate_across_tasks(frames: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """Give every text shared by several tasks to exactly one of them.

    Shared texts leak between tasks (the VADER movie snippets and Rotten Tomatoes
    reviews come from one source) and would inflate measured transfer. The owner is
    chosen by a stable hash of the text among the tasks containing it, so each task
    keeps a fair share and the choice does not depend on unrelated tasks.
    Returns the filtered frames and the number of rows each task lost.
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


def task_seed(base: int, *parts: str) -> int:
    """A per-task seed that does not depend on which other tasks are loaded."""
    return (base * 1_000_003 + zlib.crc32("/".join(parts).encode())) % 2**32
