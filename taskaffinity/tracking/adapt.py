"""``log_to=``: a logger object of the caller's as a tracker, recognised without importing any back-end.

Accepted: a TensorBoard ``SummaryWriter`` (torch's or tensorboardX's: anything with ``add_scalar``),
an MLflow run (``mlflow.start_run()``'s ActiveRun, or a ``Run``: anything with ``info.run_id``),
a W&B run (``wandb.init()``'s), a :class:`~taskaffinity.tracking.base.Tracker`, or a function
``f(values: dict[str, float], step: int)``.
"""

from __future__ import annotations

from ..errors import TaskAffinityError
from .base import CallableTracker, Tracker, Trackers


def as_tracker(obj, *, what: str = "log_to") -> Tracker:
    """The tracker that logs to ``obj`` (module docstring); TaskAffinityError naming ``what`` otherwise."""
    if isinstance(obj, Tracker):
        return obj
    module = type(obj).__module__ or ""
    if hasattr(obj, "add_scalar"):
        from .tensorboard import TensorBoardTracker

        return TensorBoardTracker(obj)
    if module.split(".")[0] == "wandb" and hasattr(obj, "log"):
        from .wandb import WandbTracker

        return WandbTracker(obj)
    if hasattr(getattr(obj, "info", None), "run_id"):
        from .mlflow import MlflowTracker

        return MlflowTracker.of_run(obj)
    if callable(obj):
        return CallableTracker(obj)
    raise TaskAffinityError(
        f"{what} must be a TensorBoard SummaryWriter, an MLflow run, a W&B run or a function "
        f"f(values, step), got {type(obj).__name__}"
    )


def log_to(obj, *, what: str = "log_to") -> Trackers:
    """``obj`` as a guarded :class:`Trackers` (a logger that raises is warned about once and dropped)."""
    return Trackers([as_tracker(obj, what=what)])
