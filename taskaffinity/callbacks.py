"""Hooks into the joint training step, for affinity recorders and loggers.

The order of calls inside one step is::

    on_step_begin(trainer, step, batches)            task -> collated sub-batch
    on_task_gradients(trainer, step, task, loss, grads)   once per task, if requested
    on_before_optimizer_step(trainer, step, losses)  .grad holds the summed update
    on_after_optimizer_step(trainer, step, losses)
    on_evaluate(trainer, step, metrics)              every eval_every steps

``state_dict`` / ``load_state_dict`` are saved in and restored from checkpoints.

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

    def check(self, trainer) -> None:
        """Raise a TaskAffinityError if this callback cannot work with this trainer (before any output)."""

    def on_train_begin(self, trainer) -> None: ...

    def on_step_begin(self, trainer, step: int, batches: dict) -> None: ...

    def on_task_gradients(self, trainer, step: int, task: str, loss, grads) -> None: ...

    def on_before_optimizer_step(self, trainer, step: int, losses: dict) -> None: ...

    def on_after_optimizer_step(self, trainer, step: int, losses: dict) -> None: ...

    def on_evaluate(self, trainer, step: int, metrics) -> None: ...

    def on_train_end(self, trainer) -> None: ...

    # Callbacks that accumulate results keep them in the trainer's checkpoints, so an
    # interrupted run resumes them too. Return None to keep nothing; JSON-able data only.
    def state_dict(self) -> dict | None:
        return None

    def load_state_dict(self, state: dict) -> None: ...


class CallbackList(Callback):
    """Fans every hook out to a list of callbacks, in order."""

    def __init__(self, callbacks=()):
        self.callbacks = list(callbacks)

    @property
    def wants_task_gradients(self) -> bool:  # type: ignore[override]
        return any(cb.wants_task_gradients for cb in self.callbacks)

    def state_dict(self) -> dict:
        states = {f"{i}:{type(cb).__name__}": cb.state_dict() for i, cb in enumerate(self.callbacks)}
        return {key: state for key, state in states.items() if state is not None}

    def load_state_dict(self, state: dict) -> None:
        for i, cb in enumerate(self.callbacks):
            key = f"{i}:{type(cb).__name__}"
            if key in state:
                cb.load_state_dict(state[key])


def _fan_out(hook: str):
    def call(self, *args, **kwargs) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(*args, **kwargs)

    call.__name__ = hook
    return call


for _hook in [name for name in vars(Callback) if name.startswith("on_") or name == "check"]:
    setattr(CallbackList, _hook, _fan_out(_hook))
