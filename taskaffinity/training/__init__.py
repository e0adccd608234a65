"""Joint multi-task training (Muppet-style pre-finetuning): the loop (:mod:`.loop`, :class:`~.loop.JointTrainer`)
and its parts, one job each: which rows a step draws (:mod:`.sampling`), how they are tokenised and
padded (:mod:`.batching`), how task losses are weighted (:mod:`.weighting`) and per-task gradients
combined (:mod:`.aggregation`, :mod:`.task_gradients`), the callback contract recorders are written
against (:mod:`.callbacks`), evaluation (:mod:`.evaluate`), checkpoints (:mod:`.checkpoint`) and
torchrun (:mod:`.distributed`). :func:`~.joint.train_joint_model` builds and runs one."""

_EXPORTS = {"JointTrainer": ".loop", "train_joint_model": ".joint", "TrainResult": ".joint"}


def __getattr__(name):  # imported on first use: importing one part does not import the loop
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_EXPORTS)
