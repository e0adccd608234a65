"""The joint trainer: hooks, per-task gradients, warm-up, determinism and resume."""

import dataclasses

import pandas as pd
import pytest
import torch
from conftest import replace_training, tiny_config
from tests_support import StopAfter

from taskaffinity.api import build, train_study
from taskaffinity.training.callbacks import Callback
from taskaffinity.training.loop import JointTrainer

TASKS = ["trec6", "sms_spam", "vader_tweets", "wn_define"]


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Recorder(Callback):
    """Checks that per-task gradients add up to the update the optimizer applies."""

    wants_task_gradients = True

    def __init__(self):
        self.calls, self.mismatch = [], []
        self.grads = {}

    def on_step_begin(self, trainer, step, batches):
        self.calls.append(("begin", step))
        self.grads, self.sizes = {}, {t: len(b["labels"]) for t, b in batches.items()}

    def on_task_gradients(self, trainer, step, task, loss, grads):
        self.calls.append(("task", step, task))
        self.grads[task] = grads

    def on_before_optimizer_step(self, trainer, step, losses):
        self.calls.append(("before", step))
        total = sum(self.sizes.values())
        for i, (name, p) in enumerate(trainer.trainable_parameters):
            expected = sum(
                g[i] * self.sizes[t] / total / trainer.loss_scales[t] for t, g in self.grads.items() if g[i] is not None
            )
            if not torch.allclose(p.grad, expected, atol=1e-7, rtol=1e-5):
                self.mismatch.append((step, name))

    def on_after_optimizer_step(self, trainer, step, losses):
        self.calls.append(("after", step))


def test_hooks_see_per_task_gradients_that_sum_to_the_update():
    config = tiny_config(TASKS, steps=3, eval_every=100)
    tasks, model, tokenizer = build(config, progress=False)
    recorder = Recorder()
    JointTrainer(config, tasks, model, tokenizer, callbacks=[recorder], progress=False).train()
    assert recorder.mismatch == []
    step1 = [c for c in recorder.calls if c[1] == 1]
    assert step1[0] == ("begin", 1) and step1[-2:] == [("before", 1), ("after", 1)]
    assert {c[2] for c in step1 if c[0] == "task"} == set(TASKS)  # every task in every update


def test_packed_step_gives_the_per_task_passes_gradient():
    """One encoder pass over all tasks (the GPU default) computes the same update as one pass per task."""
    config = tiny_config(TASKS + ["wn_relation"], steps=3, eval_every=100)
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(
            config.model,
            head_dropout=0.0,
            overrides={**config.model.overrides, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
        ),
    )
    grads = {}
    for packed in (False, True):
        tasks, model, tokenizer = build(replace_training(config, pack_tasks=packed), progress=False)
        trainer = JointTrainer(replace_training(config, pack_tasks=packed), tasks, model, tokenizer, progress=False)
        assert trainer.packs_tasks is packed
        trainer.train_step(1)  # head warm-up off: the encoder trains too
        grads[packed] = {name: p.grad.clone() for name, p in trainer.trainable_parameters if p.grad is not None}
    assert grads[True].keys() == grads[False].keys() and any(n.startswith("encoder.") for n in grads[True])
    for name, grad in grads[False].items():
        torch.testing.assert_close(grads[True][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_head_warmup_freezes_the_encoder():
    config = tiny_config(TASKS, steps=1, head_warmup_steps=4, eval_every=100)
    tasks, model, tokenizer = build(config, progress=False)
    before = params(model)
    trainer = JointTrainer(config, tasks, model, tokenizer, progress=False)
    for step in range(1, 5):
        trainer.train_step(step)
    after = params(model)
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("encoder."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("heads."))
    trainer.train_step(5)  # the joint phase moves the encoder
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if k.startswith("encoder."))


def test_same_seed_same_run_and_eval_rows_for_every_metric():
    config = tiny_config(TASKS, steps=4, eval_every=2)
    runs = []
    for _ in range(2):
        result = train_study(config, progress=False)
        runs.append((params(result.trainer.model), result.metrics))
    (a, metrics), (b, _) = runs
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert set(zip(metrics["task"], metrics["metric"])) == {
        ("trec6", "accuracy"),
        ("trec6", "macro_f1"),
        ("sms_spam", "accuracy"),
        ("sms_spam", "macro_f1"),
        ("vader_tweets", "pearson"),
        ("vader_tweets", "mae"),
        ("wn_define", "accuracy"),
    }
    assert metrics.groupby("task")["primary"].sum().eq(1).all()


def test_interrupted_run_resumes_bit_exactly(tmp_path):
    config = tiny_config(TASKS, steps=7, head_warmup_steps=2, eval_every=3, checkpoint_every=3)
    whole = train_study(config, tmp_path / "whole", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train_study(config, tmp_path / "cut", callbacks=[StopAfter(5)], progress=False)
    assert (tmp_path / "cut" / "checkpoints" / "latest").read_text().strip() == "step-000003"
    resumed = train_study(config, tmp_path / "cut", progress=False)
    a, b = params(whole.trainer.model), params(resumed.trainer.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    for log in ("steps.parquet", "eval.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "whole" / log).drop(columns="seconds", errors="ignore"),
            pd.read_parquet(tmp_path / "cut" / log).drop(columns="seconds", errors="ignore"),
        )


def test_resume_refuses_a_different_config(tmp_path):
    from taskaffinity.errors import ConfigError

    config = tiny_config(["trec6", "sms_spam"], steps=3)
    train_study(config, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="different configuration"):
        train_study(replace_training(config, lr=1e-3), tmp_path, progress=False)
