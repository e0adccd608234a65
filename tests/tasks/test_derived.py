"""One-vs-rest tasks derived from real multi-class catalog tasks."""

from __future__ import annotations

import pandas as pd
import pytest

from taskaffinity.config import config_from_dict
from taskaffinity.errors import ConfigError
from taskaffinity.tasks.data import SPLITS
from taskaffinity.tasks.entries import one_vs_rest_entries
from taskaffinity.tasks.prepare import prepare_tasks

DATA = {"max_train": 300, "max_eval": 100}


def _prepare(tasks: list, **data):
    config = config_from_dict({"tasks": tasks, "data": {**DATA, **data}}, where="<test>")
    return prepare_tasks(config.tasks, config.data, progress=False)


@pytest.fixture(scope="module")
def bbc():
    return _prepare(
        [
            "bbc_topic",
            "trec6",
            {"name": "bbc_sports", "one_vs_rest": "bbc_topic", "positive": "sports"},
            {"name": "bbc_tech_1to1", "one_vs_rest": "bbc_topic", "positive": "tech", "negatives_per_positive": 1},
            {"name": "bbc_tech_all", "one_vs_rest": "bbc_topic", "positive": "tech", "negatives_per_positive": None},
            {
                "name": "trec_hum",
                "one_vs_rest": "trec6",
                "positive": "HUM",
                "family": "people",
                "metric": "accuracy",
                "max_eval": 40,
            },
        ]
    )


def _positive_id(task, label):
    return task.label_names.index(label)


def test_binary_labels_and_metadata(bbc):
    task, original = bbc["bbc_sports"], bbc["bbc_topic"]
    assert task.n_classes == 2 and task.label_names == ("not_sports", "sports")
    assert task.spec.type == "classification" and task.spec.family == original.spec.family
    assert task.spec.primary_metric == "macro_f1" and task.spec.source == "one_vs_rest:bbc_topic#sports"
    for split in SPLITS:
        assert set(task.split(split)["label"]) == {0, 1}
        assert task.split(split)["label"].dtype.kind == "i"
    # Every training example of the class is a positive, and nothing else is.
    pos = original.train.loc[original.train["label"] == _positive_id(original, "sports"), "text"]
    assert sorted(task.train.loc[task.train["label"] == 1, "text"]) == sorted(pos)
    hum = bbc["trec_hum"]
    assert hum.spec.family == "people" and hum.spec.primary_metric == "accuracy"


def test_splits_are_the_originals(bbc):
    task, original = bbc["bbc_sports"], bbc["bbc_topic"]
    positive = _positive_id(original, "sports")
    for split in SPLITS:
        derived, source = task.split(split), original.split(split)
        truth = dict(zip(source["text"], (source["label"] == positive).astype(int)))
        assert set(derived["text"]) <= set(truth)
        assert all(truth[t] == y for t, y in zip(derived["text"], derived["label"]))
    # Validation and test keep their natural distribution: all of the original's rows.
    for split in ("validation", "test"):
        assert list(task.split(split)["text"]) == list(original.split(split)["text"])
    # A task-level max_eval caps validation and test further (still subsets).
    hum, trec = bbc["trec_hum"], bbc["trec6"]
    assert len(hum.validation) == 40 and set(hum.validation["text"]) <= set(trec.validation["text"])
    assert list(hum.train.columns) == list(trec.train.columns)


def test_negatives_per_positive(bbc):
    original = bbc["bbc_topic"]
    n_pos = int((original.train["label"] == _positive_id(original, "tech")).sum())
    for name, ratio in (("bbc_sports", 3), ("bbc_tech_1to1", 1)):
        counts = bbc[name].train["label"].value_counts()
        assert counts[0] <= ratio * counts[1]
    assert bbc["bbc_tech_1to1"].train["label"].value_counts().to_dict() == {1: n_pos, 0: n_pos}
    # null keeps every negative: the whole original training set.
    assert len(bbc["bbc_tech_all"].train) == len(original.train)
    assert bbc["bbc_tech_all"].train["label"].sum() == n_pos


def test_deterministic_and_seeded_by_name(bbc):
    again = _prepare(
        [
            "bbc_topic",
            {"name": "bbc_sports", "one_vs_rest": "bbc_topic", "positive": "sports"},
            {"name": "other_sports", "one_vs_rest": "bbc_topic", "positive": "sports"},
        ]
    )
    for split in SPLITS:
        pd.testing.assert_frame_equal(again["bbc_sports"].split(split), bbc["bbc_sports"].split(split))
    assert set(again["other_sports"].train["text"]) != set(again["bbc_sports"].train["text"])


def test_pair_task_and_int_label_from_yaml(tmp_path):
    tasks = _prepare(["wn_relation", {"name": "wn_antonym", "one_vs_rest": "wn_relation", "positive": "antonym"}])
    task = tasks["wn_antonym"]
    assert task.spec.type == "pair_classification" and task.spec.family == "lexical"
    assert list(task.train.columns) == ["text", "text_pair", "label"]
    # YAML reads `positive: 2` as an int; the file's labels are the strings "1", "2", "3".
    rows = [{"body": f"review number {i} says {'good bad fine'.split()[i % 3]}", "stars": i % 3 + 1} for i in range(90)]
    pd.DataFrame(rows).to_csv(tmp_path / "stars.csv", index=False)
    tasks = _prepare(
        [
            {"name": "stars", "file": str(tmp_path / "stars.csv"), "text_fields": ["body"], "label_field": "stars"},
            {"name": "two_stars", "one_vs_rest": "stars", "positive": 2},
        ]
    )
    assert tasks["two_stars"].label_names == ("not_2", "2")
    assert tasks["two_stars"].train["label"].sum() == (tasks["stars"].train["label"] == 1).sum()


@pytest.mark.parametrize(
    "entry, key",
    [
        ({"name": "d", "one_vs_rest": "nope", "positive": "x"}, "unknown task 'nope'"),
        ({"name": "d", "one_vs_rest": "vader_tweets", "positive": "x"}, "one_vs_rest needs a classification"),
        ({"name": "d", "one_vs_rest": "trec6"}, "needs 'positive'"),
        ({"name": "d", "one_vs_rest": "trec6", "positive": ["HUM"]}, "'positive' must be one label"),
        ({"name": "d", "catalog": "trec6", "positive": "HUM"}, "'positive' is only for one_vs_rest"),
        ({"name": "d", "duplicate_of": "trec6", "negatives_per_positive": 2}, "'negatives_per_positive' is only for"),
        (
            {"name": "d", "one_vs_rest": "trec6", "positive": "HUM", "negatives_per_positive": 0},
            "negatives_per_positive must",
        ),
        (
            {"name": "d", "one_vs_rest": "trec6", "positive": "HUM", "negatives_per_positive": "3"},
            "negatives_per_positive must",
        ),
        (
            {"name": "d", "one_vs_rest": "trec6", "positive": "HUM", "negatives_per_positive": True},
            "negatives_per_positive must",
        ),
        ({"name": "d", "one_vs_rest": "trec6", "positive": "HUM", "type": "regression"}, "'type' is fixed"),
    ],
)
def test_config_errors_name_task_and_key(entry, key):
    with pytest.raises(ConfigError) as info:
        config_from_dict({"tasks": ["trec6", "vader_tweets", entry]}, where="<test>")
    assert "task 'd'" in str(info.value) and key in str(info.value)


def test_original_must_come_first():
    with pytest.raises(ConfigError, match="task 'd': one_vs_rest names task 'trec6' listed after it"):
        config_from_dict({"tasks": [{"name": "d", "one_vs_rest": "trec6", "positive": "HUM"}, "trec6"]})


def test_unknown_positive_lists_labels():
    with pytest.raises(ConfigError) as info:
        _prepare(["trec6", {"name": "d", "one_vs_rest": "trec6", "positive": "PERSON"}])
    message = str(info.value)
    assert "task 'd'" in message and "positive 'PERSON'" in message and "'HUM'" in message and "'LOC'" in message


@pytest.mark.parametrize("name", ["bbc_topic", "trec6"])
def test_entries_cover_every_label(name):
    entries = one_vs_rest_entries(name)
    tasks = _prepare([name, *entries])
    original = tasks[name]
    assert sorted(e["positive"] for e in entries) == sorted(original.label_names)
    assert len({e["name"] for e in entries}) == len(entries) and all(e["one_vs_rest"] == name for e in entries)
    # Each training example of the original is a positive of exactly one derived task.
    assert sum(int(tasks[e["name"]].train["label"].sum()) for e in entries) == len(original.train)
    for entry in entries:
        assert tasks[entry["name"]].label_names[1] == entry["positive"]


def test_entries_filters():
    counts = _prepare(["trec6"], max_train=2000)["trec6"]
    per_label = counts.train["label"].value_counts()
    rare = counts.label_names[per_label.idxmin()]
    threshold = int(per_label.min()) + 1
    kept = {e["positive"] for e in one_vs_rest_entries("trec6", min_examples=threshold)}
    assert rare not in kept and kept == {counts.label_names[i] for i, n in per_label.items() if n >= threshold}
    assert [e["positive"] for e in one_vs_rest_entries("trec6", ["LOC", "HUM"])] == ["LOC", "HUM"]
    with pytest.raises(ConfigError, match="PERSON"):
        one_vs_rest_entries("trec6", ["PERSON"])
    with pytest.raises(ConfigError, match="vader_tweets"):
        one_vs_rest_entries("vader_tweets")
    assert len(one_vs_rest_entries("trec50")) > 30  # the fine labels give many real binary tasks
