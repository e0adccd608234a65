"""Gradient aggregators in the joint trainer: torchjd's aggregation of the per-task matrix, the plain sum
unchanged, and bad options refused."""

import dataclasses

import pytest
import torch
import yaml
from conftest import tiny_config
from test_weighting import TaskGradients
from torchjd.aggregation import PCGrad, Sum, UPGrad

from taskaffinity.api import build
from taskaffinity.cli import main
from taskaffinity.errors import ConfigError
from taskaffinity.training.loop import JointTrainer

# two tasks whose encoder gradients conflict (negative cosine) at the first steps of this seed
TASKS = ["sms_spam", "vader_tweets"]


def no_dropout(config):
    return dataclasses.replace(
        config,
        model=dataclasses.replace(
            config.model,
            head_dropout=0.0,
            overrides={**config.model.overrides, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
        ),
    )


def run(config, steps, callbacks=(), aggregator=None):
    tasks, model, tokenizer = build(config, progress=False)
    trainer = JointTrainer(config, tasks, model, tokenizer, callbacks=list(callbacks), progress=False)
    if aggregator is not None:  # any torchjd aggregator, through the trainer's matrix path
        trainer.gradients.aggregator = aggregator
        trainer.set_callbacks(trainer.callbacks)
    for step in range(1, steps + 1):
        trainer.train_step(step)
    return trainer


def test_sum_is_todays_update_bit_for_bit():
    default = run(tiny_config(TASKS + ["trec6"], steps=3), 3)
    named = run(tiny_config(TASKS + ["trec6"], steps=3, aggregator="sum", weighting="muppet"), 3)
    assert named.gradients.path.__name__ == default.gradients.path.__name__ == "accumulate_per_task"
    assert named.gradients.task_rows is None  # no matrix: the plain backward of Σ m_i L_i
    for (name, a), (_, b) in zip(default.model.state_dict().items(), named.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_the_matrix_path_with_torchjds_sum_gives_the_plain_update():
    """Rows m_i ∇L_i of the encoder, summed by torchjd and written back, equal the plain backward's Σ."""
    config = tiny_config(TASKS + ["trec6"], steps=3)
    plain = run(config, 3)
    matrix = run(config, 3, aggregator=Sum())
    assert matrix.gradients.task_rows is not None and plain.gradients.task_rows is None
    for (name, a), (_, b) in zip(plain.model.state_dict().items(), matrix.model.state_dict().items()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize(
    "name, library, packed",
    [("upgrad", UPGrad, False), ("pcgrad", PCGrad, False), ("upgrad", UPGrad, True)],
    ids=["upgrad", "pcgrad", "upgrad-packed"],
)
def test_the_update_is_the_librarys_aggregation_of_conflicting_task_gradients(name, library, packed):
    config = no_dropout(tiny_config(TASKS, steps=2, aggregator=name, pack_tasks=packed))
    seen = TaskGradients()
    trainer = run(config, 1, [seen])
    assert trainer.gradients.path.__name__ == ("accumulate_packed_per_task" if packed else "accumulate_per_task")
    named = trainer.trainable_parameters
    shared = [k for k, (n, _) in enumerate(named) if n.startswith("encoder.")]
    rows = torch.stack([torch.cat([(seen.weights[t] * seen.grads[t][k]).reshape(-1) for k in shared]) for t in TASKS])
    cosine = torch.nn.functional.cosine_similarity(rows[0], rows[1], dim=0)
    assert cosine < 0, "the test needs conflicting task gradients"
    expected = library()(rows)
    update = torch.cat([seen.update[k].reshape(-1) for k in shared])
    torch.testing.assert_close(update, expected, rtol=1e-4, atol=1e-7)
    assert not torch.allclose(update, rows.sum(0), rtol=1e-3)  # the aggregator did change the update
    for k, (n, _) in enumerate(named):  # heads keep their own task's weighted gradient
        if n.startswith("heads."):
            own = [seen.weights[t] * seen.grads[t][k] for t in TASKS if seen.grads[t][k] is not None]
            torch.testing.assert_close(seen.update[k], sum(own), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(
    "training, named",
    [
        ({"weighting": "softmax"}, "training.weighting"),
        ({"aggregator": "nash"}, "training.aggregator"),
        ({"aggregator": "upgrad", "tasks_per_step": 1}, "training.tasks_per_step"),
        ({"dtp_smoothing": 1.0}, "training.dtp_smoothing"),
        ({"aggregator": "pcgrad", "batch_size": 1}, "training.batch_size is 1"),
        ({"gradnorm_alpha": -1}, "training.gradnorm_alpha must be a finite number >= 0, got -1"),
        ({"weighting_lr": float("inf")}, "training.weighting_lr must be a finite number > 0, got inf"),
    ],
)
def test_bad_options_exit_2_naming_the_option(tmp_path, capsys, training, named):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"tasks": TASKS, "training": training}))
    assert main(["train", str(config), "--out", str(tmp_path / "out")]) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_missing_torchjd_is_a_config_error_naming_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchjd" else real(name, *a))
    with pytest.raises(ConfigError, match=r"training.aggregator upgrad needs torchjd: .*taskaffinity\[aggregators\]"):
        tiny_config(TASKS, aggregator="upgrad")
    tiny_config(TASKS)  # the default needs no torchjd
