"""How one step's task losses become ``.grad``: the gradient path of the joint loop.

Three paths give the same Σ_i m_i ∇L_i (Muppet: m_i = (b_i / B) / s_i); which one runs is chosen
once, from what the callbacks and the trainer itself need (:meth:`GradientPath.choose`):

- ``accumulate_packed``: all tasks in one encoder pass, no per-task gradient (GPU default);
- ``accumulate_packed_per_task``: one packed pass, per-task gradients split from it
  (:mod:`.task_gradients`);
- ``accumulate_per_task``: one pass per task (CPU default; also when a packed split is
  impossible: shared heads or encoder layers it does not cover).

Per-task gradient rows (an aggregator's matrix, GradNorm's layer norms) are gathered along the way;
under torchrun losses and gradients are summed over processes here, because per-task
``autograd.grad`` calls bypass DistributedDataParallel's hooks.
"""

from __future__ import annotations

import math

import torch

from .aggregation import TaskGradientMatrix, aggregate
from .callbacks import CallbackList
from .weighting import last_shared_layer


class GradientPath:
    """Backpropagates a step's weighted losses along the chosen path; see the module docstring.

    ``trainer``: the :class:`~.loop.JointTrainer` whose model, callbacks, context, weighting,
    processes and autocast the path uses (read at each step: a trainer's callbacks may change).
    ``aggregator``: a torchjd aggregator of the per-task rows, or None for the plain sum.
    ``task_gradients``: a :class:`~.task_gradients.PackedTaskGradients` when a packed pass can be
    split per task, else None.
    """

    def __init__(self, trainer, aggregator, task_gradients, packs_tasks: bool):
        self.trainer, self.aggregator, self.task_gradients = trainer, aggregator, task_gradients
        self.packs_tasks = packs_tasks
        self.task_rows: TaskGradientMatrix | None = None
        self.wants_task_gradients = False
        self.path = self.accumulate_per_task

    @property
    def trainer_needs_task_gradients(self) -> bool:
        """Per-task gradients the trainer itself uses: an aggregator's rows, GradNorm's layer norms."""
        return self.aggregator is not None or self.trainer.weighting.needs_task_gradients

    def choose(self, callbacks: CallbackList) -> None:
        """The path these callbacks need (once, not per step)."""
        self.wants_task_gradients = callbacks.wants_task_gradients or self.trainer_needs_task_gradients
        if self.packs_tasks and not self.wants_task_gradients:
            self.path = self.accumulate_packed
        elif self.packs_tasks and self.task_gradients is not None:
            self.path = self.accumulate_packed_per_task
        else:
            self.path = self.accumulate_per_task

    # -- one step ------------------------------------------------------------------------------
    def backward(
        self, step: int, batches: dict, weights: dict[str, float], step_counts: dict[str, int]
    ) -> dict[str, float]:
        """Backpropagate Σ_i w_i L_i into ``.grad`` (w_i: m_i, times b_i^r / b_i under torchrun) and
        gather this step's per-task rows when the trainer needs them. Returns L_i per task (floats)."""
        self.task_rows = self.task_gradient_matrix(step_counts) if self.trainer_needs_task_gradients else None
        return self.path(step, batches, weights)

    def task_gradient_matrix(self, step_counts: dict[str, int]) -> TaskGradientMatrix | None:
        """This step's rows: the trainable encoder parameters for an aggregator, GradNorm's layer otherwise
        (None while the encoder is frozen)."""
        model = self.trainer.model
        named = self.trainer.trainable_parameters
        shared = {id(p) for _, p in model.shared_parameters()}
        if self.aggregator is not None:
            wanted = [(k, p) for k, (_, p) in enumerate(named) if id(p) in shared]
        else:
            layer = last_shared_layer(model)
            wanted = [(k, p) for k, (_, p) in enumerate(named) if p is layer]
        if not wanted:
            return None
        return TaskGradientMatrix([p for _, p in wanted], [k for k, _ in wanted], list(step_counts))

    def accumulate_per_task(self, step: int, batches: dict, weights: dict[str, float]) -> dict[str, float]:
        """Each task's sub-batch forwarded and backpropagated on its own: the FLOPs of one pass over
        the whole batch, and each task's own gradient for the callbacks that want it."""
        trainer = self.trainer
        params = [p for _, p in trainer.trainable_parameters]
        losses = {}
        for task, batch in batches.items():
            with trainer.autocast():
                loss, _ = trainer.model.loss(task, batch)
            weight = weights[task]
            if self.wants_task_gradients:
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                trainer.callbacks.on_task_gradients(trainer.context, step, task, loss.detach(), grads)
                if self.task_rows is not None:
                    self.task_rows.write(task, grads, weight)
                for p, g in zip(params, grads):  # grads stay untouched: callbacks may keep them
                    if g is not None:
                        p.grad = g * weight if p.grad is None else p.grad.add_(g, alpha=weight)
            else:
                (loss * weight).backward()
            losses[task] = loss.detach()
        return to_floats(losses)

    def accumulate_packed(self, step: int, batches: dict, weights: dict[str, float]) -> dict[str, float]:
        """All tasks' sub-batches in one encoder pass and one backward (same gradient, fewer,
        larger kernels: what a GPU needs). Per-task passes remain for recorders that need
        each task's own gradient."""
        return to_floats(self._packed_backward(batches, weights))

    def accumulate_packed_per_task(self, step: int, batches: dict, weights: dict[str, float]) -> dict[str, float]:
        """One packed pass, per-task encoder gradients split from it (``task_gradients``)."""
        trainer = self.trainer
        tasks = list(batches)
        rows = [math.prod(b["inputs"]["input_ids"].shape[:-1]) for b in batches.values()]  # choices count as rows
        with self.task_gradients.capture(rows, [weights[t] for t in tasks]):
            losses = self._packed_backward(batches, weights)
        named = trainer.trainable_parameters
        for k, task in enumerate(tasks):
            own_head = {id(p) for p in trainer.model.head(task).parameters()}
            grads = [
                self.task_gradients.gradient(p, k)
                if id(p) in self.task_gradients.parts
                else p.grad / weights[task]
                if id(p) in own_head and p.grad is not None
                else None
                for _, p in named
            ]
            trainer.callbacks.on_task_gradients(trainer.context, step, task, losses[task], grads)
            if self.task_rows is not None:
                self.task_rows.write(task, grads, weights[task])
        return to_floats(losses)

    def _packed_backward(self, batches: dict, weights: dict[str, float]) -> dict[str, torch.Tensor]:
        model = self.trainer.model
        with self.trainer.autocast():
            features = model.encode_packed([batch["inputs"] for batch in batches.values()])
            losses = {
                task: model.head(task).loss(model.head(task)(f), batch["labels"])
                for (task, batch), f in zip(batches.items(), features)
            }
            total = sum(loss * weights[task] for task, loss in losses.items())
        total.backward()
        return {task: loss.detach() for task, loss in losses.items()}

    # -- after the backward --------------------------------------------------------------------
    def combine_task_gradients(self, step: int, seed: int) -> list[torch.Tensor]:
        """Sum this step's per-task rows over processes; with an aggregator, write its direction into the
        encoder's ``.grad``. Returns the parameters whose ``.grad`` is final (already global)."""
        if self.task_rows is None:
            return []
        self.trainer.dist.sum_(self.task_rows.matrix)  # Σ_r (b_i^r / b_i) m_i ∇L_i^r = m_i ∇L_i
        if self.aggregator is None:
            return []
        direction = aggregate(self.aggregator, self.task_rows.matrix, seed=seed * 1_000_003 + step)
        self.task_rows.set_gradients(direction)
        return self.task_rows.params

    def last_layer_norms(self) -> dict[str, float] | None:
        """GradNorm's G_i = ‖m_i ∇_W L_i‖ on the last shared layer W, per task of the step."""
        if not self.trainer.weighting.needs_task_gradients or self.task_rows is None:
            return None
        columns = self.task_rows.columns(last_shared_layer(self.trainer.model))
        norms = self.task_rows.matrix[:, columns].norm(dim=1).tolist()
        return dict(zip(self.task_rows.tasks, norms))

    def reduce_losses(
        self, losses: dict[str, float], step_counts: dict[str, int], shard_weights: dict[str, float]
    ) -> dict[str, float]:
        """Global per-task mean losses Σ_r (b_i^r / b_i) L_i^r, in the sampler's task order."""
        tasks = list(step_counts)
        local = torch.tensor(
            [losses.get(t, 0.0) * shard_weights.get(t, 0.0) for t in tasks],
            dtype=torch.float64,
            device=self.trainer.device,
        )
        return dict(zip(tasks, self.trainer.dist.sum_(local).tolist()))

    def reduce_gradients(self, skip: list[torch.Tensor] = ()) -> None:
        """Sum ``.grad`` over processes: what DistributedDataParallel's reducer does, done here
        because per-task ``autograd.grad`` calls bypass its hooks. A parameter keeps ``grad is
        None`` only if no process touched it (so AdamW skips it as it would in one process).
        ``skip``: parameters whose ``.grad`` is already global (an aggregator's direction)."""
        dist, device = self.trainer.dist, self.trainer.device
        skipped = {id(p) for p in skip}
        params = [p for _, p in self.trainer.trainable_parameters if id(p) not in skipped]
        touched = dist.sum_(torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device))
        used = [p for p, hits in zip(params, touched.tolist()) if hits]
        for p in used:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        dist.sum_tensors_([p.grad for p in used])


def to_floats(losses: dict[str, torch.Tensor]) -> dict[str, float]:
    """One device-to-host copy per step (a float() per task would stall a GPU n times)."""
    values = torch.stack([loss.float() for loss in losses.values()]).tolist() if losses else []
    return dict(zip(losses, values))
