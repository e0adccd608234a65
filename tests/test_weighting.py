"""Loss weighting schemes against hand computations, their weights in steps.parquet, and resume."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_config
from tests_support import StopAfter

from taskaffinity.api import build, train_study
from taskaffinity.training.callbacks import Callback, StepContext
from taskaffinity.training.loop import JointTrainer
from taskaffinity.training.weighting import DTPWeighting, dtp_weight, gradnorm_update, last_shared_layer

TASKS = ["trec6", "vader_tweets"]  # a classification and a regression task


class TaskGradients(Callback):
    """Keeps each task's loss and gradients, and the update in ``.grad`` before the optimizer step."""

    wants_task_gradients = True

    def on_step_begin(self, context, step, batches):
        self.grads, self.losses = {}, {}

    def on_task_gradients(self, context, step, task, loss, grads):
        self.grads[task], self.losses[task] = grads, float(loss)

    def on_before_optimizer_step(self, context, step, losses):
        self.update = [p.grad.clone() for _, p in context.trainable_parameters]
        self.weights = dict(context.step_context.loss_weights)


def trainer_for(config, callbacks=()):
    tasks, model, tokenizer = build(config, progress=False)
    return JointTrainer(config, tasks, model, tokenizer, callbacks=list(callbacks), progress=False)


def test_muppet_weights_are_the_batch_share_over_log_classes_in_steps_parquet(tmp_path):
    config = tiny_config(TASKS + ["sms_spam"], steps=2, eval_every=100)
    train_study(config, tmp_path, progress=False)
    steps = pd.read_parquet(tmp_path / "steps.parquet")
    scale = steps["task"].map({"trec6": math.log(6), "sms_spam": math.log(2), "vader_tweets": 1.0})
    np.testing.assert_array_equal(steps["weight"], steps["examples"] / 16 / scale)


def test_uncertainty_weights_loss_and_gradient_by_hand():
    """Kendall et al. 2018: weight c·exp(−v) (c = 1 classification, ½ regression), v's gradient
    −c·exp(−v)·ℓ + ½, the encoder's update Σ m_i ∇L_i, and AdamW's first step on v."""
    config = tiny_config(TASKS, steps=2, weighting="uncertainty", weighting_lr=0.01)
    seen = TaskGradients()
    trainer = trainer_for(config, [seen])
    v0 = {"trec6": 0.3, "vader_tweets": -0.2}
    trainer.weighting.load_state_dict({"log_variance": v0})
    trainer.train_step(1)
    scale = {"trec6": math.log(6), "vader_tweets": 1.0}
    c = {"trec6": 1.0, "vader_tweets": 0.5}
    expected = {t: c[t] * math.exp(-torch.tensor(v0[t]).item()) / scale[t] for t in TASKS}
    assert seen.weights == pytest.approx(expected, rel=1e-12)
    # the objective Σ c·exp(−v)·L/s + v/2, differentiated by autograd with the step's losses
    v = torch.tensor([v0[t] for t in TASKS], dtype=torch.float64, requires_grad=True)
    loss = torch.tensor([seen.losses[t] / scale[t] for t in TASKS], dtype=torch.float64)
    objective = (torch.tensor([c[t] for t in TASKS], dtype=torch.float64) * torch.exp(-v) * loss + v / 2).sum()
    objective.backward()
    params = trainer.weighting.log_variance
    got = torch.tensor([params[t].grad.item() for t in TASKS], dtype=torch.float64)
    torch.testing.assert_close(got, v.grad, rtol=1e-6, atol=1e-7)
    for i, update in enumerate(seen.update):
        expected_grad = sum(seen.weights[t] * seen.grads[t][i] for t in TASKS if seen.grads[t][i] is not None)
        torch.testing.assert_close(update, expected_grad, rtol=1e-5, atol=1e-8)
    # AdamW's first step moves each v by lr against the sign of its gradient (|g| >> eps)
    for k, t in enumerate(TASKS):
        assert params[t].item() == pytest.approx(v0[t] - 0.01 * math.copysign(1, v.grad[k].item()), abs=1e-6)


def test_gradnorm_update_on_a_two_task_toy_by_hand():
    """Task a halved its loss (L̃_a = 0.5), task b did not (L̃_b = 1); α = 1, lr = 0.1.

    r = L̃ / mean L̃ = (2/3, 4/3); Ḡ = (2 + 1) / 2 = 1.5; targets Ḡ·r = (1, 2).
    ∂L_grad/∂w = sign(G − target)·G/w = (+2, −1); w − 0.1·grad = (0.8, 1.1); renormalised to sum 2.
    """
    updated = gradnorm_update({"a": 1.0, "b": 1.0}, {"a": 2.0, "b": 1.0}, {"a": 0.5, "b": 1.0}, alpha=1.0, lr=0.1)
    assert updated == pytest.approx({"a": 0.8 * 2 / 1.9, "b": 1.1 * 2 / 1.9}, rel=1e-12)
    # α = 0: every task's target is the mean norm; the rates no longer matter
    flat = gradnorm_update({"a": 1.0, "b": 1.0}, {"a": 2.0, "b": 1.0}, {"a": 0.5, "b": 1.0}, alpha=0.0, lr=0.1)
    assert flat == pytest.approx({"a": 0.8 * 2 / 1.9, "b": 1.1 * 2 / 1.9}, rel=1e-12)


def test_gradnorm_in_the_trainer_balances_last_layer_norms_by_hand():
    config = tiny_config(TASKS, steps=3, weighting="gradnorm", gradnorm_alpha=1.5, weighting_lr=0.05)
    seen = TaskGradients()
    trainer = trainer_for(config, [seen])
    layer = last_shared_layer(trainer.model)
    position = next(k for k, (_, p) in enumerate(trainer.trainable_parameters) if p is layer)
    w, first = {t: 1.0 for t in TASKS}, {}
    for step in (1, 2, 3):
        trainer.train_step(step)
        # (the trainer's norms are float32: equal to the float64 hand computation to ~1e-7)
        assert seen.weights == pytest.approx(
            {t: w[t] * (1 / math.log(6) if t == "trec6" else 1.0) for t in TASKS}, rel=1e-5
        )
        raw = {t: seen.grads[t][position].norm().item() for t in TASKS}  # ‖∇_W L_i‖
        norms = {t: seen.weights[t] * raw[t] for t in TASKS}  # G_i = ‖m_i ∇_W L_i‖
        scaled = {t: seen.losses[t] / (math.log(6) if t == "trec6" else 1.0) for t in TASKS}
        for t in TASKS:
            first.setdefault(t, scaled[t])
        ratio = {t: scaled[t] / first[t] for t in TASKS}
        mean_ratio, mean_norm = sum(ratio.values()) / 2, sum(norms.values()) / 2
        new = {}
        for t in TASKS:
            target = mean_norm * (ratio[t] / mean_ratio) ** 1.5
            new[t] = w[t] - 0.05 * math.copysign(1, norms[t] - target) * norms[t] / w[t]
        w = {t: new[t] * 2 / sum(new.values()) for t in TASKS}
        assert trainer.weighting.w == pytest.approx(w, rel=1e-5)
    assert w["trec6"] != pytest.approx(1.0)  # the weights did move


def test_dtp_weights_from_given_kpis_by_hand():
    config = tiny_config(TASKS, weighting="dtp", dtp_gamma=2.0, dtp_smoothing=0.5)
    tasks, _, _ = build(config, progress=False)
    scheme = DTPWeighting(tasks, {"trec6": math.log(6), "vader_tweets": 1.0}, gamma=2.0, smoothing=0.5)
    context = StepContext(1, "joint", {"trec6": 8, "vader_tweets": 8}, {})
    assert scheme.weights(context) == {"trec6": 1 / math.log(6), "vader_tweets": 1.0}  # no KPI yet: λ = 1
    scheme.load_state_dict({"kpi": {"trec6": 0.5, "vader_tweets": 0.9}})
    # −(1 − κ)^γ log κ: 0.25·ln 2 and 0.01·(−ln 0.9)
    assert scheme.weights(context) == pytest.approx(
        {"trec6": 0.25 * math.log(2) / math.log(6), "vader_tweets": -0.01 * math.log(0.9)}, rel=1e-12
    )
    # KPI = 1 − L / L_chance, moving average with s = 0.5: trec6 at a quarter of chance loss, vader at 0.3
    scheme.observe(2, {"trec6": 0.25 * math.log(6), "vader_tweets": 0.3}, None)
    assert scheme.kpi == pytest.approx({"trec6": 0.5 * 0.5 + 0.5 * 0.75, "vader_tweets": 0.5 * 0.9 + 0.5 * 0.7})
    assert dtp_weight(1.0, 2.0) == 0.0  # a solved task weighs nothing


def test_equal_weights_are_one_over_the_loss_scale(tmp_path):
    config = tiny_config(TASKS, steps=2, eval_every=100, weighting="equal")
    train_study(config, tmp_path, progress=False)
    steps = pd.read_parquet(tmp_path / "steps.parquet")
    np.testing.assert_array_equal(steps["weight"], steps["task"].map({"trec6": 1 / math.log(6), "vader_tweets": 1.0}))


@pytest.mark.parametrize(
    "options",
    [{"weighting": "uncertainty"}, {"weighting": "gradnorm", "aggregator": "pcgrad"}, {"weighting": "dtp"}],
    ids=["uncertainty", "gradnorm+pcgrad", "dtp"],
)
def test_learned_weights_resume_bit_exactly(tmp_path, options):
    config = tiny_config(
        TASKS + ["sms_spam"], steps=6, head_warmup_steps=1, eval_every=3, checkpoint_every=3, **options
    )
    whole = train_study(config, tmp_path / "whole", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train_study(config, tmp_path / "cut", callbacks=[StopAfter(5)], progress=False)
    resumed = train_study(config, tmp_path / "cut", progress=False)
    a, b = whole.trainer, resumed.trainer
    assert a.weighting.state_dict() == b.weighting.state_dict()
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    steps = [pd.read_parquet(tmp_path / run / "steps.parquet").drop(columns="seconds") for run in ("whole", "cut")]
    pd.testing.assert_frame_equal(*steps)
    assert steps[0]["weight"].nunique() > 3  # the weights changed over the run
