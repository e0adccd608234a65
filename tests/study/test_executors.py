"""Executors run every item, keep item order, and turn failures and crashes into outcomes."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from taskaffinity.config import ExecutorConfig
from taskaffinity.errors import ConfigError
from taskaffinity.study.executors import LocalExecutor, ParallelExecutor, RayExecutor, make_executor


def work(item: tuple, device) -> None:
    """A stand-in experiment: item = (folder, name, action); writes '<name>.txt' holding the device."""
    folder, name, action = item
    if action == "fail":
        raise ValueError(f"bad item {name}")
    if action == "crash":
        os._exit(3)
    if action == "interrupt":
        raise KeyboardInterrupt
    if action == "pid":
        Path(folder, f"{name}.pid").write_text(str(os.getpid()))
    if action == "threads":
        import torch

        Path(folder, f"{name}.threads").write_text(str(torch.get_num_threads()))
    if action.startswith("wait:"):  # proves concurrency: finishes only if the other item runs meanwhile
        Path(folder, f"{name}.marker").touch()
        deadline = time.monotonic() + 30
        while not Path(folder, f"{action[5:]}.marker").exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} never saw {action[5:]} running")
            time.sleep(0.05)
    Path(folder, f"{name}.txt").write_text(str(device))


def items_for(folder: Path, *actions: str) -> list[tuple]:
    return [(str(folder), f"item{i}", action) for i, action in enumerate(actions)]


def written(folder: Path) -> dict[str, str]:
    return {p.stem: p.read_text() for p in sorted(folder.glob("*.txt"))}


def test_local_runs_all_items_in_order_and_records_failures(tmp_path):
    outcomes = LocalExecutor().map(work, items_for(tmp_path, "ok", "fail", "ok"), progress=False)
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[1].error == "ValueError: bad item item1"
    assert outcomes[0].error is None and outcomes[0].where == "local" and outcomes[0].seconds >= 0
    assert written(tmp_path) == {"item0": "None", "item2": "None"}


def test_local_keyboard_interrupt_propagates(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        LocalExecutor().map(work, items_for(tmp_path, "interrupt", "ok"), progress=False)
    assert written(tmp_path) == {}


def test_parallel_survives_failures_and_crashes_and_passes_slot_devices(tmp_path):
    items = items_for(tmp_path, "ok", "fail", "crash", "threads")
    outcomes = ParallelExecutor(["dev0", "dev1"]).map(work, items, progress=False)
    assert [o.ok for o in outcomes] == [True, False, False, True]
    assert (tmp_path / "item3.threads").read_text() == str(max(1, os.cpu_count() // 2))  # CPUs shared by 2 slots
    assert outcomes[1].error == "ValueError: bad item item1"
    assert outcomes[2].error == "worker exited with code 3"
    files = written(tmp_path)
    assert sorted(files) == ["item0", "item3"]
    assert set(files.values()) <= {"dev0", "dev1"}
    for outcome in outcomes:
        assert outcome.where.startswith("process ") and outcome.where.split()[-1] in ("dev0", "dev1")


def test_parallel_reuses_a_slots_process_until_an_item_fails(tmp_path):
    items = items_for(tmp_path, "pid", "pid", "fail", "pid", "crash", "pid")
    outcomes = ParallelExecutor(["cpu"]).map(work, items, progress=False)
    assert [o.ok for o in outcomes] == [True, True, False, True, False, True]
    assert outcomes[4].error == "worker exited with code 3"
    pids = [int((tmp_path / f"item{i}.pid").read_text()) for i in (0, 1, 3, 5)]
    assert pids[0] == pids[1]  # one process ran both
    assert len({pids[1], pids[2], pids[3]}) == 3  # a fresh process after the failure and after the crash
    assert outcomes[0].where == outcomes[1].where == f"process {pids[0]} cpu"


def test_parallel_without_reuse_gives_every_item_a_fresh_process(tmp_path):
    outcomes = ParallelExecutor(["cpu"], reuse=False).map(
        work, items_for(tmp_path, "pid", "pid", "pid"), progress=False
    )
    assert all(o.ok for o in outcomes)
    assert len({(tmp_path / f"item{i}.pid").read_text() for i in range(3)}) == 3


def test_parallel_runs_items_concurrently(tmp_path):
    items = [(str(tmp_path), "a", "wait:b"), (str(tmp_path), "b", "wait:a")]
    outcomes = make_executor(ExecutorConfig(kind="parallel", workers=2)).map(work, items, progress=False)
    assert [(o.ok, o.error) for o in outcomes] == [(True, None), (True, None)]
    assert written(tmp_path) == {"a": "cpu", "b": "cpu"}


def test_make_executor_validates_and_picks_devices(monkeypatch):
    assert isinstance(make_executor(ExecutorConfig()), LocalExecutor)
    with pytest.raises(ConfigError, match=r"study\.executor\.kind.*local, parallel, ray"):
        make_executor(ExecutorConfig(kind="slurm"))
    with pytest.raises(ConfigError, match=r"study\.executor\.workers"):
        make_executor(ExecutorConfig(kind="parallel", workers=0))
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ConfigError, match=r"study\.executor\.devices"):
        make_executor(ExecutorConfig(kind="parallel", devices=("cuda:0",)))
    assert make_executor(ExecutorConfig(kind="parallel")).devices == ["cpu"]
    assert make_executor(ExecutorConfig(kind="parallel", workers=3, devices=("cpu",))).devices == ["cpu"] * 3


def test_ray_missing_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(ConfigError, match=r"pip install 'taskaffinity\[ray\]'"):
        make_executor(ExecutorConfig(kind="ray"))


def import_ray():
    """Ray is optional: skip without it, except on CI, which must exercise the Ray executor."""
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("Ray is not installed but CI must exercise the Ray executor")
        pytest.skip("Ray is not installed")
    return ray


def test_ray_starts_and_stops_its_own_instance(tmp_path):
    ray = import_ray()
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running")
    outcomes = RayExecutor(workers=1).map(work, items_for(tmp_path, "ok", "ok"), progress=False)
    assert [o.ok for o in outcomes] == [True, True] and written(tmp_path) == {"item0": "cpu", "item1": "cpu"}
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the Ray tests below; the executor must reuse it, not start its own."""
    ray = import_ray()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20)
    yield ray
    ray.shutdown()


def test_ray_matches_local(ray_instance, tmp_path):
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    local_dir.mkdir(), ray_dir.mkdir()
    local = LocalExecutor().map(work, items_for(local_dir, "ok", "fail", "ok", "ok"), progress=False)
    remote = make_executor(ExecutorConfig(kind="ray")).map(
        work, items_for(ray_dir, "ok", "fail", "ok", "ok"), progress=False
    )
    assert [(o.ok, o.error) for o in remote] == [(o.ok, o.error) for o in local]
    assert written(ray_dir).keys() == written(local_dir).keys()
    assert set(written(ray_dir).values()) == {"cpu"}
    assert all(o.where.startswith("ray node ") for o in remote)
    assert ray_instance.is_initialized()  # reused, not shut down


def test_ray_worker_crash_is_a_failed_outcome(ray_instance, tmp_path):
    outcomes = RayExecutor().map(work, items_for(tmp_path, "crash", "ok"), progress=False)
    assert [o.ok for o in outcomes] == [False, True]
    assert outcomes[0].error.startswith("WorkerCrashedError: ")
    assert written(tmp_path) == {"item1": "cpu"}
