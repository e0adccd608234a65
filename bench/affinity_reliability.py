"""How reliable is each estimator, and why do streamed and probe Gram matrices disagree?

Runs the joint training of a study config with its own affinity recorders, plus
reference recorders that measure the same quantities differently, all in one run
(so they see the same parameters at the same steps):

    val<B>/      probes of B validation examples per task, eval mode (no dropout)
    train<B>/    probes of B training examples per task, eval mode      (split differs from val<B>)
    dropout<B>/  probes of B training examples per task, train mode     (dropout on, as the stream sees)
    noemb/       the streamed estimators without the token-embedding matrix

Reference probes record the Gram matrix and cosine only (no lookahead passes). Printed:
split-half reliability of every estimator (pooled and within target, Spearman–Brown
corrected), the share of off-diagonal pairs whose interval excludes 0, the share of
variance in per-target offsets, and the agreement of chosen pairs of estimators
against the ceiling their reliabilities allow. Writes ``affinity.parquet`` (all
estimators) and ``reliability.json`` to ``--out``. Example:

    python bench/affinity_reliability.py studies/quickstart.yaml --out runs/reliability_quickstart
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taskaffinity.affinity.fidelity import agreement, off_diagonal  # noqa: E402
from taskaffinity.affinity.probe import LookaheadRecorder  # noqa: E402
from taskaffinity.affinity.reliability import estimator_reliability  # noqa: E402
from taskaffinity.affinity.run import recorders_for  # noqa: E402
from taskaffinity.affinity.store import AffinityStore  # noqa: E402
from taskaffinity.affinity.stream import StreamRecorder  # noqa: E402
from taskaffinity.config import load_config  # noqa: E402
from taskaffinity.stats import ceiling  # noqa: E402
from taskaffinity.training.joint import train_joint_model  # noqa: E402


class TrainModeProbe(LookaheadRecorder):
    """A probe that keeps dropout on: the conditions the streamed gradients are measured in."""

    def probe(self, context, step):
        model = context.model
        model.eval = lambda: model  # the probe switches to eval mode through this call
        try:
            return super().probe(context, step)
        finally:
            del model.eval


def reference_recorders(config, start: int, batch: int, probes: int) -> dict[str, object]:
    total = config.training.head_warmup_steps + config.training.steps
    every = max(1, (total - start + 1) // probes)
    common = dict(
        rules=(),
        every=every,
        batch_size=batch,
        start_step=start,
        parameters=config.affinity.parameters,
        seed=config.seed + 1,
    )
    return {
        f"val{batch}/": LookaheadRecorder(split="validation", **common),
        f"train{batch}/": LookaheadRecorder(split="train", **common),
        f"dropout{batch}/": TrainModeProbe(split="train", **common),
        "noemb/": StreamRecorder(
            start_step=start,
            window=config.affinity.stream_window,
            parameters="no_embeddings",
            optimizer_rule="optimizer" in config.affinity.rules,
            seed=config.seed,
        ),
    }


PAIRS = [
    ("stream_gram", "{v}gram"),
    ("stream_cosine", "{v}cosine"),
    ("noemb/stream_gram", "{v}gram"),
    ("noemb/stream_cosine", "{v}cosine"),
    ("gram", "{v}gram"),
    ("cosine", "{v}cosine"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, help="joint steps (default: the config's)")
    parser.add_argument("--batch", type=int, default=128, help="examples per task of the reference probes")
    parser.add_argument("--probes", type=int, default=16, help="reference probes over the recorded steps")
    args = parser.parse_args()

    config = load_config(args.config)
    if args.steps:
        config = dataclasses.replace(config, training=dataclasses.replace(config.training, steps=args.steps))
    own, start = recorders_for(config)
    extra = reference_recorders(config, start, args.batch, args.probes)
    started = time.perf_counter()
    result = train_joint_model(config, None, callbacks=[*own, *extra.values()])
    seconds = time.perf_counter() - started
    records = [r for cb in own for r in getattr(cb, "records", [])]
    for prefix, cb in extra.items():
        records += [{**r, "estimator": prefix + r["estimator"]} for r in cb.records]
    store = AffinityStore(pd.DataFrame(records), {"tasks": list(result.trainer.tasks)})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store.save(out / "affinity.parquet")

    rows = {}
    for estimator in store.estimators:
        summary = store.summary(estimator, n_boot=500, seed=0)
        rows[estimator] = estimator_reliability(store, estimator, summary=summary)
    table = pd.DataFrame(rows).T
    print(f"{config.name}: {len(store.tasks)} tasks, recording from step {start}, {seconds:.0f} s")
    columns = [
        "samples",
        "reliability",
        "within_target_reliability",
        "significant_share",
        "target_share",
        "source_share",
        "samples_for_0.9",
    ]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table[columns].to_string(float_format=lambda v: f"{v:.3f}"))
    comparisons = []
    for a, b in PAIRS:
        b = b.format(v=f"val{args.batch}/")
        for reference in (
            b,
            b.replace(f"val{args.batch}/", f"train{args.batch}/"),
            b.replace(f"val{args.batch}/", f"dropout{args.batch}/"),
        ):
            if a not in rows or reference not in rows or a == reference:
                continue
            left = off_diagonal(store.matrix(a).stack().rename("value").reset_index())
            right = off_diagonal(store.matrix(reference).stack().rename("value").reset_index())
            both = left.merge(right, on=["source", "target"])
            agree = agreement(both["value_x"].to_numpy(), both["value_y"].to_numpy())
            comparisons.append(
                {
                    "a": a,
                    "b": reference,
                    "spearman": agree["spearman"],
                    "ceiling": ceiling(rows[a]["reliability"], rows[reference]["reliability"]),
                }
            )
    comparisons = pd.DataFrame(comparisons)
    print(comparisons.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    (out / "reliability.json").write_text(
        json.dumps(
            {
                "config": args.config,
                "seconds": seconds,
                "start_step": start,
                "estimators": rows,
                "agreement": comparisons.to_dict("records"),
            },
            indent=2,
            default=float,
        )
    )


if __name__ == "__main__":
    main()
