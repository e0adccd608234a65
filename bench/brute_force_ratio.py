"""Brute force over one affinity run, measured side by side on the same machine and threads.

A validation study's ``summary.json`` divides the summed wall seconds of its single and pair jobs
by its affinity run's, each timed whenever the study ran it: on a shared machine the two can meet
different loads. This bench times, one after another in one process with the same torch threads,
the study's affinity run (its ``affinity`` section, the pool's tasks) and ``--jobs`` single-task and
pair jobs of its plan, each whole (loading, training, evaluation), and projects the brute force of
its plan from them:

    brute force = seeds x (n x single + n (n - 1) / 2 x pair)       (``mode: pairs``)
    ratio       = brute force / affinity run

Wall and CPU seconds of this process are both printed (CPU seconds are robust to other work on the
machine). With free recording the ratio approaches n per seed. Example:

    python bench/brute_force_ratio.py studies/validation.yaml --threads 1 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taskaffinity.affinity.run import record_affinity  # noqa: E402
from taskaffinity.study.experiments import Plan  # noqa: E402
from taskaffinity.study.jobs import run_job_fresh  # noqa: E402
from taskaffinity.study.plan import plan_validation  # noqa: E402
from taskaffinity.study.pool import prepare_pool  # noqa: E402
from taskaffinity.study.runner import _pool_config  # noqa: E402
from taskaffinity.study.settings import load_study  # noqa: E402


def timed(call) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def measure(path: str, *, jobs: int, threads: int) -> dict:
    study = load_study(path)
    if study.settings.kind != "validation" or study.settings.validation_mode != "pairs":
        print(f"{path}: needs a validation study with mode: pairs", file=sys.stderr)
        raise SystemExit(2)
    torch.set_num_threads(threads)
    pool = study.settings.pool(study.config)
    with tempfile.TemporaryDirectory() as root:
        data = prepare_pool(study.config, Path(root) / "data", progress=False)
        plan = plan_validation(study, None, None, Plan(data=data))  # singles and pairs (no grouping arms)
        seed = study.settings.seeds[0]
        kinds = {"single": [], "pair": []}
        for m in plan.measurements:
            if m.seed == seed and m.arm in kinds and len(kinds[m.arm]) < jobs:
                kinds[m.arm].append(plan.train_jobs[m.job])
        times = {"affinity": [timed(lambda: record_affinity(_pool_config(study), Path(root) / "aff", progress=False))]}
        for kind, chosen in kinds.items():
            times[kind] = [timed(lambda job=job: run_job_fresh((job, root))) for job in chosen]
    n, seeds = len(pool), len(study.settings.seeds)
    result = {"study": path, "tasks": n, "seeds": seeds, "threads": threads, "jobs_timed": jobs}
    for clock in ("wall", "cpu"):
        single = statistics.median(t[clock] for t in times["single"])
        pair = statistics.median(t[clock] for t in times["pair"])
        affinity = times["affinity"][0][clock]
        brute = seeds * (n * single + n * (n - 1) / 2 * pair)
        result[clock] = {
            "affinity_run": round(affinity, 1),
            "single_job": round(single, 1),
            "pair_job": round(pair, 1),
            "brute_force": round(brute, 1),
            "ratio": round(brute / affinity, 2),
        }
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", help="a validation study (mode: pairs)")
    parser.add_argument("--jobs", type=int, default=1, help="single and pair jobs timed each (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the parallel executor's: 1)")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.threads < 1:
        parser.error("--jobs and --threads must be >= 1")
    print(json.dumps(measure(args.study, jobs=args.jobs, threads=args.threads), indent=1))


if __name__ == "__main__":
    main()
