"""Turn YAML task entries into TaskSpecs and fetch each spec's raw rows.

A task entry is either a catalog name (``trec6``) or a mapping:

    {catalog: trec6, max_train: 500}                       built-in task, overrides
    {name: reviews, file: data/reviews.csv, type: classification,
     text_fields: [body], label_field: stars, family: mine}  user file, split for you
    {name: nli, train_file: a.csv, validation_file: b.csv, test_file: c.csv, ...}
    {name: sst2, hf: nyu-mll/glue, hf_config: sst2, text_fields: [sentence]}
    {name: trec6_twin, duplicate_of: trec6}                 copy of another task (a control)
    {name: bbc_sport, one_vs_rest: bbc_topic, positive: sport}
                                  binary task from a multi-class one: 1 = sport, 0 = the rest

``duplicate_of`` and ``one_vs_rest`` name a task listed earlier in the same study.
A one-vs-rest task keeps the original's splits and type (classification or
pair_classification) and its family unless given; its metric defaults to
``macro_f1``. Training keeps every positive and at most ``negatives_per_positive``
negatives per positive (default 3, ``null`` keeps all); validation and test keep
their natural class balance (see :mod:`taskaffinity.tasks.derived`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ConfigError
from .spec import CLASSIFICATION, TaskSpec

TASK_KEYS = {
    "name",
    "catalog",
    "file",
    "train_file",
    "validation_file",
    "test_file",
    "hf",
    "hf_config",
    "family",
    "type",
    "text_fields",
    "label_field",
    "choices_field",
    "metric",
    "max_train",
    "max_eval",
    "duplicate_of",
    "shuffle_labels",
    "one_vs_rest",
    "positive",
    "negatives_per_positive",
}
SOURCE_KEYS = ("catalog", "file", "train_file", "hf", "duplicate_of", "one_vs_rest")
ONE_VS_REST_KEYS = ("positive", "negatives_per_positive")
DEFAULT_NEGATIVES_PER_POSITIVE = 3


def task_spec_from_entry(entry: Any, *, where: str, base_dir: Path) -> TaskSpec:
    """Build a TaskSpec from one ``tasks:`` entry of a study YAML."""
    if isinstance(entry, str):
        entry = {"catalog": entry}
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: a task is a catalog name or a mapping, got {entry!r}")
    for key in entry:
        if key not in TASK_KEYS:
            raise ConfigError(f"{where}: unknown key '{key}' (allowed: {', '.join(sorted(TASK_KEYS))})")
    if "one_vs_rest" not in entry:
        for key in ONE_VS_REST_KEYS:
            if key in entry:
                raise ConfigError(
                    f"{where}: task '{_entry_label(entry)}': '{key}' is only for one_vs_rest tasks "
                    "(add one_vs_rest: TASK, the multi-class task to split)"
                )
    sources = [k for k in SOURCE_KEYS if k in entry]
    if len(sources) != 1:
        raise ConfigError(
            f"{where}: give exactly one data source among {', '.join(SOURCE_KEYS)} (got {sources or 'none'})"
        )
    kind = sources[0]
    fields = _common_fields(entry, where)
    if kind == "catalog":
        return _catalog_spec(entry, fields, where)
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: a task from {kind} needs a 'name'")
    if kind == "duplicate_of":
        # Everything else is copied from the original once it is loaded.
        return TaskSpec(
            name=name,
            family="",
            type=CLASSIFICATION,
            source=f"duplicate:{entry['duplicate_of']}",
            duplicate_of=str(entry["duplicate_of"]),
            shuffle_labels=fields.get("shuffle_labels", False),
        )
    if kind == "one_vs_rest":
        return _one_vs_rest_spec(entry, fields, name, where)
    if kind == "file":
        source = f"file:{_resolve(entry['file'], base_dir)}"
    elif kind == "train_file":
        missing = [k for k in ("validation_file", "test_file") if k not in entry]
        if missing:
            raise ConfigError(f"{where}: task '{name}': train_file given without {missing[0]}")
        paths = [_resolve(entry[k], base_dir) for k in ("train_file", "validation_file", "test_file")]
        source = "files:" + ",".join(paths)
    else:
        source = f"hf:{entry['hf']}" + (f"#{entry['hf_config']}" if entry.get("hf_config") else "")
    fields.setdefault("type", CLASSIFICATION)
    fields.setdefault("family", name)
    return TaskSpec(name=name, source=source, **fields)


def _common_fields(entry: dict, where: str) -> dict:
    fields: dict[str, Any] = {}
    for key in ("family", "type", "label_field", "choices_field", "metric"):
        if key in entry:
            fields[key] = str(entry[key])
    if "text_fields" in entry:
        value = entry["text_fields"]
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: text_fields must be a column name or a list of them")
        fields["text_fields"] = tuple(value)
    for key in ("max_train", "max_eval"):
        if key in entry:
            if not isinstance(entry[key], int) or isinstance(entry[key], bool) or entry[key] < 1:
                raise ConfigError(f"{where}: {key} must be a positive integer, got {entry[key]!r}")
            fields[key] = entry[key]
    if "shuffle_labels" in entry:
        if not isinstance(entry["shuffle_labels"], bool):
            raise ConfigError(f"{where}: shuffle_labels must be true or false")
        fields["shuffle_labels"] = entry["shuffle_labels"]
    return fields


def _catalog_spec(entry: dict, fields: dict, where: str) -> TaskSpec:
    from .catalog import get_entry

    try:
        item = get_entry(str(entry["catalog"]))
    except Exception as err:
        raise ConfigError(f"{where}: {err}") from None
    for key in ("type", "text_fields", "label_field", "choices_field"):
        if key in fields:
            raise ConfigError(f"{where}: '{key}' is fixed for catalog task '{item.name}'")
    fields.setdefault("family", item.family)
    fields.setdefault("metric", item.metric)
    return TaskSpec(
        name=str(entry.get("name", item.name)),
        type=item.type,
        source=f"catalog:{item.name}",
        text_fields=("text", "text_pair") if item.type == "pair_classification" else ("text",),
        choices_field="choices" if item.type == "multiple_choice" else None,
        **fields,
    )


def _entry_label(entry: dict) -> str:
    """How to name a task in an error before its name is known to be valid."""
    for key in ("name",) + SOURCE_KEYS:
        if entry.get(key) is not None:
            return str(entry[key])
    return "?"


def _one_vs_rest_spec(entry: dict, fields: dict, name: str, where: str) -> TaskSpec:
    """A binary task derived from another task's labels; built by :mod:`.derived` at prepare time."""
    original = entry["one_vs_rest"]
    if not isinstance(original, str) or not original.strip():
        raise ConfigError(
            f"{where}: task '{name}': one_vs_rest must name an earlier task of the study, got {original!r}"
        )
    for key in ("type", "text_fields", "label_field", "choices_field"):
        if key in fields:
            raise ConfigError(f"{where}: task '{name}': '{key}' is fixed by the one_vs_rest original '{original}'")
    if "positive" not in entry:
        raise ConfigError(
            f"{where}: task '{name}': one_vs_rest needs 'positive' (the label of '{original}' that becomes class 1)"
        )
    positive = entry["positive"]
    if isinstance(positive, float) and positive.is_integer():
        positive = int(positive)  # labels 1.0 and 1 are the same class (see data._coerce_labels)
    if positive is None or isinstance(positive, (list, dict)) or not str(positive).strip():
        raise ConfigError(f"{where}: task '{name}': 'positive' must be one label of '{original}', got {positive!r}")
    ratio = entry.get("negatives_per_positive", DEFAULT_NEGATIVES_PER_POSITIVE)
    if ratio is not None and (
        isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or ratio <= 0
    ):
        raise ConfigError(
            f"{where}: task '{name}': negatives_per_positive must be a positive number "
            f"(or null to keep every negative), got {ratio!r}"
        )
    fields.setdefault("family", "")  # the original's, filled in when the data is prepared
    fields.setdefault("metric", "macro_f1")  # binary tasks are imbalanced
    positive = str(positive).strip()
    return TaskSpec(
        name=name,
        type=CLASSIFICATION,
        source=f"one_vs_rest:{original}#{positive}",
        options={"one_vs_rest": original, "positive": positive, "negatives_per_positive": ratio},
        **fields,
    )


def _resolve(path: Any, base_dir: Path) -> str:
    path = Path(str(path)).expanduser()
    return str(path if path.is_absolute() else (base_dir / path))


def read_source(spec: TaskSpec) -> tuple[dict[str, pd.DataFrame] | pd.DataFrame, str]:
    """Raw rows of a task: one frame to split, or a dict of given splits (``train`` and any of
    ``validation``, ``test``: missing ones are carved from train); plus a description."""
    kind, _, rest = spec.source.partition(":")
    if kind == "catalog":
        from .catalog import get_entry, load_raw

        return load_raw(rest), get_entry(rest).source
    if kind == "file":
        from .files import read_table

        return read_table(rest, spec.name), rest
    if kind == "files":
        from .files import read_table

        paths = rest.split(",")
        return {s: read_table(p, spec.name) for s, p in zip(("train", "validation", "test"), paths)}, rest
    if kind == "hf":
        from .hub import load_hub_splits

        path, _, config = rest.partition("#")
        return load_hub_splits(spec.name, path, config or None, label_field=spec.label_field), f"hub dataset {rest}"
    raise ConfigError(f"task '{spec.name}': unknown source '{spec.source}'")
