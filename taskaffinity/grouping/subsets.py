"""Task subsets as indicator rows, and their members' gains: the input checks of the surrogates.

A subset is one row of a 0/1 matrix (subsets x tasks) or a collection of task names; a member's
gain is its metric when trained in the subset minus its metric trained alone (MTG-Net, Song et
al. 2022), so entries of non-members mean nothing and are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from ._base import GroupingError

SEPARATOR = "+"  # a group written as one string: "a+b+c" (the study results' pretrain_set)


def _names(group) -> list[str]:
    if isinstance(group, str):
        return [t for t in group.split(SEPARATOR) if t]
    return [str(t) for t in group]


def check_tasks(tasks, name: str = "tasks") -> list[str]:
    """A list of distinct task names."""
    if isinstance(tasks, str) or not isinstance(tasks, Iterable):
        raise GroupingError(f"{name} must be a sequence of task names, got {tasks!r}")
    tasks = [str(t) for t in tasks]
    dup = sorted({t for t in tasks if tasks.count(t) > 1})
    if dup:
        raise GroupingError(f"{name}: duplicate task name(s): {', '.join(dup)}")
    if not tasks:
        raise GroupingError(f"{name}: no tasks")
    return tasks


def as_indicators(subsets, tasks=None, name: str = "subsets") -> tuple[list[str], np.ndarray, pd.Index | None]:
    """``(tasks, M, index)``: the subsets as a boolean (n_subsets, n_tasks) matrix in ``tasks`` order.

    ``subsets``: a DataFrame of 0/1 (or bool) with task-name columns (aligned to ``tasks`` when
    given; ``index`` is its index), a 2-D array of 0/1 in ``tasks`` order (names ``"0".."n-1"``
    without ``tasks``), or a sequence of task-name collections (or ``"a+b+c"`` strings; the sorted
    union of names without ``tasks``). Raises :class:`GroupingError` naming ``name``.
    """
    index = None
    if isinstance(subsets, pd.DataFrame):
        columns = check_tasks(subsets.columns, f"{name} columns")
        tasks = columns if tasks is None else check_tasks(tasks)
        if set(columns) != set(tasks):
            raise GroupingError(
                f"{name} columns must name the tasks {tasks}; "
                f"unknown: {sorted(set(columns) - set(tasks)) or '-'}, "
                f"missing: {sorted(set(tasks) - set(columns)) or '-'}"
            )
        frame = subsets.copy()
        frame.columns = columns
        index = subsets.index
        values = frame[tasks].to_numpy()
    else:
        rows = (
            list(subsets) if isinstance(subsets, Iterable) and not isinstance(subsets, (str, np.ndarray)) else subsets
        )
        if isinstance(rows, list) and rows and all(isinstance(r, str) or _is_name_row(r) for r in rows):
            groups = [_names(r) for r in rows]
            tasks = sorted({t for g in groups for t in g}) if tasks is None else check_tasks(tasks)
            at = {t: i for i, t in enumerate(tasks)}
            unknown = sorted({t for g in groups for t in g if t not in at})
            if unknown:
                raise GroupingError(f"{name} name unknown task(s): {', '.join(unknown)} (tasks: {', '.join(tasks)})")
            values = np.zeros((len(groups), len(tasks)))
            for r, g in enumerate(groups):
                values[r, [at[t] for t in g]] = 1
        else:
            try:
                values = np.asarray(rows, dtype=float)
            except (TypeError, ValueError) as err:
                raise GroupingError(f"{name} must be 0/1 rows (subsets x tasks) or task-name lists: {err}") from None
            if values.ndim != 2:
                raise GroupingError(f"{name} must be 2-D (subsets x tasks), got shape {values.shape}")
            tasks = [str(i) for i in range(values.shape[1])] if tasks is None else check_tasks(tasks)
            if values.shape[1] != len(tasks):
                raise GroupingError(f"{name} has {values.shape[1]} columns but there are {len(tasks)} tasks")
    try:
        values = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise GroupingError(f"{name} has non-numeric entries: {err}") from None
    if values.ndim != 2 or values.shape[0] == 0:
        raise GroupingError(f"{name}: no subsets")
    if not np.isin(values, (0.0, 1.0)).all():
        raise GroupingError(f"{name} entries must be 0 or 1 (task in the subset or not)")
    M = values.astype(bool)
    empty = np.flatnonzero(~M.any(axis=1))
    if len(empty):
        raise GroupingError(f"{name} row(s) {empty[:5].tolist()} hold no task")
    return list(tasks), M, index


def _is_name_row(row) -> bool:
    return isinstance(row, (list, tuple, set, frozenset)) and len(row) > 0 and all(isinstance(t, str) for t in row)


def as_gains(gains, M: np.ndarray, tasks: list[str], index=None, name: str = "gains") -> np.ndarray:
    """Members' gains as a float (n_subsets, n_tasks) array, NaN for non-members.

    ``gains``: a DataFrame with task-name columns (rows aligned to the subsets' index when both
    are frames, else by position) or a 2-D array in task order. A member's NaN means "not
    measured" and is skipped; infinite member gains are refused.
    """
    if isinstance(gains, pd.DataFrame):
        if set(map(str, gains.columns)) != set(tasks):
            raise GroupingError(f"{name} columns must name the tasks {tasks}, got {list(gains.columns)}")
        frame = gains.copy()
        frame.columns = [str(c) for c in frame.columns]
        if index is not None:
            if not frame.index.equals(index) and set(frame.index) == set(index):
                frame = frame.loc[index]
            elif not frame.index.equals(index):
                raise GroupingError(f"{name} rows must match the subsets' index")
        gains = frame[tasks]
    try:
        G = np.array(gains, dtype=float)
    except (TypeError, ValueError) as err:
        raise GroupingError(f"{name} has non-numeric entries: {err}") from None
    if G.shape != M.shape:
        raise GroupingError(f"{name} must have shape {M.shape} (subsets x tasks), got {G.shape}")
    G = np.where(M, G, np.nan)
    if np.isinf(G).any():
        r, t = np.argwhere(np.isinf(G))[0]
        raise GroupingError(f"{name} has an infinite member gain (subset row {r}, task {tasks[t]})")
    return G


def tidy_to_subsets(
    frame: pd.DataFrame, *, tasks=None, group: str = "group", target: str = "target", gain: str = "gain"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(subsets, gains)`` frames (one row per group, task columns) from a tidy frame of members' gains.

    ``frame`` has one row per (group, member[, seed]): ``group`` holds the members (a collection of
    names or an ``"a+b+c"`` string), ``target`` the member whose ``gain`` it is. Rows of one
    (group, member) are averaged (over seeds). The index is the group written ``"a+b+c"`` in task order.
    """
    missing = [c for c in (group, target, gain) if c not in frame.columns]
    if missing:
        raise GroupingError(f"frame lacks column(s) {', '.join(missing)}")
    members = [tuple(_names(g)) for g in frame[group]]
    tasks = sorted({t for g in members for t in g}) if tasks is None else check_tasks(tasks)
    order = {t: i for i, t in enumerate(tasks)}
    unknown = sorted({t for g in members for t in g if t not in order})
    if unknown:
        raise GroupingError(f"frame column {group} names unknown task(s): {', '.join(unknown)}")
    keys = [SEPARATOR.join(sorted(g, key=order.get)) for g in members]
    outside = [(k, str(t)) for k, g, t in zip(keys, members, frame[target]) if str(t) not in g]
    if outside:
        raise GroupingError(f"frame: target {outside[0][1]} is not a member of its group {outside[0][0]}")
    tidy = pd.DataFrame(
        {
            "key": keys,
            "target": frame[target].astype(str).to_numpy(),
            "gain": pd.to_numeric(frame[gain], errors="coerce").to_numpy(),
        }
    )
    wide = tidy.groupby(["key", "target"], sort=False)["gain"].mean().unstack("target")
    wide = wide.reindex(columns=tasks)
    indicators = pd.DataFrame(
        [[int(t in k.split(SEPARATOR)) for t in tasks] for k in wide.index], index=wide.index, columns=tasks
    )
    return indicators, wide
