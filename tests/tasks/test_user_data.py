"""User-brought data: formats, column mapping, and every kind of bad input."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from taskaffinity.config import DataConfig, config_from_dict
from taskaffinity.errors import TaskDataError
from taskaffinity.tasks.prepare import prepare_tasks

REVIEWS = [
    (f"review number {i} says {'good' if i % 3 else 'bad'} things", "pos" if i % 3 else "neg") for i in range(60)
]


def prepare(tmp_path, *tasks, **data):
    config = config_from_dict({"tasks": list(tasks)}, where="<test>", base_dir=tmp_path)
    return prepare_tasks(config.tasks, DataConfig(**data), progress=False)


def write_csv(path, rows, columns=("body", "stars")):
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_formats_and_column_mapping(tmp_path, suffix):
    frame = pd.DataFrame(REVIEWS, columns=["body", "stars"])
    path = tmp_path / f"reviews{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in frame.to_dict("records")))
    else:
        frame.to_parquet(path)
    task = prepare(tmp_path, {"name": "r", "file": path.name, "text_fields": "body", "label_field": "stars"})["r"]
    assert task.label_names == ("neg", "pos")
    assert len(task.train) + len(task.validation) + len(task.test) == 60
    assert set(task.train.columns) == {"text", "label"}
    # every class stays in train, and the split is stratified
    assert set(task.validation["label"]) <= set(task.train["label"])


def test_given_splits_are_used_as_is(tmp_path):
    write_csv(tmp_path / "a.csv", REVIEWS[:40])
    write_csv(tmp_path / "b.csv", REVIEWS[40:50])
    write_csv(tmp_path / "c.csv", REVIEWS[50:])
    task = prepare(
        tmp_path,
        {
            "name": "r",
            "train_file": "a.csv",
            "validation_file": "b.csv",
            "test_file": "c.csv",
            "text_fields": ["body"],
            "label_field": "stars",
        },
    )["r"]
    assert (len(task.train), len(task.validation), len(task.test)) == (40, 10, 10)


def test_missing_file(tmp_path):
    with pytest.raises(TaskDataError, match=r"task 'r': file not found: .*nope\.csv"):
        prepare(tmp_path, {"name": "r", "file": "nope.csv"})


def test_missing_column(tmp_path):
    write_csv(tmp_path / "a.csv", REVIEWS)
    with pytest.raises(TaskDataError, match=r"task 'r': column 'text' not found in .*a\.csv \(columns: body, stars\)"):
        prepare(tmp_path, {"name": "r", "file": "a.csv", "label_field": "stars"})


def test_empty_task(tmp_path):
    write_csv(tmp_path / "a.csv", [])
    with pytest.raises(TaskDataError, match=r"task 'r': no examples in .*a\.csv"):
        prepare(tmp_path, {"name": "r", "file": "a.csv", "text_fields": "body", "label_field": "stars"})


def test_single_class(tmp_path):
    write_csv(tmp_path / "a.csv", [(t, "pos") for t, _ in REVIEWS])
    with pytest.raises(TaskDataError, match=r"task 'r': only one class \('pos'\)"):
        prepare(tmp_path, {"name": "r", "file": "a.csv", "text_fields": "body", "label_field": "stars"})


def test_validation_label_unseen_in_train(tmp_path):
    write_csv(tmp_path / "a.csv", REVIEWS[:40])
    write_csv(tmp_path / "b.csv", REVIEWS[40:49] + [("a surprising one", "meh")])
    write_csv(tmp_path / "c.csv", REVIEWS[50:])
    with pytest.raises(
        TaskDataError, match=r"task 'r': labels \['meh'\] in the validation split .* never occur in train"
    ):
        prepare(
            tmp_path,
            {
                "name": "r",
                "train_file": "a.csv",
                "validation_file": "b.csv",
                "test_file": "c.csv",
                "text_fields": "body",
                "label_field": "stars",
            },
        )


def test_nan_regression_label(tmp_path):
    rows = [(t, float(i)) for i, (t, _) in enumerate(REVIEWS)]
    rows[7] = (rows[7][0], float("nan"))
    write_csv(tmp_path / "a.csv", rows)
    # the 8th data row is line 9 in an editor (the header is line 1)
    with pytest.raises(TaskDataError, match=r"task 'r': missing label in .*a\.csv, line 9 \(an empty cell or null\)"):
        prepare(
            tmp_path,
            {"name": "r", "file": "a.csv", "type": "regression", "text_fields": "body", "label_field": "stars"},
        )


def test_non_numeric_regression_label(tmp_path):
    rows = [(t, str(i)) for i, (t, _) in enumerate(REVIEWS)]
    rows[3] = (rows[3][0], "three")
    write_csv(tmp_path / "a.csv", rows)
    with pytest.raises(TaskDataError, match=r"line 5 is not a finite number: 'three'"):
        prepare(
            tmp_path,
            {"name": "r", "file": "a.csv", "type": "regression", "text_fields": "body", "label_field": "stars"},
        )


def test_non_utf8_text(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"body,stars\nfine,pos\n" + "caf\xe9 cr\xe8me,neg\n".encode("latin-1"))
    with pytest.raises(TaskDataError, match=r"task 'r': .*a\.csv is not valid UTF-8 \(byte \d+, line 3\)"):
        prepare(tmp_path, {"name": "r", "file": "a.csv", "text_fields": "body", "label_field": "stars"})


def test_unknown_format(tmp_path):
    (tmp_path / "a.xlsx").write_text("x")
    with pytest.raises(TaskDataError, match="unknown format '.xlsx'"):
        prepare(tmp_path, {"name": "r", "file": "a.xlsx"})


def test_multiple_choice_rows_are_checked(tmp_path):
    rows = [{"q": f"question {i}", "options": ["a", "b", "c"], "answer": i % 3} for i in range(30)]
    rows[4]["answer"] = 5
    path = tmp_path / "mc.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(TaskDataError, match=r"mc\.jsonl, line 5 must be a choice index 0\.\.2, got 5"):
        prepare(
            tmp_path,
            {
                "name": "mc",
                "file": "mc.jsonl",
                "type": "multiple_choice",
                "text_fields": "q",
                "choices_field": "options",
                "label_field": "answer",
            },
        )


def test_conflicting_and_duplicate_texts_are_dropped(tmp_path):
    rows = REVIEWS + [REVIEWS[0], (REVIEWS[1][0], "neg" if REVIEWS[1][1] == "pos" else "pos")]
    write_csv(tmp_path / "a.csv", rows)
    task = prepare(tmp_path, {"name": "r", "file": "a.csv", "text_fields": "body", "label_field": "stars"})["r"]
    texts = pd.concat([task.train, task.validation, task.test])["text"]
    assert len(texts) == 59 and texts.is_unique and REVIEWS[1][0] not in set(texts)


def test_hub_dataset_unreachable_gives_clear_error(tmp_path):
    """Offline hub: the CLI names the task and dataset, exits 2, writes nothing."""
    pytest.importorskip("datasets")
    study = tmp_path / "hub.yaml"
    study.write_text("tasks: [{name: sst2, hf: nyu-mll/glue, hf_config: sst2, text_fields: sentence}]\n")
    # Offline flags are read at import time: a fresh process sees them.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(
        [sys.executable, "-m", "taskaffinity.cli", "train", str(study), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 2
    assert "task 'sst2': could not load Hugging Face dataset 'nyu-mll/glue' (config 'sst2')" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def hub_dataset(test_labels):
    import datasets

    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["negative", "positive"])}
    )
    train = {
        "sentence": [f"sentence {i} is {'good' if i % 2 else 'bad'}" for i in range(60)] + [None],
        "label": [i % 2 for i in range(60)] + [1],
    }
    validation = {"sentence": [f"held out {i}" for i in range(10)], "label": [i % 2 for i in range(10)]}
    test = {"sentence": [f"hidden {i}" for i in range(10)], "label": test_labels}
    return datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict(rows, features=features)
            for name, rows in (("train", train), ("validation", validation), ("test", test))
        }
    )


def test_hub_class_labels_become_names_and_an_unlabelled_test_split_is_carved_from_train(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets, "load_dataset", lambda path, config=None: hub_dataset([-1] * 10))  # GLUE's test
    task = prepare(tmp_path, {"name": "sst", "hf": "glue", "hf_config": "sst2", "text_fields": "sentence"})["sst"]
    assert task.label_names == ("negative", "positive")
    assert len(task.validation) == 10 and set(task.validation["text"]) == {f"held out {i}" for i in range(10)}
    assert len(task.test) == 6 and not set(task.test["text"]) & set(task.train["text"])  # 10% of train's 60
    assert task.stats["dropped_empty"] == 1  # the null sentence
    monkeypatch.setattr(datasets, "load_dataset", lambda path, config=None: hub_dataset([i % 2 for i in range(10)]))
    task = prepare(tmp_path, {"name": "sst", "hf": "glue", "text_fields": "sentence"})["sst"]
    assert {len(task.train), len(task.validation), len(task.test)} == {60, 10}


def test_multiple_choice_splits_must_agree_on_the_number_of_choices(tmp_path):
    for name, k in (("a", 3), ("b", 3), ("c", 4)):
        rows = [
            {"q": f"{name} question {i}", "options": [f"o{j}" for j in range(k)], "answer": i % k} for i in range(12)
        ]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(TaskDataError, match=r"task 'mc': the test split of .* has 4 choices per example, train has 3"):
        prepare(
            tmp_path,
            {
                "name": "mc",
                "train_file": "a.jsonl",
                "validation_file": "b.jsonl",
                "test_file": "c.jsonl",
                "type": "multiple_choice",
                "text_fields": "q",
                "choices_field": "options",
                "label_field": "answer",
            },
        )


def test_dropping_more_than_a_small_share_of_rows_is_reported(tmp_path, caplog):
    rows = REVIEWS + REVIEWS[:5] + [("", "pos")] * 2 + [(REVIEWS[6][0], "neg" if REVIEWS[6][1] == "pos" else "pos")]
    write_csv(tmp_path / "a.csv", rows)
    with caplog.at_level("WARNING", logger="taskaffinity"):
        task = prepare(tmp_path, {"name": "r", "file": "a.csv", "text_fields": "body", "label_field": "stars"})["r"]
    assert {k: task.stats[k] for k in ("rows_read", "dropped_empty", "dropped_duplicates", "dropped_conflicting")} == {
        "rows_read": 68,
        "dropped_empty": 2,
        "dropped_duplicates": 5,
        "dropped_conflicting": 2,
    }
    assert "task 'r': 9 of 68 rows of" in caplog.text
    assert "(2 empty, 5 duplicates, 2 with conflicting labels; see tasks.parquet)" in caplog.text
