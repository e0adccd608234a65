"""MLflow: a run through ``MlflowClient`` (extra ``mlflow``: ``mlflow-skinny`` plus the SQLite store's needs).

The client API is used, never the fluent ``mlflow.start_run``: a study opens one run per job
in one process, and a caller's own active run is left alone. The tracking URI is
``tracking.mlflow_uri``, else MLflow's own (``MLFLOW_TRACKING_URI``, else its default store).
Nested runs carry the ``mlflow.parentRunId`` tag, as ``mlflow.start_run(nested=True)`` sets it.
Metric names keep the characters MLflow allows; others become ``_``.
"""

from __future__ import annotations

import re
import time

from .base import Tracker
from .settings import missing_backend

_BATCH = 1000  # MLflow's limit of metrics per log_batch call
_NOT_ALLOWED = re.compile(r"[^0-9A-Za-z_\-. :/]")


def _client(uri: str | None = None):
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise missing_backend("mlflow") from None
    return MlflowClient(tracking_uri=uri)


def _name(key: str) -> str:
    return _NOT_ALLOWED.sub("_", key)


class MlflowTracker(Tracker):
    """Logs to the MLflow run ``run_id`` through ``client``. ``owns``: end the run when closed."""

    backend = "mlflow"

    def __init__(self, client, run_id: str, *, owns: bool = False):
        self.client, self.run_id, self.owns = client, run_id, owns
        self.last_step = 0

    @classmethod
    def of_run(cls, run) -> MlflowTracker:
        """A run of the caller's (``mlflow.start_run()``'s ActiveRun, or a Run): logged at the current tracking URI."""
        return cls(_client(), run.info.run_id)

    @classmethod
    def open(cls, spec, resume: dict | None = None) -> MlflowTracker:
        client = _client(spec.settings.mlflow_uri)
        if resume and resume.get("run_id"):  # the interrupted run goes on
            client.update_run(resume["run_id"], status="RUNNING")
            return cls(client, resume["run_id"], owns=True)
        experiment = client.get_experiment_by_name(spec.project)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(spec.project)
        tags = {"taskaffinity.kind": spec.job_type or "run"}
        parent = (spec.parent or {}).get("mlflow", {}).get("run_id")
        if parent:
            tags["mlflow.parentRunId"] = parent
        run = client.create_run(experiment_id, run_name=spec.name, tags=tags)
        return cls(client, run.info.run_id, owns=True)

    def log_scalars(self, values, step):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(_name(k), float(v), now, int(step)) for k, v in values.items()]
        for i in range(0, len(metrics), _BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + _BATCH])
        self.last_step = max(self.last_step, step)

    def log_params(self, params):
        from mlflow.entities import Param

        items = [Param(_name(k), str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow's limit of params per batch
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_image(self, name, image, step=None):
        self.client.log_image(self.run_id, image, artifact_file=f"{_name(name)}.png")

    def log_summary(self, values):
        self.log_scalars(values, self.last_step)

    def state(self):
        return {"run_id": self.run_id}

    def close(self, failed=False):
        if self.owns:
            self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")
