"""Hooks into the joint training step, for affinity recorders and loggers.

The order of calls inside one step is::

    on_step_begin(trainer, step, batches)            task -> collated sub-batch
    on_task_gradients(trainer, step, task, loss, grads)   once per task, if requested
    on_before_optimizer_step(trainer, step, losses)  .grad holds the summed update
    on_after_optimizer_step(trainer, step, losses)
    on_evaluate(trainer, step, metrics)              every eval_every steps

``grads`` are the gradients of the task's *unweighted* mean loss L_i with respect
to ``trainer.trainable_parameters`` (encoder then heads, in order; ``None`` for
parameters the task does not touch). Per-task gradients cost one extra pass over
the parameters per task, so the trainer only computes them when some callback
sets ``wants_task_gradients = True``; otherwise each task's loss is
backpropagated straight into ``.grad``.
"""

from __future__ import annotations


class Callback:
    wants_task_gradients: bool = False

    def on_train_begin(self, trainer) -> None: ...

    def on_step_begin(self, trainer, step: int, batches: dict) -> None: ...

    def on_task_gradients(self, trainer, step: int, task: str, loss, grads) -> None: ...

    def on_before_optimizer_step(self, trainer, step: int, losses: dict) -> None: ...

    def on_after_optimizer_step(self, trainer, step: int, losses: dict) -> None: ...

    def on_evaluate(self, trainer, step: int, metrics) -> None: ...

    def on_train_end(self, trainer) -> None: ...


class CallbackList(Callback):
    """Fans every hook out to a list of callbacks, in order."""

    def __init__(self, callbacks=()):
        self.callbacks = list(callbacks)

    @property
    def wants_task_gradients(self) -> bool:  # type: ignore[override]
        return any(cb.wants_task_gradients for cb in self.callbacks)


def _fan_out(hook: str):
    def call(self, *args, **kwargs) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(*args, **kwargs)

    call.__name__ = hook
    return call


for _hook in [name for name in vars(Callback) if name.startswith("on_")]:
    setattr(CallbackList, _hook, _fan_out(_hook))
