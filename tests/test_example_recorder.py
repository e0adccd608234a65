"""examples/recorders/gradient_norms.py, a recorder written against the callback contract only,
gives the known answer on both gradient paths: per-task passes (CPU default) and per-task
gradients split from one packed pass (CUDA default, forced here on CPU)."""

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from conftest import replace_training, tiny_config
from tests_support import load_script

from taskaffinity.training.callbacks import Callback
from taskaffinity.training.joint import train_joint_model

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "recorders" / "gradient_norms.py"
TASKS = ["trec6", "sms_spam", "vader_tweets"]  # classification (6 and 2 classes), regression


@pytest.fixture(scope="module")
def example():
    return load_script(EXAMPLE)


class ExplicitNorms(Callback):
    """‖∇_θs L_i‖ computed here from each step's sub-batches, before the trainer's own backward."""

    def __init__(self):
        self.norms = {}

    def on_step_begin(self, context, step, batches):
        if context.step_context.phase != "joint":
            return
        params = [p for _, p in context.model.shared_parameters()]
        for task, batch in batches.items():
            loss, _ = context.model.loss(task, batch)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            self.norms[step, task] = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads if g is not None))


@pytest.fixture(scope="module")
def config():
    config = tiny_config(TASKS, steps=3, head_warmup_steps=1, eval_every=100, checkpoint_every=100)
    return dataclasses.replace(
        config,
        model=dataclasses.replace(  # no dropout: the explicit pass sees the same net
            config.model,
            head_dropout=0.0,
            overrides={**config.model.overrides, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
        ),
    )


def run(example, config, packed: bool):
    norms, explicit = example.GradientNorms(), ExplicitNorms()
    result = train_joint_model(replace_training(config, pack_tasks=packed), callbacks=[norms, explicit], progress=False)
    assert result.trainer.packs_tasks is packed
    return norms.frame(), explicit.norms


def test_per_task_passes_give_the_explicit_gradient_norms(example, config):
    frame, explicit = run(example, config, packed=False)
    assert sorted(frame["step"].unique()) == [2, 3, 4]  # the joint steps after one warm-up step
    assert set(frame["task"]) == set(TASKS)
    assert frame.groupby("step")["examples"].sum().eq(config.training.batch_size).all()
    assert (frame["grad_norm"] > 0).all()
    for row in frame.itertuples():
        assert row.grad_norm == pytest.approx(explicit[row.step, row.task], rel=1e-5), (row.step, row.task)


def test_packed_pass_gives_the_same_norms(example, config):
    per_task, _ = run(example, config, packed=False)
    packed, explicit = run(example, config, packed=True)
    assert packed[["step", "task", "examples"]].equals(per_task[["step", "task", "examples"]])
    for a, b in zip(per_task.itertuples(), packed.itertuples()):
        assert b.loss == pytest.approx(a.loss, rel=1e-4)
        assert b.grad_norm == pytest.approx(a.grad_norm, rel=1e-4), (a.step, a.task)
        assert b.grad_norm == pytest.approx(explicit[b.step, b.task], rel=1e-4)
