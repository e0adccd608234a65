"""Per-task gradients split from one packed pass equal those of one pass per task."""

import dataclasses

import pytest
import torch
from conftest import replace_training, tiny_config
from torch import nn

from taskaffinity.api import build
from taskaffinity.training.callbacks import Callback
from taskaffinity.training.loop import JointTrainer
from taskaffinity.training.task_gradients import covered_modules

TASKS = ["trec6", "sms_spam", "vader_tweets", "wn_define", "wn_relation"]  # classification, regression, MC, pair


class KeepGradients(Callback):
    wants_task_gradients = True

    def __init__(self):
        self.grads, self.losses = {}, {}

    def on_task_gradients(self, trainer, step, task, loss, grads):
        self.grads[task] = [None if g is None else g.detach().clone() for g in grads]
        self.losses[task] = float(loss)


def run_step(config, packed: bool, steps: int = 2):
    config = replace_training(config, pack_tasks=packed)
    tasks, model, tokenizer = build(config, progress=False)
    keep = KeepGradients()
    trainer = JointTrainer(config, tasks, model, tokenizer, callbacks=[keep], progress=False)
    for step in range(1, steps + 1):
        trainer.train_step(step)
    names = [n for n, _ in trainer.trainable_parameters]
    return trainer, keep, names


@pytest.fixture(scope="module")
def both():
    config = tiny_config(TASKS, steps=4, eval_every=100)
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(
            config.model,
            head_dropout=0.0,
            overrides={**config.model.overrides, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
        ),
    )
    return run_step(config, packed=False), run_step(config, packed=True)


def test_packed_pass_gives_every_tasks_own_gradient(both):
    (per_task, keep_a, names), (packed, keep_b, _) = both
    assert packed.gradients.task_gradients is not None and packed.packs_tasks
    assert keep_a.grads.keys() == keep_b.grads.keys() == set(TASKS)
    for task in TASKS:
        assert keep_b.losses[task] == pytest.approx(keep_a.losses[task], rel=1e-5)
        for name, a, b in zip(names, keep_a.grads[task], keep_b.grads[task]):
            assert (a is None) == (b is None), (task, name)
            if a is not None:
                torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=f"{task} {name}")
    # the embedding matrices too: word rows, broadcast positions, token types
    assert any("word_embeddings" in n for n in names) and any("position_embeddings" in n for n in names)


def test_packed_pass_takes_the_same_training_step(both):
    """The summed update is the same (parameters themselves are not compared: AdamW divides
    gradients that are zero up to rounding, e.g. a multiple-choice scorer's bias, by their
    own tiny magnitude, which turns float noise into lr-sized differences)."""
    (per_task, _, names), (packed, _, _) = both
    for (name, a), (_, b) in zip(per_task.trainable_parameters, packed.trainable_parameters):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)
        assert b.requires_grad  # parameters are unfrozen again after the pass


def test_uncovered_encoders_fall_back_to_per_task_passes():
    encoder = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4), nn.LayerNorm(4))
    assert covered_modules(encoder) == list(encoder)
    encoder.append(nn.Conv1d(4, 4, 1))
    assert covered_modules(encoder) is None  # a parameter outside Linear / LayerNorm / Embedding
    tied = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    tied[1].weight = tied[0].weight
    assert covered_modules(tied) is None
