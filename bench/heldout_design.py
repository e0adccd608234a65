"""Which held-out probe design buys the most ranking information per second?

``record``: trains the affinity run of a study config (same tasks, seed, steps, warm-up as its
affinity run; no other recorder) and, every ``--every`` steps after the warm-up, computes the
gradient of the shared parameters for *every* chunk of ``--chunk`` examples of each task's
held-out pool (the validation split, eval mode). Each chunk gradient is split by parameter
group (embeddings, each transformer layer) and CountSketched per group (dimension ``--sketch``,
E[⟨Sx, Sy⟩] = ⟨x, y⟩); the probe point keeps only the chunk × chunk Gram matrix per group, for
the plain metric (g·g', the SGD rule) and the Adam-preconditioned one (g·D g', D = 1/(√v̂ + ε):
the optimizer rule's first-order form without its source-independent momentum term, which
cancels within target). Because the gradient of a batch's mean loss is the mean of its equal-sized
chunks' gradients, every probe design built from whole chunks is then an exact sum of Gram blocks:

    G(B_i, B_j) = mean_{c ∈ B_i, c' ∈ B_j} K(c, c')

so one recording emulates any probe batch size (multiple of the chunk), number and timing of
probes, fixed or rotating batches, disjoint draws, and any subset of parameter groups (what a
backward stopped at the top layers would measure). It also times, side by side, one plain training
step, and a held-out forward+backward of ``--chunk`` examples per task through all layers and
through the top 1, 2 and 3 layers only (the cost of each design).

``analyse``: reads the recording(s) and a validation study's measured pair gains, and prints for
each design the within-target Spearman against the gains (mean and spread over disjoint draws of
held-out examples, bootstrap CI over targets), its cost as overhead × the plain run, and the paired
difference against a reference design (bootstrap over targets).

    python bench/heldout_design.py record studies/validation_b.yaml --out runs/design_b
    python bench/heldout_design.py analyse runs/design_b --gains runs/validation_b/tables/gains.csv
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taskaffinity.affinity.gradient_rows import CountSketch  # noqa: E402
from taskaffinity.batching import collate  # noqa: E402
from taskaffinity.callbacks import Callback, training_context  # noqa: E402
from taskaffinity.joint import train_joint_model  # noqa: E402
from taskaffinity.study.settings import load_study  # noqa: E402

_LAYER = re.compile(r"\.layers?\.(\d+)\.")


def group_of(name: str) -> str:
    match = _LAYER.search(name)
    return f"layer{int(match.group(1))}" if match else ("embeddings" if "embeddings" in name else "other")


class ChunkGramRecorder(Callback):
    """Chunk × chunk Gram matrices of held-out gradients per parameter group (module docstring)."""

    def __init__(self, *, start: int, every: int, chunk: int, sketch: int, seed: int, out: Path):
        self.start, self.every, self.chunk, self.sketch_dim, self.seed = start, every, chunk, sketch, seed
        self.out = out
        self.points: list[int] = []
        self.timing: dict[str, list[float]] = {}
        self._setup = None

    def setup(self, context):
        model = context.model
        named = list(model.shared_parameters())
        groups: dict[str, list] = {}
        for name, param in named:
            groups.setdefault(group_of(name), []).append((name, param))
        self.groups = dict(sorted(groups.items(), key=lambda kv: (kv[0] != "embeddings", len(kv[0]), kv[0])))
        self.sketches = {g: CountSketch(sum(p.numel() for _, p in ps), self.sketch_dim, seed=self.seed + k,
                                        device=context.device) for k, (g, ps) in enumerate(self.groups.items())}
        # chunks: per task, consecutive ``chunk`` rows of a seeded permutation of its held-out pool
        self.chunks = []  # (task, chunk index, rows)
        for k, (name, task) in enumerate(context.tasks.items()):
            frame = task.split("validation")
            order = np.random.default_rng([self.seed, k, 0xC4]).permutation(len(frame))
            for c in range(len(frame) // self.chunk):
                self.chunks.append((name, c, np.sort(order[c * self.chunk:(c + 1) * self.chunk])))
        self.batches = [collate(context.tasks[t].spec.type, context.tasks[t].split("validation").iloc[rows],
                                context.tokenizer, context.max_length, context.device) for t, _, rows in self.chunks]
        self._setup = True

    def on_step_begin(self, context, step, batches):
        context = training_context(context)
        if step >= self.start and (step - self.start) % self.every == 0:
            if self._setup is None:  # after the warm-up: the encoder's parameters require grad again
                self.setup(context)
            self.record(context, step)
        self._step_started = time.perf_counter()

    def on_after_optimizer_step(self, context, step, losses):
        # the step's forward, backward and update (the probe's own time is not in it)
        key = "warmup_step" if training_context(context).phase(step) == "head_warmup" else "train_step"
        self.timing.setdefault(key, []).append(time.perf_counter() - self._step_started)

    def _precondition(self, context) -> dict[str, torch.Tensor]:
        """√D per group, D = 1/(√v̂ + ε) from AdamW's second moments (ones before its first step)."""
        opt = context.optimizer
        out = {}
        for g, ps in self.groups.items():
            parts = []
            for _, p in ps:
                state = opt.state.get(p, {})
                group = next(gr for gr in opt.param_groups if any(q is p for q in gr["params"]))
                if "exp_avg_sq" in state:
                    t = float(state["step"])
                    vhat = state["exp_avg_sq"] / (1 - group["betas"][1] ** t)
                    parts.append((1.0 / (vhat.sqrt() + group["eps"])).reshape(-1))
                else:
                    parts.append(torch.ones(p.numel(), device=p.device))
            d = torch.cat(parts)
            out[g] = (d / d.mean()).sqrt()  # scale-free: only the relative weights matter for ranking
        return out

    def record(self, context, step):
        model = context.model
        was = model.training
        model.eval()
        rng = torch.get_rng_state()
        started = time.perf_counter()
        root_d = self._precondition(context)
        n, G = len(self.chunks), len(self.groups)
        plain = torch.zeros(G, n, self.sketch_dim)
        pre = torch.zeros(G, n, self.sketch_dim)
        losses = np.zeros(n)
        params = [p for ps in self.groups.values() for _, p in ps]
        for c, ((task, _, _), batch) in enumerate(zip(self.chunks, self.batches)):
            loss, _ = model.loss(task, batch)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            losses[c] = float(loss)
            offset = 0
            for g, (gname, ps) in enumerate(self.groups.items()):
                pieces = [torch.zeros(p.numel()) if gr is None else gr.reshape(-1).float()
                          for (_, p), gr in zip(ps, grads[offset: offset + len(ps)])]
                offset += len(ps)
                flat = torch.cat(pieces)
                plain[g, c] = self.sketches[gname](flat)
                pre[g, c] = self.sketches[gname](flat * root_d[gname])
        gram = np.stack([(plain[g] @ plain[g].T).double().numpy() for g in range(G)])
        gram_pre = np.stack([(pre[g] @ pre[g].T).double().numpy() for g in range(G)])
        np.savez_compressed(self.out / f"point_{step:06d}.npz", gram=gram, gram_pre=gram_pre, losses=losses)
        self.points.append(step)
        self.timing.setdefault("record", []).append(time.perf_counter() - started)
        if len(self.points) == 1:
            self.time_passes(context)
        torch.set_rng_state(rng)
        model.train(was)

    def time_passes(self, context):
        """Held-out forward+backward of one chunk per task: all layers, and top 1/2/3 layers only."""
        model = context.model
        first = {}
        for (task, _, _), batch in zip(self.chunks, self.batches):
            first.setdefault(task, batch)
        layers = sorted(g for g in self.groups if g.startswith("layer"))
        variants = {"all": [p for ps in self.groups.values() for _, p in ps]}
        for k in (1, 2, 3):
            variants[f"top{k}"] = [p for g in layers[-k:] for _, p in self.groups[g]]
        variants["forward"] = None
        for _ in range(2):  # the first round warms up
            for name, params in variants.items():
                t0 = time.perf_counter()
                for task, batch in first.items():
                    if params is None:
                        with torch.no_grad():
                            model.loss(task, batch)
                    else:
                        loss, _ = model.loss(task, batch)
                        torch.autograd.grad(loss, params, allow_unused=True)
                self.timing.setdefault(f"chunk_{name}", []).append(time.perf_counter() - t0)

    def on_train_end(self, context):
        meta = {"chunks": [[t, c, len(r)] for t, c, r in self.chunks], "groups": list(self.groups),
                "points": self.points, "chunk": self.chunk, "sketch": self.sketch_dim,
                "timing": {k: v[-1] if k.startswith("chunk_") else float(np.median(v))
                           for k, v in self.timing.items()},
                "group_sizes": {g: int(sum(p.numel() for _, p in ps)) for g, ps in self.groups.items()}}
        (self.out / "meta.json").write_text(json.dumps(meta, indent=1))


def record(args):
    study = load_study(args.study)
    config = study.config
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = config.training.head_warmup_steps + 1
    recorder = ChunkGramRecorder(start=start, every=args.every, chunk=args.chunk, sketch=args.sketch,
                                 seed=config.seed, out=out)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    result = train_joint_model(config, out / "run", callbacks=[recorder], resume=False, progress=True)
    meta = json.loads((out / "meta.json").read_text())
    meta["wall_seconds"] = time.perf_counter() - t0
    meta["tasks"] = list(result.trainer.tasks)
    meta["steps"] = config.training.steps + config.training.head_warmup_steps
    meta["batch_size"] = config.training.batch_size
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta["timing"], indent=1))


# -- analysis ------------------------------------------------------------------------------------
def load_recording(folder: Path):
    meta = json.loads((folder / "meta.json").read_text())
    points = [np.load(folder / f"point_{s:06d}.npz") for s in meta["points"]]
    return meta, points


def design_matrix(meta, points, *, batch: int, probes: list[int], groups: list[str], metric: str,
                  draw: int, rotate: bool, normalise: bool = True) -> pd.DataFrame:
    """Run-mean [source, target] affinity of one design: ``batch`` chunks per task and probe, at the
    probe points ``probes`` (indices into the recording), draw ``draw`` of disjoint chunk sets,
    rotating through the pool from probe to probe or not; first-order form η g_i·g_j / L_j (up to η)."""
    tasks = meta["tasks"]
    chunks = pd.DataFrame(meta["chunks"], columns=["task", "chunk", "rows"]).reset_index()
    index = {t: chunks[chunks["task"] == t]["index"].to_numpy() for t in tasks}
    gid = [meta["groups"].index(g) for g in groups]
    total = np.zeros((len(tasks), len(tasks)))
    for k, p in enumerate(probes):
        point = points[p]
        gram = point[metric][gid].sum(axis=0)
        picks = {}
        for t in tasks:
            own = index[t]
            slots = len(own) // batch  # disjoint sets of ``batch`` chunks in this task's pool
            if slots == 0:
                picks[t] = own
                continue
            slot = (draw + (k if rotate else 0)) % slots
            picks[t] = own[slot * batch:(slot + 1) * batch]
        means = np.array([[gram[np.ix_(picks[a], picks[b])].mean() for b in tasks] for a in tasks])
        losses = np.array([point["losses"][picks[t]].mean() for t in tasks])
        total += means / losses[None, :] if normalise else means
    return pd.DataFrame(total / len(probes), index=tasks, columns=tasks)


def within_target(matrix: pd.DataFrame, gains: pd.DataFrame) -> pd.Series:
    from scipy.stats import spearmanr

    out = {}
    for target, g in gains.groupby("target"):
        if target not in matrix.columns:
            continue
        values = [matrix.loc[s, target] for s in g["source"]]
        if len(g) >= 3:
            out[target] = spearmanr(values, g["gain"]).statistic
    return pd.Series(out)


def analyse(args):
    meta, points = load_recording(Path(args.folder))
    gains = pd.read_csv(args.gains)
    gains = gains[gains["source"] != gains["target"]]
    timing = meta["timing"]
    tasks, n = meta["tasks"], len(meta["tasks"])
    train_step = timing["train_step"]
    warmup = meta["points"][0] - 1
    plain_run = warmup * timing.get("warmup_step", train_step) + (meta["steps"] - warmup) * train_step
    layers = [g for g in meta["groups"] if g.startswith("layer")]
    parameter_sets = {"all": meta["groups"], "no_embeddings": [g for g in meta["groups"] if g != "embeddings"],
                      "top1": layers[-1:], "top2": layers[-2:], "top3": layers[-3:]}
    cost_key = {"all": "chunk_all", "no_embeddings": "chunk_all", "top1": "chunk_top1", "top2": "chunk_top2",
                "top3": "chunk_top3"}
    n_points = len(points)
    min_chunks = min(sum(1 for c in meta["chunks"] if c[0] == t) for t in tasks)
    rows = []
    batches = [b for b in (1, 2, 4, 8, 16) if b <= max(1, min_chunks)]
    schedules = {f"every{s}": list(range(0, n_points, s)) for s in (1, 2, 4, 8) if s <= n_points}
    schedules["last_half"] = list(range(n_points // 2, n_points))
    schedules["first_half"] = list(range(0, n_points // 2))
    for (pname, groups), batch, (sname, probes), metric, rotate in product(
            parameter_sets.items(), batches, schedules.items(), ("gram", "gram_pre"), (False, True)):
        if rotate and batch * 2 > min_chunks:
            continue  # nothing to rotate through
        draws = max(1, min(args.draws, min_chunks // batch))
        per_draw = []
        for d in range(draws):
            matrix = design_matrix(meta, points, batch=batch, probes=probes, groups=groups, metric=metric,
                                   draw=d, rotate=rotate)
            per_draw.append(within_target(matrix, gains))
        frame = pd.concat(per_draw, axis=1)
        means = frame.mean(axis=0)
        probe_seconds = len(probes) * batch * timing[cost_key[pname]]
        rows.append({"parameters": pname, "batch": batch * meta["chunk"], "schedule": sname, "probes": len(probes),
                     "rule": "sgd" if metric == "gram" else "optimizer", "rotate": rotate, "draws": draws,
                     "rho_mean": float(means.mean()), "rho_sd": float(means.std(ddof=1)) if draws > 1 else np.nan,
                     "rho_min": float(means.min()), "overhead": 1 + probe_seconds / plain_run,
                     "per_target": frame.mean(axis=1).to_dict()})
    table = pd.DataFrame(rows).sort_values("rho_mean", ascending=False)
    out = Path(args.folder) / "designs.csv"
    table.drop(columns=["per_target"]).to_csv(out, index=False)
    with pd.option_context("display.width", 200, "display.max_rows", 60):
        print(table.drop(columns=["per_target"]).head(40).to_string(index=False))
    print(f"\n{len(table)} designs; plain run {plain_run:.0f} s ({train_step:.2f} s/step); written {out}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record")
    r.add_argument("study")
    r.add_argument("--out", required=True)
    r.add_argument("--every", type=int, default=5)
    r.add_argument("--chunk", type=int, default=16)
    r.add_argument("--sketch", type=int, default=2 ** 17)
    r.add_argument("--threads", type=int, default=1)
    a = sub.add_parser("analyse")
    a.add_argument("folder")
    a.add_argument("--gains", required=True)
    a.add_argument("--draws", type=int, default=3)
    args = parser.parse_args(argv)
    record(args) if args.command == "record" else analyse(args)


if __name__ == "__main__":
    main()
