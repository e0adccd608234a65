"""MultiTaskModel on the tiny encoder: heads per type, shared parameters, per-task forward."""

import pytest
import torch
from conftest import tiny_config

from taskaffinity.api import build
from taskaffinity.training.batching import collate

ALL_TYPES = ["trec6", "vader_tweets", "wn_relation", "wn_define"]


def test_every_task_type_forwards_and_backpropagates_separately():
    config = tiny_config(ALL_TYPES)
    tasks, model, tokenizer = build(config, progress=False)
    assert [tasks[t].spec.type for t in ALL_TYPES] == [
        "classification",
        "regression",
        "pair_classification",
        "multiple_choice",
    ]
    shared = dict(model.shared_parameters())
    assert shared and all(name.startswith("encoder.") for name in shared)
    assert not any("heads" in name for name in shared)
    for name, task in tasks.items():
        batch = collate(task.spec.type, task.train.iloc[:5], tokenizer, 32, "cpu")
        loss, output = model.loss(name, batch)
        expected = {"regression": (5,), "multiple_choice": (5, 4)}.get(task.spec.type, (5, task.n_classes))
        assert output.shape == expected and torch.isfinite(loss)
        grads = torch.autograd.grad(
            loss, list(shared.values()) + list(model.head(name).parameters()), allow_unused=True
        )
        assert any(g is not None and g.abs().sum() > 0 for g in grads[: len(shared)])  # reaches the encoder
        other_heads = [p for n, p in model.head_parameters() if not n.startswith(f"heads.{name}.")]
        assert all(p.grad is None for p in other_heads)


def test_multiple_choice_heads_can_be_shared_per_family():
    config = tiny_config(["wn_define", {"name": "wn_define_twin", "duplicate_of": "wn_define"}])
    separate = build(config, progress=False)[1]
    assert separate.head_of == {"wn_define": "wn_define", "wn_define_twin": "wn_define_twin"}
    import dataclasses

    shared_cfg = dataclasses.replace(config, model=dataclasses.replace(config.model, share_multiple_choice_heads=True))
    shared = build(shared_cfg, progress=False)[1]
    assert shared.head_of["wn_define"] == shared.head_of["wn_define_twin"] == "mc__lexical"
    assert len(shared.heads) == 1


def test_regression_head_predicts_in_label_units():
    tasks, model, _ = build(tiny_config(["vader_tweets"]), progress=False)
    head = model.head("vader_tweets")
    mean, std = tasks["vader_tweets"].label_stats()
    assert float(head.mean) == pytest.approx(mean) and float(head.std) == pytest.approx(std)
    assert torch.allclose(head.predict(torch.zeros(3)), torch.full((3,), mean))
