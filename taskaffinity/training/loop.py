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
import logging
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..config import RunConfig
from ..errors import ConfigError
from ..model.heads import loss_scale
from ..model.multitask import MultiTaskModel
from ..tasks.data import SPLITS, TaskData
from .aggregation import make_aggregator
from .batching import EncodedRows
from .callbacks import Callback, CallbackList, StepContext, TrainingContext
from .checkpoint import (  # noqa: F401 (taskaffinity.train's names)
    checkpoint_fingerprint,
    data_fingerprints,
    latest_checkpoint,
    load_checkpoint,
    restore_run,
    run_fingerprint,
    save_checkpoint,
    write_run,
)
from .distributed import resolve_device
from .distributed import setup as setup_distributed
from .evaluate import evaluate
from .gradient_path import GradientPath
from .optimization import PhasedOptimizer, param_groups
from .sampling import HeterogeneousSampler
from .task_gradients import PackedTaskGradients, covered_modules
from .weighting import make_weighting

log = logging.getLogger(__name__)


class JointTrainer:
    """Trains a MultiTaskModel on all tasks at once; see the module docstring."""

    def __init__(
        self,
        config: RunConfig,
        tasks: dict[str, TaskData],
        model: MultiTaskModel,
        tokenizer,
        *,
        out_dir: str | Path | None = None,
        callbacks: list[Callback] = (),
        progress: bool = True,
    ):
        self.config, self.training = config, config.training
        self.tasks, self.model, self.tokenizer = tasks, model, tokenizer
        self.out_dir = Path(out_dir) if out_dir else None
        self.dist = setup_distributed()  # one process unless launched by torchrun
        self.progress = progress and self.dist.main
        self.device = resolve_device(self.training.device, self.dist.local_rank)
        self.model.to(self.device)
        try:
            self.sampler = HeterogeneousSampler(
                {name: len(t.train) for name, t in tasks.items()},
                batch_size=self.training.batch_size,
                method=self.training.sampling,
                temperature=self.training.temperature,
                seed=config.seed,
                tasks_per_step=self.training.tasks_per_step,
            )
        except ValueError as err:  # a bad training option: the user's config, not a crash
            raise ConfigError(f"{config.source_file or 'config'}: {err}") from None
        self.loss_scales = {
            name: loss_scale(t.spec.type, t.n_classes) if self.training.loss_scaling else 1.0
            for name, t in tasks.items()
        }
        self.weighting = make_weighting(self.training, tasks, self.loss_scales, device=self.device)
        aggregator = (
            make_aggregator(self.training.aggregator, cagrad_c=self.training.cagrad_c)
            if self.training.aggregator != "sum"
            else None
        )
        learned = self.weighting.parameters()  # uncertainty's log-variances: trained by the same AdamW
        self.optimization = PhasedOptimizer(model, self.training, learned)
        self.optimizer, self.scheduler = self.optimization.optimizer, self.optimization.scheduler
        self.total_steps = self.training.head_warmup_steps + self.training.steps
        self.step = 0
        self.step_log: list[dict] = []
        self.data_fingerprints = data_fingerprints(tasks)
        self.fingerprint = run_fingerprint(config, tasks)
        self._resumed = False
        # every split tokenised now: a text the tokenizer cannot encode fails here, not after training
        self._encoded: dict[tuple[str, str], EncodedRows] = {
            (name, split): self.encode(name, split) for name in tasks for split in SPLITS
        }
        self.eval_log = pd.DataFrame()
        self.use_amp = self.training.amp and self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        # one encoder pass per step by default on GPUs; per-task passes on CPU, where padding
        # every task to the longest costs more than the extra passes save
        self.packs_tasks = (
            self.training.pack_tasks if self.training.pack_tasks is not None else self.device.type == "cuda"
        )
        # Per-task gradients from packed passes need per-task heads and covered encoder layers
        modules = covered_modules(model.encoder)
        own_heads = len(set(model.head_of.values())) == len(model.head_of)
        self.gradients = GradientPath(
            self,
            aggregator,
            PackedTaskGradients(modules) if modules is not None and own_heads else None,
            self.packs_tasks,
        )
        self.set_callbacks(callbacks)
        # what callbacks may read (callbacks.py): made before they are checked and before any step
        self.context = TrainingContext(
            tasks=tasks,
            model=model,
            tokenizer=tokenizer,
            optimizer=self.optimizer,
            device=self.device,
            dist=self.dist,
            lr=self.training.lr,
            max_length=config.model.max_length,
            loss_scales=self.loss_scales,
            packs_tasks=self.packs_tasks,
            use_amp=self.use_amp,
            head_warmup_steps=self.training.head_warmup_steps,
            total_steps=self.total_steps,
            aggregator=self.training.aggregator,
        )
        self.callbacks.check(self.context)

    # -- set-up ------------------------------------------------------------------------------
    def param_groups_for(self, model: MultiTaskModel) -> list[dict]:
        """Encoder and heads at their own learning rates; no decay on biases and LayerNorm."""
        return param_groups(model, self.training)

    @property
    def trainable_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """Parameters updated at this phase: encoder (unless frozen) then heads."""
        return self.context.trainable_parameters

    def encode(self, task: str, split: str) -> EncodedRows:
        """Tokenise a task's split (called once per split, at start-up; a study worker caches it)."""
        data = self.tasks[task]
        return EncodedRows(
            data.spec.type,
            data.split(split),
            self.tokenizer,
            self.config.model.max_length,
            what=f"task '{task}', {split} split",
        )

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

    def set_callbacks(self, callbacks) -> None:
        """Use these callbacks from now on, and choose the gradient path they need (once, not per step;
        :class:`~.gradient_path.GradientPath`)."""
        self.callbacks = callbacks if isinstance(callbacks, CallbackList) else CallbackList(callbacks)
        self.gradients.choose(self.callbacks)

    def train_step(self, step: int) -> dict[str, float]:
        phase = self.phase(step)
        self.model.encoder.requires_grad_(phase == "joint")
        self.optimization.begin(step, phase)
        # dropout: reproducible, resumable, and different on every process
        torch.manual_seed((self.config.seed * 1_000_003 + step) * self.dist.world + self.dist.rank)
        started = time.perf_counter()
        drawn = self.sampler.draw(step)  # the global batch: the same on every process
        self.step_counts = {task: len(rows) for task, rows in drawn.items()}
        shards = {task: self.dist.shard(rows) for task, rows in drawn.items()}
        # b_i^r / b_i: weights that sum this process's per-task losses and gradients to the global ones
        self.shard_weights = {task: len(rows) / self.step_counts[task] for task, rows in shards.items() if len(rows)}
        batches = {
            task: self.encoded_train(task).collate(rows, self.device) for task, rows in shards.items() if len(rows)
        }
        context = StepContext(step, phase, dict(self.step_counts), dict(self.shard_weights))
        self.loss_weights = self.weighting.weights(context)  # m_i of this update (before its forward pass)
        self.context.step_context = dataclasses.replace(context, loss_weights=dict(self.loss_weights))
        self.callbacks.on_step_begin(self.context, step, batches)
        self.optimizer.zero_grad(set_to_none=True)
        # Backpropagate each task's weighted loss m_i · L_i into ``.grad``; under torchrun L_i is this
        # process's shard's, weighted by its share b_i^r / b_i
        weights = {task: self.loss_weights[task] * self.shard_weights[task] for task in batches}
        losses = self.gradients.backward(step, batches, weights, self.step_counts)
        if self.dist.active:
            losses = self.gradients.reduce_losses(losses, self.step_counts, self.shard_weights)
        aggregated = self.gradients.combine_task_gradients(step, self.config.seed)
        if self.dist.active:
            self.gradients.reduce_gradients(skip=aggregated)
        self.weighting.observe(step, losses, self.gradients.last_layer_norms())
        self.callbacks.on_before_optimizer_step(self.context, step, losses)
        params = [p for _, p in self.trainable_parameters]
        if self.training.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, self.training.max_grad_norm)
        self.optimization.step(phase)
        self.callbacks.on_after_optimizer_step(self.context, step, losses)
        seconds = time.perf_counter() - started
        lr = self.optimization.encoder_lr(phase)
        for task, loss in losses.items():
            self.step_log.append(
                {
                    "step": step,
                    "phase": phase,
                    "task": task,
                    "loss": loss,
                    "examples": self.step_counts[task],
                    "weight": self.loss_weights[task],
                    "lr": lr,
                    "seconds": seconds,
                }
            )
        return losses

    #: splits every evaluation scores (a study job's final evaluation adds ``test``)
    eval_splits: tuple[str, ...] = ("validation",)

    def run_evaluation(self, step: int) -> pd.DataFrame:
        metrics = evaluate(
            self.model,
            self.tasks,
            self.tokenizer,
            splits=self.eval_splits,
            max_length=self.config.model.max_length,
            batch_size=self.training.eval_batch_size,
            device=self.device,
            autocast=self.autocast,
            encoded=self.encoded,
        )
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
        write_run(self)

    def resume(self) -> None:
        """Continue from the newest checkpoint in ``out_dir``, if any (once; ``train`` calls it too).

        Raises ConfigError, before anything is loaded or written, when the checkpoint
        belongs to another configuration or other data (see :func:`~.checkpoint.run_fingerprint`).
        """
        if self.out_dir is None or self._resumed:
            return
        self._resumed = True
        restore_run(self)
