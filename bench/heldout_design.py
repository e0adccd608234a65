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
difference against a reference design (bootstrap over targets). ``--whole-pool`` scores instead the
designs that use each task's *whole* held-out pool at every recorded point (no draw left to vary);
not a strict bound on cheaper probes (agreement with noisy gains is not monotone in probe noise).

    python bench/heldout_design.py record studies/validation_b.yaml --out runs/design_b
    python bench/heldout_design.py analyse runs/design_b --gains runs/validation_b/tables/gains.csv
    python bench/heldout_design.py analyse runs/design_b --gains runs/validation_b/tables/gains.csv \
        --whole-pool --reference top1/b128/every2/rotate/sgd --out runs/design_b/whole_pool
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
from taskaffinity.study.settings import load_study  # noqa: E402
from taskaffinity.training.batching import collate  # noqa: E402
from taskaffinity.training.callbacks import Callback, training_context  # noqa: E402
from taskaffinity.training.joint import train_joint_model  # noqa: E402

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
        self.sketches = {
            g: CountSketch(sum(p.numel() for _, p in ps), self.sketch_dim, seed=self.seed + k, device=context.device)
            for k, (g, ps) in enumerate(self.groups.items())
        }
        # chunks: per task, consecutive ``chunk`` rows of a seeded permutation of its held-out pool
        self.chunks = []  # (task, chunk index, rows)
        for k, (name, task) in enumerate(context.tasks.items()):
            frame = task.split("validation")
            order = np.random.default_rng([self.seed, k, 0xC4]).permutation(len(frame))
            for c in range(len(frame) // self.chunk):
                self.chunks.append((name, c, np.sort(order[c * self.chunk : (c + 1) * self.chunk])))
        self.batches = [
            collate(
                context.tasks[t].spec.type,
                context.tasks[t].split("validation").iloc[rows],
                context.tokenizer,
                context.max_length,
                context.device,
            )
            for t, _, rows in self.chunks
        ]
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
                pieces = [
                    torch.zeros(p.numel()) if gr is None else gr.reshape(-1).float()
                    for (_, p), gr in zip(ps, grads[offset : offset + len(ps)])
                ]
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
        meta = {
            "chunks": [[t, c, len(r)] for t, c, r in self.chunks],
            "groups": list(self.groups),
            "points": self.points,
            "chunk": self.chunk,
            "sketch": self.sketch_dim,
            "timing": {k: v[-1] if k.startswith("chunk_") else float(np.median(v)) for k, v in self.timing.items()},
            "group_sizes": {g: int(sum(p.numel() for _, p in ps)) for g, ps in self.groups.items()},
        }
        (self.out / "meta.json").write_text(json.dumps(meta, indent=1))


def record(args):
    study = load_study(args.study)
    config = study.config
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = config.training.head_warmup_steps + 1
    recorder = ChunkGramRecorder(
        start=start, every=args.every, chunk=args.chunk, sketch=args.sketch, seed=config.seed, out=out
    )
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
PARAMETER_SETS = ("all", "no_embeddings", "top3", "top2", "top1")
# The designs a default is chosen from, fixed before looking at the agreement (choosing the best of
# hundreds of designs would select noise): today's probe (all shared parameters, 128 held-out
# examples per task, rotating through the pool), its cheaper forms (gradients of the top encoder
# layer only; half the probes; half the batch; the same examples in half as many larger batches),
# and the optimizer rule's first-order held-out form.
CANDIDATES = (
    "all/b128/all/rotate/sgd",
    "all/b128/every2/rotate/sgd",
    "top1/b128/all/rotate/sgd",
    "top1/b128/every2/rotate/sgd",
    "top1/b64/all/rotate/sgd",
    "top1/b256/every2/rotate/sgd",
    "top1/b128/all/rotate/optimizer",
)


def load_recording(folder: Path):
    meta = json.loads((folder / "meta.json").read_text())
    points = [dict(np.load(folder / f"point_{s:06d}.npz")) for s in meta["points"]]
    return meta, points


def parameter_groups(meta, name: str) -> list[int]:
    groups = meta["groups"]
    layers = [g for g in groups if g.startswith("layer")]
    chosen = {
        "all": groups,
        "no_embeddings": [g for g in groups if g != "embeddings"],
        "top1": layers[-1:],
        "top2": layers[-2:],
        "top3": layers[-3:],
    }[name]
    return [groups.index(g) for g in chosen]


def pass_cost(meta, name: str) -> float:
    """Held-out forward+backward of one example, in units of one training example's forward+backward:
    forward 1/3, backward 2/3 × the share of the encoder it runs through (top-k: k of L layers)."""
    layers = [g for g in meta["groups"] if g.startswith("layer")]
    share = {"all": 1.0, "no_embeddings": 1.0}.get(name) or int(name[3:]) / len(layers)
    return 1 / 3 + 2 / 3 * share


def plain_cost(meta) -> float:
    """The affinity run's training without recorders, in training-example forward+backward units:
    head warm-up steps run the encoder forward only (1/3), joint steps forward and backward."""
    warmup = meta["points"][0] - 1
    return meta["batch_size"] * (warmup / 3 + (meta["steps"] - warmup))


def draw_chunks(meta, rng, *, batch: int | None, probes: int, rotate: bool) -> dict[str, np.ndarray]:
    """Per task, the chunk indices of each probe ([probes, batch]): a random draw of the task's pool,
    the same chunks at every probe (fixed) or new ones at each (rotate, wrapping when the pool is short);
    ``batch=None``: the task's whole pool at every probe."""
    out = {}
    for t in meta["tasks"]:
        own = np.array([i for i, c in enumerate(meta["chunks"]) if c[0] == t])
        if batch is None:
            out[t] = np.tile(own, (probes, 1))
            continue
        order = own[rng.permutation(len(own))]
        need = batch * (probes if rotate else 1)
        picked = np.resize(order, need)  # wraps: a short pool repeats its chunks
        out[t] = picked.reshape(-1, batch) if rotate else np.tile(picked, (probes, 1))
    return out


def design_matrix(meta, points, probes: list[int], chunks: dict, groups: list[int], metric: str) -> np.ndarray:
    """Run-mean first-order affinity η g_i·g_j / L_j (up to η), [source, target], of a design:
    probe points ``probes``, at the k-th of them the chunks ``chunks[task][k]``."""
    tasks = meta["tasks"]
    total = np.zeros((len(tasks), len(tasks)))
    for k, p in enumerate(probes):
        gram = points[p][metric][groups].sum(axis=0)
        picks = [chunks[t][k] for t in tasks]
        means = np.array([[gram[np.ix_(a, b)].mean() for b in picks] for a in picks])
        losses = np.array([points[p]["losses"][a].mean() for a in picks])
        total += means / losses[None, :]
    return total / len(probes)


def per_target(matrix: np.ndarray, tasks: list[str], gains: pd.DataFrame) -> pd.Series:
    from scipy.stats import spearmanr

    at = {t: i for i, t in enumerate(tasks)}
    out = {}
    for target, g in gains.groupby("target"):
        values = [matrix[at[s], at[target]] for s in g["source"]]
        if len(g) >= 3 and len(set(values)) > 1:
            out[target] = spearmanr(values, g["gain"]).statistic
    return pd.Series(out, dtype=float)


def split_half(meta, points, probes, chunks, groups, metric) -> float:
    """Within-target split-half reliability of the run mean (odd vs even probes), Spearman–Brown."""
    from taskaffinity.affinity.reliability import within_target_spearman
    from taskaffinity.stats import spearman_brown

    if len(probes) < 2:
        return float("nan")
    halves = [
        design_matrix(meta, points, probes[h::2], {t: c[h::2] for t, c in chunks.items()}, groups, metric)
        for h in (0, 1)
    ]
    return spearman_brown(within_target_spearman(*halves), 2.0)


def designs(n_points: int) -> list[dict]:
    """The probe designs compared: batch (chunks per task and probe) × probe schedule × rotation ×
    parameters × rule."""
    schedules = {
        "all": list(range(n_points)),
        "every2": list(range(0, n_points, 2)),
        "every4": list(range(0, n_points, 4)),
        "last_half": list(range(n_points // 2, n_points)),
        "first_half": list(range(n_points // 2)),
        "middle": [n_points // 2],
    }
    out = []
    for params, batch, (name, probes), rotate, metric in product(
        PARAMETER_SETS, (1, 2, 4, 8, 16), schedules.items(), (True, False), ("gram", "gram_pre")
    ):
        if not rotate and len(probes) == 1:
            continue
        out.append(
            {
                "parameters": params,
                "batch_chunks": batch,
                "schedule": name,
                "probes": probes,
                "rotate": rotate,
                "metric": metric,
            }
        )
    return out


def whole_pool_designs(n_points: int) -> list[dict]:
    """Every task's whole held-out pool at each probe: per parameter set, rule and stretch of the run."""
    schedules = {
        "all": list(range(n_points)),
        "last_half": list(range(n_points // 2, n_points)),
        "first_half": list(range(n_points // 2)),
    }
    return [
        {"parameters": p, "batch_chunks": None, "schedule": name, "probes": probes, "rotate": False, "metric": m}
        for p, (name, probes), m in product(PARAMETER_SETS, schedules.items(), ("gram", "gram_pre"))
    ]


def design_name(design: dict, meta) -> str:
    batch = "pool" if design["batch_chunks"] is None else design["batch_chunks"] * meta["chunk"]
    return (
        f"{design['parameters']}/b{batch}/{design['schedule']}/"
        f"{'rotate' if design['rotate'] else 'fixed'}/{'sgd' if design['metric'] == 'gram' else 'optimizer'}"
    )


def stop(message: str):
    print(f"heldout_design analyse: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def analyse(args):
    for path, option in ((Path(args.folder) / "meta.json", "folder"), (Path(args.gains), "--gains")):
        if not path.is_file():
            stop(f"{option}: {path} not found (a folder written by `record`, and its study's gains.csv)")
    meta, points = load_recording(Path(args.folder))
    gains = pd.read_csv(args.gains)
    gains = gains[(gains["source"] != gains["target"]) & gains["source"].isin(meta["tasks"])]
    tasks, plain = meta["tasks"], plain_cost(meta)
    rows, per_target_means = [], {}
    compared = whole_pool_designs(len(points)) if args.whole_pool else designs(len(points))
    if args.reference and args.whole_pool:
        # the reference is a drawn design: score it beside the whole-pool ones
        compared += [d for d in designs(len(points)) if design_name(d, meta) == args.reference]
    # a design's draws are seeded by its place in the whole list, so a filter never changes them
    scored = [(k, d) for k, d in enumerate(compared) if not args.candidates or design_name(d, meta) in CANDIDATES]
    if not scored:
        stop(f"no design of {args.folder} is a candidate (its chunk size {meta['chunk']} names other batches)")
    names = [design_name(d, meta) for _, d in scored]
    if args.reference and args.reference not in names:
        among = "the CANDIDATES (--candidates)" if args.candidates else "this recording's designs"
        stop(f"--reference {args.reference!r} is not among {among}, named like {names[0]!r}")
    for k, design in scored:
        groups = parameter_groups(meta, design["parameters"])
        rng = np.random.default_rng([args.seed, k])
        draws, reliabilities = [], []
        for _ in range(1 if design["batch_chunks"] is None else args.draws):  # a whole pool has one draw
            chunks = draw_chunks(
                meta, rng, batch=design["batch_chunks"], probes=len(design["probes"]), rotate=design["rotate"]
            )
            matrix = design_matrix(meta, points, design["probes"], chunks, groups, design["metric"])
            draws.append(per_target(matrix, tasks, gains))
            reliabilities.append(split_half(meta, points, design["probes"], chunks, groups, design["metric"]))
        frame = pd.concat(draws, axis=1)  # targets × draws
        rho = frame.mean(axis=0)
        pool = len(meta["chunks"]) / len(tasks)  # chunks per task, on average
        examples = len(design["probes"]) * (design["batch_chunks"] or pool) * meta["chunk"]
        name = design_name(design, meta)
        per_target_means[name] = frame.mean(axis=1)
        rows.append(
            {
                "design": name,
                "parameters": design["parameters"],
                "batch": (design["batch_chunks"] or pool) * meta["chunk"],
                "schedule": design["schedule"],
                "probes": len(design["probes"]),
                "rotate": design["rotate"],
                "rule": "sgd" if design["metric"] == "gram" else "optimizer",
                "rho": float(rho.mean()),
                "rho_sd": float(rho.std(ddof=1)),
                "rho_min": float(rho.min()),
                "reliability": float(np.nanmean(reliabilities)),
                "examples_per_task": examples,
                "overhead": 1 + len(tasks) * examples * pass_cost(meta, design["parameters"]) / plain,
            }
        )
    table = pd.DataFrame(rows)
    reference = args.reference or table.sort_values("rho", ascending=False)["design"].iloc[0]
    from taskaffinity.study.results import paired_difference

    diffs = [
        paired_difference(per_target_means[d], per_target_means[reference], seed=args.seed) for d in table["design"]
    ]
    table["vs_reference"] = [d["difference"] for d in diffs]
    table["vs_ci_low"] = [d["ci_low"] for d in diffs]
    table["vs_ci_high"] = [d["ci_high"] for d in diffs]
    table = table.sort_values("rho", ascending=False)
    out = Path(args.out or args.folder)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "designs.csv", index=False)
    pd.DataFrame(per_target_means).to_csv(out / "designs_per_target.csv")
    with pd.option_context("display.width", 250, "display.max_rows", 80, "display.float_format", "{:.3f}".format):
        print(table.drop(columns=["design"]).head(args.top).to_string(index=False))
    drawn = "one draw each (a whole pool)" if args.whole_pool else f"{args.draws} draws each"
    if args.whole_pool and args.reference:
        drawn += f", {args.draws} for the drawn reference"
    print(f"\n{len(table)} designs, {drawn}; reference {reference}; written {out / 'designs.csv'}")


def set_name(folder) -> str:
    """runs/design_b/candidates -> design_b: the recording an analysis folder belongs to."""
    path = Path(folder)
    return path.parent.name if path.name in ("analysis", "candidates") else path.name


def choose(args):
    """Pool the designs' per-target agreement over several recordings (validation sets): the best
    of the pre-specified CANDIDATES by mean within-target ρ over all targets (among those within the
    overhead limit and with enough probes for a split-half reliability), then the cheapest candidate
    whose paired difference from it (bootstrap over targets, resampled within each set) has a CI
    reaching 0: the better design is chosen only where the data say it is better."""
    tables, per = [], []
    for folder in args.analyses:
        tables.append(pd.read_csv(Path(folder) / "designs.csv").set_index("design"))
        per.append(pd.read_csv(Path(folder) / "designs_per_target.csv", index_col=0))
    designs_ = sorted(set.intersection(*(set(t.index) for t in tables)))
    overhead = pd.concat([t.loc[designs_, "overhead"] for t in tables], axis=1).max(axis=1)
    probes = tables[0].loc[designs_, "probes"]
    pool = designs_ if args.all_designs else [d for d in CANDIDATES if d in designs_]
    eligible = [d for d in pool if overhead[d] <= args.max_overhead and probes[d] >= args.min_probes]
    rng = np.random.default_rng(args.seed)
    picks = [rng.integers(0, len(p), size=(args.boot, len(p))) for p in per]

    def mean_rho(design):
        return float(np.mean(np.concatenate([p[design].to_numpy() for p in per])))

    def boot(design):  # bootstrap means over all targets, each set's targets resampled within the set
        return np.concatenate([p[design].to_numpy()[k] for p, k in zip(per, picks)], axis=1).mean(axis=1)

    best = max(eligible, key=mean_rho)
    rows = []
    for d in eligible:
        diff = boot(d) - boot(best)
        rows.append(
            {
                "design": d,
                "rho_all_targets": mean_rho(d),
                **{f"rho_{set_name(f)}": t.loc[d, "rho"] for f, t in zip(args.analyses, tables)},
                **{f"sd_{set_name(f)}": t.loc[d, "rho_sd"] for f, t in zip(args.analyses, tables)},
                "reliability_min": min(t.loc[d, "reliability"] for t in tables),
                "overhead_max": overhead[d],
                "vs_best": mean_rho(d) - mean_rho(best),
                "ci_low": float(np.quantile(diff, 0.025)),
                "ci_high": float(np.quantile(diff, 0.975)),
            }
        )
    table = pd.DataFrame(rows).sort_values("rho_all_targets", ascending=False)
    tied = table[table["ci_high"] >= 0]  # the CI of (design - best) reaches 0: not worse beyond noise
    cheapest = tied.sort_values(["overhead_max", "rho_all_targets"], ascending=[True, False]).iloc[0]
    table.to_csv(Path(args.out) / "choice.csv", index=False)
    with pd.option_context("display.width", 250, "display.max_rows", 60, "display.float_format", "{:.3f}".format):
        print(table.head(args.top).to_string(index=False))
    print(
        f"\n{len(eligible)} eligible designs (overhead <= {args.max_overhead}, probes >= {args.min_probes}); best "
        f"{best} (rho {mean_rho(best):.3f}); the cheapest not worse beyond noise: {cheapest['design']} "
        f"(rho {cheapest['rho_all_targets']:.3f}, overhead {cheapest['overhead_max']:.2f}x); written "
        f"{Path(args.out) / 'choice.csv'}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record")
    r.add_argument("study")
    r.add_argument("--out", required=True)
    r.add_argument("--every", type=int, default=5)
    r.add_argument("--chunk", type=int, default=16)
    r.add_argument("--sketch", type=int, default=2**17)
    r.add_argument("--threads", type=int, default=1)
    a = sub.add_parser("analyse")
    a.add_argument("folder")
    a.add_argument("--gains", required=True)
    a.add_argument("--draws", type=int, default=10, help="random draws of held-out chunks per design")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--reference", help="design the others are compared with (default: the best)")
    a.add_argument("--top", type=int, default=40, help="rows to print")
    a.add_argument("--out", help="folder for designs.csv (default: the recording's)")
    which = a.add_mutually_exclusive_group()  # the CANDIDATES are drawn designs, none of them a whole pool
    which.add_argument("--candidates", action="store_true", help="only the pre-specified CANDIDATES")
    which.add_argument("--whole-pool", action="store_true", help="each task's whole held-out pool at every probe")
    c = sub.add_parser("choose")
    c.add_argument("analyses", nargs="+", help="folders holding designs.csv and designs_per_target.csv")
    c.add_argument("--max-overhead", type=float, default=float("inf"))
    c.add_argument("--all-designs", action="store_true", help="choose among every design, not the CANDIDATES")
    c.add_argument("--min-probes", type=int, default=4, help="a split-half reliability needs several probes")
    c.add_argument("--boot", type=int, default=2000)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--top", type=int, default=30)
    c.add_argument("--out", default=".")
    args = parser.parse_args(argv)
    if args.command == "analyse" and args.draws < 1:
        a.error("--draws must be >= 1")
    {"record": record, "analyse": analyse, "choose": choose}[args.command](args)


if __name__ == "__main__":
    main()
