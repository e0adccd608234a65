"""How ``AffinityMeter`` computes a recorded step's per-task gradients and writes ``.grad``.

A mixin of :class:`~taskaffinity.loops.meter.AffinityMeter` (it uses the meter's ``shared``,
``tasks`` and gradient buffer). At a recorded step, for the tasks of the step:

* each present task's g_i = ∇_θs L_i goes into its row of the buffer, divided by the
  declared loss scale (``meter_scaling``), by one backward per task to θ_s only (graph
  kept) or one vmapped backward of the k cotangents;
* with ``.grad`` to write (``backward``): Σ_i w_i g_i into θ_s's ``.grad``, and Σ_i w_i ∇L_i
  into ``.grad`` of every other leaf a plain backward would reach (heads, parameters kept
  outside the model), by one backward of the weighted sum, which frees the graph.

``begin_step`` / ``add_gradients`` / ``end_step`` are the same step for callers that compute
per-task gradients themselves; ``end_step`` turns the step's Gram matrix into the streamed
estimates and hands them to the meter's windows.
"""

from __future__ import annotations

import logging
import math
import time

import torch

from ..affinity.gradient_rows import GradientRows
from ..affinity.lookahead import batched_gradients
from ..affinity.windows import feature_estimates, step_estimates
from ..errors import TaskAffinityError
from .meter_losses import NO_EXAMPLES, NON_FINITE
from .meter_setup import check_gradients, compiled_backward_hint, graph_leaves

log = logging.getLogger("taskaffinity.loops.meter")


class StepGradients:
    """The per-task gradient passes of a recorded step (see the module docstring), and the
    step protocol for callers that compute per-task gradients themselves."""

    # -- per-task gradients computed elsewhere (a trainer that already has them) ----------------
    def begin_step(self) -> bool:
        """Open the next step; returns whether it is recorded. With :meth:`add_gradients` and
        :meth:`end_step`, for callers that compute per-task gradients themselves."""
        self.step += 1
        self._losses: dict[int, float] = {}
        self._skipped = {}
        self._feature_gram = None
        if not self.recording(self.step):
            return False
        if self.parameter_estimators:
            self._buffer().begin(self.optimizer)  # the optimizer's state before this step's update
        return True

    def add_gradients(self, task: str, loss: float, grads: list[torch.Tensor | None]) -> None:
        """Task ``task``'s (unscaled) loss L_i and gradient g_i at this recorded step: one tensor (or None)
        per parameter of ``meter.shared``, in that order and of its shape. A loss of 0 (no labelled
        example) or NaN/inf leaves the task out of the step (counted). Raises TaskAffinityError for
        an unknown task, a wrong number of tensors or a wrong shape."""
        if task not in self.tasks:
            raise TaskAffinityError(f"AffinityMeter.add_gradients: unknown task '{task}'")
        grads = check_gradients(self.shared, task, grads)
        loss = float(loss)
        if not math.isfinite(loss) or loss == 0:
            self._skipped[task] = NON_FINITE if not math.isfinite(loss) else NO_EXAMPLES
            return
        row = self.tasks.index(task)
        self._buffer().write(row, grads)
        self._losses[row] = loss

    def end_step(self) -> None:
        """Products of this step's gradients into the window; emits the window when it is full."""
        started = time.perf_counter()
        index = sorted(self._losses)  # tasks in the meter's order
        if len(index) >= 2 and self.recording(self.step):
            estimates = {}
            if self.parameter_estimators:
                gram, products = self._rows.products(index)
                loss = torch.tensor([self._losses[k] for k in index], device=gram.device)
                estimates.update(step_estimates(gram, loss, self.lr, products))
            if self._feature_gram is not None:
                estimates.update(feature_estimates(self._feature_gram))
            estimates = {e: estimates[e] for e in self.estimators}
            self._add_records(self.stream.add_step(self.step, estimates, index, self._skipped))
        if self.recording(self.step):
            self.stream.counts.add([], self._skipped)
        self._losses, self._skipped = {}, {}
        self.seconds += time.perf_counter() - started

    def _per_task(self, index, rows, values, w, write_grad, factor):
        """One backward per task to θ_s only (it stops at the lowest of them), graph kept; then the
        other leaves (heads, parameters outside ``model``) from one backward of Σ w_i L_i.
        Tasks not in ``rows`` (absent, finite loss) only add their gradient to ``.grad``."""
        buffer, shared = self._rows, [p for _, p in self.shared]
        for k, (row, loss) in enumerate(zip(index, values)):
            if row not in rows and not write_grad:
                continue
            with compiled_backward_hint("AffinityMeter"):  # the first task's pass fails, before any .grad
                grads = torch.autograd.grad(loss, shared, allow_unused=True, retain_graph=True)
            if row in rows:
                if all(g is None for g in grads) and self.tasks[row] not in self._unreached:
                    self._unreached.add(self.tasks[row])  # its row is zero: its affinities would read as "no transfer"
                    log.warning(
                        "AffinityMeter: the loss of task '%s' does not depend on the shared parameters "
                        "(detached features, or a head outside `shared`?): its row is recorded as zero",
                        self.tasks[row],
                    )
                buffer.write(row, list(grads), scale=1.0 / factor)
            if write_grad:
                _add_grads(shared, grads, w[k])
        if write_grad:
            self._rest(values, w)

    def _vmapped(self, index, rows, values, w, write_grad, factor):
        """k cotangents through the common graph at once; the other leaves by one backward of Σ w_i L_i."""
        shared = [p for _, p in self.shared]
        with compiled_backward_hint("AffinityMeter"):
            grads = batched_gradients(torch.stack(values), shared, retain_graph=True)
        chosen = [k for k, row in enumerate(index) if row in rows]
        if chosen:
            at = torch.tensor(chosen)
            self._rows.write_batched(
                [index[k] for k in chosen],
                [None if g is None else g.index_select(0, at.to(g.device)) for g in grads],
                scale=1.0 / factor,
            )
        if not write_grad:
            return
        weights = torch.tensor(w, dtype=torch.float32)
        for p, g in zip(shared, grads):
            if g is not None:
                summed = torch.tensordot(weights.to(g.device, g.dtype), g, dims=1)
                p.grad = summed if p.grad is None else p.grad.add_(summed)
        self._rest(values, w)

    def _rest(self, values, w):
        """Σ w_i ∇L_i into ``.grad`` of every leaf but θ_s that a plain backward would reach; frees the graph."""
        shared = {id(p) for _, p in self.shared}
        others = [leaf for leaf in graph_leaves(values) if id(leaf) not in shared]
        total = sum(wi * v for wi, v in zip(w, values))
        if others:
            _add_grads(others, torch.autograd.grad(total, others, allow_unused=True), 1.0)

    def _features(self, index, rows, values, w, features, write_grad, factor):
        """c_i = ∂L_i/∂z through the heads only; then, if asked, one plain backward of Σ w_i L_i."""
        chosen = [k for k, row in enumerate(index) if row in rows]  # the present tasks, in the meter's order
        if chosen:
            c = (
                torch.stack(
                    [torch.autograd.grad(values[k], features, retain_graph=True)[0].reshape(-1).float() for k in chosen]
                )
                / factor
            )
            self._feature_gram = c @ c.T
        if write_grad:
            sum(wk * v for wk, v in zip(w, values)).backward()

    def _buffer(self) -> GradientRows:
        if self._rows is None:
            self._rows = GradientRows(
                [p for _, p in self.shared],
                len(self.tasks),
                optimizer_rule="stream_first_order_optimizer" in self.estimators,
                sketch_dim=self.sketch_dim,
                seed=self.seed,
            )
        return self._rows


def _add_grads(params, grads, weight: float) -> None:
    for p, g in zip(params, grads):
        if g is not None:
            p.grad = g * weight if p.grad is None else p.grad.add_(g, alpha=weight)
