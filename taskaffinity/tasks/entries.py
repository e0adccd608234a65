"""Study task entries generated from the catalog: one-vs-rest tasks for every label of a
multi-class task, and lists of many different real tasks for runs with many tasks.

The entries are plain mappings, exactly what a study YAML's ``tasks:`` list holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .catalog import CATALOG
from .data import CLASS_TYPES
from .data_config import DataConfig
from .prepare import prepare_tasks
from .registry import task_spec_from_entry


def one_vs_rest_entries(
    task: str, labels: Iterable[Any] | None = None, *, min_examples: int = 0, data=None
) -> list[dict]:
    """Study task entries ``{name, one_vs_rest: task, positive}``, one per label of catalog task ``task``.

    Labels are read from the task prepared alone with ``data`` (a DataConfig; the
    default one if None). ``labels`` restricts the entries to those labels (in that
    order); ``min_examples`` keeps only labels with at least that many training
    examples. Names are ``{task}_{label}`` with non-alphanumerics turned into ``_``.
    The entries do not include ``task`` itself: list it before them in ``tasks:``;
    add ``negatives_per_positive`` to them to change the training balance.
    """
    spec = task_spec_from_entry(task, where="one_vs_rest_entries", base_dir=Path("."))
    if spec.type not in CLASS_TYPES:
        raise ConfigError(f"one_vs_rest_entries: task '{task}' is {spec.type}, not a classification task")
    prepared = prepare_tasks([spec], data or DataConfig(), progress=False)[spec.name]
    names = [str(n) for n in prepared.label_names]
    counts = np.bincount(prepared.train["label"].to_numpy(), minlength=len(names))
    if labels is None:
        wanted = names
    else:
        wanted = [str(label).strip() for label in labels]
        unknown = [label for label in wanted if label not in names]
        if unknown:
            raise ConfigError(
                f"one_vs_rest_entries: {unknown[:5]} are not labels of '{task}' "
                f"(labels: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''})"
            )
    entries, used = [], {spec.name}
    for label in wanted:
        if counts[names.index(label)] < min_examples:
            continue
        base = f"{spec.name}_{re.sub(r'[^0-9A-Za-z]+', '_', label).strip('_').lower() or 'label'}"
        name, k = base, 2
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        entries.append({"name": name, "one_vs_rest": spec.name, "positive": label})
    return entries


MULTI_CLASS_SOURCES = ("bbc_topic", "trec6", "trec50", "wn_supersense")


def real_task_entries(n: int, data=None, *, min_examples: int = 20) -> list:
    """Entries for ``n`` different real tasks: the catalog, then one-vs-rest tasks of its
    multi-class tasks taken in turn (about 90 in all), for runs with many tasks."""
    entries: list = list(CATALOG)[:n]
    queues = [one_vs_rest_entries(t, min_examples=min_examples, data=data) for t in MULTI_CLASS_SOURCES]
    while len(entries) < n and any(queues):
        for queue in queues:
            if queue and len(entries) < n:
                entries.append(queue.pop(0))
    if len(entries) < n:
        raise ConfigError(f"only {len(entries)} real tasks can be derived from the catalog, {n} asked for")
    return entries
