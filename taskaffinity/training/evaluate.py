"""Per-task evaluation with each task's metrics, beside a trivial baseline.

Rows are tidy: ``task, split, metric, value, baseline``. The baseline is the
majority class of train (classification), the train mean (regression) or
chance (multiple choice), so "did the task learn anything" is one comparison.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error

from ..model.multitask import MultiTaskModel
from ..tasks.data import CLASS_TYPES, TaskData
from ..tasks.spec import MULTIPLE_CHOICE, REGRESSION, signed_gain
from .batching import EncodedRows


def score(task_type: str, labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """All metrics of a task type (see ``tasks.spec.METRICS``)."""
    if task_type == REGRESSION:
        constant = np.ptp(predictions) == 0 or np.ptp(labels) == 0
        pearson = 0.0 if constant else float(pearsonr(labels, predictions)[0])
        return {"pearson": pearson, "mae": float(mean_absolute_error(labels, predictions))}
    metrics = {"accuracy": float(accuracy_score(labels, predictions))}
    if task_type in CLASS_TYPES:
        metrics["macro_f1"] = float(f1_score(labels, predictions, average="macro", zero_division=0))
    return metrics


def baseline_scores(task: TaskData, split: str) -> dict[str, float]:
    """Metrics of the trivial predictor learned from train only."""
    labels = task.split(split)["label"].to_numpy()
    if task.spec.type == REGRESSION:
        return score(REGRESSION, labels, np.full(len(labels), task.train["label"].mean()))
    if task.spec.type == MULTIPLE_CHOICE:
        return {"accuracy": 1.0 / task.n_classes}
    majority = task.train["label"].value_counts().idxmax()
    return score(task.spec.type, labels, np.full(len(labels), majority))


@torch.inference_mode()
def predict(
    model: MultiTaskModel,
    task: TaskData,
    split: str,
    tokenizer,
    *,
    max_length: int,
    batch_size: int,
    device,
    autocast=None,
    encoded: EncodedRows | None = None,
) -> np.ndarray:
    """Head outputs for every row of a split (``encoded``: the split already tokenised)."""
    frame = task.split(split)
    if encoded is None:
        encoded = EncodedRows(task.spec.type, frame, tokenizer, max_length, what=f"task '{task.name}', {split} split")
    head = model.head(task.name)
    outputs = []
    for start in range(0, len(frame), batch_size):
        batch = encoded.collate(np.arange(start, min(start + batch_size, len(frame))), device)
        with autocast() if autocast else torch.autocast("cpu", enabled=False):
            outputs.append(head.predict(model(task.name, batch["inputs"])).float().cpu())
    return torch.cat(outputs).numpy()


def evaluate(
    model: MultiTaskModel,
    tasks: dict[str, TaskData],
    tokenizer,
    *,
    splits=("validation",),
    max_length: int,
    batch_size: int,
    device,
    autocast=None,
    encoded=None,
) -> pd.DataFrame:
    """Evaluate every task on the given splits; the model is left in the mode it had.

    Rows are ordered split by split, then task by task. ``encoded(task, split)``: the split tokenised once
    (a trainer's cache); default: tokenised here.
    """
    was_training = model.training
    model.eval()
    rows = []
    try:
        for split in splits:
            for name, task in tasks.items():
                predictions = predict(
                    model,
                    task,
                    split,
                    tokenizer,
                    max_length=max_length,
                    batch_size=batch_size,
                    device=device,
                    autocast=autocast,
                    encoded=encoded(name, split) if encoded else None,
                )
                metrics = score(task.spec.type, task.split(split)["label"].to_numpy(), predictions)
                baseline = baseline_scores(task, split)
                for metric, value in metrics.items():
                    rows.append(
                        {
                            "task": name,
                            "split": split,
                            "metric": metric,
                            "value": value,
                            "baseline": baseline[metric],
                            "primary": metric == task.spec.primary_metric,
                        }
                    )
    finally:
        model.train(was_training)
    return pd.DataFrame(rows)


def gain_over_baseline(frame: pd.DataFrame) -> pd.Series:
    """How much better than its baseline each row is (positive = better, for any metric direction)."""
    return signed_gain(frame["value"], frame["baseline"], frame["metric"])
