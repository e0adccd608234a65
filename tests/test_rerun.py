"""Running the same command again after a data file changed: refused (train, affinity) or re-planned
(study run, run) so that a changed input never passes for the old one."""

import csv
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import TINY_MODEL

from taskaffinity.affinity.store import AffinityStore
from taskaffinity.cli import main
from taskaffinity.study import load_study, run_study

INPUTS = Path(__file__).resolve().parent / "data" / "inputs"


def write_study(folder: Path, **extra) -> Path:
    for name in ("senti.csv", "topic.jsonl", "intents.csv"):
        if not (folder / name).exists():
            shutil.copy(INPUTS / name, folder / name)
    raw = {
        "seed": 0,
        "tasks": [{"name": "senti", "file": "senti.csv"}, {"name": "topic", "file": "topic.jsonl"}],
        "model": TINY_MODEL,
        "data": {"max_train": 64, "max_eval": 32},
        "training": {"steps": 3, "batch_size": 8, "eval_every": 1000, "checkpoint_every": 1},
        **extra,
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def edit_labels(path: Path, change) -> None:
    rows = list(csv.DictReader(path.open()))
    rows = change(rows)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, ["text", "label"])
        writer.writeheader()
        writer.writerows(rows)


def flip(rows):
    return [{**r, "label": {"pos": "neg", "neg": "pos"}[r["label"]]} for r in rows]


def add_class(rows):
    return rows + [{"text": f"the parcel number {i} was ok", "label": "neutral"} for i in range(20)]


@pytest.mark.parametrize("command", ["train", "affinity"])
def test_changed_data_is_refused_before_anything_is_overwritten(tmp_path, capsys, command):
    study = write_study(
        tmp_path,
        affinity={"rules": ["sgd"], "probe_every": 1, "probe_batch_size": 8, "stream_window": 1, "bootstrap": 20},
    )
    out = tmp_path / "out"
    assert main([command, str(study), "--out", str(out), "--quiet"]) == 0
    assert main([command, str(study), "--out", str(out), "--quiet"]) == 0  # same data: resumes, nothing to do
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    for change in (flip, add_class):
        edit_labels(tmp_path / "senti.csv", change)
        assert main([command, str(study), "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines()[-1] == (
            f"taskaffinity: error: {out} holds a run of a different configuration or data (the data of task 'senti' "
            "changed); use another --out or --no-resume to start over"
        )
        assert "Traceback" not in err
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # tasks.parquet too
    assert main([command, str(study), "--out", str(out), "--quiet", "--no-resume"]) == 0
    table = pd.read_parquet(out / "tasks.parquet").set_index("name")
    assert table.loc["senti", "n_classes"] == 3


def test_study_reruns_exactly_the_jobs_whose_data_changed(tmp_path):
    settings = {
        "kind": "combinations",
        "targets": ["intents"],
        "seeds": [0],
        "groups": "affinity",
        "grouping": {"method": "hierarchical", "k": 2, "estimator": "stream_cosine"},
        "finetune": {"steps": 3, "batch_size": 8},
    }
    study = write_study(tmp_path, study=settings, affinity={"rules": [], "stream_window": 1, "bootstrap": 20})
    raw = yaml.safe_load(study.read_text())
    raw["tasks"].append({"name": "intents", "file": "intents.csv"})
    study.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = tmp_path / "out"

    first = run_study(load_study(study), out, progress=False)
    assert (first.status["status"] == "done").all() and len(first.status) == 7
    stamps = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("experiments/*/result.parquet")}
    pool = {p.name: p.stat().st_mtime_ns for p in (out / "data").glob("*.parquet")}
    affinity = (out / "affinity" / "affinity.parquet").stat().st_mtime_ns

    again = run_study(load_study(study), out, progress=False)  # nothing changed: nothing runs again
    assert {p.parent.name: p.stat().st_mtime_ns for p in out.glob("experiments/*/result.parquet")} == stamps
    assert (out / "affinity" / "affinity.parquet").stat().st_mtime_ns == affinity
    assert set(again.plan.train_jobs) | set(again.plan.finetune_jobs) == set(stamps)

    edit_labels(tmp_path / "senti.csv", flip)
    assert main(["run", str(study), "--out", str(out), "--quiet"]) == 0
    jobs = pd.read_parquet(out / "jobs.parquet")
    uses_senti = jobs["tasks"].str.contains("senti") | jobs["pretrain"].isin(
        jobs.loc[jobs["tasks"].str.contains("senti"), "experiment_id"]
    )
    new_ids = set(jobs["experiment_id"]) - set(stamps)
    assert (
        new_ids == set(jobs.loc[uses_senti, "experiment_id"]) and len(new_ids) == 4
    )  # G(senti), G1+G2, 2 fine-tunings
    for job in set(jobs["experiment_id"]) - new_ids:  # topic's jobs and the baseline are kept as they were
        assert (out / "experiments" / job / "result.parquet").stat().st_mtime_ns == stamps[job]
    now = {p.name: p.stat().st_mtime_ns for p in (out / "data").glob("*.parquet")}
    assert {n for n in now if now[n] != pool[n]} == {f"senti.{s}.parquet" for s in ("train", "validation", "test")}
    store = AffinityStore.load(out / "affinity" / "affinity.parquet")  # recorded again on the new data
    assert (out / "affinity" / "affinity.parquet").stat().st_mtime_ns != affinity
    fingerprints = pd.read_parquet(out / "affinity" / "tasks.parquet").set_index("name")["data_fingerprint"]
    assert store.metadata["run_fingerprint"] and fingerprints["senti"] != first_fingerprint(first, "senti")
    assert (out / "report.html").is_file()


def first_fingerprint(result, task: str) -> str:
    """The data fingerprint the first run's pool recorded for ``task``."""
    return result.plan.data[task]
