"""Joint multi-task training (Muppet-style pre-finetuning): the loop (:mod:`.loop`, :class:`JointTrainer`)
and its parts, one job each: which rows a step draws (:mod:`.sampling`), how they are tokenised and
padded (:mod:`.batching`), how task losses are weighted (:mod:`.weighting`) and per-task gradients
combined (:mod:`.aggregation`, :mod:`.task_gradients`), the callback contract recorders are written
against (:mod:`.callbacks`), evaluation (:mod:`.evaluate`), checkpoints (:mod:`.checkpoint`) and
torchrun (:mod:`.distributed`). :func:`~.joint.train_joint_model` builds and runs one."""
