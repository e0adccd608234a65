"""Affinity recording at scale: overhead and memory for n ∈ {8, 16, 32, 64} tasks, and the DDP check.

Tasks are real: the 15 catalog tasks, then one-vs-rest binary tasks derived from the
multi-class ones (bbc_topic, trec6, trec50, wn_supersense; ``taskaffinity.tasks.derived``),
so 64 tasks are 64 different labelings of real text. For each n, four variants run on
one model in interleaved rounds (a block of k steps each, medians of paired ratios):

    plain          the joint step; at most --tasks-per-step tasks per update (default 8)
    stream         + first-order recorders on every step (Gram, cosine, η G/L; exact, n×P rows)
    stream_sketch  + the same through a CountSketch of --sketch-dim buckets (n×d rows)
    probe_sampled  + one exact lookahead probe per block on --probe-sources sampled sources
                   and --probe-targets sampled targets (sgd rule)

Printed per n: plain step seconds, the three ratios, the probe's cost-model bound
1 + s·t·b/(3Bk) for s sources × t targets with probe batches of b and training batch B
(plus its own gradient pass, (s+t)·b/(Bk)), the stream buffers' MB and peak RSS.
``--ddp`` instead runs the same affinity config with 1 process and with
``torchrun --nproc_per_node 2`` (gloo on CPU) and prints the largest relative
difference per estimator and both wall times. Examples:

    python bench/scale.py --tasks 8 16 32 64 --rounds 3          # CPU, tiny encoder
    python bench/scale.py --tasks 8 64 --model packaged          # MiniLM (on a GPU)
    python bench/scale.py --ddp
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from taskaffinity.affinity.probe import LookaheadRecorder  # noqa: E402
from taskaffinity.affinity.stream import StreamRecorder  # noqa: E402
from taskaffinity.api import build  # noqa: E402
from taskaffinity.config import DataConfig, config_from_dict  # noqa: E402
from taskaffinity.tasks.entries import real_task_entries  # noqa: E402
from taskaffinity.training.loop import JointTrainer  # noqa: E402

TINY = {
    "init": "random",
    "overrides": {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128},
}
BASE = {
    "init": "random",
    "overrides": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
}
MODELS = {"tiny": TINY, "packaged": {}, "base": BASE}


def measure(n: int, args) -> dict:
    data = {"max_train": args.max_train, "max_eval": 20}
    if args.data:  # an exported folder (bench/export_bench_data.py): no catalog packages needed
        manifest = json.loads((args.data / "tasks.json").read_text())
        entries, base = manifest["tasks"][:n], args.data
        data["deduplicate"] = False  # exported rows are already de-duplicated; derived tasks share texts
        model = {**MODELS[args.model], "init": "random", "name": str(args.data / manifest["model"])}
    else:
        entries, base, model = real_task_entries(n, DataConfig(**data)), None, MODELS[args.model]
    config = config_from_dict(
        {
            "seed": 0,
            "tasks": entries,
            "model": {**model, "max_length": args.max_length},
            "data": data,
            "training": {
                "steps": 10_000,
                "batch_size": args.batch_size,
                "sampling": "uniform",
                "tasks_per_step": args.tasks_per_step or None,
                "eval_every": 10**9,
                "checkpoint_every": 10**9,
                "warmup_ratio": 0.0,
            },
        },
        where="bench",
        base_dir=base,
    )
    tasks, model, tokenizer = build(config, progress=False)
    trainer = JointTrainer(config, tasks, model, tokenizer, progress=False)
    variants = {
        "plain": [],
        "stream": [StreamRecorder(optimizer_rule=False, window=args.k)],
        "stream_sketch": [StreamRecorder(optimizer_rule=False, window=args.k, sketch_dim=args.sketch_dim)],
        "probe_sampled": [
            LookaheadRecorder(
                rules=("sgd",),
                every=args.k,
                batch_size=args.probe_batch,
                sources=args.probe_sources,
                targets=args.probe_targets,
            )
        ],
    }
    step = 0
    for _ in range(args.warmup_steps):  # allocator and thread-pool warm-up, not timed
        step += 1
        trainer.train_step(step)
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, callbacks in variants.items():
            trainer.set_callbacks(callbacks)
            if name == "probe_sampled":  # the block's one probe falls on its first step
                callbacks[0].start_step = step + 1
            _sync()
            started = time.perf_counter()
            for _ in range(args.k):
                step += 1
                trainer.train_step(step)
            _sync()
            times[name].append(time.perf_counter() - started)

    def ratio(name):
        return round(statistics.median(v / p for v, p in zip(times[name], times["plain"])), 3)

    def buffer_mb(recorder):
        return round((recorder.rows.nbytes if recorder.rows else 0) / 2**20, 1)

    s, t = min(args.probe_sources or n, n), min(args.probe_targets or n, n)
    lookahead = s * t * args.probe_batch / (3 * args.batch_size)  # in training steps (≈3 forwards of B each)
    gradients = min(n, s + t) * args.probe_batch / args.batch_size  # the probe's own per-task gradient pass
    return {
        "n": n,
        "shared_params": sum(p.numel() for _, p in model.shared_parameters()),
        "plain_step_s": round(statistics.median(times["plain"]) / args.k, 4),
        "stream": ratio("stream"),
        "stream_sketch": ratio("stream_sketch"),
        "probe_sampled": ratio("probe_sampled"),
        "probe_bound": round(1 + lookahead / args.k, 3),
        "probe_bound_grads": round(1 + (lookahead + gradients) / args.k, 3),
        "stream_mb": buffer_mb(variants["stream"][0]),
        "sketch_mb": buffer_mb(variants["stream_sketch"][0]),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cuda_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None,
    }


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def ddp_check(args) -> dict:
    """The same affinity run with 1 process and with torchrun over 2; largest relative differences."""
    import pandas as pd

    config = {
        "seed": 0,
        "tasks": ["trec6", "sms_spam", "vader_tweets", "bbc_topic", "rt_sentiment", "wn_relation"],
        "model": {
            **TINY,
            "max_length": 32,
            "head_dropout": 0.0,
            "overrides": {**TINY["overrides"], "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
        },
        "data": {"max_train": 300, "max_eval": 50},
        "training": {
            "steps": 20,
            "head_warmup_steps": 5,
            "batch_size": 24,
            "eval_every": 1000,
            "checkpoint_every": 1000,
            "device": "cpu",
        },
        "affinity": {"rules": ["sgd", "optimizer"], "probe_every": 5, "probe_batch_size": 16, "stream_window": 5},
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        walls = {}
        for label, launcher in (
            ("one", []),
            ("two", ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]),
        ):
            started = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    *launcher,
                    "-m",
                    "taskaffinity",
                    "affinity",
                    str(path),
                    "--out",
                    str(Path(tmp) / label),
                    "--quiet",
                ],
                env=env,
                check=True,
                capture_output=True,
            )
            walls[label] = round(time.perf_counter() - started, 1)
        a, b = (pd.read_parquet(Path(tmp) / label / "affinity.parquet") for label in ("one", "two"))
    merged = a.merge(b, on=["step", "estimator", "source", "target"], suffixes=("_one", "_two"))
    relative = {
        est: float((g.value_one - g.value_two).abs().max() / g.value_one.abs().max())
        for est, g in merged.groupby("estimator")
    }
    return {"records": len(a), "matched": len(merged), "wall_s": walls, "max_relative_difference": relative}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tasks-per-step", type=int, default=8, help="0: every task in every update")
    parser.add_argument("--k", type=int, default=10, help="steps per block (stream window, probe interval)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--max-train", type=int, default=2000)
    parser.add_argument("--sketch-dim", type=int, default=4096)
    parser.add_argument("--probe-sources", type=int, default=4)
    parser.add_argument("--probe-targets", type=int, default=8)
    parser.add_argument("--probe-batch", type=int, default=16)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--data", type=Path, help="exported tasks and model config (bench/export_bench_data.py)")
    parser.add_argument("--ddp", action="store_true", help="run the 1- vs 2-process equivalence check instead")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    if args.ddp:
        result = ddp_check(args)
        print(
            json.dumps(result, indent=2)
            if args.json
            else f"DDP check: {result['matched']}/{result['records']} records matched, wall {result['wall_s']}\n"
            + "\n".join(
                f"  {k:32s} max relative difference {v:.2e}" for k, v in result["max_relative_difference"].items()
            )
        )
        return
    rows = [measure(n, args) for n in args.tasks]
    if args.json:
        print(json.dumps({"settings": vars(args), "device": device, "rows": rows}, indent=2))
        return
    print(
        f"{device}; model {args.model}, batch {args.batch_size}, tasks/step {args.tasks_per_step or 'all'}, "
        f"k={args.k}, max_length {args.max_length}, sketch {args.sketch_dim}, probe {args.probe_sources} sources × "
        f"{args.probe_targets} targets × {args.probe_batch} examples, rounds {args.rounds}"
    )
    header = list(rows[0])
    print("  ".join(f"{h:>13}" for h in header))
    for row in rows:
        print("  ".join(f"{str(row[h]):>13}" for h in header))


if __name__ == "__main__":
    main()
