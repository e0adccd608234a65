"""Task affinity in any PyTorch training loop: ``AffinityMeter``.

::

    meter = AffinityMeter(model, model.trunk, tasks=["a", "b", "c"], lr=1e-3, optimizer=optimizer)
    for batch in loader:
        losses = {task: loss_fn(task, model, batch) for task in tasks}   # scalar per task
        meter.backward(losses)          # per-task gradients -> estimators; Σ_i w_i ∇L_i -> .grad
        optimizer.step(); optimizer.zero_grad()
    meter.save("runs/mine")             # affinity.parquet, matrices, summaries, fidelity.json, heatmaps

Every recorded step, ``backward`` computes g_i = ∇_θs L_i for each task (θ_s: the
shared parameters), forms the step's Gram matrix G_ij = g_i·g_j and, with an
optimizer, P_ij = −Δ_i·g_j (Δ_i: the optimizer's step for g_i alone), turns them into
the streamed estimators of :mod:`taskaffinity.affinity.windows` (same definitions, names and [source i,
target j] convention as the ``taskaffinity affinity`` run) and averages them over
windows of ``window`` recorded steps. It writes Σ_i w_i ∇L_i into ``.grad`` of every
leaf the losses reach (heads included, and parameters kept outside ``model``), adding to
what is there, exactly as ``sum(w_i * L_i).backward()`` would, finite losses only. Tasks
with no labelled example or a non-finite loss are left out of a step, by name, and counted
(:mod:`taskaffinity.loops.meter_losses`; what each situation of a real loop does:
``docs/own_loop.md``, "Real loops"). :meth:`probe` measures TAG's exact lookahead
(:mod:`taskaffinity.affinity.lookahead`) on a probe batch of the caller's choice.
The meter is a front over ``affinity/`` for loops the toolkit does not run, as
:mod:`taskaffinity.loops.lightning` is for Lightning; its :meth:`~AffinityMeter.save` writes the
folder an affinity run writes (data and heatmaps).

Per-task gradients cost one backward per task (``torch.autograd.grad`` of L_i, graph
kept until the last task):

* per-task batches (heterogeneous batches: each L_i has its own sub-batch and graph):
  the FLOPs of the caller's own backward over the whole batch;
* one shared batch (one forward, one head per task, as for CelebA or Taskonomy): every
  task's backward traverses the whole trunk, ≈ k backward passes. No exact method
  avoids that (each g_i needs task i's cotangent through every shared layer); the
  batched vector-Jacobian product (``vmap=True``) and torchjd's Gramian engine were
  measured against the loop (``docs/own_loop.md``, ``bench/meter_overhead.py``). To pay
  less: fewer shared parameters (the trunk's top layers), or record every k-th step
  (``every``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from ..affinity.gradient_rows import GradientRows
from ..affinity.probe_inputs import ProbeInputs
from ..affinity.store import COLUMNS, AffinityStore
from ..affinity.windows import FEATURE, STREAMED
from ..errors import TaskAffinityError
from .meter_gradients import StepGradients
from .meter_losses import NON_FINITE, TaskCounts, screen_losses, task_weights
from .meter_probe import run_probe
from .meter_results import load_meter_state, meter_metadata, meter_state, save_meter
from .meter_scaling import LossScale
from .meter_setup import (
    check_counts,
    check_estimators,
    check_lr,
    check_model,
    check_tasks,
    check_trainable,
    shared_parameters,
)
from .meter_windows import StreamWindows


class AffinityMeter(StepGradients):
    """Records inter-task affinities from per-task losses in the caller's own training loop.

    Parameters
    ----------
    model : nn.Module
        Holds every trainable parameter (shared trunk and task heads); ``.grad`` of its
        parameters receives the weighted sum of the per-task gradients.
    shared : nn.Module or iterable of parameters
        θ_s, the parameters every task's update moves (the trunk, or part of it): all
        affinities are computed on gradients with respect to these. They must belong to
        ``model``. Frozen ones (``requires_grad=False``) are left out of θ_s when others are
        trainable. Fewer shared parameters cost less (``docs/own_loop.md``).
    tasks : list of str
        Task names; every matrix is indexed [source i, target j] in this order.
    lr : float, optional
        η of the SGD rule (``stream_first_order_sgd`` = η G_ij / L_j, the probe's
        ``lookahead_sgd``); default: the optimizer's learning rate (of θ_s) at construction.
        Kept constant so steps compare like with like.
    optimizer : torch.optim.Optimizer, optional
        Enables the optimizer rule (``stream_first_order_optimizer``, ``lookahead_optimizer``):
        Δ_i is the step it would take for g_i alone from its current state (Adam, AdamW and
        SGD by formula; every other ``torch.optim`` optimizer but LBFGS and SparseAdam by its
        own step on copies; its state is read, never written). It must hold θ_s.
    estimators : list of str, optional
        Streamed estimators to record: of ``stream_gram``, ``stream_cosine``,
        ``stream_first_order_sgd`` (all from one Gram matrix, one cost) and
        ``stream_first_order_optimizer`` (an Adam step per task and step). Default: all
        four with an optimizer, the first three without. ``feature_gram`` and
        ``feature_cosine`` (``windows.feature_estimates``) use gradients with respect to
        the shared representation passed as ``backward(..., features=z)``: alone, they
        cost k backward passes through the heads instead of through the trunk.
    window : int
        Recorded steps per streamed record: each record is a window mean, the sample
        unit of standard errors, bootstrap intervals and reliability.
    vmap : bool
        Compute the k per-task gradients with one vmapped backward of the k cotangents
        (``is_grads_batched``) instead of k backward passes; only for losses of one shared
        graph. Wider kernels, more memory; measured slower on CPU (``docs/own_loop.md``).
    start, every : int
        Record at steps ``start, start + every, ...`` (steps count ``backward``/``record``
        calls from 1); other steps are a plain backward of the weighted sum. Start after
        the heads have learned: affinities through untrained heads are noise.
    sketch_dim : int, optional
        Keep CountSketches of dimension d instead of the P-dimensional gradients
        (inner products unbiased, variance ∝ 1/d; memory k·d).
    seed : int
        Seed of the sketch.
    log_to : optional
        Where each closed window and probe is also logged, as ``affinity/<estimator>/<source>_to_<target>``
        at its step: a TensorBoard ``SummaryWriter``, an MLflow run, a W&B run, or a function
        ``f(values: dict[str, float], step: int)`` (:mod:`taskaffinity.tracking.adapt`). A logger
        that raises is warned about once and dropped; the meter's records are unaffected.
    scaler : torch.amp.GradScaler, optional
        The losses passed to :meth:`backward` are ``scaler.scale(L_i)``: ``.grad`` gets the
        scaled sum (for ``scaler.step``), the estimators see the scale divided out.
    accumulation : int
        The losses passed are L_i / a for gradient accumulation over a micro-batches;
        the estimators see a·L_i. (Equivalently: pass L_i and weights w_i / a.)

    Raises TaskAffinityError, naming the argument and the fix, for what can be known here:
    unknown estimators, an optimizer rule the optimizer does not allow, θ_s outside the
    optimizer, compiled modules whose backward donates its buffers, sparse gradients with
    ``vmap``.
    """

    def __init__(
        self,
        model: nn.Module,
        shared,
        *,
        tasks: list[str],
        lr: float | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        estimators=None,
        window: int = 10,
        vmap: bool = False,
        start: int = 1,
        every: int = 1,
        sketch_dim: int | None = None,
        seed: int = 0,
        log_to=None,
        scaler=None,
        accumulation: int = 1,
    ):
        self.model, self.optimizer = model, optimizer
        self.tasks = check_tasks(tasks)
        self.shared, self._frozen = shared_parameters(model, shared)
        self.lr = check_lr(lr, optimizer, self.shared)
        self.estimators = check_estimators(estimators, optimizer, self.shared)
        self.parameter_estimators = [e for e in self.estimators if e in STREAMED]
        self.feature_estimators = [e for e in self.estimators if e in FEATURE]
        check_counts(window=window, start=start, every=every, sketch_dim=sketch_dim)
        check_model(model, self.shared, vmap=vmap)
        self.scale = LossScale(scaler, accumulation)
        self.window, self.vmap, self.start, self.every = window, vmap, start, every
        self.sketch_dim, self.seed = sketch_dim, seed
        self.step = 0
        self.records: list[dict] = []
        self.seconds = 0.0  # host seconds inside backward/record/probe: what recording costs, with the backward
        self.stream = StreamWindows(self.tasks, window)  # the open window and per-task counts
        self.probe_skipped = {t: 0 for t in self.tasks}  # probes that left the task out (non-finite values)
        self._probe_inputs = ProbeInputs(model)
        self._rows: GradientRows | None = None
        self._losses: dict[int, float] = {}
        self._skipped: dict[str, str] = {}
        self._unreached: set[str] = set()  # tasks already warned about: their loss ignores the shared parameters
        self.log_to = None
        if log_to is not None:
            from ..tracking.adapt import log_to as trackers

            self.log_to = trackers(log_to, what="AffinityMeter: log_to")

    # -- the training step --------------------------------------------------------------------
    def recording(self, step: int | None = None) -> bool:
        """Whether step ``step`` (default: the next one) is recorded."""
        step = self.step + 1 if step is None else step
        return step >= self.start and (step - self.start) % self.every == 0

    def backward(
        self,
        losses: dict[str, torch.Tensor],
        weights: dict[str, float] | None = None,
        *,
        features: torch.Tensor | None = None,
        present: dict | None = None,
    ) -> torch.Tensor:
        """One training step's backward: per-task gradients into the estimators, Σ_i w_i ∇L_i into ``.grad``.

        ``losses``: task -> scalar loss (a subset of ``tasks`` is fine: absent tasks are
        skipped for this step); ``weights``: task -> w_i (default 1 for every task);
        ``features``: the shared representation z the losses are computed from (needed by
        the ``feature_*`` estimators); ``present``: task -> bool or count of labelled
        examples in this step (0: the task is absent; tasks it omits are judged from their
        loss: 0 or NaN means no labelled example). A NaN or infinite loss is left out of
        ``.grad`` and of the estimators (named in a warning, counted). Frees the graph, as
        ``loss.backward()`` does. Returns the detached Σ_i w_i L_i over the finite losses.
        """
        return self._step(losses, weights, write_grad=True, features=features, present=present)

    def record(
        self, losses: dict[str, torch.Tensor], *, features: torch.Tensor | None = None, present: dict | None = None
    ) -> None:
        """Per-task gradients into the estimators only, graph kept: the caller's own backward follows.

        For frameworks that run the backward themselves (Lightning, Hugging Face
        ``Trainer``): costs the per-task gradients on top of that backward. ``present`` as
        for :meth:`backward`; ``.grad`` is the caller's, NaN losses included.
        """
        self._step(losses, None, write_grad=False, features=features, present=present)

    def _step(self, losses, weights, *, write_grad: bool, features=None, present=None):
        where = f"AffinityMeter.{'backward' if write_grad else 'record'}(losses)"
        recording = self.recording()
        step = screen_losses(losses, self.tasks, present, where=where, read_values=recording or write_grad)
        w = task_weights(weights, losses, step.graded)
        if recording or self.step == 0:  # checked before the step opens: a refused call changes nothing
            self.scale.check(losses, step.graded, where)
        if recording:
            check_trainable(self.shared, self._frozen, where)
            if self.feature_estimators and features is None:
                raise TaskAffinityError(
                    f"AffinityMeter: {self.feature_estimators[0]} needs backward(..., "
                    "features=z), z the shared representation the losses are computed from"
                )
        for task in (t for t, why in step.skipped.items() if why == NON_FINITE and not recording):
            self.stream.counts.warn(task, NON_FINITE, recorded=False)
        values = [losses[t].reshape(()) for t in step.graded]
        total = sum(wi * v for wi, v in zip(w, values))
        if not self.begin_step():
            if write_grad and values:
                total.backward()
            return total.detach() if values else torch.zeros(())
        started = time.perf_counter()
        factor = self.scale.factor()
        index = [self.tasks.index(t) for t in step.graded]
        rows = {self.tasks.index(t) for t in step.present}
        if values and self.feature_estimators:
            self._features(index, rows, values, w, features, write_grad and not self.parameter_estimators, factor)
        if values and self.parameter_estimators:
            (self._vmapped if self.vmap else self._per_task)(index, rows, values, w, write_grad, factor)
        self._losses.update({self.tasks.index(t): step.values[t] / factor for t in step.present})
        self._skipped.update(step.skipped)
        self.seconds += time.perf_counter() - started
        self.end_step()
        return total.detach() if values else torch.zeros(())

    # -- exact lookahead ------------------------------------------------------------------------
    def probe(
        self,
        losses_fn,
        *,
        rules=None,
        step: int | None = None,
        fixed_batch: bool = True,
        lookahead: str = "first_order",
    ) -> dict[str, pd.DataFrame]:
        """First-order TAG lookahead on a probe batch (held-out examples), recorded into the store.

        ``losses_fn(model) -> {task: scalar loss}`` evaluates the tasks on a fixed probe
        batch (per-task batches or one shared batch); it is
        called once for the gradients, in eval mode. ``rules``: of ``sgd`` and ``optimizer``
        (default: both with an optimizer, else ``sgd``). Records ``first_order_<rule>`` =
        η u_i·g_j / L_j (the default affinity of ``taskaffinity affinity``), ``gram`` and
        ``cosine`` at ``step``. ``lookahead="exact"`` also records TAG's exact
        ``lookahead_<rule>`` Z_{i→j} = 1 − L_j(θ_s + Δ_i) / L_j(θ_s): ``losses_fn`` is then called
        once more per source and rule with the shared parameters replaced (``functional_call``),
        R·k forward passes that ranked sources no better on the validation studies
        (docs/affinity.md, "The default probe"). ``step``: default the meter's current step.
        Returns the recorded estimators as source × target frames.
        A task whose loss or gradient is NaN or infinite (or whose loss is 0) is left out of
        the probe, by name. Raises TaskAffinityError when ``losses_fn`` feeds the model other
        inputs at a later call than at its first (``fixed_batch=False``: that is intended),
        and for half-precision θ_s with the exact lookahead (θ_s + Δ_i would round Δ_i away).
        """
        return run_probe(self, losses_fn, rules=rules, step=step, fixed_batch=fixed_batch, lookahead=lookahead)

    @property
    def counts(self) -> TaskCounts:
        """Per task: recorded steps and steps left out, by reason (``meter_losses.TaskCounts``)."""
        return self.stream.counts

    def _add_records(self, records: list[dict]) -> None:
        if not records:
            return
        self.records.extend(records)
        if self.log_to is not None:
            self.log_to.log_records(records)

    # -- results (meter_results.py) ---------------------------------------------------------------
    @property
    def metadata(self) -> dict:
        """Settings, per-task counts and costs of this meter's records (the store's metadata)."""
        return meter_metadata(self)

    @property
    def store(self) -> AffinityStore:
        """Every finished window and probe as an ``AffinityStore`` (an unfinished window is not in it)."""
        return AffinityStore(pd.DataFrame(self.records, columns=list(COLUMNS)), self.metadata)

    def save(
        self,
        folder: str | Path,
        *,
        n_boot: int = 1000,
        level: float = 0.95,
        seed: int = 0,
        metadata: dict | None = None,
    ) -> AffinityStore:
        """Write what ``taskaffinity affinity`` writes: ``affinity.parquet``, ``matrix_*.csv``,
        ``summary_*.csv`` (mean, se, bootstrap CI), ``fidelity.json`` (reliability and
        agreement) and ``heatmap_*.png``, listed in ``manifest.json``. ``metadata`` is added to
        the store's. A folder this meter's kind saved into before has exactly those files
        replaced; affinity files no manifest lists (another run's) are refused before anything
        is written (TaskAffinityError)."""
        return save_meter(self, folder, n_boot=n_boot, level=level, seed=seed, metadata=metadata)

    def state_dict(self) -> dict:
        """JSON-able state (records, step, the open window, task counts) for checkpoints."""
        return meter_state(self)

    def load_state_dict(self, state: dict) -> None:
        """Restore a saved state. Raises TaskAffinityError when it was saved under other settings
        (tasks or their order, window, start, every, estimators, lr, sketch): its open window and
        records would be read as this meter's."""
        load_meter_state(self, state)
