"""The reusing study worker gives the fresh per-job path's results, resumes from its own checkpoints
and survives a failing job."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import TINY_MODEL

from taskaffinity.study import load_study
from taskaffinity.study.jobs import JobOptions, job_folder, run_job, run_job_fresh
from taskaffinity.study.plan import make_plan
from taskaffinity.study.pool import prepare_pool
from taskaffinity.study.worker import JobWorker, StudyTrainer

# classification and regression targets, two data fractions (subsampled train rows), two seeds, the
# baseline and a pre-finetuning set; eval_every < steps exercises the fresh path's
# intermediate evaluations, which must not change anything
STUDY = {
    "seed": 5,
    "tasks": ["trec6", "sms_spam", "bbc_topic", "rt_subjectivity", "vader_tweets"],
    "model": TINY_MODEL,
    "data": {"max_train": 90, "max_eval": 40},
    "training": {
        "steps": 5,
        "batch_size": 12,
        "eval_every": 2,
        "checkpoint_every": 2,
        "eval_batch_size": 16,
        "lr": 1e-3,
    },
    "study": {
        "kind": "low_resource",
        "targets": ["rt_subjectivity", "vader_tweets"],
        "seeds": [0, 1],
        "sizes": [0, 2],
        "fractions": [0.4, 1.0],
        "order": ["trec6", "sms_spam", "bbc_topic"],
        "finetune": {"steps": 6, "batch_size": 8, "lr": 1e-3},
    },
}
COMPARED = ["experiment_id", "target", "seed", "fraction", "split", "metric", "value", "baseline", "primary", "device"]


def make_study(folder: Path, model: dict | None = None, **study):
    raw = {**STUDY, "model": model or STUDY["model"], "study": {**STUDY["study"], **study}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "study.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    study = load_study(folder / "study.yaml")
    prepare_pool(study.config, folder / "out" / "data", progress=False)
    return study, folder / "out"


def all_jobs(study):
    """Pre-finetuning jobs, one measured joint job (validation studies' kind), then half of the fine-tuning
    jobs (every pair of seed, fraction, target and start appears), switching seeds between jobs."""
    plan = make_plan(study)
    measured = plan.train(study, ("trec6", "bbc_topic"), seed=1, save_encoder=False, measure=True)
    targets = list(study.settings.targets)

    def parity(job):
        return (job.config.seed + (job.fraction < 1) + (job.pretrain is None) + targets.index(job.target)) % 2

    finetune = [j for j in plan.finetune_jobs.values() if len(targets) == 1 or parity(j) == 0]
    finetune.sort(key=lambda j: (j.fraction, j.target, j.pretrain is None, j.config.seed))
    return [*plan.train_jobs.values(), measured, *finetune]


def results(root: Path, jobs) -> pd.DataFrame:
    frames = [pd.read_parquet(job_folder(root, job.id) / "result.parquet") for job in jobs]
    return pd.concat(frames, ignore_index=True)[COMPARED]


def run_both(tmp_path: Path, model: dict | None = None, **study_changes):
    study, fresh_root = make_study(tmp_path / "fresh", model, **study_changes)
    _, reused_root = make_study(tmp_path / "reused", model, **study_changes)
    jobs = all_jobs(study)
    for job in jobs:
        run_job_fresh((job, str(fresh_root)), "cpu")
    worker = JobWorker()
    for job in jobs:
        worker.run(job, str(reused_root), "cpu")
    return jobs, fresh_root, reused_root, worker


def test_reusing_worker_gives_the_fresh_paths_results_bit_for_bit(tmp_path):
    jobs, fresh_root, reused_root, worker = run_both(tmp_path)
    fresh, reused = results(fresh_root, jobs), results(reused_root, jobs)
    assert len(fresh) == len(reused) > 25
    assert set(fresh["split"]) == {"validation", "test"} and set(fresh["fraction"]) == {0.4, 1.0}
    pd.testing.assert_frame_equal(reused, fresh, check_exact=True)  # same values to the last bit
    assert fresh["value"].nunique() > 10  # the jobs really differ from each other
    # the pre-finetuned encoders the fine-tuning jobs start from are identical files' contents too
    from safetensors.torch import load_file

    for job in jobs[:1]:
        a = load_file(str(job_folder(fresh_root, job.id) / "encoder.safetensors"))
        b = load_file(str(job_folder(reused_root, job.id) / "encoder.safetensors"))
        assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    # short jobs write no checkpoint (the fresh path writes and deletes them) and leave no run folder
    assert not list(reused_root.glob("experiments/*/run"))
    assert [base.seed_free for base in worker._bases.values()] == [False]  # random init draws from the seed


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> dict:
    """A pretrained model on disk: the tiny model saved with its tokenizer."""
    from taskaffinity.config import ModelConfig
    from taskaffinity.model.encoders import load_encoder

    folder = tmp_path_factory.mktemp("pretrained")
    encoder, tokenizer = load_encoder(ModelConfig(**TINY_MODEL))
    encoder.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {"name": str(folder), "max_length": 32}


def test_pretrained_model_is_loaded_once_and_gives_the_same_results(tmp_path, pretrained):
    """A pretrained model loads without drawing random numbers, so one copy of its weights and one
    module serve every seed and job."""
    jobs, fresh_root, reused_root, worker = run_both(tmp_path, pretrained, targets=["rt_subjectivity"], fractions=[1.0])
    pd.testing.assert_frame_equal(results(reused_root, jobs), results(fresh_root, jobs), check_exact=True)
    assert [base.seed_free for base in worker._bases.values()] == [True]


def test_worker_resumes_from_its_checkpoint_to_the_same_result(tmp_path, monkeypatch):
    study, fresh_root = make_study(tmp_path / "fresh")
    _, root = make_study(tmp_path / "resumed")
    job = next(j for j in make_plan(study).finetune_jobs.values() if j.pretrain is None)
    run_job_fresh((job, str(fresh_root)), "cpu")

    original = StudyTrainer.train_step

    def crash_at_step_4(self, step):
        if step == 4:
            raise KeyboardInterrupt  # as a Ctrl-C or a kill would stop it
        return original(self, step)

    monkeypatch.setattr(StudyTrainer, "train_step", crash_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        JobWorker(checkpoint_seconds=0).run(job, str(root), "cpu")  # a checkpoint after every step
    checkpoints = job_folder(root, job.id) / "run" / "checkpoints"
    assert (checkpoints / "latest").read_text().strip() == "step-000003"
    monkeypatch.setattr(StudyTrainer, "train_step", original)

    resumed_steps = []
    monkeypatch.setattr(
        StudyTrainer, "train_step", lambda self, step: resumed_steps.append(step) or original(self, step)
    )
    JobWorker(checkpoint_seconds=0).run(job, str(root), "cpu")
    assert resumed_steps == [4, 5, 6]  # continued from the checkpoint, not from scratch
    pd.testing.assert_frame_equal(results(root, [job]), results(fresh_root, [job]), check_exact=True)
    assert not (job_folder(root, job.id) / "run").exists()


def test_a_job_failing_mid_training_does_not_disturb_the_next(tmp_path, monkeypatch, pretrained):
    """The reused module took two updates of the failed job: the next jobs must not see them."""
    from taskaffinity.study.worker import release_worker

    study, fresh_root = make_study(tmp_path / "fresh", pretrained)
    _, root = make_study(tmp_path / "reused", pretrained)
    plan = make_plan(study)
    jobs = [j for j in plan.finetune_jobs.values() if j.pretrain is None]
    baseline = [jobs[0], next(j for j in jobs if j.config.seed != jobs[0].config.seed)]
    for job in baseline:
        run_job_fresh((job, str(fresh_root)), "cpu")
    original, armed = StudyTrainer.train_step, [True]

    def fail_at_step_3(self, step):
        if step == 3 and armed:
            armed.clear()
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(self, step)

    monkeypatch.setattr(StudyTrainer, "train_step", fail_at_step_3)
    options = JobOptions(reuse_worker=True)
    try:
        with pytest.raises(RuntimeError, match="simulated"):
            run_job((baseline[0], str(root), options), "cpu")  # the encoder has taken two updates
        run_job((baseline[1], str(root), options), "cpu")  # same process, same worker
        run_job((baseline[0], str(root), options), "cpu")  # the retry
    finally:
        release_worker()
    pd.testing.assert_frame_equal(results(root, baseline), results(fresh_root, baseline), check_exact=True)


def test_worker_finishes_a_job_the_fresh_path_checkpointed_at_its_last_step(tmp_path, monkeypatch):
    """Killed between its final checkpoint and its result: the worker resumes at the last step and
    still measures validation and test."""
    import taskaffinity.study.jobs as jobs

    study, fresh_root = make_study(tmp_path / "fresh")
    _, root = make_study(tmp_path / "resumed")
    job = next(j for j in make_plan(study).finetune_jobs.values() if j.pretrain is None)
    run_job_fresh((job, str(fresh_root)), "cpu")

    def killed(path, frame):
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs, "write_parquet", killed)
    with pytest.raises(KeyboardInterrupt):
        run_job_fresh((job, str(root)), "cpu")
    monkeypatch.undo()
    assert (job_folder(root, job.id) / "run" / "checkpoints" / "latest").read_text().strip() == "step-000006"
    JobWorker().run(job, str(root), "cpu")
    resumed = results(root, [job])
    assert set(resumed["split"]) == {"validation", "test"}
    pd.testing.assert_frame_equal(resumed, results(fresh_root, [job]), check_exact=True)


@pytest.mark.parametrize("path", ["fresh", "worker"])
def test_a_checkpoint_of_another_run_identity_is_set_aside_and_the_job_starts_over(tmp_path, monkeypatch, path):
    """A job id hashes only what changes the result; a checkpoint written under another version's
    defaults carries another run fingerprint. The study job must neither resume it nor fail on it."""
    import json

    study, fresh_root = make_study(tmp_path / "fresh")
    _, root = make_study(tmp_path / "stale")
    job = next(j for j in make_plan(study).finetune_jobs.values() if j.pretrain is None)
    run_job_fresh((job, str(fresh_root)), "cpu")

    original = StudyTrainer.train_step

    def crash_at_step_4(self, step):
        if step == 4:
            raise KeyboardInterrupt
        return original(self, step)

    monkeypatch.setattr(StudyTrainer, "train_step", crash_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        JobWorker(checkpoint_seconds=0).run(job, str(root), "cpu")
    monkeypatch.setattr(StudyTrainer, "train_step", original)
    run = job_folder(root, job.id) / "run"
    state = run / "checkpoints" / "step-000003" / "state.json"
    saved = json.loads(state.read_text())
    state.write_text(json.dumps({**saved, "fingerprint": "0123456789abcdef"}))  # another version's identity

    if path == "fresh":
        run_job_fresh((job, str(root)), "cpu")
    else:
        JobWorker().run(job, str(root), "cpu")
    pd.testing.assert_frame_equal(results(root, [job]), results(fresh_root, [job]), check_exact=True)
    stale = job_folder(root, job.id) / "run.stale"
    assert (
        json.loads((stale / "checkpoints" / "step-000003" / "state.json").read_text())["fingerprint"]
        == "0123456789abcdef"
    )  # kept, not resumed
