"""A recorder written against the trainer -> recorder contract only (taskaffinity/training/callbacks.py).

Per joint step and task it records the norm of the task's gradient on the shared encoder,
‖g_i‖ = ‖∇_θs L_i‖ (L_i the task's unweighted mean loss on its sub-batch), the loss and how many
examples of the task the step held. Large differences in ‖g_i‖ are what loss scaling and
gradient-balancing methods (GradNorm, Chen et al. 2018) act on; a task whose ‖g_i‖ dwarfs the
others dominates every shared update.

    from taskaffinity.api import train_joint_model
    from taskaffinity.config import load_config

    norms = GradientNorms()
    train_joint_model(load_config("studies/joint.yaml"), "runs/norms", callbacks=[norms])
    norms.frame()            # step, task, examples, loss, grad_norm

It runs unchanged whether the trainer backpropagates each task's sub-batch on its own (CPU
default) or splits per-task gradients from one packed pass (CUDA default): the contract gives
the same ``grads`` either way. Under torchrun each process sees its shard's gradient; this
example does not reduce them.
"""

from __future__ import annotations

import math

import pandas as pd

from taskaffinity.training.callbacks import Callback, TrainingContext


class GradientNorms(Callback):
    wants_task_gradients = True  # the trainer then hands each task's gradients to on_task_gradients

    def __init__(self):
        self.records: list[dict] = []

    def check(self, context: TrainingContext) -> None:
        self.n_shared = len(list(context.model.shared_parameters()))  # fixed before the first step

    def on_task_gradients(self, context: TrainingContext, step, task, loss, grads):
        step_context = context.step_context
        if step_context.phase != "joint":  # head warm-up: the encoder is frozen, grads hold heads only
            return
        # grads follow context.trainable_parameters: the shared encoder's parameters first
        squares = sum(float(g.detach().double().pow(2).sum()) for g in grads[: self.n_shared] if g is not None)
        self.records.append(
            {
                "step": step,
                "task": task,
                "examples": step_context.counts[task],
                "loss": float(loss),
                "grad_norm": math.sqrt(squares),
            }
        )

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.records, columns=["step", "task", "examples", "loss", "grad_norm"])

    # kept in the trainer's checkpoints: an interrupted run resumes with its records
    def state_dict(self) -> dict:
        return {"records": self.records}

    def load_state_dict(self, state: dict) -> None:
        self.records = list(state["records"])
