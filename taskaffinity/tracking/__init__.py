"""Runs where researchers already look: TensorBoard, MLflow and Weights & Biases (``docs/tracking.md``).

- :mod:`.settings`: the ``tracking:`` config section and ``--report-to`` values (``none`` by default);
- :mod:`.run`: :class:`TrackingRun`, one run on every configured back-end, opened on first use;
- :mod:`.callback`: :class:`TrackingCallback`, the trainer's callback that logs a joint run;
- :mod:`.study`: a study's run and one nested run per job;
- :mod:`.adapt`: ``log_to=`` objects (a SummaryWriter, an MLflow or W&B run, a function);
- :mod:`.tensorboard`, :mod:`.mlflow`, :mod:`.wandb`: the back-ends, each imported only when used.

Importing this package imports no back-end.
"""

from .base import Tracker, Trackers, affinity_key
from .run import TrackingRun, open_run
from .settings import BACKENDS, TrackingConfig, parse_report_to

__all__ = [
    "BACKENDS",
    "Tracker",
    "Trackers",
    "TrackingConfig",
    "TrackingRun",
    "affinity_key",
    "open_run",
    "parse_report_to",
]
