"""Caps that keep every class, and tasks that share their inputs (one text, several tasks)."""

import logging
from pathlib import Path

import pandas as pd
import pytest

from taskaffinity.config import DataConfig, config_from_dict
from taskaffinity.errors import ConfigError, TaskDataError
from taskaffinity.tasks.prepare import prepare_tasks
from taskaffinity.tasks.splits import split_frame, stratified_cap
from taskaffinity.tasks.table import task_table
from taskaffinity.tasks.text import example_key, text_key

INPUTS = Path(__file__).resolve().parents[1] / "data" / "inputs"
SPLITS = ("train", "validation", "test")


def prepare(tasks, folder=INPUTS, **data):
    config = config_from_dict({"tasks": tasks, "data": data}, where="<test>", base_dir=Path(folder))
    return prepare_tasks(config.tasks, config.data, progress=False)


def split_of(task) -> dict[str, str]:
    return {text: split for split in SPLITS for text in task.split(split)["text"]}


def labelled(n_per_class: dict) -> pd.DataFrame:
    return pd.DataFrame(
        [(f"{label} example {i}", label) for label, n in n_per_class.items() for i in range(n)],
        columns=["text", "label"],
    )


# -- caps ---------------------------------------------------------------------------------------
def test_cap_keeps_a_row_of_every_class_when_it_can():
    capped = stratified_cap(labelled({"a": 30, "b": 9, "c": 1}), 6, seed=0, stratify=True)
    assert capped["label"].value_counts().to_dict() == {"a": 4, "b": 1, "c": 1}
    capped = stratified_cap(labelled({"a": 200, "b": 10}), 8, seed=0, stratify=True)
    assert capped["label"].value_counts().to_dict() == {"a": 7, "b": 1}
    # proportions are kept when every class gets its share anyway
    assert stratified_cap(labelled({"a": 900, "b": 90, "c": 10}), 100, seed=0, stratify=True)[
        "label"
    ].value_counts().to_dict() == {"a": 90, "b": 9, "c": 1}


def test_per_task_caps_keep_rare_classes():
    clauses = prepare([{"name": "clauses", "file": "clauses.csv", "max_train": 6}])["clauses"]
    assert set(clauses.train["label"].map(dict(enumerate(clauses.label_names)))) == {
        "payment",
        "salvage",
        "termination",
    }
    assert len(clauses.train) == 6
    tickets = prepare([{"name": "tickets", "file": "tickets.csv", "max_train": 8}])["tickets"]
    assert tickets.label_names == ("account", "security") and len(tickets.train) == 8
    assert tickets.train["label"].value_counts().sort_index().tolist() == [7, 1]


def test_a_cap_below_the_number_of_classes_says_which_classes_it_removes(tmp_path, caplog):
    labelled({f"c{k}": 10 for k in range(6)}).to_csv(tmp_path / "six.csv", index=False)
    with pytest.raises(
        TaskDataError,
        match=r"task 'six': max_train 4 is smaller than the 6 classes of its train "
        r"split: the cap removes class\(es\) .*; raise max_train to at least 6",
    ):
        prepare([{"name": "six", "file": "six.csv", "max_train": 4}], folder=tmp_path)
    with caplog.at_level(logging.WARNING, logger="taskaffinity"):
        task = prepare([{"name": "six", "file": "six.csv", "max_eval": 3}], folder=tmp_path, test_fraction=0.3)["six"]
    assert len(task.test) == 3
    assert "task 'six': max_eval 3 is smaller than the 6 classes of its test split: the cap removes" in caplog.text


# -- tasks sharing inputs --------------------------------------------------------------------------
TWO_COLUMNS = [
    {"name": "sentiment", "file": "reviews_multilabel.csv", "label_field": "sentiment"},
    {"name": "topic", "file": "reviews_multilabel.csv", "label_field": "topic"},
]


def test_shared_inputs_land_in_the_same_split_of_every_task_and_none_is_lost():
    tasks = prepare(TWO_COLUMNS)
    sentiment, topic = split_of(tasks["sentiment"]), split_of(tasks["topic"])
    assert len(sentiment) == len(topic) == 60  # nothing thrown away
    assert sentiment == topic  # nothing of one task's train is in the other's validation or test
    for task in tasks.values():
        assert task.stats["shared_texts"] == 60 and task.stats.get("removed_shared", 0) == 0
        counts = {s: len(task.split(s)) for s in SPLITS}
        assert counts == {"train": 48, "validation": 6, "test": 6}
        for split in SPLITS:  # stratified: every class in every split
            assert task.split(split)["label"].nunique() == len(task.label_names)
    table = task_table(tasks)
    assert table["shared_texts"].tolist() == [60, 60] and table["removed_shared"].tolist() == [0, 0]


def test_owner_takes_it_stays_available_and_deduplicate_is_its_old_name():
    for data in ({"shared_inputs": "one_task"}, {"deduplicate": True}):
        tasks = prepare(TWO_COLUMNS, **data)
        a, b = split_of(tasks["sentiment"]), split_of(tasks["topic"])
        assert not set(a) & set(b) and len(a) + len(b) == 60
        assert tasks["sentiment"].stats["removed_shared"] + tasks["topic"].stats["removed_shared"] == 60
    independent = prepare(TWO_COLUMNS, deduplicate=False)
    assert DataConfig(deduplicate=False).shared_inputs == "independent"
    assert len(split_of(independent["sentiment"])) == 60
    with pytest.raises(ConfigError, match="data.deduplicate is the old name of data.shared_inputs"):
        prepare(TWO_COLUMNS, deduplicate=True, shared_inputs="same_split")
    with pytest.raises(
        ConfigError,
        match=r"<test>: data.shared_inputs must be one of same_split, one_task, "
        r"independent, got 'merge'",
    ):
        prepare(TWO_COLUMNS, shared_inputs="merge")


def test_catalog_trec6_and_trec50_share_every_question_in_the_same_split():
    tasks = prepare(["trec6", "trec50"], max_train=None, max_eval=None)
    six, fifty = split_of(tasks["trec6"]), split_of(tasks["trec50"])
    common = set(six) & set(fifty)  # trec6 keeps one question whose fine labels conflict
    assert len(common) == len(fifty) > 5000 and all(six[t] == fifty[t] for t in common)
    assert tasks["trec50"].stats["shared_texts"] == len(fifty)
    # every fine class keeps a training row; the big ones are split in proportion
    trec50 = tasks["trec50"]
    assert set(trec50.train["label"]) == set(range(len(trec50.label_names)))
    assert 0.07 < len(trec50.test) / len(six) < 0.13


def test_a_shared_text_keeps_the_split_another_task_was_given(tmp_path):
    frame = labelled({"x": 30, "y": 30})
    frame.iloc[:40].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[40:50].to_csv(tmp_path / "val.csv", index=False)
    frame.iloc[50:].to_csv(tmp_path / "test.csv", index=False)
    frame.assign(label=frame["label"].map({"x": "p", "y": "q"})).to_csv(tmp_path / "all.csv", index=False)
    tasks = prepare(
        [
            {"name": "given", "train_file": "train.csv", "validation_file": "val.csv", "test_file": "test.csv"},
            {"name": "auto", "file": "all.csv"},
        ],
        folder=tmp_path,
    )
    assert split_of(tasks["auto"]) == split_of(tasks["given"])


def test_splits_of_shared_texts_do_not_depend_on_unrelated_tasks():
    alone = prepare(TWO_COLUMNS)
    with_other = prepare(TWO_COLUMNS + [{"name": "senti", "file": "senti.csv"}])
    assert split_of(alone["topic"]) == split_of(with_other["topic"])
    assert with_other["senti"].stats["shared_texts"] == 0


def test_a_rare_class_made_only_of_shared_texts_keeps_a_training_row(tmp_path):
    rows = [(f"common text {i}", "a", "u") for i in range(40)] + [("the one rare text", "rare", "u")]
    rows += [(f"other text {i}", "b", "v") for i in range(40)]
    pd.DataFrame(rows, columns=["text", "first", "second"]).to_csv(tmp_path / "f.csv", index=False)
    for seed in range(5):
        tasks = prepare(
            [
                {"name": "one", "file": "f.csv", "label_field": "first"},
                {"name": "two", "file": "f.csv", "label_field": "second"},
            ],
            folder=tmp_path,
            split_seed=seed,
        )
        assert split_of(tasks["one"])["the one rare text"] == "train" == split_of(tasks["two"])["the one rare text"]


def test_split_frame_without_shared_rows_is_the_plain_stratified_split():
    frame = labelled({"a": 100, "b": 50, "c": 2, "d": 1})
    plain = split_frame(frame, val_fraction=0.1, test_fraction=0.2, seed=5, stratify=True)
    counts = {k: v["label"].value_counts().to_dict() for k, v in plain.items()}
    assert counts["validation"] == {"a": 10, "b": 5} and counts["test"] == {"a": 20, "b": 10}
    assert counts["train"] == {"a": 70, "b": 35, "c": 2, "d": 1}
    fixed = [None] * len(frame)
    fixed[0], fixed[1] = "test", "validation"  # two "a" rows placed by another task
    placed = split_frame(frame, val_fraction=0.1, test_fraction=0.2, seed=5, stratify=True, fixed=fixed)
    assert frame["text"][0] in set(placed["test"]["text"]) and frame["text"][1] in set(placed["validation"]["text"])
    assert {k: len(v) for k, v in placed.items()} == {k: len(v) for k, v in plain.items()}


# -- what counts as the same text -----------------------------------------------------------------
def test_text_identity_within_and_across_tasks():
    frame = pd.DataFrame(
        {
            "text": [
                "Caf\u00e9 au lait!",
                "cafe\u0301 au lait",
                "ＣＡＦÉ AU LAIT",
                "NULL",
                "null",
                "\U0001f600",
                "\U0001f622",
            ]
        }
    )
    across = text_key(frame).tolist()
    assert across[0] == across[1] == across[2] and across[3] == across[4] and across[5] != across[6]
    within = example_key(frame).tolist()
    assert within[0] != within[1]  # punctuation differs
    assert within[3] != within[4] and within[5] != within[6]  # case and symbols are kept inside a task
    nfc_nfd = example_key(pd.DataFrame({"text": ["caf\u00e9", "cafe\u0301"]})).tolist()
    assert nfc_nfd[0] == nfc_nfd[1]
