"""What every back-end does, and the guard that keeps a failing one from stopping a run.

A :class:`Tracker` is one run of one back-end (a TensorBoard log directory, an MLflow run, a
W&B run, or a function). :class:`Trackers` calls every tracker it holds; one that raises (a
full disk, a bad URI, no network) is reported once in a warning and dropped, and the training
and its own Parquet files go on as if tracking were off.

Scalar names (the same on every back-end)::

    loss/<task>  weight/<task>  lr                       per training step (steps.parquet)
    <split>/<task>/<metric>                              per evaluation (eval.parquet)
    affinity/<estimator>/<source>_to_<target>            per probe or streamed window (affinity.parquet)
"""

from __future__ import annotations

import logging
from collections import defaultdict

log = logging.getLogger("taskaffinity.tracking")


def affinity_key(estimator: str, source: str, target: str) -> str:
    """``affinity/<estimator>/<source>_to_<target>``: Z_{source→target} of one estimator."""
    return f"affinity/{estimator}/{source}_to_{target}"


def figure_image(figure, *, dpi: int = 100):
    """A matplotlib Figure rendered once as an RGB ``uint8`` array (height, width, 3), for every back-end."""
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def records_by_step(records) -> dict[int, dict[str, float]]:
    """Affinity records (dicts with step, estimator, source, target, value) -> step -> {key: value}."""
    out: dict[int, dict[str, float]] = defaultdict(dict)
    for r in records:
        out[int(r["step"])][affinity_key(r["estimator"], r["source"], r["target"])] = float(r["value"])
    return dict(sorted(out.items()))


class Tracker:
    """One run of one back-end. ``log_scalars`` is required; the others default to doing nothing."""

    backend = "tracker"

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def log_params(self, params: dict) -> None:
        """Flat ``{name: str | int | float | bool}``: the run's configuration."""

    def log_image(self, name: str, image, step: int | None = None) -> None:
        """An RGB image, ``uint8`` array of shape (height, width, 3); ``step`` None: the last logged step."""

    def log_summary(self, values: dict[str, float]) -> None:
        """Final numbers of the run (W&B summary, MLflow metrics, TensorBoard hparams)."""

    def state(self) -> dict:
        """What reopens this run after an interruption (a run id); JSON-able."""
        return {}

    def close(self, failed: bool = False) -> None: ...


class CallableTracker(Tracker):
    """``function(values: dict[str, float], step: int)``: any logger of the caller's."""

    backend = "callable"

    def __init__(self, function):
        self.function = function

    def log_scalars(self, values, step):
        self.function(values, step)


class Trackers:
    """Calls every tracker; a tracker that raises is warned about once and dropped (module docstring)."""

    def __init__(self, trackers=(), *, where: str = ""):
        self.trackers = list(trackers)
        self.where = where  # the run's own files, named in the warning

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def call(self, method: str, *args, **kwargs) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 -- any back-end failure: drop it, keep training
                self.drop(tracker, f"{method}: {type(err).__name__}: {err}")

    def drop(self, tracker: Tracker, why: str) -> None:
        """Leave ``tracker`` out from now on (one that failed to open was never in)."""
        if tracker in self.trackers:
            self.trackers.remove(tracker)
        where = f"; its results are still written to {self.where}" if self.where else ""
        log.warning(
            "tracking: %s stopped (%s); the run goes on without it%s",
            tracker.backend,
            why.splitlines()[0] if why else "",
            where,
        )
        try:
            tracker.close(failed=True)
        except Exception:  # noqa: BLE001 -- already reported
            pass

    def log_records(self, records) -> None:
        """Affinity records, one ``log_scalars`` per step."""
        for step, values in records_by_step(records).items():
            self.call("log_scalars", values, step)

    def state(self) -> dict:
        out = {}
        for tracker in self.trackers:
            try:
                out[tracker.backend] = tracker.state()
            except Exception:  # noqa: BLE001 -- a state we cannot read is not resumed
                pass
        return out
