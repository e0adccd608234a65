"""Cost of recording affinities, measured side by side with plain joint training.

For n tasks (sub-batch b per task, global batch n·b), three variants run in
interleaved rounds on one model, each round a block of k steps per variant:

    plain     the joint step
    stream    + first-order recorders on every step (per-task gradients, Gram, cosine, η G/L)
    stream_optimizer  + the optimizer-rule estimator η u_i·g_j/L_j as well (every step)
    probe     + one exact lookahead probe per block (every k steps), rule(s) from --rules,
              probe batch = the training sub-batch size

Printed per n: medians over rounds of the paired ratios stream/plain,
stream_optimizer/plain and probe/plain, the cost-model bound 1 + R·n/(3k) for R rules (plus the probe's own
gradient pass, 1/k, which TAG avoids by reusing the training gradients), and peak
memory. Example:

    python bench/affinity_overhead.py --tasks 4 8 16 --rounds 3 --json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taskaffinity.affinity.probe import LookaheadRecorder  # noqa: E402
from taskaffinity.affinity.stream import StreamRecorder  # noqa: E402
from taskaffinity.api import build  # noqa: E402
from taskaffinity.config import config_from_dict  # noqa: E402
from taskaffinity.tasks.catalog import CATALOG  # noqa: E402
from taskaffinity.training.loop import JointTrainer  # noqa: E402

TINY = {
    "init": "random",
    "overrides": {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128},
}


def task_list(n: int) -> list:
    """n real catalog tasks; past the catalog size, copies with their own heads."""
    names = list(CATALOG)
    tasks = names[:n]
    for i in range(n - len(tasks)):
        tasks.append({"name": f"{names[i]}_copy", "duplicate_of": names[i]})
    return tasks


def measure(n: int, args) -> dict:
    model = TINY if args.tiny else {}
    config = config_from_dict(
        {
            "seed": 0,
            "tasks": task_list(n),
            "model": {**model, "max_length": args.max_length},
            "data": {"max_train": 400, "max_eval": 20},
            "training": {
                "steps": 10_000,
                "batch_size": n * args.sub_batch,
                "sampling": "uniform",
                "eval_every": 10**9,
                "checkpoint_every": 10**9,
                "warmup_ratio": 0.0,
            },
        },
        where="bench",
    )
    tasks, model, tokenizer = build(config, progress=False)
    trainer = JointTrainer(config, tasks, model, tokenizer, progress=False)
    variants = {
        "plain": [],
        "stream": [StreamRecorder(parameters=args.parameters, optimizer_rule=False, window=args.k)],
        "stream_optimizer": [StreamRecorder(parameters=args.parameters, optimizer_rule=True, window=args.k)],
        "probe": [
            LookaheadRecorder(
                rules=tuple(args.rules), every=args.k, batch_size=args.sub_batch, parameters=args.parameters
            )
        ],
    }
    step = 0
    times = {name: [] for name in variants}
    for _ in range(args.warmup_steps):  # allocator and thread-pool warm-up, not timed
        step += 1
        trainer.train_step(step)
    for _ in range(args.rounds):
        for name, callbacks in variants.items():
            trainer.set_callbacks(callbacks)
            if name == "probe":  # the block's one probe falls on its first step
                callbacks[0].start_step = step + 1
            started = time.perf_counter()
            for _ in range(args.k):
                step += 1
                trainer.train_step(step)
            times[name].append(time.perf_counter() - started)

    def ratio(name):
        return round(statistics.median(s / p for s, p in zip(times[name], times["plain"])), 3)

    rules = len(args.rules)
    return {
        "n": n,
        "params": sum(p.numel() for _, p in model.shared_parameters()),
        "plain_step_s": statistics.median(times["plain"]) / args.k,
        "stream_ratio": ratio("stream"),
        "stream_optimizer_ratio": ratio("stream_optimizer"),
        "probe_ratio": ratio("probe"),
        "probe_bound_cost_model": round(1 + rules * n / (3 * args.k), 3),
        "probe_bound_with_gradient_pass": round(1 + (1 + rules * n / 3) / args.k, 3),
        "stream_buffer_mb": round(
            (variants["stream_optimizer"][0].rows.nbytes if variants["stream_optimizer"][0].rows else 0) / 2**20, 1
        ),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cuda_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--k", type=int, default=10, help="probe interval (steps per block)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sub-batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--rules", nargs="+", default=["sgd"])
    parser.add_argument("--parameters", default="all")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="tiny random encoder instead of the packaged MiniLM")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = [measure(n, args) for n in args.tasks]
    if args.json:
        print(
            json.dumps(
                {
                    "settings": vars(args),
                    "device": "cuda" if torch.cuda.is_available() else "cpu",
                    "threads": torch.get_num_threads(),
                    "rows": rows,
                },
                indent=2,
            )
        )
        return
    print(
        f"device {'cuda' if torch.cuda.is_available() else 'cpu'}, {torch.get_num_threads()} threads, "
        f"k={args.k}, sub-batch {args.sub_batch}, max_length {args.max_length}, rules {args.rules}, "
        f"parameters {args.parameters}, rounds {args.rounds}"
    )
    header = list(rows[0])
    print("  ".join(f"{h:>14}" for h in header))
    for row in rows:
        print("  ".join(f"{str(row[h]):>14}" for h in header))


if __name__ == "__main__":
    main()
