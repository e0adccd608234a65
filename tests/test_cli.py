"""The command line as a user runs it: listing, training, errors, kill and resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from conftest import TINY_MODEL

CLI = [sys.executable, "-m", "taskaffinity.cli"]


def run(*args, timeout=600, **kwargs):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs)


def write_study(tmp_path, tasks, name="study.yaml", **training):
    study = {
        "seed": 1,
        "tasks": tasks,
        "model": TINY_MODEL,
        "data": {"max_train": 100, "max_eval": 30},
        "training": {"steps": 4, "batch_size": 12, "eval_every": 2, "checkpoint_every": 2, **training},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(study))
    return path


def test_tasks_list_json_lists_real_tasks_with_counts():
    result = run("tasks", "list", "--json")
    assert result.returncode == 0, result.stderr
    tasks = json.loads(result.stdout)
    assert len(tasks) >= 12 and len({t["family"] for t in tasks}) >= 3
    required = {"name", "family", "type", "n_train", "n_val", "n_test", "n_classes", "source"}
    assert all(required <= set(t) for t in tasks)
    by_name = {t["name"]: t for t in tasks}
    assert by_name["trec6"]["n_classes"] == 6 and by_name["bbc_topic"]["n_classes"] == 5
    assert {t["type"] for t in tasks} == {"classification", "pair_classification", "regression", "multiple_choice"}
    assert all(t["n_train"] > 0 and t["n_val"] > 0 and t["n_test"] > 0 for t in tasks)


def test_train_writes_metrics_logs_and_checkpoint(tmp_path):
    study = write_study(tmp_path, ["trec6", "vader_tweets", "wn_relation"])
    result = run("train", study, "--out", tmp_path / "out", "--quiet")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    evals = pd.read_parquet(out / "eval.parquet")
    assert set(evals["step"]) == {2, 4} and set(evals["task"]) == {"trec6", "vader_tweets", "wn_relation"}
    steps = pd.read_parquet(out / "steps.parquet")
    assert list(steps.columns) == ["step", "phase", "task", "loss", "examples", "weight", "lr", "seconds"]
    assert sorted(steps["step"].unique()) == [1, 2, 3, 4]
    assert (out / "checkpoints" / "step-000004" / "model.safetensors").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and set(summary["tasks"]) == {"trec6", "vader_tweets", "wn_relation"}


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("tasks: [trec6]\ntraining: {stepz: 3}\n", "unknown key 'training.stepz'"),
        ("tasks: [{name: mine, file: missing.csv}]\n", "task 'mine': file not found"),
        ("tasks: [trec6, trec6]\n", "duplicate task name 'trec6'"),
        ("tasks: [{name: x, file: a.csv, type: ranking}]\n", "unknown type 'ranking'"),
        ("tasks: [trec6]\nmodel: {name: ./no/such/model}\n", "model path not found: ./no/such/model"),
    ],
)
def test_bad_input_exits_2_with_the_culprit_and_writes_nothing(tmp_path, yaml_text, message):
    study = tmp_path / "bad.yaml"
    study.write_text(yaml_text)
    result = run("train", study, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_hub_model_fails_cleanly_offline(tmp_path):
    study = tmp_path / "bad.yaml"
    study.write_text("tasks: [trec6]\nmodel: {name: no-such-org/no-such-model}\ndata: {max_train: 50}\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = run("train", study, "--out", tmp_path / "out", env=env)
    assert result.returncode == 2 and "could not load model 'no-such-org/no-such-model'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_config_and_bad_option(tmp_path):
    result = run("train", tmp_path / "nope.yaml", "--out", tmp_path / "out")
    assert result.returncode == 2 and "config file not found" in result.stderr
    study = write_study(tmp_path, ["trec6"])
    result = run("train", study, "--out", tmp_path / "out", "--steps", "0")
    assert result.returncode == 2 and "--steps must be >= 1" in result.stderr


def test_killed_run_resumes_from_last_checkpoint_to_the_same_result(tmp_path):
    study = write_study(tmp_path, ["trec6", "sms_spam", "wn_define"], steps=40, eval_every=20, checkpoint_every=5)
    reference = run("train", study, "--out", tmp_path / "ref", "--quiet")
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "cut"
    process = subprocess.Popen(
        [*CLI, "train", str(study), "--out", str(out), "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    latest = out / "checkpoints" / "latest"
    deadline = time.time() + 300
    while time.time() < deadline and not (latest.is_file() and latest.read_text().strip() >= "step-000010"):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    cut_at = latest.read_text().strip()
    assert "step-000010" <= cut_at < "step-000040", "the run was not killed mid-way"

    resumed = run("train", study, "--out", out, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "ref" / "eval.parquet"), pd.read_parquet(out / "eval.parquet")
    )
    steps = pd.read_parquet(out / "steps.parquet")
    assert sorted(steps["step"].unique()) == list(range(1, 41))  # nothing lost, nothing doubled
