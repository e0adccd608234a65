"""Brute force over one affinity run, measured side by side on the same machine and threads.

A validation study's ``summary.json`` divides the summed wall seconds of its single and pair jobs
by its affinity run's, each timed whenever the study ran it: on a shared machine the two can meet
different loads. This bench times, one after another in one process with the same torch threads,
the study's affinity run (its ``affinity`` section, the pool's tasks), every single-task job of
one seed and ``--pairs`` pair jobs drawn at random (jobs cost what their tasks' texts cost: the
first pairs of the plan can be the cheapest), each whole (loading, training, evaluation), and
projects the brute force of its plan from them:

    brute force = seeds x (sum of singles + n (n - 1) / 2 x mean pair)     (``mode: pairs``)
    ratio       = brute force / affinity run

with the standard error of the sampled pairs' mean (finite-population corrected; 0 when every pair
is timed). Wall and CPU seconds of this process are both printed (CPU seconds are robust to other
work on the machine). With free recording the ratio approaches n per seed. Example:

    python bench/brute_force_ratio.py studies/validation.yaml --threads 1 --pairs 3
"""

from __future__ import annotations

import argparse
import json
import math
import random
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


def measure(path: str, *, pairs: int, threads: int, seed: int = 0) -> dict:
    study = load_study(path)
    if study.settings.kind != "validation" or study.settings.validation_mode != "pairs":
        print(f"{path}: needs a validation study with mode: pairs", file=sys.stderr)
        raise SystemExit(2)
    torch.set_num_threads(threads)
    n, seeds = len(study.settings.pool(study.config)), len(study.settings.seeds)
    with tempfile.TemporaryDirectory() as root:
        data = prepare_pool(study.config, Path(root) / "data", progress=False)
        plan = plan_validation(study, None, None, Plan(data=data))  # singles and pairs (no grouping arms)
        first = [m for m in plan.measurements if m.seed == study.settings.seeds[0]]
        singles = [plan.train_jobs[m.job] for m in first if m.arm == "single"]
        every_pair = [plan.train_jobs[m.job] for m in first if m.arm == "pair"]
        drawn = random.Random(seed).sample(every_pair, min(pairs, len(every_pair)))
        affinity_run = timed(lambda: record_affinity(_pool_config(study), Path(root) / "aff", progress=False))
        times = {
            kind: [timed(lambda job=job: run_job_fresh((job, root))) for job in jobs]
            for kind, jobs in (("single", singles), ("pair", drawn))
        }
    result = {
        "study": path,
        "tasks": n,
        "seeds": seeds,
        "threads": threads,
        "pairs_timed": ["+".join(job.tasks) for job in drawn],
    }
    for clock in ("wall", "cpu"):
        pair = [t[clock] for t in times["pair"]]
        total_pairs = len(every_pair)
        correction = 1 - len(pair) / total_pairs  # the sampled share of a finite population
        pair_se = statistics.stdev(pair) / math.sqrt(len(pair)) * math.sqrt(correction) if len(pair) > 1 else None
        affinity = affinity_run[clock]
        brute = seeds * (sum(t[clock] for t in times["single"]) + total_pairs * statistics.mean(pair))
        brute_se = None if pair_se is None else seeds * total_pairs * pair_se
        result[clock] = {
            "affinity_run": affinity,
            "singles": [t[clock] for t in times["single"]],
            "pairs": pair,
            "pair_mean_se": pair_se,
            "brute_force": brute,
            "ratio": brute / affinity,
            "ratio_se": None if brute_se is None else brute_se / affinity,
        }
    return result


def rounded(value):
    """Seconds to 0.1 s and ratios to 0.01, for printing."""
    if isinstance(value, dict):
        return {k: round(v, 2) if k.startswith("ratio") and v is not None else rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return round(value, 1) if isinstance(value, float) else value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", help="a validation study (mode: pairs)")
    parser.add_argument("--pairs", type=int, default=3, help="pair jobs timed, drawn at random (every single is)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the parallel executor's: 1)")
    parser.add_argument("--seed", type=int, default=0, help="which pairs are drawn")
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.threads < 1:
        parser.error("--pairs and --threads must be >= 1")
    result = measure(args.study, pairs=args.pairs, threads=args.threads, seed=args.seed)
    print(json.dumps(rounded(result), indent=1))


if __name__ == "__main__":
    main()
