"""Task specifications: what a task is, independent of where its data lives."""

from __future__ import annotations

from dataclasses import dataclass, field

CLASSIFICATION = "classification"
PAIR_CLASSIFICATION = "pair_classification"
REGRESSION = "regression"
MULTIPLE_CHOICE = "multiple_choice"
TASK_TYPES = (CLASSIFICATION, PAIR_CLASSIFICATION, REGRESSION, MULTIPLE_CHOICE)

# Metrics each type can be scored with; the first is the default primary metric.
METRICS = {
    CLASSIFICATION: ("accuracy", "macro_f1"),
    PAIR_CLASSIFICATION: ("accuracy", "macro_f1"),
    REGRESSION: ("pearson", "mae"),
    MULTIPLE_CHOICE: ("accuracy",),
}
# Metrics where lower is better (everything else: higher is better).
LOWER_IS_BETTER = frozenset({"mae"})


def signed_gain(values, reference, metric):
    """values − reference, negated for lower-is-better metrics: positive always means better.

    Element-wise over pandas Series or arrays (``metric`` a Series of metric names).
    """
    import numpy as np

    return (values - reference) * np.where(metric.isin(LOWER_IS_BETTER), -1.0, 1.0)


@dataclass(frozen=True)
class TaskSpec:
    """One task of a study.

    ``source`` says where the data comes from: ``catalog:NAME`` (built-in real
    task), ``file:PATH`` (user CSV / JSONL / Parquet, split automatically),
    ``files:TRAIN,VAL,TEST`` (user-provided splits) or ``hf:PATH[/CONFIG]``
    (Hugging Face ``datasets``). ``text_fields``, ``label_field`` and
    ``choices_field`` name the source columns; loaders rename them to the
    normalized ``text``, ``text_pair``, ``label`` and ``choices``.
    """

    name: str
    family: str
    type: str
    source: str
    text_fields: tuple[str, ...] = ("text",)
    label_field: str = "label"
    choices_field: str | None = None
    metric: str | None = None
    max_train: int | None = None
    max_eval: int | None = None
    # A separate task whose examples are a copy of another task's (separate head,
    # independently sampled batches): the known-answer control for affinities.
    duplicate_of: str | None = None
    # Shuffle the training labels (fixed seed): a control task nobody should help.
    shuffle_labels: bool = False
    options: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def primary_metric(self) -> str:
        return self.metric or METRICS[self.type][0]
