"""Running studies on the tiny model: results, resume after SIGKILL, failures, the Ray executor."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import TINY_MODEL

from taskaffinity.cli import main
from taskaffinity.study import load_study, run_study

STUDY = {
    "seed": 3,
    "tasks": ["trec6", "sms_spam", "bbc_topic", "rt_subjectivity"],
    "model": TINY_MODEL,
    "data": {"max_train": 80, "max_eval": 30},
    "training": {"steps": 4, "batch_size": 12, "eval_every": 100, "checkpoint_every": 2, "eval_batch_size": 64},
    "study": {
        "kind": "combinations",
        "targets": ["rt_subjectivity"],
        "seeds": [0],
        "groups": {"A": ["trec6"], "B": ["sms_spam", "bbc_topic"]},
        "finetune": {"steps": 6, "batch_size": 16, "lr": 1e-3},
    },
}
STABLE = ["experiment_id", "label", "target", "seed", "split", "metric", "value"]


def write_study(folder: Path, **study) -> Path:
    raw = {**STUDY, "study": {**STUDY["study"], **study}}
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def stable(results: pd.DataFrame) -> pd.DataFrame:
    return results[STABLE].sort_values(STABLE[:6]).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    result = run_study(load_study(write_study(folder)), folder / "out", progress=False)
    return folder / "out", result


def test_combinations_study_writes_results_and_tables(reference):
    out, result = reference
    assert (result.status["status"] == "done").all() and len(result.status) == 3 + 4
    results = pd.read_parquet(out / "results.parquet")
    assert set(results["label"]) == {"baseline", "A", "B", "A+B"}
    assert set(results["target"]) == {"rt_subjectivity"}
    assert set(results["split"]) == {"validation", "test"}
    for column in (
        "experiment_id",
        "kind",
        "pretrain_set",
        "seed",
        "fraction",
        "metric",
        "value",
        "wall_seconds",
        "device",
    ):
        assert results[column].notna().all(), column
    transfer = pd.read_csv(out / "tables" / "transfer.csv", index_col=0)
    assert list(transfer.columns) == ["baseline", "A", "B", "A+B"] and list(transfer.index) == ["rt_subjectivity"]
    test_accuracy = results[(results["split"] == "test") & results["primary"] & (results["label"] == "A")]["value"]
    assert transfer.loc["rt_subjectivity", "A"] == pytest.approx(test_accuracy.mean())
    # pre-finetuned encoders are kept for fine-tuning, optimizer checkpoints are not
    assert len(list(out.glob("experiments/*/encoder.safetensors"))) == 3
    assert not list(out.glob("experiments/*/run/checkpoints"))


def test_rerun_skips_finished_jobs(reference, tmp_path):
    out, first = reference
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("experiments/*/result.parquet")}
    again = run_study(load_study(write_study(tmp_path)), out, progress=False)
    assert {p: p.stat().st_mtime_ns for p in out.glob("experiments/*/result.parquet")} == stamps
    pd.testing.assert_frame_equal(stable(again.results), stable(first.results))


def test_killed_study_resumes_to_the_same_results(reference, tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "taskaffinity.cli",
        "study",
        "run",
        str(write_study(tmp_path)),
        "--out",
        str(out),
        "--quiet",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(out.glob("experiments/*/result.parquet")) and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(list(out.glob("experiments/*/result.parquet")))
    assert 1 <= finished < 7, "the kill should land mid-study"
    assert main(["study", "run", str(write_study(tmp_path)), "--out", str(out), "--quiet"]) == 0
    resumed = pd.read_parquet(out / "results.parquet")
    pd.testing.assert_frame_equal(stable(resumed), stable(reference[1].results))


def test_failing_experiment_is_recorded_and_does_not_stop_the_others(reference, tmp_path, monkeypatch, capsys):
    from taskaffinity.study import runner

    plan_frame = reference[1].plan.frame()
    broken = plan_frame[(plan_frame["label"] == "B") & (plan_frame["job_type"] == "finetune")]
    broken_pretrain = reference[1].plan.finetune_jobs[broken["experiment_id"].item()].pretrain
    original = runner.run_job

    def flaky(item, device=None):
        if item[0].id == broken_pretrain:
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(item, device)

    monkeypatch.setattr(runner, "run_job", flaky)
    out = tmp_path / "out"
    result = run_study(load_study(write_study(tmp_path)), out, progress=False)
    status = result.status.set_index("experiment_id")["status"]
    assert status[broken_pretrain] == "failed"
    assert status[broken["experiment_id"].item()] == "failed"  # its fine-tuning job cannot start
    assert (status == "done").sum() == 5
    assert set(result.results["label"]) == {"baseline", "A", "A+B"}

    assert main(["study", "status", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "5 done, 0 pending, 2 failed of 7 jobs" in printed
    assert "RuntimeError: CUDA out of memory (simulated)" in printed
    assert f"pre-finetuning job {broken_pretrain} did not finish" in printed

    monkeypatch.setattr(runner, "run_job", original)  # the next run retries the failed jobs only
    fixed = run_study(load_study(write_study(tmp_path)), out, progress=False)
    assert (fixed.status["status"] == "done").all()
    pd.testing.assert_frame_equal(stable(fixed.results), stable(reference[1].results))


def test_ray_executor_gives_the_same_table(reference, tmp_path):
    if os.environ.get("CI"):
        import ray  # noqa: F401  (CI must exercise the Ray executor)
    else:
        pytest.importorskip("ray")
    out = tmp_path / "out"
    result = run_study(load_study(write_study(tmp_path, executor={"kind": "ray", "workers": 2})), out, progress=False)
    assert (result.status["status"] == "done").all()
    pd.testing.assert_frame_equal(stable(result.results), stable(reference[1].results))
    assert set(result.results["device"]) == {"cpu"}


def test_status_of_a_folder_that_is_not_a_study_exits_2(tmp_path, capsys):
    assert main(["study", "status", str(tmp_path)]) == 2
    assert "not a study folder" in capsys.readouterr().err


def test_bad_study_exits_2_and_writes_nothing(tmp_path, capsys):
    path = write_study(tmp_path, targets=["nope"])
    assert main(["study", "run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "study.targets: 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
