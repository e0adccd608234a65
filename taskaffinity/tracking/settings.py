"""The ``tracking:`` section of a run config and the ``--report-to`` values (Hugging Face Trainer's convention).

    tracking:
      report_to: none            # or tensorboard, mlflow, wandb; a list for several at once
      project: null              # MLflow experiment / W&B project (default: the config's name)
      run_name: null             # default: the output folder's name
      log_every: 1               # steps between logged training scalars (losses, weights, lr)
      tensorboard_dir: null      # default: OUT/tensorboard
      mlflow_uri: null           # default: MLflow's own (MLFLOW_TRACKING_URI, else its default store)
      wandb_mode: null           # online, offline or disabled (default: WANDB_MODE, else online)

Nothing here imports a back-end: a missing one is found with ``importlib.util.find_spec`` and
named with its pip extra when the config is read, before anything runs or is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

BACKENDS = ("tensorboard", "mlflow", "wandb")
# back-end -> (module it needs, extra of taskaffinity that installs it)
REQUIREMENTS = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "mlflow": ("mlflow", "mlflow"),
    "wandb": ("wandb", "wandb"),
}
WANDB_MODES = ("online", "offline", "disabled")


def parse_report_to(value, *, what: str = "tracking.report_to") -> tuple[str, ...]:
    """``none``, one back-end, ``"tensorboard,mlflow"`` or a list of them -> the back-ends in order,
    without repeats (``()`` for none). Raises ConfigError naming ``what`` for an unknown name or
    ``none`` given together with a back-end."""
    items = [value] if isinstance(value, str) else list(value or ())
    names = [part.strip().lower() for item in items for part in str(item).split(",") if part.strip()]
    unknown = [n for n in names if n not in BACKENDS + ("none",)]
    if unknown:
        raise ConfigError(f"{what}: unknown back-end '{unknown[0]}' (use none, {', '.join(BACKENDS)})")
    if "none" in names and len(set(names)) > 1:
        raise ConfigError(f"{what}: 'none' cannot be combined with {', '.join(n for n in names if n != 'none')}")
    return tuple(dict.fromkeys(n for n in names if n != "none"))


def check_installed(backends, *, what: str = "tracking.report_to") -> None:
    """One line per missing back-end, naming the extra that installs it (no import happens here)."""
    from importlib.util import find_spec

    for name in backends:
        if find_spec(REQUIREMENTS[name][0]) is None:
            raise missing_backend(name, what=what)


def missing_backend(name: str, *, what: str = "tracking.report_to") -> ConfigError:
    """The one-line error for a back-end that is not installed, naming the extra that installs it."""
    module, extra = REQUIREMENTS[name]
    return ConfigError(f"{what} {name} needs the {module} package: pip install 'taskaffinity[{extra}]'")


@dataclass(frozen=True)
class TrackingConfig:
    """Where a run is also logged besides its own files (module docstring). Tracking never changes
    results: it is left out of run fingerprints and study job ids."""

    report_to: tuple = ()  # () is "none"
    project: str | None = None
    run_name: str | None = None
    log_every: int = 1
    tensorboard_dir: str | None = None
    mlflow_uri: str | None = None
    wandb_mode: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "report_to", parse_report_to(self.report_to))
        check_installed(self.report_to)
        if isinstance(self.log_every, bool) or not isinstance(self.log_every, int) or self.log_every < 1:
            raise ConfigError(f"tracking.log_every must be an integer >= 1, got {self.log_every!r}")
        if self.wandb_mode is not None and self.wandb_mode not in WANDB_MODES:
            raise ConfigError(f"tracking.wandb_mode must be one of {', '.join(WANDB_MODES)}, got {self.wandb_mode!r}")
        for key in ("project", "run_name"):
            if getattr(self, key) == "":
                raise ConfigError(f"tracking.{key} must not be empty")
