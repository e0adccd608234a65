"""Binary tasks derived from a multi-class task: one label against the rest.

A study entry ``{name: bbc_sport, one_vs_rest: bbc_topic, positive: sport}``
(parsed in :mod:`.registry`) becomes a classification task whose label is 1 for
``sport`` and 0 for every other topic. Its examples come from the original's
*prepared* splits, so they share its splits (no test text of one is trained on by
the other) and its handling of texts shared with other tasks. Training keeps every positive and at
most ``negatives_per_positive`` negatives per positive (a fixed random sample
seeded by the task's name); validation and test keep their natural balance.

:func:`taskaffinity.tasks.entries.one_vs_rest_entries` writes such entries for every label
of a catalog task, which turns the few multi-class catalog tasks into many real binary ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import ConfigError
from .data import CLASS_TYPES, SPLITS, TaskData
from .spec import TaskSpec
from .splits import stratified_cap, task_seed


def is_one_vs_rest(spec: TaskSpec) -> bool:
    return spec.options.get("one_vs_rest") is not None


def one_vs_rest_data(spec: TaskSpec, tasks: dict[str, TaskData], *, split_seed: int = 0) -> TaskData:
    """The prepared data of a one-vs-rest ``spec`` from its already prepared original in ``tasks``."""
    opts = spec.options
    original = tasks.get(opts["one_vs_rest"])
    if original is None:
        raise ConfigError(
            f"task '{spec.name}': one_vs_rest names unknown task '{opts['one_vs_rest']}' "
            "(it must be listed before the derived task)"
        )
    if original.spec.type not in CLASS_TYPES:
        raise ConfigError(
            f"task '{spec.name}': one_vs_rest needs a classification or pair_classification task; "
            f"'{original.name}' is {original.spec.type}"
        )
    names = [str(n) for n in original.label_names]
    positive = str(opts["positive"]).strip()
    if positive not in names:
        shown = ", ".join(repr(n) for n in names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
        raise ConfigError(
            f"task '{spec.name}': positive {positive!r} is not a label of '{original.name}' (labels: {shown})"
        )
    positive_id = names.index(positive)
    splits = {
        s: original.split(s).assign(label=(original.split(s)["label"] == positive_id).astype(int)) for s in SPLITS
    }
    splits["train"] = _subsample_negatives(
        splits["train"], opts.get("negatives_per_positive"), seed=task_seed(split_seed, spec.name, "negatives")
    )
    caps = {"train": spec.max_train, "validation": spec.max_eval, "test": spec.max_eval}
    for split, cap in caps.items():
        splits[split] = stratified_cap(splits[split], cap, seed=task_seed(split_seed, spec.name, split), stratify=True)
    derived_spec = dataclasses.replace(
        original.spec,
        name=spec.name,
        family=spec.family or original.spec.family,
        metric=spec.metric or "macro_f1",
        source=spec.source,
        max_train=spec.max_train,
        max_eval=spec.max_eval,
        duplicate_of=None,
        shuffle_labels=spec.shuffle_labels,
        options=dict(opts),
    )
    return TaskData(spec=derived_spec, label_names=(f"not_{positive}", positive), n_choices=0, **splits)


def _subsample_negatives(train, ratio: float | None, *, seed: int):
    """Every positive and at most ``ratio`` negatives per positive, in the original row order."""
    labels = train["label"].to_numpy()
    negatives = np.flatnonzero(labels == 0)
    if ratio is None:
        return train.reset_index(drop=True)
    keep_n = int(ratio * int((labels == 1).sum()))
    if len(negatives) <= keep_n:
        return train.reset_index(drop=True)
    keep = labels == 1
    keep[np.random.default_rng(seed).choice(negatives, size=keep_n, replace=False)] = True
    return train[keep].reset_index(drop=True)
