"""What the Lightning callback and the Hugging Face Trainer share: checks of their meter options
and of the tasks a step brings, so that both refuse the same things with the same words."""

from __future__ import annotations

import inspect

from .errors import TaskAffinityError

# Set by the front itself; the frameworks scale (GradScaler) and divide (accumulation) only the loss they
# backpropagate, so task_losses arrive unscaled and the meter must not undo a scale they do not carry.
FRONT_OWNED = ("model", "shared", "tasks", "optimizer", "scaler", "accumulation")


def check_meter_kwargs(meter_kwargs: dict, where: str, label: str) -> None:
    """Refuse, before training, meter options that do not exist (``label`` names them, e.g. ``meter_kwargs key``)
    or that the front sets itself."""
    from .meter import AffinityMeter

    unknown = sorted(set(meter_kwargs) - set(inspect.signature(AffinityMeter).parameters))
    if unknown:
        raise TaskAffinityError(f"{where}: unknown {label} '{unknown[0]}' (AffinityMeter takes lr, estimators, "
                                "window, vmap, start, every, sketch_dim, seed)")
    owned = sorted(set(meter_kwargs) & set(FRONT_OWNED))
    if owned:
        raise TaskAffinityError(f"{where}: {label} '{owned[0]}' is not for this front: task_losses are the unscaled "
                                "per-task losses (loss scaling and accumulation apply to the backpropagated loss "
                                "only), and model, shared, tasks and the optimizer are the front's arguments")


def check_step_tasks(losses: dict, tasks: list[str], given: bool, where: str) -> None:
    """Refuse a task the meter does not know, saying where its task order came from."""
    unknown = [t for t in losses if t not in tasks]
    if unknown:
        origin = ("" if given else f" It is not in the first step's task_losses ({', '.join(tasks)}), from which the "
                  "task order was taken: give tasks=[...] (every task) when a batch may hold only some of them.")
        raise TaskAffinityError(f"{where}: unknown task '{unknown[0]}' in task_losses (the meter's tasks: "
                                f"{', '.join(tasks)}).{origin}")
