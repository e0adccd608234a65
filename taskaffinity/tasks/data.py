"""Examples of one task: normalisation, validation and label encoding.

Every task, whatever its source, ends up as a :class:`TaskData` with three frames
whose columns are normalised by type:

    classification       text, label (int class id)
    pair_classification  text, text_pair, label (int class id)
    regression           text, label (float, original units)
    multiple_choice      text, choices (list[str]), label (int index of the right choice)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import TaskDataError
from .spec import CLASSIFICATION, MULTIPLE_CHOICE, PAIR_CLASSIFICATION, REGRESSION, TaskSpec
from .text import example_key

SPLITS = ("train", "validation", "test")
CLASS_TYPES = (CLASSIFICATION, PAIR_CLASSIFICATION)


@dataclass
class TaskData:
    """A task's prepared splits and label metadata.

    ``stats`` counts what preparation did to the task's rows (see
    :func:`taskaffinity.tasks.prepare.prepare_tasks`): ``rows_read``, ``dropped_empty``,
    ``dropped_duplicates``, ``dropped_conflicting``, ``shared_texts``, ``removed_shared``.
    """

    spec: TaskSpec
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    label_names: tuple[str, ...] = ()
    n_choices: int = 0
    stats: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def removed_as_duplicates(self) -> int:
        """Rows given to another task that shares their text (``data.shared_inputs: one_task``)."""
        return int(self.stats.get("removed_shared", 0))

    @property
    def n_classes(self) -> int:
        """Classes of a classifier, choices of a multiple-choice task, 1 for regression."""
        if self.spec.type in CLASS_TYPES:
            return len(self.label_names)
        return self.n_choices if self.spec.type == MULTIPLE_CHOICE else 1

    def split(self, name: str) -> pd.DataFrame:
        if name not in SPLITS:
            raise ValueError(f"unknown split '{name}' (use one of {SPLITS})")
        return getattr(self, name)

    def label_stats(self) -> tuple[float, float]:
        """Train mean and std of a regression label (targets are standardised with them)."""
        labels = self.train["label"].to_numpy(dtype=float)
        std = float(labels.std())
        return float(labels.mean()), std if std > 0 else 1.0

    def fingerprint(self) -> str:
        """A hash of the prepared data: type, label names and every split's rows, in order.

        Equal for the same data whatever its storage (a frame in memory or read back
        from Parquet, where lists come back as arrays); it enters the identity of runs
        and study jobs, so a changed file is never taken for the old one.
        """
        digest = hashlib.sha256(json.dumps([self.spec.type, list(self.label_names), self.n_choices]).encode())
        for split in SPLITS:
            frame = self.split(split)
            rows = frame.to_dict("split")["data"]
            digest.update(json.dumps([split, list(map(str, frame.columns)), rows], default=_json_value).encode())
        return digest.hexdigest()[:16]


def _json_value(value):
    """Arrays (multiple-choice choices read from Parquet) and numpy scalars as plain JSON."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot fingerprint a {type(value).__name__}")


def row_location(frame: pd.DataFrame, i: int) -> str:
    """Where row ``i`` (position) of a frame came from, as a user finds it: ``line 14`` (editor
    lines, header = 1), ``item 3 (line 9)`` (JSON arrays), ``row 5`` (counted from 1)."""
    name = frame.index.name
    if name in ("line", "row"):
        return f"{name} {frame.index[i]}"
    if name == "location":
        return str(frame.index[i])
    return f"row {i + 1}"


def normalise_columns(spec: TaskSpec, frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Rename the spec's source columns to the normalised ones, keep only those (and the row index)."""
    wanted_text = 2 if spec.type == PAIR_CLASSIFICATION else 1
    if len(spec.text_fields) != wanted_text:
        raise TaskDataError(
            f"task '{spec.name}': type {spec.type} needs {wanted_text} text field(s), "
            f"got text_fields={list(spec.text_fields)}"
        )
    mapping = dict(zip(spec.text_fields, ("text", "text_pair")))
    mapping[spec.label_field] = "label"
    if spec.type == MULTIPLE_CHOICE:
        mapping[spec.choices_field or "choices"] = "choices"
    missing = [col for col in mapping if col not in frame.columns]
    if missing:
        raise TaskDataError(
            f"task '{spec.name}': column '{missing[0]}' not found in {where} "
            f"(columns: {', '.join(map(str, frame.columns))})"
        )
    return frame[list(mapping)].rename(columns=mapping)


def is_missing(value) -> bool:
    """Only a truly absent value: None, NaN, pd.NA (the string "NA" or "None" is a value)."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def clean_examples(spec: TaskSpec, frame: pd.DataFrame, where: str) -> tuple[pd.DataFrame, dict]:
    """Check labels and texts of normalised rows; drop empty texts, duplicates and conflicts.

    Returns the clean rows (index reset) and counts: ``rows_read``, ``dropped_empty``
    (a text empty after stripping white space), ``dropped_duplicates`` (later copies of
    an example, compared as in :mod:`.text`), ``dropped_conflicting`` (every copy of an
    example given two different labels: noise we cannot resolve). Errors name the
    row as an editor shows it (:func:`row_location`).
    """
    if frame.empty:
        raise TaskDataError(f"task '{spec.name}': no examples in {where}")
    bad = frame["label"].map(is_missing).to_numpy(dtype=bool)
    if bad.any():
        at = row_location(frame, int(np.flatnonzero(bad)[0]))
        raise TaskDataError(f"task '{spec.name}': missing label in {where}, {at} (an empty cell or null)")
    frame = frame.copy()
    text_cols = [c for c in ("text", "text_pair") if c in frame]
    for col in text_cols:
        frame[col] = [_text(spec, value, frame, i, col, where) for i, value in enumerate(frame[col])]
    stats = {"rows_read": len(frame)}
    keep = (frame[text_cols] != "").all(axis=1).to_numpy()
    stats["dropped_empty"] = int((~keep).sum())
    frame = frame[keep]
    if frame.empty:
        raise TaskDataError(f"task '{spec.name}': every text in {where} is empty")
    frame = _coerce_labels(spec, frame, where)
    keys = example_key(frame).to_numpy()
    labels_per_key = pd.Series(frame["label"].astype(str).to_numpy()).groupby(keys).transform("nunique").to_numpy()
    conflicting = labels_per_key > 1
    repeated = pd.Series(keys).duplicated().to_numpy() & ~conflicting
    stats["dropped_conflicting"] = int(conflicting.sum())
    stats["dropped_duplicates"] = int(repeated.sum())
    return frame[~conflicting & ~repeated].reset_index(drop=True), stats


def _text(spec: TaskSpec, value, frame: pd.DataFrame, i: int, column: str, where: str) -> str:
    if is_missing(value):
        return ""
    if isinstance(value, (list, dict, np.ndarray)):
        field_name = dict(zip(("text", "text_pair"), spec.text_fields)).get(column, column)
        raise TaskDataError(
            f"task '{spec.name}': text field '{field_name}' in {where}, {row_location(frame, i)} "
            f"is a {type(value).__name__}, not a text"
        )
    return str(value).strip()


def _coerce_labels(spec: TaskSpec, frame: pd.DataFrame, where: str) -> pd.DataFrame:
    if spec.type == REGRESSION:
        raw = frame["label"].map(lambda v: v.strip() if isinstance(v, str) else v)
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values) | frame["label"].map(lambda v: isinstance(v, bool)).to_numpy(dtype=bool)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise TaskDataError(
                f"task '{spec.name}': regression label in {where}, {row_location(frame, row)} is not a finite "
                f"number: {_show(frame['label'].iloc[row])}"
            )
        return frame.assign(label=values)
    if spec.type == MULTIPLE_CHOICE:
        return _check_choices(spec, frame, where)
    return frame.assign(label=class_names(spec, frame, where))


_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def class_names(spec: TaskSpec, frame: pd.DataFrame, where: str) -> list[str]:
    """Class labels as names, the same whatever the file format.

    Strings are stripped; numbers become their shortest form (``1``, ``1.0`` and ``"1.0"``
    are the class ``1``, as a CSV column of numbers and a JSON number agree); a column
    whose every label is a number is read as numbers. ``"None"`` or ``"NA"`` are names.
    """
    names = []
    for i, value in enumerate(frame["label"]):
        if isinstance(value, (list, dict, np.ndarray)):
            raise TaskDataError(
                f"task '{spec.name}': label in {where}, {row_location(frame, i)} is a "
                f"{type(value).__name__}; a classification label is one value"
            )
        if isinstance(value, (bool, np.bool_)):
            names.append(str(bool(value)))
        elif isinstance(value, (int, np.integer)):
            names.append(str(int(value)))
        elif isinstance(value, (float, np.floating)):
            names.append(_number_name(float(value)))
        else:
            names.append(str(value).strip())
    if all(_DECIMAL.fullmatch(name) for name in names):
        names = [str(int(name)) if _INTEGER.fullmatch(name) else _number_name(float(name)) for name in names]
    return names


def _number_name(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _show(value) -> str:
    """A cell value as a user wrote it (no numpy reprs)."""
    return repr(value) if isinstance(value, str) else str(value)


def _check_choices(spec: TaskSpec, frame: pd.DataFrame, where: str) -> pd.DataFrame:
    def as_list(c):
        if not isinstance(c, (list, tuple, np.ndarray)):
            return None
        items = [None if is_missing(x) else str(x).strip() for x in c]
        return None if any(not x for x in items) else items

    choices = frame["choices"].map(as_list)
    if choices.isna().any():
        row = int(np.flatnonzero(choices.isna().to_numpy())[0])
        raise TaskDataError(
            f"task '{spec.name}': choices in {where}, {row_location(frame, row)} must be a list "
            f"of non-empty texts (got {_show(frame['choices'].iloc[row])}; CSV and TSV cannot hold "
            "lists: use JSON Lines, JSON or Parquet)"
        )
    sizes = choices.map(len)
    if sizes.nunique() != 1 or sizes.iloc[0] < 2:
        row = int(np.flatnonzero((sizes != sizes.iloc[0]).to_numpy())[0]) if sizes.nunique() != 1 else 0
        raise TaskDataError(
            f"task '{spec.name}': every example in {where} needs the same number (>= 2) of choices; "
            f"found {sorted(sizes.unique().tolist())} ({row_location(frame, row)} has {sizes.iloc[row]})"
        )
    labels = pd.to_numeric(frame["label"], errors="coerce")
    bad = labels.isna() | (labels < 0) | (labels >= sizes.iloc[0]) | (labels != labels.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise TaskDataError(
            f"task '{spec.name}': label in {where}, {row_location(frame, row)} must be a choice index "
            f"0..{sizes.iloc[0] - 1}, got {_show(frame['label'].iloc[row])}"
        )
    return frame.assign(choices=choices, label=labels.astype(int))


def encode_labels(spec: TaskSpec, splits: dict[str, pd.DataFrame], where: str) -> tuple[dict, tuple[str, ...], int]:
    """Turn class names into ids (classes sorted); check what a task needs to be learnable."""
    if spec.type == MULTIPLE_CHOICE:
        n_choices = len(splits["train"]["choices"].iloc[0])
        for split in ("validation", "test"):
            other = len(splits[split]["choices"].iloc[0])
            if other != n_choices:  # one scorer head: every split needs the same number of choices
                raise TaskDataError(
                    f"task '{spec.name}': the {split} split of {where} has {other} choices per "
                    f"example, train has {n_choices}"
                )
        return splits, (), n_choices
    if spec.type == REGRESSION:
        if splits["train"]["label"].nunique() < 2:
            raise TaskDataError(f"task '{spec.name}': every regression label in train ({where}) is the same")
        return splits, (), 0
    names = tuple(sorted(splits["train"]["label"].unique()))
    if len(names) < 2:
        raise TaskDataError(
            f"task '{spec.name}': only one class ({names[0]!r}) in the train split of {where}; "
            "classification needs at least 2"
        )
    ids = {name: i for i, name in enumerate(names)}
    for split in ("validation", "test"):
        unseen = sorted(set(splits[split]["label"]) - set(names))
        if unseen:
            raise TaskDataError(
                f"task '{spec.name}': labels {unseen[:5]} in the {split} split of {where} never occur in train"
            )
    encoded = {k: v.assign(label=v["label"].map(ids).astype(int)) for k, v in splits.items()}
    return encoded, names, 0
