"""The joint multi-task training loop (Muppet-style pre-finetuning).

One update = one heterogeneous batch: the sampler picks how many examples of each
task go in, every task's sub-batch is forwarded and backpropagated on its own
(the FLOPs of one pass over the whole batch, and per-task gradients for free to
whoever asks), losses are weighted by their share of the batch and scaled by
1/log(n_classes), then one AdamW step updates encoder and heads. Other loss weightings
(:mod:`.weighting`) and aggregators of the per-task gradients (:mod:`.aggregation`) are options.

An optional head warm-up runs first: encoder frozen, heads trained, so tasks are
learned before their gradients are compared (affinities through random heads are
noise).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import get_scheduler

from .aggregation import TaskGradientMatrix, aggregate, make_aggregator
from .batching import EncodedRows
from .callbacks import Callback, CallbackList, StepContext, TrainingContext
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .config import RunConfig
from .distributed import setup as setup_distributed
from .errors import ConfigError
from .evaluate import evaluate
from .heads import loss_scale
from .model import MultiTaskModel
from .sampling import HeterogeneousSampler
from .storage import read_json, write_parquet
from .task_gradients import PackedTaskGradients, covered_modules
from .tasks.data import SPLITS, TaskData
from .weighting import make_weighting, last_shared_layer

log = logging.getLogger(__name__)


def run_fingerprint(config: RunConfig, tasks: dict[str, TaskData]) -> str:
    """Identity of a run: its configuration and each task's prepared data (``TaskData.fingerprint``).

    A checkpoint resumes only into the same identity: a changed file is refused like a
    changed configuration, never taken for the old one.
    """
    blob = json.dumps({"config": config.fingerprint(), "data": data_fingerprints(tasks)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def data_fingerprints(tasks: dict[str, TaskData]) -> dict[str, str]:
    return {name: task.fingerprint() for name, task in tasks.items()}


def checkpoint_fingerprint(out_dir: str | Path) -> str | None:
    """The run fingerprint of the newest checkpoint in ``out_dir`` (None when there is none)."""
    path = latest_checkpoint(Path(out_dir) / "checkpoints")
    return read_json(path / "state.json").get("fingerprint") if path is not None else None


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA if present, else CPU. Under torchrun, a bare ``cuda`` means this process's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"training.device is '{name}' but no CUDA device is available")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


class JointTrainer:
    """Trains a MultiTaskModel on all tasks at once; see the module docstring."""

    def __init__(self, config: RunConfig, tasks: dict[str, TaskData], model: MultiTaskModel, tokenizer, *,
                 out_dir: str | Path | None = None, callbacks: list[Callback] = (), progress: bool = True):
        self.config, self.training = config, config.training
        self.tasks, self.model, self.tokenizer = tasks, model, tokenizer
        self.out_dir = Path(out_dir) if out_dir else None
        self.dist = setup_distributed()  # one process unless launched by torchrun
        self.progress = progress and self.dist.main
        self.device = resolve_device(self.training.device, self.dist.local_rank)
        self.model.to(self.device)
        try:
            self.sampler = HeterogeneousSampler(
                {name: len(t.train) for name, t in tasks.items()}, batch_size=self.training.batch_size,
                method=self.training.sampling, temperature=self.training.temperature, seed=config.seed,
                tasks_per_step=self.training.tasks_per_step)
        except ValueError as err:  # a bad training option: the user's config, not a crash
            raise ConfigError(f"{config.source_file or 'config'}: {err}") from None
        self.loss_scales = {name: loss_scale(t.spec.type, t.n_classes) if self.training.loss_scaling else 1.0
                            for name, t in tasks.items()}
        self.weighting = make_weighting(self.training, tasks, self.loss_scales, device=self.device)
        self.aggregator = (make_aggregator(self.training.aggregator, cagrad_c=self.training.cagrad_c)
                           if self.training.aggregator != "sum" else None)
        learned = self.weighting.parameters()  # uncertainty's log-variances: trained by the same AdamW
        self.optimizer = torch.optim.AdamW(self.param_groups_for(model) + (
            [{"params": learned, "lr": self.training.weighting_lr, "weight_decay": 0.0}] if learned else []))
        self.scheduler = get_scheduler(
            self.training.scheduler, self.optimizer, num_warmup_steps=round(self.training.warmup_ratio * self.training.steps),
            num_training_steps=self.training.steps)
        self.total_steps = self.training.head_warmup_steps + self.training.steps
        self.step = 0
        self.step_log: list[dict] = []
        self.data_fingerprints = data_fingerprints(tasks)
        self.fingerprint = run_fingerprint(config, tasks)
        self._resumed = False
        # every split tokenised now: a text the tokenizer cannot encode fails here, not after training
        self._encoded: dict[tuple[str, str], EncodedRows] = {
            (name, split): self.encode(name, split) for name in tasks for split in SPLITS}
        self.eval_log = pd.DataFrame()
        self.use_amp = self.training.amp and self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        # one encoder pass per step by default on GPUs; per-task passes on CPU, where padding
        # every task to the longest costs more than the extra passes save
        self.packs_tasks = self.training.pack_tasks if self.training.pack_tasks is not None else self.device.type == "cuda"
        # Per-task gradients from packed passes need per-task heads and covered encoder layers
        modules = covered_modules(model.encoder)
        own_heads = len(set(model.head_of.values())) == len(model.head_of)
        self.task_gradients = PackedTaskGradients(modules) if modules is not None and own_heads else None
        self.set_callbacks(callbacks)
        # what callbacks may read (callbacks.py): made before they are checked and before any step
        self.context = TrainingContext(
            tasks=tasks, model=model, tokenizer=tokenizer, optimizer=self.optimizer, device=self.device,
            dist=self.dist, lr=self.training.lr, max_length=config.model.max_length, loss_scales=self.loss_scales,
            packs_tasks=self.packs_tasks, use_amp=self.use_amp, head_warmup_steps=self.training.head_warmup_steps,
            total_steps=self.total_steps, aggregator=self.training.aggregator)
        self.callbacks.check(self.context)

    # -- set-up ------------------------------------------------------------------------------
    def param_groups_for(self, model: MultiTaskModel) -> list[dict]:
        """Encoder and heads at their own learning rates; no decay on biases and LayerNorm."""
        def split(named, lr):
            decay = [p for n, p in named if p.ndim > 1]
            no_decay = [p for n, p in named if p.ndim <= 1]
            return [{"params": decay, "lr": lr, "weight_decay": self.training.weight_decay},
                    {"params": no_decay, "lr": lr, "weight_decay": 0.0}]

        return split(list(model.shared_parameters()), self.training.lr) + split(
            list(model.head_parameters()), self.training.head_lr)

    @property
    def trainable_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """Parameters updated at this phase: encoder (unless frozen) then heads."""
        return self.context.trainable_parameters

    def encode(self, task: str, split: str) -> EncodedRows:
        """Tokenise a task's split (called once per split, at start-up; a study worker caches it)."""
        data = self.tasks[task]
        return EncodedRows(data.spec.type, data.split(split), self.tokenizer, self.config.model.max_length,
                           what=f"task '{task}', {split} split")

    def encoded(self, task: str, split: str = "train") -> EncodedRows:
        """A task's split, tokenised once (steps and evaluations then only gather and pad)."""
        return self._encoded[task, split]

    def encoded_train(self, task: str) -> EncodedRows:
        return self.encoded(task, "train")

    def phase(self, step: int) -> str:
        return self.context.phase(step)

    def autocast(self):
        if self.use_amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- the loop ----------------------------------------------------------------------------
    def train(self, *, resume: bool = True) -> pd.DataFrame:
        """Run (or finish) training; return the last evaluation (tidy frame)."""
        if resume:
            self.resume()
        self.model.train()
        self.callbacks.on_train_begin(self.context)
        if self.step == 0 and self.callbacks.wants_evaluation(0):  # a callback asked for the state before training
            self.run_evaluation(0)
        bar = tqdm(total=self.total_steps, initial=self.step, desc="joint training", disable=not self.progress)
        while self.step < self.total_steps:
            step = self.step + 1
            losses = self.train_step(step)
            self.step = step
            bar.update(1)
            bar.set_postfix(loss=f"{sum(losses.values()) / max(len(losses), 1):.3f}", phase=self.phase(step))
            last = step == self.total_steps
            if self.should_evaluate(step, last) or self.callbacks.wants_evaluation(step):
                self.run_evaluation(step)
            if self.out_dir and self.should_checkpoint(step, last):
                self.save()
        bar.close()
        if self.eval_log.empty or self.eval_log["step"].max() < self.step:
            self.run_evaluation(self.step)
        self.callbacks.on_train_end(self.context)
        return self.eval_log[self.eval_log["step"] == self.step].reset_index(drop=True)

    def should_evaluate(self, step: int, last: bool) -> bool:
        return last or step % self.training.eval_every == 0 or step == self.training.head_warmup_steps

    def should_checkpoint(self, step: int, last: bool) -> bool:
        """Every ``checkpoint_every`` steps and at the end (a finished run resumes to its last evaluation)."""
        return last or step % self.training.checkpoint_every == 0

    def train_step(self, step: int) -> dict[str, float]:
        phase = self.phase(step)
        self.model.encoder.requires_grad_(phase == "joint")
        if phase == "head_warmup":  # constant head (and learned weights') LR, no encoder update, schedule not started
            for group in self.optimizer.param_groups[2:]:
                group["lr"] = group["initial_lr"]
        elif step == self.training.head_warmup_steps + 1:
            for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
                group["lr"] = lr
        # dropout: reproducible, resumable, and different on every process
        torch.manual_seed((self.config.seed * 1_000_003 + step) * self.dist.world + self.dist.rank)
        started = time.perf_counter()
        drawn = self.sampler.draw(step)  # the global batch: the same on every process
        self.step_counts = {task: len(rows) for task, rows in drawn.items()}
        shards = {task: self.dist.shard(rows) for task, rows in drawn.items()}
        # b_i^r / b_i: weights that sum this process's per-task losses and gradients to the global ones
        self.shard_weights = {task: len(rows) / self.step_counts[task] for task, rows in shards.items() if len(rows)}
        batches = {task: self.encoded_train(task).collate(rows, self.device)
                   for task, rows in shards.items() if len(rows)}
        context = StepContext(step, phase, dict(self.step_counts), dict(self.shard_weights))
        self.loss_weights = self.weighting.weights(context)  # m_i of this update (before its forward pass)
        self.context.step_context = dataclasses.replace(context, loss_weights=dict(self.loss_weights))
        self.callbacks.on_step_begin(self.context, step, batches)
        self.optimizer.zero_grad(set_to_none=True)
        self.task_rows = self.task_gradient_matrix() if self.trainer_needs_task_gradients else None
        losses = self.accumulate_gradients(step, batches)
        if self.dist.active:
            losses = self.reduce_losses(losses)
        aggregated = self.combine_task_gradients(step)
        if self.dist.active:
            self.reduce_gradients(skip=aggregated)
        self.weighting.observe(step, losses, self.last_layer_norms())
        self.callbacks.on_before_optimizer_step(self.context, step, losses)
        params = [p for _, p in self.trainable_parameters]
        if self.training.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, self.training.max_grad_norm)
        self.optimizer.step()
        if phase == "joint":
            self.scheduler.step()
        self.callbacks.on_after_optimizer_step(self.context, step, losses)
        seconds = time.perf_counter() - started
        lr = self.optimizer.param_groups[0]["lr"] if phase == "joint" else 0.0
        for task, loss in losses.items():
            self.step_log.append({"step": step, "phase": phase, "task": task, "loss": loss,
                                  "examples": self.step_counts[task], "weight": self.loss_weights[task], "lr": lr,
                                  "seconds": seconds})
        return losses

    def accumulate_gradients(self, step: int, batches: dict) -> dict[str, float]:
        """Backpropagate each task's weighted loss m_i · L_i into ``.grad`` (Muppet: m_i = (b_i / B) / s_i),
        along the gradient path chosen when the callbacks were set (:meth:`set_callbacks`).

        Under torchrun L_i is this process's shard's, weighted by its share b_i^r / b_i.
        """
        weights = {task: self.loss_weights[task] * self.shard_weights[task] for task in batches}
        return self.gradient_path(step, batches, weights)

    @property
    def trainer_needs_task_gradients(self) -> bool:
        """Per-task gradients the trainer itself uses: an aggregator's rows, GradNorm's layer norms."""
        return self.aggregator is not None or self.weighting.needs_task_gradients

    def task_gradient_matrix(self) -> TaskGradientMatrix | None:
        """This step's rows: the trainable encoder parameters for an aggregator, GradNorm's layer otherwise
        (None while the encoder is frozen)."""
        named = self.trainable_parameters
        shared = {id(p) for _, p in self.model.shared_parameters()}
        if self.aggregator is not None:
            wanted = [(k, p) for k, (_, p) in enumerate(named) if id(p) in shared]
        else:
            layer = last_shared_layer(self.model)
            wanted = [(k, p) for k, (_, p) in enumerate(named) if p is layer]
        if not wanted:
            return None
        return TaskGradientMatrix([p for _, p in wanted], [k for k, _ in wanted], list(self.step_counts))

    def combine_task_gradients(self, step: int) -> list[torch.Tensor]:
        """Sum this step's per-task rows over processes; with an aggregator, write its direction into the
        encoder's ``.grad``. Returns the parameters whose ``.grad`` is final (already global)."""
        if self.task_rows is None:
            return []
        self.dist.sum_(self.task_rows.matrix)  # Σ_r (b_i^r / b_i) m_i ∇L_i^r = m_i ∇L_i
        if self.aggregator is None:
            return []
        direction = aggregate(self.aggregator, self.task_rows.matrix, seed=self.config.seed * 1_000_003 + step)
        self.task_rows.set_gradients(direction)
        return self.task_rows.params

    def last_layer_norms(self) -> dict[str, float] | None:
        """GradNorm's G_i = ‖m_i ∇_W L_i‖ on the last shared layer W, per task of the step."""
        if not self.weighting.needs_task_gradients or self.task_rows is None:
            return None
        columns = self.task_rows.columns(last_shared_layer(self.model))
        norms = self.task_rows.matrix[:, columns].norm(dim=1).tolist()
        return dict(zip(self.task_rows.tasks, norms))

    def set_callbacks(self, callbacks) -> None:
        """Use these callbacks from now on, and choose the gradient path they need (once, not per step):

        - ``accumulate_packed``: all tasks in one encoder pass, no per-task gradient (GPU default);
        - ``accumulate_packed_per_task``: one packed pass, per-task gradients split from it;
        - ``accumulate_per_task``: one pass per task (CPU default; also when a packed split is
          impossible: shared heads or encoder layers it does not cover).
        """
        self.callbacks = callbacks if isinstance(callbacks, CallbackList) else CallbackList(callbacks)
        self.wants_task_gradients = self.callbacks.wants_task_gradients or self.trainer_needs_task_gradients
        if self.packs_tasks and not self.wants_task_gradients:
            self.gradient_path = self.accumulate_packed
        elif self.packs_tasks and self.task_gradients is not None:
            self.gradient_path = self.accumulate_packed_per_task
        else:
            self.gradient_path = self.accumulate_per_task

    def accumulate_per_task(self, step: int, batches: dict, weights: dict[str, float]) -> dict[str, float]:
        """Each task's sub-batch forwarded and backpropagated on its own: the FLOPs of one pass over
        the whole batch, and each task's own gradient for the callbacks that want it."""
        params = [p for _, p in self.trainable_parameters]
        wants = self.wants_task_gradients
        losses = {}
        for task, batch in batches.items():
            with self.autocast():
                loss, _ = self.model.loss(task, batch)
            weight = weights[task]
            if wants:
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                self.callbacks.on_task_gradients(self.context, step, task, loss.detach(), grads)
                if self.task_rows is not None:
                    self.task_rows.write(task, grads, weight)
                for p, g in zip(params, grads):  # grads stay untouched: callbacks may keep them
                    if g is not None:
                        p.grad = g * weight if p.grad is None else p.grad.add_(g, alpha=weight)
            else:
                (loss * weight).backward()
            losses[task] = loss.detach()
        return _to_floats(losses)

    def accumulate_packed(self, step: int, batches: dict, weights: dict[str, float]) -> dict[str, float]:
        """All tasks' sub-batches in one encoder pass and one backward (same gradient, fewer,
        larger kernels: what a GPU needs). Per-task passes remain for recorders that need
        each task's own gradient."""
        return _to_floats(self._packed_backward(batches, weights))

    def accumulate_packed_per_task(self, step: int, batches: dict, weights: dict[str, float]) -> dict[str, float]:
        """One packed pass, per-task encoder gradients split from it (``task_gradients``)."""
        tasks = list(batches)
        rows = [math.prod(b["inputs"]["input_ids"].shape[:-1]) for b in batches.values()]  # choices count as rows
        with self.task_gradients.capture(rows, [weights[t] for t in tasks]):
            losses = self._packed_backward(batches, weights)
        named = self.trainable_parameters
        for k, task in enumerate(tasks):
            own_head = {id(p) for p in self.model.head(task).parameters()}
            grads = [self.task_gradients.gradient(p, k) if id(p) in self.task_gradients.parts
                     else p.grad / weights[task] if id(p) in own_head and p.grad is not None else None
                     for _, p in named]
            self.callbacks.on_task_gradients(self.context, step, task, losses[task], grads)
            if self.task_rows is not None:
                self.task_rows.write(task, grads, weights[task])
        return _to_floats(losses)

    def _packed_backward(self, batches: dict, weights: dict[str, float]) -> dict[str, torch.Tensor]:
        with self.autocast():
            features = self.model.encode_packed([batch["inputs"] for batch in batches.values()])
            losses = {task: self.model.head(task).loss(self.model.head(task)(f), batch["labels"])
                      for (task, batch), f in zip(batches.items(), features)}
            total = sum(loss * weights[task] for task, loss in losses.items())
        total.backward()
        return {task: loss.detach() for task, loss in losses.items()}

    def reduce_losses(self, losses: dict[str, float]) -> dict[str, float]:
        """Global per-task mean losses Σ_r (b_i^r / b_i) L_i^r, in the sampler's task order."""
        tasks = list(self.step_counts)
        local = torch.tensor([losses.get(t, 0.0) * self.shard_weights.get(t, 0.0) for t in tasks],
                             dtype=torch.float64, device=self.device)
        return dict(zip(tasks, self.dist.sum_(local).tolist()))

    def reduce_gradients(self, skip: list[torch.Tensor] = ()) -> None:
        """Sum ``.grad`` over processes: what DistributedDataParallel's reducer does, done here
        because per-task ``autograd.grad`` calls bypass its hooks. A parameter keeps ``grad is
        None`` only if no process touched it (so AdamW skips it as it would in one process).
        ``skip``: parameters whose ``.grad`` is already global (an aggregator's direction)."""
        skipped = {id(p) for p in skip}
        params = [p for _, p in self.trainable_parameters if id(p) not in skipped]
        touched = self.dist.sum_(torch.tensor([p.grad is not None for p in params], dtype=torch.float32,
                                              device=self.device))
        used = [p for p, hits in zip(params, touched.tolist()) if hits]
        for p in used:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.dist.sum_tensors_([p.grad for p in used])

    #: splits every evaluation scores (a study job's final evaluation adds ``test``)
    eval_splits: tuple[str, ...] = ("validation",)

    def run_evaluation(self, step: int) -> pd.DataFrame:
        metrics = evaluate(self.model, self.tasks, self.tokenizer, splits=self.eval_splits,
                           max_length=self.config.model.max_length, batch_size=self.training.eval_batch_size,
                           device=self.device, autocast=self.autocast, encoded=self.encoded)
        metrics.insert(0, "step", step)
        metrics.insert(1, "phase", self.phase(step))
        self.eval_log = pd.concat([self.eval_log, metrics], ignore_index=True)
        self.callbacks.on_evaluate(self.context, step, metrics)
        return metrics

    # -- persistence -------------------------------------------------------------------------
    def save(self) -> None:
        """Logs then checkpoint, each atomic: logs never run ahead of a checkpoint that is lost.

        Only the main process writes; the others wait, so no process runs ahead of a checkpoint."""
        if self.dist.main:
            self._write()
        self.dist.barrier()

    def _write(self) -> None:
        write_parquet(self.out_dir / "steps.parquet", pd.DataFrame(self.step_log))
        write_parquet(self.out_dir / "eval.parquet", self.eval_log)
        state = {"fingerprint": self.fingerprint, "config_fingerprint": self.config.fingerprint(),
                 "data_fingerprints": self.data_fingerprints, "sampler": self.sampler.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "callbacks": self.callbacks.state_dict(),
                 "weighting": self.weighting.state_dict()}
        save_checkpoint(self.out_dir / "checkpoints", self.step, self.model, self.optimizer, state)

    def resume(self) -> None:
        """Continue from the newest checkpoint in ``out_dir``, if any (once; ``train`` calls it too).

        Raises ConfigError, before anything is loaded or written, when the checkpoint
        belongs to another configuration or other data (see :func:`run_fingerprint`).
        """
        if self.out_dir is None or self._resumed:
            return
        self._resumed = True
        path = latest_checkpoint(self.out_dir / "checkpoints")
        if path is None:
            return
        saved = read_json(path / "state.json")
        if saved.get("fingerprint") != self.fingerprint:
            changed = [t for t, fp in self.data_fingerprints.items() if saved.get("data_fingerprints", {}).get(t) != fp]
            detail = (f" (the data of task {', '.join(repr(t) for t in changed)} changed)"
                      if changed and saved.get("config_fingerprint") == self.config.fingerprint() else "")
            raise ConfigError(
                f"{self.out_dir} holds a run of a different configuration or data{detail}; use another --out "
                "or --no-resume to start over")
        state = load_checkpoint(path, self.model, self.optimizer, self.device)
        self.step = state["step"]
        self.sampler.load_state_dict(state["sampler"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.callbacks.load_state_dict(state.get("callbacks", {}))
        self.weighting.load_state_dict(state.get("weighting", {}))
        steps = pd.read_parquet(self.out_dir / "steps.parquet")
        self.step_log = steps[steps["step"] <= self.step].to_dict("records")
        evals = pd.read_parquet(self.out_dir / "eval.parquet")
        if not evals.empty:  # a checkpoint may precede the first evaluation
            self.eval_log = evals[evals["step"] <= self.step].reset_index(drop=True)
        log.info("resumed from %s (step %d)", path, self.step)


def _to_floats(losses: dict[str, torch.Tensor]) -> dict[str, float]:
    """One device-to-host copy per step (a float() per task would stall a GPU n times)."""
    values = torch.stack([loss.float() for loss in losses.values()]).tolist() if losses else []
    return dict(zip(losses, values))
