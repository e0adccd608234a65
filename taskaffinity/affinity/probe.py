"""Exact TAG lookahead probes, with first-order and gradient estimators on the same batches.

Every ``probe_every`` steps, before the training update, the recorder draws a
probe batch per task (``probe_batch_size`` examples; the training sub-batches
are far too small: per-probe affinities are dominated by sampling noise), and in
eval mode (no dropout) computes per-task losses L_j and gradients g_j of the
selected shared parameters. Then for each source i and update rule:

    θ_s|i = θ_s + Δ_i  (heads frozen)      Z_{i→j} = 1 − L_j(θ_s|i) / L_j(θ_s)

evaluated with ``torch.func.functional_call`` on new tensors: the model's own
parameters, buffers, the optimizer's state and the RNG are never touched
(Fifty et al. 2021, Eq. 2; the traps of deep copies and train-mode probes avoided).
The same probe also yields, at no extra forward passes, the Gram matrix, cosine
similarity and the first-order forms of both rules (see ``estimators``).

Cost per probe: n forward+backward passes for gradients (one training step's
worth at equal batch sizes), then per rule n lookahead updates and n encoder
passes over the whole probe batch (≈ n/3 training steps per rule), packed into
one padded pass when the trainer packs tasks (GPU), else one pass per target.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch.func import functional_call

from ..training.batching import collate
from ..training.callbacks import Callback, training_context
from .formulas import cosine_from_gram, first_order_from_products, flatten, lookahead_ratio
from .parameters import select_shared
from .updates import fast_rule, source_update

log = logging.getLogger(__name__)


class LookaheadRecorder(Callback):
    """Records exact lookahead (per rule) plus gradient estimators on probe batches."""

    def __init__(
        self,
        *,
        rules=("sgd", "optimizer"),
        every: int = 10,
        batch_size: int = 64,
        split: str = "train",
        start_step: int = 1,
        parameters: str = "all",
        lookahead_lr: float | None = None,
        sources: int | None = None,
        targets: int | None = None,
        seed: int = 0,
        exact: bool = True,
        pair_seed: int | None = None,
        draw: int = 0,
    ):
        self.rules, self.every, self.batch_size = tuple(rules), every, batch_size
        self.exact = exact  # False: first-order forms only, no lookahead encoder passes (≈ n/3 steps saved per rule)
        self.sources, self.targets = sources, targets
        self.split, self.start_step, self.parameters = split, start_step, parameters
        self.lookahead_lr, self.seed = lookahead_lr, seed  # seed: which held-out examples the probes draw
        # which sources and targets a sampled probe measures (default ``seed``): the run's seed for every
        # held-out draw, so that draws differ only in their examples
        self.pair_seed = seed if pair_seed is None else pair_seed
        self.draw = draw  # > 0: a further held-out draw (affinity.probe_draws), kept out of the run's store and tracker
        self.records: list[dict] = []
        self.seconds: list[float] = []
        self.skipped: dict[str, int] = {}  # task -> probes it was left out of (NaN, infinite or zero values)

    def check(self, context) -> None:
        select_shared(list(context.model.shared_parameters()), self.parameters)

    def due(self, step: int) -> bool:
        return step >= self.start_step and (step - self.start_step) % self.every == 0

    def on_step_begin(self, context, step, batches):
        if self.due(step):
            self.probe(context, step)

    # -- the probe -----------------------------------------------------------------------------
    def probe(self, context, step: int) -> dict[str, np.ndarray]:
        """Measure all estimators at the current parameters; returns them as [source, target] arrays."""
        import time

        started = time.perf_counter()
        context = training_context(context)
        model = context.model
        named = select_shared(list(model.shared_parameters()), self.parameters)
        params = [p for _, p in named]
        sources, targets = self.pairs(step, list(context.tasks))
        needed = [t for t in context.tasks if t in set(sources) | set(targets)]
        rng_cpu = torch.get_rng_state()
        rng_cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        was_training = model.training
        model.eval()  # no dropout; no batch-norm statistics would be updated either
        try:
            batches = self.probe_batches(context, step, needed)
            losses, flat = self.losses_and_gradients(model, batches, params, needed)
            sources, targets = self.finite(step, needed, losses, flat, sources, targets)
            at = {t: k for k, t in enumerate(needed)}
            src = torch.tensor([at[t] for t in sources], device=flat.device)
            tgt = torch.tensor([at[t] for t in targets], device=flat.device)
            gram = flat @ flat.T
            out = {"gram": gram[src][:, tgt], "cosine": cosine_from_gram(gram)[src][:, tgt]}
            target_losses, target_grads = losses[tgt], flat[tgt]
            # Under torchrun each process takes every world-th source; the results are summed.
            mine = range(context.dist.rank, len(sources), context.dist.world)
            for rule in self.rules:
                after = torch.zeros(len(sources), len(targets), device=flat.device)
                products = torch.zeros_like(after)  # P_ij = Δ_i · g_j
                fast = fast_rule(rule, params, context.optimizer) if mine else None
                moved = mine if self.exact or rule != "sgd" else ()  # sgd's first-order form needs only G
                for a in moved:
                    update, delta = source_update(
                        rule,
                        flat[at[sources[a]]],
                        params,
                        optimizer=context.optimizer,
                        lr=self.lookahead_lr or context.lr,
                        fast=fast,
                    )
                    if self.exact:
                        after[a] = self.losses_after(model, named, update, batches, targets, pack=context.packs_tasks)
                    if rule != "sgd":
                        products[a] = delta @ target_grads.T
                if self.exact:
                    context.dist.sum_(after)
                if rule == "sgd":  # Δ_i · g_j = −η G_ij: no need to flatten the updates
                    products = -(self.lookahead_lr or context.lr) * out["gram"]
                else:
                    context.dist.sum_(products)
                out[f"first_order_{rule}"] = first_order_from_products(-products, target_losses)
                if self.exact:
                    out[f"lookahead_{rule}"] = lookahead_ratio(after, target_losses)
        finally:
            model.train(was_training)
            torch.set_rng_state(rng_cpu)
            if rng_cuda is not None:
                torch.cuda.set_rng_state_all(rng_cuda)
        arrays = {k: v.detach().double().cpu().numpy() for k, v in out.items()}
        self.records.extend(_rows(step, arrays, sources, targets))
        self.seconds.append(time.perf_counter() - started)
        return arrays

    def finite(self, step, names, losses, flat, sources, targets) -> tuple[list[str], list[str]]:
        """Sources and targets without the tasks whose probe loss is NaN, infinite or 0 or whose gradient is
        not finite (their every Z would be NaN): named in a warning, counted in ``skipped``."""
        bad = (~torch.isfinite(losses) | (losses == 0) | ~torch.isfinite(flat).all(1)).tolist()
        for name, out in zip(names, bad):
            if out:
                if name not in self.skipped:
                    log.warning(
                        "affinity probe: task '%s' has a NaN, infinite or zero loss or gradient at step %d: "
                        "left out of such probes (counted in the run's metadata, probe_skipped)",
                        name,
                        step,
                    )
                self.skipped[name] = self.skipped.get(name, 0) + 1
        dropped = {name for name, out in zip(names, bad) if out}
        return [t for t in sources if t not in dropped], [t for t in targets if t not in dropped]

    def pairs(self, step: int, names: list[str]) -> tuple[list[str], list[str]]:
        """This probe's sources and targets: all tasks, or seeded random subsets of them.

        With n tasks, an exact probe costs n lookahead passes over n probe batches. Sampling
        s sources and t targets per probe costs s passes over t batches; each pair is then
        measured at a random ~(s/n)(t/n) of the probes, independently of its value, so its
        mean over the probes that sampled it stays unbiased, with fewer samples (wider
        intervals: the store's standard errors and bootstrap count only real samples).
        """
        rng = np.random.default_rng([self.pair_seed, step, 0x9A125])

        def sample(k):
            if k is None or k >= len(names):
                return list(names)
            return [names[i] for i in np.sort(rng.choice(len(names), size=k, replace=False))]

        return sample(self.sources), sample(self.targets)

    def pool_half(self, frame_rows: int, task_index: int, step: int) -> np.ndarray:
        """The rows this step's probe may draw from: one of two fixed, disjoint halves of the pool,
        alternating from probe to probe.

        Consecutive probes thus see disjoint examples, so the split-half reliability of
        odd against even probes (``reliability.split_half(..., halves=...)``) counts the noise
        of the finite probe pool too: random halves of probes drawn from one small pool would
        share its examples and overstate how well the matrix would replicate on new data.
        """
        order = np.random.default_rng([self.seed, task_index, 0x4A1F]).permutation(frame_rows)
        half = (step // self.every) % 2  # probes are ``every`` steps apart: the parity alternates
        return np.sort(order[half::2])

    def probe_batches(self, context, step: int, names: list[str] | None = None) -> dict[str, dict]:
        """Seeded probe batch per task (of ``names``, default all) from this probe's half of the pool,
        independent of the training sampler."""
        context = training_context(context)
        batches = {}
        for k, (name, task) in enumerate(context.tasks.items()):
            if names is not None and name not in names:
                continue
            frame = task.split(self.split)
            rng = np.random.default_rng([self.seed, step, k, 0xAFF])
            pool = self.pool_half(len(frame), k, step) if len(frame) >= 2 else np.arange(len(frame))
            rows = rng.choice(pool, size=min(self.batch_size, len(pool)), replace=False)
            batches[name] = collate(
                task.spec.type, frame.iloc[np.sort(rows)], context.tokenizer, context.max_length, context.device
            )
        return batches

    @staticmethod
    def losses_and_gradients(model, batches, params, names):
        """L_j and flattened g_j = ∇ L_j for every task (float32: Z is ~1e-5, bf16 would drown it)."""
        losses, flat = [], torch.empty(len(names), sum(p.numel() for p in params), device=params[0].device)
        for k, name in enumerate(names):
            loss, _ = model.loss(name, batches[name])
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            flatten(list(grads), params, out=flat[k])
            losses.append(loss.detach())
        return torch.stack(losses).float(), flat

    @staticmethod
    @torch.no_grad()
    def losses_after(model, named, update, batches, names, *, pack: bool = True) -> torch.Tensor:
        """L_j at θ_s + Δ for every target j, heads as they are.

        ``pack``: one encoder pass over all targets' batches padded to a common length (few
        launches: the GPU choice), else one pass per target at its own length (fewest FLOPs:
        the CPU choice, as for the trainer's ``pack_tasks``).
        """
        moved = {n.removeprefix("encoder."): p.detach() + d for (n, p), d in zip(named, update)}

        def encoder(**inputs):
            return functional_call(model.encoder, moved, args=(), kwargs=inputs)

        inputs = [batches[name]["inputs"] for name in names]
        if pack:
            features = model.encode_packed(inputs, encoder=encoder)
        else:
            features = [model.encode(x, encoder=encoder) for x in inputs]
        losses = [
            model.head(name).loss(model.head(name)(f), batches[name]["labels"]) for name, f in zip(names, features)
        ]
        return torch.stack(losses).float()

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"records": self.records, "seconds": self.seconds, "skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        self.records, self.seconds = list(state["records"]), list(state["seconds"])
        self.skipped = dict(state.get("skipped") or {})


def _rows(step: int, arrays: dict[str, np.ndarray], sources: list[str], targets: list[str]) -> list[dict]:
    return [
        {"step": step, "estimator": est, "source": src, "target": tgt, "value": float(matrix[i, j])}
        for est, matrix in arrays.items()
        for i, src in enumerate(sources)
        for j, tgt in enumerate(targets)
    ]
