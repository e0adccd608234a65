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

REVIEWS = [(f"review number {i} says {'good' if i % 3 else 'bad'} things", "pos" if i % 3 else "neg") for i in range(60)]


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
    task = prepare(tmp_path, {"name": "r", "train_file": "a.csv", "validation_file": "b.csv", "test_file": "c.csv",
                              "text_fields": ["body"], "label_field": "stars"})["r"]
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
    with pytest.raises(TaskDataError, match=r"task 'r': labels \['meh'\] in the validation split .* never occur in train"):
        prepare(tmp_path, {"name": "r", "train_file": "a.csv", "validation_file": "b.csv", "test_file": "c.csv",
                           "text_fields": "body", "label_field": "stars"})


def test_nan_regression_label(tmp_path):
    rows = [(t, float(i)) for i, (t, _) in enumerate(REVIEWS)]
    rows[7] = (rows[7][0], float("nan"))
    write_csv(tmp_path / "a.csv", rows)
    # the 8th data row is line 9 in an editor (the header is line 1)
    with pytest.raises(TaskDataError, match=r"task 'r': missing label in .*a\.csv, line 9 \(an empty cell or null\)"):
        prepare(tmp_path, {"name": "r", "file": "a.csv", "type": "regression", "text_fields": "body",
                           "label_field": "stars"})


def test_non_numeric_regression_label(tmp_path):
    rows = [(t, str(i)) for i, (t, _) in enumerate(REVIEWS)]
    rows[3] = (rows[3][0], "three")
    write_csv(tmp_path / "a.csv", rows)
    with pytest.raises(TaskDataError, match=r"line 5 is not a finite number: 'three'"):
        prepare(tmp_path, {"name": "r", "file": "a.csv", "type": "regression", "text_fields": "body",
                           "label_field": "stars"})


def test_non_utf8_text(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes("body,stars\nfine,pos\n".encode() + "caf\xe9 cr\xe8me,neg\n".encode("latin-1"))
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
        prepare(tmp_path, {"name": "mc", "file": "mc.jsonl", "type": "multiple_choice", "text_fields": "q",
                           "choices_field": "options", "label_field": "answer"})


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
    result = subprocess.run([sys.executable, "-m", "taskaffinity.cli", "train", str(study), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert "task 'sst2': could not load Hugging Face dataset 'nyu-mll/glue' (config 'sst2')" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
