"""The joint loop's optimizer and learning-rate schedule across its two phases.

AdamW over encoder and heads at their own learning rates, without decay on biases and LayerNorm
(Muppet's recipe), plus any learned loss weights (uncertainty's log-variances) at
``weighting_lr``. During the head warm-up the heads (and learned weights) train at a constant
rate and the encoder is frozen; the schedule (``training.scheduler`` with ``warmup_ratio``) starts
at the first joint step and runs over ``training.steps``.
"""

from __future__ import annotations

import torch
from transformers import get_scheduler

from ..config import TrainConfig


def param_groups(model, training: TrainConfig) -> list[dict]:
    """Encoder and heads at their own learning rates; no decay on biases and LayerNorm.
    Groups 0-1: encoder (decay, no decay); 2-3: heads."""

    def split(named, lr):
        decay = [p for n, p in named if p.ndim > 1]
        no_decay = [p for n, p in named if p.ndim <= 1]
        return [
            {"params": decay, "lr": lr, "weight_decay": training.weight_decay},
            {"params": no_decay, "lr": lr, "weight_decay": 0.0},
        ]

    return split(list(model.shared_parameters()), training.lr) + split(list(model.head_parameters()), training.head_lr)


class PhasedOptimizer:
    """AdamW and its schedule; :meth:`begin` sets a step's learning rates, :meth:`step` updates."""

    def __init__(self, model, training: TrainConfig, learned: list):
        self.head_warmup_steps = training.head_warmup_steps
        extra = [{"params": learned, "lr": training.weighting_lr, "weight_decay": 0.0}] if learned else []
        self.optimizer = torch.optim.AdamW(param_groups(model, training) + extra)
        self.scheduler = get_scheduler(
            training.scheduler,
            self.optimizer,
            num_warmup_steps=round(training.warmup_ratio * training.steps),
            num_training_steps=training.steps,
        )

    def begin(self, step: int, phase: str) -> None:
        """Learning rates of step ``step``: constant for heads (and learned weights) in the warm-up,
        the schedule's from the first joint step on."""
        if phase == "head_warmup":  # no encoder update, schedule not started
            for group in self.optimizer.param_groups[2:]:
                group["lr"] = group["initial_lr"]
        elif step == self.head_warmup_steps + 1:
            for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
                group["lr"] = lr

    def step(self, phase: str) -> None:
        self.optimizer.step()
        if phase == "joint":
            self.scheduler.step()

    def encoder_lr(self, phase: str) -> float:
        """The encoder's rate of the step just taken (0 in the warm-up, where the encoder is frozen)."""
        return self.optimizer.param_groups[0]["lr"] if phase == "joint" else 0.0
