"""Streaming first-order affinities from every training step's per-task gradients.

The trainer already backpropagates each task's sub-batch separately; this
recorder reads those gradients (no extra forward or backward pass) into the rows
of a :class:`~.gradient_rows.GradientRows` buffer (optionally CountSketched): the
buffer :class:`~taskaffinity.AffinityMeter` uses, so both clients share one
implementation of each estimator. At the end of the step it forms the n×n
products in one pass over cache-sized column blocks, deriving the optimizer rule's
direction for each block there instead of storing a second n×P buffer. Per window of
``window`` steps it keeps only O(n²) running sums and emits their means as one
record per pair; windows are the samples for standard errors and bootstrap
intervals. Sub-batches of different tasks are drawn independently, so
off-diagonal products are unbiased estimates of E[g_i]·E[g_j]. The token-embedding
matrix, whose gradient only touches the batch's token rows, is handled row-sparse
(``embedding_rows``) and never sketched.

Estimators: ``stream_gram``, ``stream_cosine``, ``stream_first_order_sgd``
(η G_ij / L_j) and, when enabled, ``stream_first_order_optimizer``
(η u_i·g_j / L_j with u_i the optimizer's update direction for g_i alone).

A task whose loss or gradient is NaN or infinite at a step is left out of that step
(``windows.finite_tasks``), named in a warning and counted in ``skipped`` (the run's
metadata, ``skipped_steps``): never averaged away.
"""

from __future__ import annotations

import functools
import logging
import time

import numpy as np
import torch

from ..errors import ConfigError
from ..training.callbacks import Callback
from .embedding_rows import EmbeddingRows, input_embedding
from .gradient_rows import GradientRows
from .parameters import select_shared
from .windows import WindowedMeans, finite_tasks, step_estimates

_UNSET = object()
log = logging.getLogger(__name__)


def _timed(hook):
    """Adds the hook's host time to ``self.seconds``: what streaming costs on top of the step."""

    @functools.wraps(hook)
    def timed(self, *args):
        started = time.perf_counter()
        try:
            return hook(self, *args)
        finally:
            self.seconds += time.perf_counter() - started

    return timed


class StreamRecorder(Callback):
    wants_task_gradients = True

    def __init__(
        self,
        *,
        start_step: int = 1,
        window: int = 10,
        parameters: str = "all",
        lookahead_lr: float | None = None,
        optimizer_rule: bool = True,
        sketch_dim: int | None = None,
        seed: int = 0,
    ):
        self.start_step, self.window, self.parameters = start_step, window, parameters
        self.lookahead_lr, self.optimizer_rule = lookahead_lr, optimizer_rule
        self.sketch_dim, self.seed = sketch_dim, seed
        self.records: list[dict] = []
        self.seconds = 0.0
        self.skipped: dict[str, int] = {}  # task -> recorded steps it was left out of (NaN or infinite values)
        self.means: WindowedMeans | None = None  # the window's running sums (made when the tasks are known)
        self._partial = None  # a checkpointed partial window, restored into ``means`` at set-up
        self.embedding_name = _UNSET  # set up at the first active step, once the model is known
        self.rows: GradientRows | None = None

    def check(self, context) -> None:
        select_shared(list(context.model.shared_parameters()), self.parameters)
        if context.dist.active and self.sketch_dim and self.optimizer_rule:
            raise ConfigError(
                "affinity.sketch_dim with the optimizer rule is not supported under torchrun: "
                "the optimizer's direction needs each task's whole reduced gradient "
                "(drop 'optimizer' from affinity.rules, or the sketch)"
            )

    def active(self, step: int) -> bool:
        return step >= self.start_step

    # -- set-up per step -----------------------------------------------------------------------
    @_timed
    def on_step_begin(self, context, step, batches):
        if not self.active(step):
            return
        if self.means is None or self.embedding_name is _UNSET:
            self._setup(context)
        positions = {name: k for k, (name, _) in enumerate(context.trainable_parameters)}
        self.positions = [positions[n] for n in self.names]
        self.embedding_position = positions[self.embedding_name] if self.embedding else None
        if self.embedding:
            self.embedding.begin(batches)
        if self.rows is not None:  # state-only parts of the optimizer's step, once per step
            self.rows.begin(context.optimizer)
        # Tasks of the global batch (the same on every process); under torchrun a task may have
        # no rows on this process, and its row must then add nothing to the sum over processes.
        self.present = [self.tasks.index(t) for t in context.step_context.counts]
        for task, k in zip(context.step_context.counts, self.present):
            if task not in batches and self.rows is not None:
                self.rows.zero(k)

    def _setup(self, context):
        named = select_shared(list(context.model.shared_parameters()), self.parameters)
        self.dist = context.dist
        # Row-sparse embeddings need each task's token rows, which differ across processes:
        # under torchrun the embedding matrix is streamed densely instead (same numbers).
        weight = None if self.dist.active else input_embedding(context.model)
        self.embedding_name = next((n for n, p in named if p is weight), None)
        self.embedding = EmbeddingRows(weight, optimizer_rule=self.optimizer_rule) if self.embedding_name else None
        dense = [(n, p) for n, p in named if n != self.embedding_name]
        self.names = [n for n, _ in dense]
        self.tasks = list(context.tasks)
        if self.means is None or self.means.tasks != self.tasks:
            self.means = WindowedMeans(self.tasks)
        if self._partial:
            self.means.counts = np.array(self._partial["counts"])
            self.means.sums = {k: np.array(v) for k, v in self._partial["sums"].items()}
            self._partial = None
        # the dense shared parameters' per-task rows: the meter's buffer (one implementation)
        self.rows = (
            GradientRows(
                [p for _, p in dense],
                len(self.tasks),
                optimizer_rule=self.optimizer_rule,
                sketch_dim=self.sketch_dim,
                seed=self.seed,
            )
            if dense
            else None
        )

    # -- per task ------------------------------------------------------------------------------
    @_timed
    def on_task_gradients(self, context, step, task, loss, grads):
        if not self.active(step):
            return
        k = self.tasks.index(task)
        if self.rows is not None:  # scaled to this process's share of g_i; under torchrun the
            # optimizer's direction waits for the sum over processes (on_before_optimizer_step)
            self.rows.write(
                k,
                [grads[i] for i in self.positions],
                scale=context.step_context.shard_weights[task],
                directions=not self.dist.active,
            )
        if self.embedding:
            self.embedding.add(task, grads[self.embedding_position], context.optimizer)

    # -- per step ------------------------------------------------------------------------------
    @_timed
    def on_before_optimizer_step(self, context, step, losses):
        if not self.active(step) or len(self.present) < 2:
            return
        # Only the present tasks' rows enter the products (an absent task's row is stale).
        if self.rows is not None and self.dist.active:  # Σ_r (b_i^r / b_i) g_i^r = g_i, then the products
            self.dist.sum_(self.rows.g)
            self.rows.write_directions(self.present)
        loss = torch.tensor([losses[t] for t in context.step_context.counts])
        n = len(self.present)
        if self.rows is not None:
            gram, products = self.rows.products(self.present)
            loss = loss.to(gram.device)
        else:  # only the embedding matrix is streamed
            gram = loss.new_zeros(n, n)
            products = loss.new_zeros(n, n) if self.optimizer_rule else None
        if self.embedding:
            emb_gram, emb_update_products = self.embedding.products(
                [self.tasks[k] for k in self.present], context.optimizer
            )
            gram = gram + emb_gram.to(gram.device)
            if self.optimizer_rule:
                products = products - emb_update_products.to(gram.device)
        estimates = step_estimates(gram, loss, self.lookahead_lr or context.lr, products)
        keep = finite_tasks(estimates)
        present = [k for k, ok in zip(self.present, keep) if ok]
        for k in (k for k, ok in zip(self.present, keep) if not ok):
            self._skip(self.tasks[k], step)
        if len(present) >= 2:
            if len(present) < len(keep):
                at = torch.tensor([i for i, ok in enumerate(keep) if ok], device=gram.device)
                estimates = {e: m.index_select(0, at).index_select(1, at) for e, m in estimates.items()}
            self.means.add(estimates, present)
        if (step - self.start_step + 1) % self.window == 0:
            self.records.extend(self.means.emit(step))

    def _skip(self, task: str, step: int) -> None:
        if task not in self.skipped:
            log.warning(
                "affinity stream: the loss or gradient of task '%s' is NaN or infinite at step %d: the task is "
                "left out of such steps (counted in the run's metadata, skipped_steps)",
                task,
                step,
            )
        self.skipped[task] = self.skipped.get(task, 0) + 1

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        partial = self._partial
        if self.means is not None and self.means.counts is not None:
            partial = {
                "counts": self.means.counts.tolist(),
                "sums": {k: v.tolist() for k, v in self.means.sums.items()},
            }
        return {"records": self.records, "partial": partial, "seconds": self.seconds, "skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        self.records = list(state["records"])
        self.seconds = state.get("seconds", 0.0)
        self.skipped = dict(state.get("skipped") or {})
        self._partial = state.get("partial")
        if self._partial and self.means is not None:  # already set up: restore now
            self.means.counts = np.array(self._partial["counts"])
            self.means.sums = {k: np.array(v) for k, v in self._partial["sums"].items()}
            self._partial = None
