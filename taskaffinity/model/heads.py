"""Task heads on top of the pooled encoder output, and their losses.

Each head maps pooled features to a prediction and owns its loss, so the model
and trainer never branch on task type.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..tasks.spec import CLASSIFICATION, MULTIPLE_CHOICE, PAIR_CLASSIFICATION, REGRESSION


class ClassificationHead(nn.Module):
    """Single-text or pair classification: a linear layer over the pooled [text (, pair)]."""

    def __init__(self, hidden: int, n_classes: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(pooled))

    def loss(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output.float(), labels)

    def predict(self, output: torch.Tensor) -> torch.Tensor:
        return output.argmax(-1)


class RegressionHead(nn.Module):
    """Scalar regression trained on standardised targets (mean/std of train kept as buffers)."""

    def __init__(self, hidden: int, dropout: float, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, 1)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(pooled)).squeeze(-1)

    def loss(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output.float(), (labels - self.mean) / self.std)

    def predict(self, output: torch.Tensor) -> torch.Tensor:
        return output.float() * self.std + self.mean


class MultipleChoiceHead(nn.Module):
    """Scores each (question, choice) encoding; softmax over the choices."""

    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, 1)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        # pooled: (batch, choices, hidden) -> logits (batch, choices)
        return self.out(self.dropout(pooled)).squeeze(-1)

    loss = ClassificationHead.loss
    predict = ClassificationHead.predict


def build_head(task_type: str, hidden: int, n_classes: int, dropout: float, *, label_stats=(0.0, 1.0)) -> nn.Module:
    if task_type in (CLASSIFICATION, PAIR_CLASSIFICATION):
        return ClassificationHead(hidden, n_classes, dropout)
    if task_type == REGRESSION:
        return RegressionHead(hidden, dropout, *label_stats)
    if task_type == MULTIPLE_CHOICE:
        return MultipleChoiceHead(hidden, dropout)
    raise ValueError(f"unknown task type '{task_type}'")


def loss_scale(task_type: str, n_classes: int) -> float:
    """Muppet's loss scaling divisor: log(n_classes) for classifiers, 1 for regression.

    Aghajanyan et al. (2021), Eq. 1: scaling each task's loss by 1/log(n) evens out
    the loss magnitude of a uniform predictor across label spaces.
    """
    return math.log(n_classes) if task_type != REGRESSION and n_classes >= 2 else 1.0
