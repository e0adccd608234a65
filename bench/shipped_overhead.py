"""What recording affinities costs at the settings a study ships, side by side with plain training.

Builds the joint run of a study (or run) config, trains its head warm-up untimed, then alternates
blocks of ``probe_every`` joint steps between variants on the same trainer (so every variant
sees the same kind of steps; one block holds exactly one probe):

    plain      the joint step, no recorder
    shipped    the recorders the config asks for (``affinity`` section: probes and/or streams)
    probe      the config's probe alone (its rules, batch, parameters, lookahead mode)
    exact      the same probe with exact lookahead passes for the sgd and optimizer rules (the earlier
               default), for comparison
    stream     the streamed estimators alone

Printed: per variant the median over rounds of its block time over the plain block of the same
round, in CPU seconds of this process (one torch thread: robust to other work on the machine)
and in wall seconds. Example:

    python bench/shipped_overhead.py studies/quickstart.yaml --rounds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taskaffinity.affinity.probe import LookaheadRecorder  # noqa: E402
from taskaffinity.affinity.run import StartOfRecording, recorders_for  # noqa: E402
from taskaffinity.affinity.stream import StreamRecorder  # noqa: E402
from taskaffinity.config import load_config  # noqa: E402
from taskaffinity.study.settings import load_study  # noqa: E402
from taskaffinity.training.joint import build  # noqa: E402
from taskaffinity.training.loop import JointTrainer  # noqa: E402


def load(path: str):
    try:
        study = load_study(path)
        pool = set(study.settings.pool(study.config))  # the affinity run trains the pre-finetuning pool
        return dataclasses.replace(study.config, tasks=tuple(t for t in study.config.tasks if t.name in pool))
    except Exception:  # a run config (no study section)
        return load_config(path)


def variants(config) -> dict[str, list]:
    affinity = config.affinity
    shipped, start = recorders_for(config)
    shipped = [cb for cb in shipped if not isinstance(cb, StartOfRecording)]
    common = dict(
        every=affinity.probe_every,
        batch_size=affinity.probe_batch_size,
        split=affinity.probe_split,
        start_step=1,
        parameters=affinity.parameters,
        seed=config.seed,
    )
    out = {"plain": [], "shipped": shipped}
    if affinity.rules:
        out["probe"] = [LookaheadRecorder(rules=affinity.rules, exact=affinity.lookahead == "exact", **common)]
    out["exact"] = [LookaheadRecorder(rules=("sgd", "optimizer"), exact=True, **common)]
    if affinity.stream:
        out["stream"] = [
            StreamRecorder(
                window=affinity.stream_window, start_step=1, parameters=affinity.parameters, seed=config.seed
            )
        ]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = load(args.config)
    kinds = variants(config)
    # enough joint steps for every round (a longer schedule changes the learning rates, not the cost)
    needed = args.rounds * len(kinds) * config.affinity.probe_every
    config = dataclasses.replace(
        config,
        training=dataclasses.replace(
            config.training, steps=max(config.training.steps, needed), eval_every=10**9, checkpoint_every=10**9
        ),
    )
    tasks, model, tokenizer = build(config, progress=False)
    trainer = JointTrainer(config, tasks, model, tokenizer, progress=False)
    step = 0
    for _ in range(config.training.head_warmup_steps):  # heads warm up: not what is compared
        step += 1
        trainer.train_step(step)
    every = config.affinity.probe_every
    cpu = {name: [] for name in kinds}
    wall = {name: [] for name in kinds}
    for _ in range(args.rounds):
        for name, callbacks in kinds.items():
            trainer.set_callbacks(callbacks)
            for cb in callbacks:
                if hasattr(cb, "start_step"):
                    cb.start_step = step + 1  # one probe at the block's first step
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(every):
                step += 1
                trainer.train_step(step)
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - w0)
    result = {
        "config": args.config,
        "tasks": len(tasks),
        "probe_every": every,
        "probe_batch_size": config.affinity.probe_batch_size,
        "rules": list(config.affinity.rules),
        "lookahead": config.affinity.lookahead,
        "parameters": config.affinity.parameters,
        "rounds": args.rounds,
        "plain_block_cpu_seconds": statistics.median(cpu["plain"]),
    }
    for name in kinds:
        if name == "plain":
            continue
        result[f"{name}_cpu"] = statistics.median(c / p for c, p in zip(cpu[name], cpu["plain"]))
        result[f"{name}_wall"] = statistics.median(w / p for w, p in zip(wall[name], wall["plain"]))
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(
        f"{args.config}: {len(tasks)} tasks, probe every {every} steps, {config.affinity.probe_batch_size} examples "
        f"per task, rules {', '.join(config.affinity.rules)}, {config.affinity.lookahead}, parameters "
        f"{config.affinity.parameters}; plain block {result['plain_block_cpu_seconds']:.1f} CPU s"
    )
    for name in kinds:
        if name != "plain":
            print(f"  {name:8s} {result[f'{name}_cpu']:.2f}x plain (CPU)   {result[f'{name}_wall']:.2f}x (wall)")


if __name__ == "__main__":
    main()
