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
(:mod:`taskaffinity.meter_losses`; what each situation of a real loop does:
``docs/own_loop.md``, "Real loops"). :meth:`probe` measures TAG's exact lookahead
(:mod:`taskaffinity.affinity.lookahead`) on a probe batch of the caller's choice.
The meter is a front over ``affinity/`` for loops the toolkit does not run, as
:mod:`taskaffinity.lightning` is for Lightning; its :meth:`~AffinityMeter.save` writes the
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

import math
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from .affinity import folder as owned_folder
from .affinity.gradient_rows import GradientRows
from .affinity.lookahead import lookahead as probe_estimators
from .affinity.outputs import affinity_files, summaries_of, trust_report
from .affinity.probe_inputs import ProbeInputs, refuse_changed_batch
from .affinity.store import COLUMNS, AffinityStore
from .affinity.updates import RULES
from .affinity.windows import FEATURE, STREAMED, WindowedMeans, feature_estimates, finite_tasks, step_estimates
from .errors import TaskAffinityError
from .meter_gradients import StepGradients
from .meter_losses import NO_EXAMPLES, NON_FINITE, TaskCounts, finite_probe, screen_losses, task_weights
from .meter_scaling import LossScale
from .meter_setup import (check_gradients, check_model, check_optimizer_rule, check_probe, check_tasks,
                          check_trainable, lr_of, shared_parameters)
from .report.affinity_outputs import write_affinity_outputs



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

    def __init__(self, model: nn.Module, shared, *, tasks: list[str], lr: float | None = None,
                 optimizer: torch.optim.Optimizer | None = None, estimators=None, window: int = 10,
                 vmap: bool = False, start: int = 1, every: int = 1, sketch_dim: int | None = None,
                 seed: int = 0, log_to=None, scaler=None, accumulation: int = 1):
        self.model, self.optimizer = model, optimizer
        self.tasks = check_tasks(tasks)
        self.shared, self._frozen = shared_parameters(model, shared)
        if lr is None and optimizer is not None:
            lr = lr_of(optimizer, self.shared)
        if lr is None or not lr > 0 or not math.isfinite(lr):
            raise TaskAffinityError(f"AffinityMeter: lr (η of the SGD rule) must be a finite number > 0, got {lr} "
                                    "(pass lr=, or an optimizer holding the shared parameters to take it from)")
        self.lr = float(lr)
        default = STREAMED if optimizer is not None else STREAMED[:3]
        self.estimators = tuple(default if estimators is None else estimators)
        unknown = [e for e in self.estimators if e not in STREAMED + FEATURE]
        if unknown or not self.estimators:
            raise TaskAffinityError(f"AffinityMeter: unknown estimator '{unknown[0] if unknown else ''}' "
                                    f"(choose at least one of {', '.join(STREAMED + FEATURE)})")
        self.parameter_estimators = [e for e in self.estimators if e in STREAMED]
        self.feature_estimators = [e for e in self.estimators if e in FEATURE]
        if "stream_first_order_optimizer" in self.estimators:
            if optimizer is None:
                raise TaskAffinityError("AffinityMeter: stream_first_order_optimizer needs optimizer=")
            check_optimizer_rule(optimizer, self.shared, "AffinityMeter")
        for key, value in (("window", window), ("start", start), ("every", every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TaskAffinityError(f"AffinityMeter: {key} must be an integer >= 1, got {value!r}")
        if sketch_dim is not None and (not isinstance(sketch_dim, int) or sketch_dim < 1):
            raise TaskAffinityError(f"AffinityMeter: sketch_dim must be an integer >= 1, got {sketch_dim!r}")
        check_model(model, self.shared, vmap=vmap)
        self.scale = LossScale(scaler, accumulation)
        self.window, self.vmap, self.start, self.every = window, vmap, start, every
        self.sketch_dim, self.seed = sketch_dim, seed
        self.step = 0
        self.records: list[dict] = []
        self.seconds = 0.0  # host seconds inside backward/record/probe: what recording costs, with the backward
        self.windows = WindowedMeans(self.tasks)
        self.counts = TaskCounts(self.tasks)
        self.probe_skipped = {t: 0 for t in self.tasks}  # probes that left the task out (non-finite values)
        self._probe_inputs = ProbeInputs(model)
        self._recorded_in_window = 0
        self._rows: GradientRows | None = None
        self._losses: dict[int, float] = {}
        self._skipped: dict[str, str] = {}
        self._unreached: set[str] = set()  # tasks already warned about: their loss ignores the shared parameters
        self.log_to = None
        if log_to is not None:
            from .tracking.adapt import log_to as trackers

            self.log_to = trackers(log_to, what="AffinityMeter: log_to")

    # -- the training step --------------------------------------------------------------------
    def recording(self, step: int | None = None) -> bool:
        """Whether step ``step`` (default: the next one) is recorded."""
        step = self.step + 1 if step is None else step
        return step >= self.start and (step - self.start) % self.every == 0

    def backward(self, losses: dict[str, torch.Tensor], weights: dict[str, float] | None = None, *,
                 features: torch.Tensor | None = None, present: dict | None = None) -> torch.Tensor:
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

    def record(self, losses: dict[str, torch.Tensor], *, features: torch.Tensor | None = None,
               present: dict | None = None) -> None:
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
                raise TaskAffinityError(f"AffinityMeter: {self.feature_estimators[0]} needs backward(..., "
                                        "features=z), z the shared representation the losses are computed from")
        for task in (t for t, why in step.skipped.items() if why == NON_FINITE and not recording):
            self.counts.warn(task, NON_FINITE, recorded=False)
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
            keep = finite_tasks(estimates)  # a NaN or infinite gradient: the task is left out, by name
            self._skipped.update({self.tasks[k]: NON_FINITE for k, ok in zip(index, keep) if not ok})
            if sum(keep) >= 2:
                if not all(keep):
                    at = torch.tensor([k for k, ok in enumerate(keep) if ok])
                    estimates = {e: m.index_select(0, at.to(m.device)).index_select(1, at.to(m.device))
                                 for e, m in estimates.items()}
                kept = [k for k, ok in zip(index, keep) if ok]
                self.windows.add(estimates, kept)
                self.counts.add([self.tasks[k] for k in kept], {})
                self._recorded_in_window += 1
                if self._recorded_in_window == self.window:
                    self._add_records(self.windows.emit(self.step))
                    self._recorded_in_window = 0
        if self.recording(self.step):
            self.counts.add([], self._skipped)
        self._losses, self._skipped = {}, {}
        self.seconds += time.perf_counter() - started

    # -- exact lookahead ------------------------------------------------------------------------
    def probe(self, losses_fn, *, rules=None, step: int | None = None, fixed_batch: bool = True,
              lookahead: str = "first_order") -> dict[str, pd.DataFrame]:
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
        if lookahead not in ("first_order", "exact"):
            raise TaskAffinityError(f"AffinityMeter.probe: lookahead must be first_order or exact, got '{lookahead}'")
        rules = tuple(rules) if rules is not None else (RULES if self.optimizer is not None else ("sgd",))
        bad = [r for r in rules if r not in RULES]
        if bad:
            raise TaskAffinityError(f"AffinityMeter.probe: unknown rule '{bad[0]}' (use {', '.join(RULES)})")
        if "optimizer" in rules and self.optimizer is None:
            raise TaskAffinityError("AffinityMeter.probe: the optimizer rule needs AffinityMeter(optimizer=...)")
        check_probe(self.shared, self._frozen, self.optimizer, rules, exact=lookahead == "exact")
        if fixed_batch:
            losses_fn = self._probe_inputs.watch(losses_fn, on_change=refuse_changed_batch)
        started = time.perf_counter()
        probed, arrays = probe_estimators(self.model, self.shared, losses_fn, self.tasks, rules=rules, lr=self.lr,
                                   optimizer=self.optimizer, vmap=self.vmap, exact=lookahead == "exact")
        probed, arrays = finite_probe(probed, arrays, self.probe_skipped)
        if fixed_batch:
            self._probe_inputs.commit()
        at = self.step if step is None else step
        self._add_records([{"step": at, "estimator": e, "source": s, "target": t, "value": float(m[i, j])}
                           for e, m in arrays.items() for i, s in enumerate(probed) for j, t in enumerate(probed)])
        self.seconds += time.perf_counter() - started
        return {e: pd.DataFrame(m, index=pd.Index(probed, name="source"), columns=pd.Index(probed, name="target"))
                for e, m in arrays.items()}

    def _add_records(self, records: list[dict]) -> None:
        self.records.extend(records)
        if self.log_to is not None:
            self.log_to.log_records(records)

    # -- results --------------------------------------------------------------------------------
    @property
    def metadata(self) -> dict:
        return {"tasks": self.tasks, "lookahead_lr_sgd": self.lr, "stream_window": self.window,
                "start_step": self.start, "every": self.every, "steps": self.step, "vmap": self.vmap,
                "shared_parameters": int(sum(p.numel() for _, p in self.shared)), "sketch_dim": self.sketch_dim,
                "frozen_shared_left_out": [n for n, _ in self._frozen],
                "optimizer": type(self.optimizer).__name__ if self.optimizer is not None else None,
                **self.scale.metadata(), **self.counts.metadata(),
                "probe_skipped": {t: n for t, n in self.probe_skipped.items() if n},
                "probe_batch_changes": self._probe_inputs.changes,
                "meter_seconds": self.seconds, "source": "AffinityMeter"}

    @property
    def store(self) -> AffinityStore:
        """Every finished window and probe as an ``AffinityStore`` (an unfinished window is not in it)."""
        return AffinityStore(pd.DataFrame(self.records, columns=list(COLUMNS)), self.metadata)

    def save(self, folder: str | Path, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
             metadata: dict | None = None) -> AffinityStore:
        """Write what ``taskaffinity affinity`` writes: ``affinity.parquet``, ``matrix_*.csv``,
        ``summary_*.csv`` (mean, se, bootstrap CI), ``fidelity.json`` (reliability and
        agreement) and ``heatmap_*.png``, listed in ``manifest.json``. ``metadata`` is added to
        the store's. A folder this meter's kind saved into before has exactly those files
        replaced; affinity files no manifest lists (another run's) are refused before anything
        is written (TaskAffinityError)."""
        store = self.store
        if store.records.empty:
            raise TaskAffinityError("AffinityMeter.save: nothing recorded yet (no finished window or probe)")
        store.metadata.update(metadata or {})
        files = affinity_files(store.estimators)
        out = owned_folder.prepare(folder, files, where="AffinityMeter.save")
        summaries = summaries_of(store, n_boot=n_boot, level=level, seed=seed)
        write_affinity_outputs(store, summaries, trust_report(store, summaries, seed=seed), out, confidence=level)
        owned_folder.finish(out, files)
        return store

    def state_dict(self) -> dict:
        """JSON-able state (records, step, the open window, task counts) for checkpoints."""
        return {"step": self.step, "records": list(self.records), "seconds": self.seconds,
                "window": self.windows.state_dict(), "recorded_in_window": self._recorded_in_window,
                "counts": self.counts.state_dict(), "probe_skipped": dict(self.probe_skipped),
                "settings": self._settings()}

    def _settings(self) -> dict:
        """What the saved records and open window mean: resuming under other settings would mix them."""
        return {"tasks": list(self.tasks), "window": self.window, "start": self.start, "every": self.every,
                "estimators": list(self.estimators), "lr": self.lr, "sketch_dim": self.sketch_dim}

    def load_state_dict(self, state: dict) -> None:
        """Restore a saved state. Raises TaskAffinityError when it was saved under other settings
        (tasks or their order, window, start, every, estimators, lr, sketch): its open window and
        records would be read as this meter's."""
        saved = state.get("settings")
        if saved is not None:
            changed = [k for k, v in self._settings().items() if saved.get(k) != v]
            if changed:
                key = changed[0]
                raise TaskAffinityError(f"AffinityMeter.load_state_dict: the state was saved with {key}="
                                        f"{saved.get(key)!r}, this meter has {key}={self._settings()[key]!r}; "
                                        "resume with the same meter settings, or start a new run")
        self.step, self.records, self.seconds = state["step"], list(state["records"]), state["seconds"]
        self.windows.load_state_dict(state["window"])
        self._recorded_in_window = state["recorded_in_window"]
        self.counts.load_state_dict(state.get("counts"))
        self.probe_skipped.update(state.get("probe_skipped") or {})
