"""One tracked run on every back-end a config names, opened on first use.

:func:`open_run` gives ``None`` for ``report_to: none``: callers then add nothing (no callback,
no import). A :class:`TrackingRun` opens its back-ends when it is first used (so a run that
fails to start opens none, and a resumed run first learns its run ids from the checkpoint),
calls every back-end through :class:`~taskaffinity.tracking.base.Trackers` (a failing one is
dropped with a warning), and is closed by whoever opened it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .base import Tracker, Trackers, figure_image
from .settings import TrackingConfig


@dataclass(frozen=True)
class RunSpec:
    """Names and places of one tracked run (the same on every back-end)."""

    settings: TrackingConfig
    name: str  # the run's display name
    project: str  # MLflow experiment, W&B project
    out_dir: Path | None  # the run's own output folder (W&B's directory by default)
    tensorboard_dir: Path  # this run's event files
    group: str | None = None  # W&B group (a study's runs)
    job_type: str | None = None  # study, affinity, pretrain, finetune, train
    parent: dict = field(default_factory=dict)  # a parent run's state (MLflow nesting)


def _open_backend(name: str, spec: RunSpec, resume: dict | None) -> Tracker:
    if name == "tensorboard":
        from .tensorboard import TensorBoardTracker as backend
    elif name == "mlflow":
        from .mlflow import MlflowTracker as backend
    else:
        from .wandb import WandbTracker as backend
    return backend.open(spec, resume)


def is_main_process() -> bool:
    """Under torchrun only rank 0 tracks (as only it writes files)."""
    return int(os.environ.get("RANK", "0")) == 0


class TrackingRun:
    """A run on each back-end of ``spec.settings.report_to`` (module docstring)."""

    def __init__(self, spec: RunSpec, params: dict | None = None):
        self.spec = spec
        self.params = dict(params or {})
        self.trackers: Trackers | None = None
        self.resume: dict = {}  # back-end -> its saved state (from a checkpoint)

    @property
    def started(self) -> bool:
        return self.trackers is not None

    def start(self) -> TrackingRun:
        """Open every back-end (once); one that cannot open is warned about and left out."""
        if self.trackers is not None:
            return self
        self.trackers = Trackers(where=str(self.spec.out_dir) if self.spec.out_dir else "")
        for name in self.spec.settings.report_to:
            try:
                self.trackers.trackers.append(_open_backend(name, self.spec, self.resume.get(name)))
            except Exception as err:  # noqa: BLE001 -- a bad URI, no network: the run goes on
                self.trackers.drop(_Named(name), f"cannot open: {type(err).__name__}: {err}")
        if self.params:
            self.trackers.call("log_params", self.params)
        return self

    def child(self, name: str, *, job_type: str, params: dict | None = None) -> TrackingRun:
        """A run nested under this one (MLflow parent tag, same W&B group, a TensorBoard subfolder)."""
        spec = replace(
            self.spec,
            name=name,
            job_type=job_type,
            parent=self.state(),
            tensorboard_dir=self.spec.tensorboard_dir.parent / name,
        )
        return TrackingRun(spec, params)

    # -- logging (each opens the run on first use) ------------------------------------------------
    def log_scalars(self, values: dict[str, float], step: int) -> None:
        if values:
            self.start().trackers.call("log_scalars", values, step)

    def log_records(self, records) -> None:
        """Affinity records as ``affinity/<estimator>/<source>_to_<target>`` at their steps."""
        if records:
            self.start().trackers.log_records(records)

    def log_params(self, params: dict) -> None:
        self.start().trackers.call("log_params", params)

    def log_figure(self, name: str, figure, step: int | None = None) -> None:
        """A matplotlib Figure, rendered once for every back-end (the caller closes it)."""
        self.start()
        if self.trackers:
            self.trackers.call("log_image", name, figure_image(figure), step)

    def log_summary(self, values: dict[str, float]) -> None:
        if values:
            self.start().trackers.call("log_summary", values)

    def state(self) -> dict:
        """Back-end -> what reopens its run (``{}`` before the run is opened)."""
        return self.trackers.state() if self.trackers is not None else dict(self.resume)

    def close(self, *, failed: bool = False) -> None:
        if self.trackers is not None:
            self.trackers.call("close", failed=failed)
            self.trackers.trackers.clear()


class _Named(Tracker):
    """Stands for a back-end that failed to open, in the warning."""

    def __init__(self, backend: str):
        self.backend = backend


def open_run(
    settings: TrackingConfig,
    *,
    name: str,
    out_dir: str | Path | None,
    project: str,
    params: dict | None = None,
    job_type: str | None = None,
    group: str | None = None,
    tensorboard_dir: str | Path | None = None,
) -> TrackingRun | None:
    """A (not yet opened) run of ``settings``; ``None`` for ``report_to: none`` or off the main process.

    ``name``: display name; ``project``: default MLflow experiment and W&B project
    (``tracking.project`` wins); event files go to ``tracking.tensorboard_dir``, else
    ``tensorboard_dir``, else ``out_dir/tensorboard``.
    """
    if not settings.report_to or not is_main_process():
        return None
    out = Path(out_dir) if out_dir is not None else None
    logdir = settings.tensorboard_dir or tensorboard_dir or (out / "tensorboard" if out else Path("tensorboard"))
    spec = RunSpec(
        settings,
        name=name,
        project=settings.project or project,
        out_dir=out,
        tensorboard_dir=Path(logdir),
        group=group,
        job_type=job_type,
    )
    return TrackingRun(spec, params)


def open_config_run(
    config,
    out_dir: str | Path | None,
    *,
    job_type: str = "train",
    sections: tuple[str, ...] = ("model", "data", "training"),
) -> TrackingRun | None:
    """:func:`open_run` for a run config (a :class:`~taskaffinity.config.RunConfig`): named after
    ``tracking.run_name``, else ``out_dir``'s name; project: the config's name; parameters: name,
    seed, tasks and ``sections`` flattened (``training.lr`` ...)."""
    settings = config.tracking
    if not settings.report_to:
        return None
    name = settings.run_name or (Path(out_dir).name if out_dir else config.name)
    return open_run(
        settings,
        name=name,
        out_dir=out_dir,
        project=config.name,
        params=config_params(config, sections),
        job_type=job_type,
    )


def config_params(config, sections: tuple[str, ...] = ("model", "data", "training")) -> dict:
    """A run config's name, seed, tasks and ``sections``, flattened (:func:`flat_params`)."""
    raw = config.to_dict()
    return flat_params({k: v for k, v in raw.items() if k in ("name", "seed", "tasks") or k in sections})


def flat_params(config: dict, prefix: str = "") -> dict:
    """A nested config mapping as ``{"training.lr": 5e-05, "tasks": "a,b"}``: lists joined, None as 'none'."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_params(value, name + ".") if value else {name: "{}"})
        elif isinstance(value, (list, tuple)):
            out[name] = ",".join(str(v if not isinstance(v, dict) else v.get("name", v)) for v in value)
        else:
            out[name] = "none" if value is None else value
    return out
