"""Training throughput of joint multi-task training against Hugging Face's Trainer, on one GPU.

For n tasks (sub-batch b per task, global batch B = n·b) and one encoder size,
these variants run side by side in one process, in interleaved rounds (each
round: every variant in turn, ``--warmup`` untimed steps then ``--steps`` timed
steps; CUDA synchronised around the timed block):

    hf_trainer              the peer: transformers.Trainer fine-tuning
                            AutoModelForSequenceClassification (same config) on ONE
                            classification task, per-device batch B, pre-tokenised
                            examples padded per batch, bf16 where supported, its default
                            optimizer (reported), no evaluation, saving or logging
    joint_plain             taskaffinity's JointTrainer on all n tasks (uniform sampling,
                            b per task, tokenised per step as in a study), no callbacks
    joint_stream            + StreamRecorder(optimizer_rule=False, window=10): per-task
                            gradients, Gram, cosine, η G/L on every step
    joint_stream_optimizer  + StreamRecorder(optimizer_rule=True): u_i·g_j as well
    joint_*_per_task        the same with one encoder pass per task instead of one
                            packed pass for all tasks (packing is the CUDA default)
    joint_probe             + LookaheadRecorder(rules=("sgd",), every=10, batch_size=b):
                            one exact lookahead probe per 10 steps

Throughput counts what was fed to the training step: samples (examples; a
multiple-choice question counts once) and tokens (the sum of attention_mask, i.e.
non-padding tokens, of every batch actually fed, all choices included). Reported
per variant: medians over rounds of samples/s and tokens/s, medians of the
paired per-round ratios to hf_trainer, and peak CUDA memory (reset before every
variant; the other variants' models stay resident, see ``resident_mb``). The
headline is joint_stream tokens/s ÷ hf_trainer tokens/s.

hf_trainer is timed from the end of its last warm-up step to the end of its last
timed step (so its data loading is included, as the joint step's tokenisation
is); ``hf_in_step_s`` adds up on_step_begin→on_step_end alone for comparison.
Weights are random (``model.init: random``): throughput does not depend on them.
Models: ``minilm`` = the all-MiniLM-L6-v2 config (6 layers, hidden 384),
``base`` = the same with BERT-base sizes (12 layers, hidden 768, 12 heads,
intermediate 3072).

The machine this runs on needs no network and none of the data or model
packages: export everything first where they are installed, carry the folder
(a few MB) with the repository, then run:

    python bench/export_bench_data.py --out bench/data --tasks 16      # here
    python bench/gpu_throughput.py --data bench/data --model both --tasks 8 --json   # on the GPU box

CPU smoke test (tiny settings):

    python bench/gpu_throughput.py --data bench/data --device cpu --model minilm --tasks 2 \\
        --sub-batch 4 --max-length 32 --steps 2 --warmup 1 --rounds 1
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: never wait on a network
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taskaffinity.affinity.probe import LookaheadRecorder  # noqa: E402
from taskaffinity.affinity.stream import StreamRecorder  # noqa: E402
from taskaffinity.api import build  # noqa: E402
from taskaffinity.config import config_from_dict  # noqa: E402
from taskaffinity.tasks.prepare import prepare_tasks  # noqa: E402
from taskaffinity.tasks.spec import CLASSIFICATION  # noqa: E402
from taskaffinity.training.callbacks import Callback  # noqa: E402
from taskaffinity.training.loop import JointTrainer  # noqa: E402

MODELS = {
    "minilm": {},
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
}
VARIANTS = (
    "hf_trainer",
    "joint_plain",
    "joint_plain_per_task",
    "joint_stream",
    "joint_stream_per_task",
    "joint_stream_optimizer",
    "joint_probe",
)


# -- timing helpers ----------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def memory_mark(device: torch.device) -> float | None:
    """Reset the peak counter; return what is allocated now (MB)."""
    if device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device) / 2**20


def memory_peak(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


# -- the joint trainer -------------------------------------------------------------------------
class FedCounter(Callback):
    """Counts samples and non-padding tokens of the training batches (not probe batches)."""

    def __init__(self):
        self.samples, self.tokens, self.padded = 0, [], 0

    def on_step_begin(self, trainer, step, batches):
        for batch in batches.values():
            mask = batch["inputs"]["attention_mask"]
            self.samples += len(batch["labels"])
            self.padded += mask.numel()
            self.tokens.append(mask.sum())  # stays on the device: no sync inside the timed block

    def total_tokens(self) -> int:
        return int(torch.stack(self.tokens).sum()) if self.tokens else 0


def joint_callbacks(variant: str, args, first_timed_step: int) -> list[Callback]:
    variant = variant.removesuffix("_per_task")
    if variant == "joint_plain":
        return []
    if variant == "joint_stream":
        return [StreamRecorder(optimizer_rule=False, window=args.window)]
    if variant == "joint_stream_optimizer":
        return [StreamRecorder(optimizer_rule=True, window=args.window)]
    if variant == "joint_probe":  # probes fall on the first timed step and every probe_every steps after
        return [
            LookaheadRecorder(
                rules=("sgd",), every=args.probe_every, batch_size=args.sub_batch, start_step=first_timed_step
            )
        ]
    raise ValueError(variant)


class JointRunner:
    def __init__(self, config, tasks, args):
        _, model, tokenizer = build(config, progress=False, tasks=tasks)
        self.trainer = JointTrainer(config, tasks, model, tokenizer, progress=False)
        self.model = model
        self.args = args
        self.step = 0

    def run(self, variant: str) -> dict:
        trainer, args, device = self.trainer, self.args, self.trainer.device
        counter = FedCounter()
        first_timed = self.step + args.warmup + 1
        callbacks = joint_callbacks(variant, args, first_timed)
        # *_per_task: one encoder pass per task (the CPU default) instead of one packed pass
        trainer.packs_tasks = not variant.endswith("_per_task") and device.type == "cuda"
        trainer.context.packs_tasks = trainer.packs_tasks
        trainer.set_callbacks(callbacks)
        trainer.callbacks.check(trainer.context)
        resident = memory_mark(device)
        for _ in range(args.warmup):  # first-use allocations (recorder buffers) land here, untimed
            self.step += 1
            trainer.train_step(self.step)
        trainer.set_callbacks([counter, *callbacks])  # counter first: it sees the training batches
        synchronize(device)
        started = time.perf_counter()
        for _ in range(args.steps):
            self.step += 1
            trainer.train_step(self.step)
        synchronize(device)
        seconds = time.perf_counter() - started
        peak = memory_peak(device)
        trainer.set_callbacks([])
        trainer.optimizer.zero_grad(set_to_none=True)
        del callbacks
        release(device)
        return {
            "seconds": seconds,
            "samples": counter.samples,
            "tokens": counter.total_tokens(),
            "padded_tokens": counter.padded,
            "peak_mb": peak,
            "resident_mb": resident,
        }


# -- the Hugging Face peer ---------------------------------------------------------------------
class TokenizedExamples(torch.utils.data.Dataset):
    def __init__(self, features: list[dict]):
        self.features = features

    def __len__(self):
        return len(self.features)

    def __getitem__(self, i):
        return self.features[i]


class HFRunner:
    """transformers.Trainer on one classification task, a fresh Trainer (and optimizer) per round."""

    def __init__(self, model_dir: Path, overrides: dict, task, tokenizer, args, device: torch.device):
        from transformers import AutoConfig, AutoModelForSequenceClassification

        self.args, self.device, self.task, self.tokenizer = args, device, task, tokenizer
        config = AutoConfig.from_pretrained(model_dir, num_labels=task.n_classes, **overrides)
        torch.manual_seed(0)
        self.model = AutoModelForSequenceClassification.from_config(config)
        frame = task.train
        encoded = tokenizer(frame["text"].tolist(), truncation=True, max_length=args.max_length)
        self.dataset = TokenizedExamples(
            [
                {**{k: v[i] for k, v in encoded.items()}, "labels": int(label)}
                for i, label in enumerate(frame["label"].tolist())
            ]
        )
        batch = args.tasks * args.sub_batch
        if len(self.dataset) < batch:
            raise SystemExit(
                f"error: hf_trainer task '{task.name}' has {len(self.dataset)} training rows, fewer "
                f"than one batch of {batch}: export with a larger --max-train"
            )
        self.output_dir = tempfile.mkdtemp(prefix="gpu_throughput_")

    def training_arguments(self):
        from transformers import TrainingArguments

        args = self.args
        return TrainingArguments(
            output_dir=self.output_dir,
            per_device_train_batch_size=args.tasks * args.sub_batch,
            max_steps=args.warmup + args.steps,
            learning_rate=5e-5,
            weight_decay=0.01,
            max_grad_norm=1.0,
            bf16=self.device.type == "cuda" and torch.cuda.is_bf16_supported(),
            use_cpu=self.device.type == "cpu",
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            disable_tqdm=True,
            dataloader_drop_last=True,
            remove_unused_columns=False,
            dataloader_num_workers=0,
            seed=0,
        )

    def run(self) -> dict:
        from transformers import DataCollatorWithPadding, PrinterCallback, ProgressCallback, Trainer, TrainerCallback

        args, device = self.args, self.device
        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
        fed = []  # (steps completed before this batch, non-padding tokens, padded tokens, samples)

        class Timer(TrainerCallback):
            t0 = t1 = None
            in_step = 0.0

            def on_step_begin(self, targs, state, control, **kwargs):
                if state.global_step >= args.warmup:
                    sync()
                    self.begin = time.perf_counter()

            def on_step_end(self, targs, state, control, **kwargs):
                sync()
                now = time.perf_counter()
                if state.global_step == args.warmup:
                    self.t0 = now
                elif state.global_step > args.warmup:
                    self.in_step += now - self.begin
                    if state.global_step == args.warmup + args.steps:
                        self.t1 = now

        class CountingTrainer(Trainer):
            def compute_loss(self, model, inputs, *rest, **kwargs):
                mask = inputs["attention_mask"]
                fed.append((self.state.global_step, mask.sum(), mask.numel(), len(inputs["labels"])))
                return super().compute_loss(model, inputs, *rest, **kwargs)

        timer = Timer()
        trainer = CountingTrainer(
            model=self.model,
            args=self.training_arguments(),
            train_dataset=self.dataset,
            data_collator=DataCollatorWithPadding(self.tokenizer),
            callbacks=[timer],
        )
        trainer.remove_callback(PrinterCallback)  # no log lines on stdout (--json stays parseable)
        trainer.remove_callback(ProgressCallback)
        resident = memory_mark(device)
        trainer.train()
        peak = memory_peak(device)
        if timer.t0 is None or timer.t1 is None:
            raise RuntimeError("hf_trainer: the timed steps did not run (check --warmup / --steps)")
        timed = [f for f in fed if f[0] >= args.warmup]
        optim = trainer.args.optim
        del trainer
        self.model.zero_grad(set_to_none=True)
        release(device)
        return {
            "seconds": timer.t1 - timer.t0,
            "in_step_seconds": timer.in_step,
            "samples": sum(f[3] for f in timed),
            "tokens": int(sum(int(f[1]) for f in timed)),
            "padded_tokens": sum(f[2] for f in timed),
            "peak_mb": peak,
            "resident_mb": resident,
            "optim": str(getattr(optim, "value", optim)),
        }


# -- the benchmark -----------------------------------------------------------------------------
def load_entries(data: Path, n: int) -> list[dict]:
    manifest = json.loads((data / "tasks.json").read_text(encoding="utf-8"))
    entries = manifest["tasks"]
    if n > len(entries):
        raise SystemExit(
            f"error: {data} holds {len(entries)} tasks, --tasks asks for {n}: "
            f"re-export with bench/export_bench_data.py --tasks {n}"
        )
    return entries[:n]


def study_config(args, entries: list[dict], overrides: dict, device: str):
    return config_from_dict(
        {
            "seed": 0,
            "tasks": entries,
            "model": {
                "name": str((args.data / "model").resolve()),
                "init": "random",
                "overrides": overrides,
                "max_length": args.max_length,
            },
            "data": {"max_train": None, "max_eval": None, "deduplicate": False},  # rows as exported
            "training": {
                "steps": 10**6,
                "batch_size": args.tasks * args.sub_batch,
                "sampling": "uniform",
                "eval_every": 10**9,
                "checkpoint_every": 10**9,
                "warmup_ratio": 0.0,
                "amp": True,
                "device": device,
            },
        },
        where=str(args.data / "tasks.json"),
        base_dir=args.data,
    )


def measure(model_name: str, args, tasks, entries, device: torch.device) -> dict:
    overrides = MODELS[model_name]
    config = study_config(args, entries, overrides, str(device))
    joint = JointRunner(config, tasks, args)
    hf_task = next((t for t in tasks.values() if t.spec.type == CLASSIFICATION and t.spec.duplicate_of is None), None)
    if args.hf_task:
        hf_task = tasks.get(args.hf_task)
    if hf_task is None or hf_task.spec.type != CLASSIFICATION:
        raise SystemExit("error: hf_trainer needs a classification task among the exported ones (see --hf-task)")
    hf = HFRunner(args.data / "model", overrides, hf_task, joint.trainer.tokenizer, args, device)
    runs = {v: [] for v in args.variants}
    for _ in range(args.rounds):
        for variant in args.variants:
            runs[variant].append(hf.run() if variant == "hf_trainer" else joint.run(variant))
            last = runs[variant][-1]
            print(
                f"{model_name} {variant}: {1000 * last['seconds'] / args.steps:.1f} ms/step, "
                f"{last['samples'] / last['seconds']:.0f} samples/s",
                file=sys.stderr,
                flush=True,
            )

    def per_round(variant, what):
        return [r[what] / r["seconds"] for r in runs[variant]]

    rows = []
    for variant in args.variants:
        row = {
            "model": model_name,
            "variant": variant,
            "samples_per_s": round(statistics.median(per_round(variant, "samples")), 1),
            "tokens_per_s": int(round(statistics.median(per_round(variant, "tokens")))),
            "ratio_samples": None,
            "ratio_tokens": None,
            "tokens_per_sample": round(
                sum(r["tokens"] for r in runs[variant]) / max(sum(r["samples"] for r in runs[variant]), 1), 1
            ),
            "padding_fraction": round(
                1 - sum(r["tokens"] for r in runs[variant]) / max(sum(r["padded_tokens"] for r in runs[variant]), 1), 3
            ),
            "step_ms": round(1000 * statistics.median(r["seconds"] for r in runs[variant]) / args.steps, 1),
            "peak_mb": _max_or_none(r["peak_mb"] for r in runs[variant]),
            "resident_mb": _max_or_none(r["resident_mb"] for r in runs[variant]),
        }
        if "hf_trainer" in runs:
            for what, key in (("samples", "ratio_samples"), ("tokens", "ratio_tokens")):
                row[key] = round(
                    statistics.median(a / b for a, b in zip(per_round(variant, what), per_round("hf_trainer", what))), 3
                )
        if variant == "hf_trainer":
            row["hf_in_step_ms"] = round(
                1000 * statistics.median(r["in_step_seconds"] for r in runs[variant]) / args.steps, 1
            )
            row["optim"] = runs[variant][0]["optim"]
        rows.append(row)
    info = {
        "model": model_name,
        "encoder_params": sum(p.numel() for _, p in joint.model.shared_parameters()),
        "hf_task": hf_task.name,
        "joint_tasks": list(tasks),
        "attn_implementation": getattr(joint.model.encoder.config, "_attn_implementation", None),
        "param_dtype": str(next(joint.model.parameters()).dtype).removeprefix("torch."),
        "autocast": "bf16" if joint.trainer.use_amp else None,
    }
    del joint, hf
    release(device)
    return {"info": info, "rows": rows}


def _max_or_none(values):
    values = [v for v in values if v is not None]
    return round(max(values), 1) if values else None


def environment(device: torch.device) -> dict:
    import transformers

    out = {
        "device": device.type,
        "device_name": None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": sys.version.split()[0],
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        out["device_name"] = torch.cuda.get_device_name(device)
        out["bf16_supported"] = torch.cuda.is_bf16_supported()
        out["cuda"] = torch.version.cuda
    out["dtype"] = "float32 weights, bf16 autocast" if out.get("bf16_supported") else "float32"
    return out


def headline(rows: list[dict]) -> float | None:
    stream = next((r for r in rows if r["variant"] == "joint_stream"), None)
    return stream["ratio_tokens"] if stream else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder written by bench/export_bench_data.py")
    parser.add_argument("--model", choices=["minilm", "base", "both"], default="both")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--sub-batch", type=int, default=32, help="examples per task per step (global: tasks × this)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant per round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per variant per round (>= 1)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=10, help="StreamRecorder window")
    parser.add_argument(
        "--probe-every",
        type=int,
        default=10,
        help="steps per probe (keep --steps a multiple of it: one probe per block of it)",
    )
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--hf-task", default=None, help="task for hf_trainer (default: first classification task)")
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 1 or args.rounds < 1:
        parser.error("--warmup, --steps and --rounds must be >= 1")
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    entries = load_entries(args.data, args.tasks)
    # Tasks once for both models: read back from the exported files, nothing re-split or re-capped.
    config = study_config(args, entries, {}, str(device))
    tasks = prepare_tasks(config.tasks, config.data, progress=False)
    models = ["minilm", "base"] if args.model == "both" else [args.model]
    results = [measure(m, args, tasks, entries, device) for m in models]
    env = environment(device)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    if args.json:
        print(
            json.dumps(
                {
                    "environment": env,
                    "settings": settings,
                    "results": [{**r, "headline_stream_tokens_ratio": headline(r["rows"])} for r in results],
                },
                indent=2,
            )
        )
        return
    print(
        f"{env['device_name'] or env['device']}  torch {env['torch']}  transformers {env['transformers']}  "
        f"{env['dtype']}"
    )
    print(
        f"{args.tasks} tasks × sub-batch {args.sub_batch} = batch {args.tasks * args.sub_batch}, "
        f"max_length {args.max_length}, {args.rounds} rounds × ({args.warmup} warm-up + {args.steps} timed steps)"
    )
    columns = [
        "variant",
        "samples_per_s",
        "tokens_per_s",
        "ratio_samples",
        "ratio_tokens",
        "tokens_per_sample",
        "padding_fraction",
        "step_ms",
        "peak_mb",
    ]
    for result in results:
        info = result["info"]
        print(
            f"\n{info['model']}: {info['encoder_params'] / 1e6:.1f}M encoder parameters, "
            f"attention {info['attn_implementation']}, hf_trainer on '{info['hf_task']}'"
        )
        print("  ".join(f"{c:>22}" if i == 0 else f"{c:>14}" for i, c in enumerate(columns)))
        for row in result["rows"]:
            print("  ".join(f"{str(row[c]):>22}" if i == 0 else f"{str(row[c]):>14}" for i, c in enumerate(columns)))
        hf_row = next((r for r in result["rows"] if r["variant"] == "hf_trainer"), None)
        if hf_row:
            print(f"hf_trainer: {hf_row['optim']}, {hf_row['hf_in_step_ms']} ms/step inside on_step_begin→end")
        ratio = headline(result["rows"])
        if ratio is not None:
            print(f"headline joint_stream / hf_trainer tokens/s: {ratio} (target >= 0.9)")


if __name__ == "__main__":
    main()
