"""TrackingRun: opened on first use, a nested child run (MLflow parent tag, TensorBoard sibling folder, same
W&B group), figures rendered once for every back-end."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tracker_readers import mlflow_artifacts, mlflow_runs, offline_env, require_backends, tensorboard_run  # noqa: E402

from taskaffinity.tracking import TrackingConfig, open_run  # noqa: E402
from taskaffinity.tracking.base import Tracker  # noqa: E402

require_backends()


def test_a_child_run_nests_under_its_parent(tmp_path, monkeypatch):
    offline_env(monkeypatch, tmp_path)
    settings = TrackingConfig(report_to=("tensorboard", "mlflow"))
    parent = open_run(
        settings,
        name="study",
        out_dir=tmp_path / "out",
        project="nest",
        job_type="study",
        tensorboard_dir=tmp_path / "out" / "tensorboard" / "study",
    )
    assert not parent.started and not (tmp_path / "out").exists()  # nothing opens before first use
    parent.start()
    child = parent.child("affinity", job_type="affinity", params={"seed": 1})
    child.log_scalars({"loss/a": 0.5}, step=1)
    figure = plt.figure(figsize=(2, 2))
    child.log_figure("some/figure", figure)
    plt.close(figure)
    child.close()
    parent.close()
    runs = mlflow_runs(f"file:{tmp_path / 'mlruns'}", "nest").set_index("tags.mlflow.runName")
    assert runs.loc["affinity", "tags.mlflow.parentRunId"] == runs.loc["study", "run_id"]
    assert runs.loc["affinity", "params.seed"] == "1" and runs.loc["affinity", "metrics.loss/a"] == 0.5
    assert mlflow_artifacts(f"file:{tmp_path / 'mlruns'}", runs.loc["affinity", "run_id"]) == ["some/figure.png"]
    board = tensorboard_run(tmp_path / "out" / "tensorboard" / "affinity")
    assert board.Tags()["images"] == ["some/figure"] and board.Scalars("loss/a")[0].value == 0.5


def test_a_figure_is_rendered_once_for_every_backend(tmp_path, monkeypatch):
    class Images(Tracker):
        backend = "images"

        def __init__(self):
            self.images = []

        def log_scalars(self, values, step):
            pass

        def log_image(self, name, image, step=None):
            self.images.append((name, image))

    run = open_run(TrackingConfig(report_to=("tensorboard",)), name="r", out_dir=tmp_path, project="p")
    run.start()
    first, second = Images(), Images()
    run.trackers.trackers[:] = [first, second]
    figure = plt.figure(figsize=(3, 2), dpi=100)
    renders = []
    real = figure.savefig
    monkeypatch.setattr(figure, "savefig", lambda *a, **k: (renders.append(1), real(*a, **k))[1])
    run.log_figure("f", figure)
    plt.close(figure)
    assert len(renders) == 1 and first.images[0][1] is second.images[0][1]
    assert first.images[0][1].shape == (200, 300, 3) and first.images[0][1].dtype.name == "uint8"
