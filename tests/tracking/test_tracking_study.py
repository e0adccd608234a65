"""A study logged to TensorBoard, MLflow and W&B (offline): one run for the study with its transfer matrix,
one nested run per job whose parameters (config hash, task set, target, seed) and final numbers equal
``result.parquet``, and resuming the finished study adds no run."""

import pandas as pd
import pytest
import yaml
from conftest import TINY_MODEL
from tracker_readers import (
    mlflow_artifacts,
    mlflow_history,
    mlflow_runs,
    offline_env,
    require_backends,
    tensorboard_run,
    tensorboard_scalars,
    wandb_run_info,
    wandb_runs,
    wandb_summary,
)

from taskaffinity.api import run_study
from taskaffinity.study import load_study

require_backends()

STUDY = {
    "name": "tracked",
    "seed": 3,
    "tasks": ["trec6", "sms_spam", "rt_subjectivity"],
    "model": TINY_MODEL,
    "data": {"max_train": 60, "max_eval": 20},
    "training": {"steps": 3, "batch_size": 12, "eval_every": 100, "eval_batch_size": 64},
    "study": {
        "kind": "combinations",
        "targets": ["rt_subjectivity"],
        "seeds": [0],
        "groups": {"A": ["trec6", "sms_spam"]},
        "finetune": {"steps": 3, "batch_size": 12},
    },
    "tracking": {"report_to": ["tensorboard", "mlflow", "wandb"]},
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    (root / "study.yaml").write_text(yaml.safe_dump(STUDY))
    with pytest.MonkeyPatch.context() as patch:
        offline_env(patch, root)
        run_study(load_study(root / "study.yaml"), root / "out", progress=False)
        yield root


def job_results(out) -> dict[str, dict[str, float]]:
    """job id -> final numbers from its result.parquet."""
    return {
        path.parent.name: {f"{r.split}/{r.target}/{r.metric}": r.value for r in pd.read_parquet(path).itertuples()}
        for path in sorted((out / "experiments").glob("*/result.parquet"))
    }


def test_mlflow_nests_one_run_per_job_under_the_study(study):
    uri = f"file:{study / 'mlruns'}"
    runs = mlflow_runs(uri, "tracked")
    parent = runs[runs["tags.taskaffinity.kind"] == "study"]
    jobs = runs[runs["tags.taskaffinity.kind"] != "study"].set_index("params.job_id")
    assert len(parent) == 1 and parent.iloc[0]["tags.mlflow.runName"] == "out"
    results = job_results(study / "out")
    assert set(jobs.index) == set(results) and len(results) == 3
    assert (jobs["tags.mlflow.parentRunId"] == parent.iloc[0]["run_id"]).all()
    assert (jobs["status"] == "FINISHED").all()
    finetune = jobs[jobs["params.job_type"] == "finetune"]
    assert set(finetune["params.target"]) == {"rt_subjectivity"} and set(finetune["params.pretrain"]) > {"base"}
    assert set(finetune["params.seed"]) == {"0"}
    assert set(jobs[jobs["params.job_type"] == "pretrain"]["params.tasks"]) == {"trec6,sms_spam"}
    for job_id, numbers in results.items():
        for key, value in numbers.items():
            assert list(mlflow_history(uri, jobs.loc[job_id, "run_id"], key).values())[-1] == value, key
    assert "study/transfer_matrix.png" in mlflow_artifacts(uri, parent.iloc[0]["run_id"])
    transfer = pd.read_csv(study / "out" / "tables" / "transfer.csv", index_col=0)
    assert parent.iloc[0]["metrics.transfer/rt_subjectivity/A"] == transfer.loc["rt_subjectivity", "A"]


def test_tensorboard_has_a_run_per_job_and_the_transfer_matrix(study):
    board = study / "out" / "tensorboard"
    assert "study/transfer_matrix" in tensorboard_run(board / "study").Tags()["images"]
    folders = sorted((board / "jobs").iterdir())
    assert len(folders) == 3
    results = job_results(study / "out")
    for folder in folders:
        job_id = folder.name.rsplit("_", 1)[-1]
        (numbers,) = [v for k, v in results.items() if k.startswith(job_id)]
        scalars = tensorboard_scalars(folder)
        for key, value in numbers.items():
            assert list(scalars[key].values())[-1] == pytest.approx(value, rel=1e-6), key


def test_wandb_groups_the_jobs_under_the_study(study):
    runs = {wandb_run_info(path)["display_name"]: path for path in wandb_runs(study / "wandb_dir")}
    assert len(runs) == 4
    infos = {name: wandb_run_info(path) for name, path in runs.items()}
    assert {info["run_group"] for info in infos.values()} == {"out"}
    results = job_results(study / "out")
    for name, path in runs.items():
        if infos[name].get("job_type") == "study":
            continue
        job_id = infos[name]["config"]["job_id"]
        summary = wandb_summary(path)
        assert {key: summary[key] for key in results[job_id]} == pytest.approx(results[job_id], rel=1e-12)


def test_a_finished_study_resumed_adds_no_job_run(study):
    with pytest.MonkeyPatch.context() as patch:
        offline_env(patch, study)
        run_study(load_study(study / "study.yaml"), study / "out", progress=False)
        runs = mlflow_runs(f"file:{study / 'mlruns'}", "tracked")
    assert len(runs) == 4  # the study's own run is reopened, finished jobs open none
