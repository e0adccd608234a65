"""Examples of one task: normalisation, validation and label encoding.

Every task, whatever its source, ends up as a :class:`TaskData` with three frames
whose columns are normalised by type:

    classification       text, label (int class id)
    pair_classification  text, text_pair, label (int class id)
    regression           text, label (float, original units)
    multiple_choice      text, choices (list[str]), label (int index of the right choice)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import TaskDataError
from .spec import CLASSIFICATION, MULTIPLE_CHOICE, PAIR_CLASSIFICATION, REGRESSION, TaskSpec

SPLITS = ("train", "validation", "test")
CLASS_TYPES = (CLASSIFICATION, PAIR_CLASSIFICATION)


@dataclass
class TaskData:
    """A task's prepared splits and label metadata."""

    spec: TaskSpec
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    label_names: tuple[str, ...] = ()
    n_choices: int = 0
    removed_as_duplicates: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

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


def normalise_columns(spec: TaskSpec, frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Rename the spec's source columns to the normalised ones, keep only those."""
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
    return frame[list(mapping)].rename(columns=mapping).reset_index(drop=True)


def clean_examples(spec: TaskSpec, frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Check labels and texts of normalised rows; drop empty texts and exact duplicates."""
    if frame.empty:
        raise TaskDataError(f"task '{spec.name}': no examples in {where}")
    bad = frame["label"].isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise TaskDataError(f"task '{spec.name}': missing (NaN) label in {where}, row {row}")
    frame = frame.copy()
    text_cols = [c for c in ("text", "text_pair") if c in frame]
    for col in text_cols:
        frame[col] = frame[col].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip())
    frame = frame[(frame[text_cols] != "").all(axis=1)]
    if frame.empty:
        raise TaskDataError(f"task '{spec.name}': every text in {where} is empty")
    frame = _coerce_labels(spec, frame, where)
    keys = frame[text_cols[0]]
    for col in text_cols[1:] + (["choices"] if spec.type == MULTIPLE_CHOICE else []):
        keys = keys + "\x1f" + frame[col].astype(str)
    # A text given two different labels is noise we cannot resolve: drop every copy.
    labels_per_key = pd.Series(frame["label"].astype(str).to_numpy()).groupby(keys.to_numpy()).transform("nunique")
    keep = (labels_per_key.to_numpy() == 1) & ~keys.duplicated().to_numpy()
    return frame[keep].reset_index(drop=True)


def _coerce_labels(spec: TaskSpec, frame: pd.DataFrame, where: str) -> pd.DataFrame:
    if spec.type == REGRESSION:
        values = pd.to_numeric(frame["label"], errors="coerce")
        if values.isna().any() or not np.isfinite(values.to_numpy(dtype=float)).all():
            row = int(np.flatnonzero(~np.isfinite(values.to_numpy(dtype=float)))[0])
            raise TaskDataError(
                f"task '{spec.name}': regression label in {where}, row {row} is not a finite number: "
                f"{_show(frame['label'].iloc[row])}"
            )
        return frame.assign(label=values.astype(float))
    if spec.type == MULTIPLE_CHOICE:
        return _check_choices(spec, frame, where)
    labels = frame["label"]
    # 1.0 and 1 in a CSV are the same class; keep integral floats as ints.
    if pd.api.types.is_float_dtype(labels) and (labels == labels.round()).all():
        labels = labels.astype(int)
    return frame.assign(label=labels.astype(str).str.strip())


def _show(value) -> str:
    """A cell value as a user wrote it (no numpy reprs)."""
    return repr(value) if isinstance(value, str) else str(value)


def _check_choices(spec: TaskSpec, frame: pd.DataFrame, where: str) -> pd.DataFrame:
    choices = frame["choices"].map(lambda c: [str(x) for x in c] if isinstance(c, (list, tuple, np.ndarray)) else None)
    if choices.isna().any():
        row = int(np.flatnonzero(choices.isna().to_numpy())[0])
        raise TaskDataError(f"task '{spec.name}': choices in {where}, row {row} is not a list")
    sizes = choices.map(len)
    if sizes.nunique() != 1 or sizes.iloc[0] < 2:
        raise TaskDataError(
            f"task '{spec.name}': every example in {where} needs the same number (>= 2) of choices; "
            f"found {sorted(sizes.unique().tolist())}"
        )
    labels = pd.to_numeric(frame["label"], errors="coerce")
    bad = labels.isna() | (labels < 0) | (labels >= sizes.iloc[0]) | (labels != labels.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise TaskDataError(
            f"task '{spec.name}': label in {where}, row {row} must be a choice index 0..{sizes.iloc[0] - 1}, "
            f"got {_show(frame['label'].iloc[row])}"
        )
    return frame.assign(choices=choices, label=labels.astype(int))


def encode_labels(spec: TaskSpec, splits: dict[str, pd.DataFrame], where: str) -> tuple[dict, tuple[str, ...], int]:
    """Turn class names into ids (classes sorted); check what a task needs to be learnable."""
    if spec.type == MULTIPLE_CHOICE:
        return splits, (), len(splits["train"]["choices"].iloc[0])
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
