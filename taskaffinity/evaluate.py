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

from .batching import collate
from .model import MultiTaskModel
from .tasks.data import CLASS_TYPES, TaskData
from .tasks.spec import MULTIPLE_CHOICE, REGRESSION, signed_gain


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


def eval_batches(task: TaskData, split: str, tokenizer, *, max_length: int, batch_size: int,
                 device: torch.device | str = "cpu") -> list[dict]:
    """A split's rows in evaluation batches of ``batch_size`` (the last may be smaller), collated as by
    :func:`~taskaffinity.batching.collate`: build them once and evaluate many models on them."""
    frame = task.split(split)
    return [collate(task.spec.type, frame.iloc[start : start + batch_size], tokenizer, max_length, device)
            for start in range(0, len(frame), batch_size)]


@torch.inference_mode()
def predict_batches(model: MultiTaskModel, task: str, batches, *, device, autocast=None) -> np.ndarray:
    """Head predictions of ``task`` over ``batches`` (any device; moved to ``device``), concatenated."""
    head = model.head(task)
    outputs = []
    for batch in batches:
        inputs = {k: v.to(device) for k, v in batch["inputs"].items()}
        with autocast() if autocast else torch.autocast("cpu", enabled=False):
            outputs.append(head.predict(model(task, inputs)).float().cpu())
    return torch.cat(outputs).numpy()


def predict(model: MultiTaskModel, task: TaskData, split: str, tokenizer, *, max_length: int,
            batch_size: int, device, autocast=None) -> np.ndarray:
    frame = task.split(split)
    batches = (collate(task.spec.type, frame.iloc[start : start + batch_size], tokenizer, max_length, device)
               for start in range(0, len(frame), batch_size))  # tokenised lazily: one batch in memory at a time
    return predict_batches(model, task.name, batches, device=device, autocast=autocast)


def evaluate(model: MultiTaskModel, tasks: dict[str, TaskData], tokenizer, *, splits=("validation",),
             max_length: int, batch_size: int, device, autocast=None, batches=None) -> pd.DataFrame:
    """Evaluate every task on the given splits; the model is left in the mode it had.

    Rows are ordered split by split, then task by task. ``batches``: optional
    ``batches(task, split)`` returning that split's :func:`eval_batches` (built once
    and reused across models, e.g. by a study worker); default: tokenised here.
    """
    was_training = model.training
    model.eval()
    rows = []
    try:
        for split in splits:
            for name, task in tasks.items():
                if batches is None:
                    predictions = predict(model, task, split, tokenizer, max_length=max_length,
                                          batch_size=batch_size, device=device, autocast=autocast)
                else:
                    predictions = predict_batches(model, name, batches(task, split), device=device,
                                                  autocast=autocast)
                metrics = score(task.spec.type, task.split(split)["label"].to_numpy(), predictions)
                baseline = baseline_scores(task, split)
                for metric, value in metrics.items():
                    rows.append({"task": name, "split": split, "metric": metric, "value": value,
                                 "baseline": baseline[metric], "primary": metric == task.spec.primary_metric})
    finally:
        model.train(was_training)
    return pd.DataFrame(rows)


def gain_over_baseline(frame: pd.DataFrame) -> pd.Series:
    """How much better than its baseline each row is (positive = better, for any metric direction)."""
    return signed_gain(frame["value"], frame["baseline"], frame["metric"])
