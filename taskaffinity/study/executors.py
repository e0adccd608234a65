"""Executors: run ``fn(item, device)`` for every planned experiment and report outcomes.

``fn`` must be a picklable top-level function that writes its own results (atomically);
an executor only runs it and records whether it succeeded. ``LocalExecutor`` runs items
one after the other in this process, ``ParallelExecutor`` runs items in spawned worker
processes on N device slots (a crash or OOM kill hurts only the item that was running;
with ``reuse`` a slot's process runs item after item and is replaced after a failure,
without it every item gets a fresh process), ``RayExecutor`` submits one Ray task per
item to a local or remote cluster. A failing item never stops the others; Ctrl-C stops everything.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

from tqdm.auto import tqdm

from ..errors import ConfigError

EXECUTOR_KINDS = ("local", "parallel", "ray")
_DIED = object()  # a spawned child that sent no message


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str | None  # "ExceptionType: message" or "worker exited with code -9" when not ok
    seconds: float  # wall time of this item
    where: str  # free text for humans: "local", "process 3 cpu", "ray node 10.0.0.1 cuda"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class _Progress:
    """A tqdm bar whose postfix counts done and failed items."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = tqdm(total=total, desc=desc, disable=not enabled)
        self.done = self.failed = 0

    def update(self, outcome: Outcome) -> None:
        self.done += 1
        self.failed += not outcome.ok
        self.bar.set_postfix(done=self.done, failed=self.failed, refresh=False)
        self.bar.update()

    def close(self) -> None:
        self.bar.close()


class Executor:
    """Runs ``fn(item, device)`` for a list of items; see the module docstring."""

    def map(
        self, fn: Callable[[Any, str | None], Any], items: list, *, desc: str = "experiments", progress: bool = True
    ) -> list[Outcome]:
        """Run fn(item, device) for every item; outcomes in the order of items."""
        raise NotImplementedError


class LocalExecutor(Executor):
    """Sequential and in-process; device None lets each item's own config decide."""

    def map(self, fn, items, *, desc="experiments", progress=True):
        bar, outcomes = _Progress(len(items), desc, progress), []
        try:
            for item in items:
                start = time.perf_counter()
                try:
                    fn(item, None)
                    error = None
                except Exception as exc:  # KeyboardInterrupt is a BaseException: it propagates
                    error = _describe(exc)
                outcomes.append(Outcome(error is None, error, time.perf_counter() - start, "local"))
                bar.update(outcomes[-1])
        finally:
            bar.close()
        return outcomes


def _serve(conn, threads: int, reuse: bool) -> None:
    """Main of a spawned worker: run the items the parent sends until it sends None.

    Threads are limited before fn's module (torch) is imported. After an item that
    raised, or after its only item when not reusing, the process exits: the parent
    starts a fresh one, so no failure's leftover state reaches the next item.
    """
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    while True:
        try:
            payload = conn.recv()
        except EOFError:  # the parent is gone
            break
        if payload is None:
            break
        try:
            fn, item, device = pickle.loads(payload)
            if "torch" in sys.modules:  # already imported (by __main__ or this package): the env var came too late
                sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
            fn(item, device)
            message = None
        except Exception as exc:
            message = _describe(exc)[:10_000]  # stays far below the pipe buffer
        conn.send(message)
        if message is not None or not reuse:
            break
    conn.close()


@dataclass
class _Slot:
    device: str
    process: Any = None
    conn: Any = None
    index: int | None = None  # the item it runs
    start: float = 0.0
    exitcode: int | None = None  # of its last process


class ParallelExecutor(Executor):
    """Spawned worker processes, one per device slot alive at a time.

    ``reuse``: a slot's process runs item after item, so a study worker keeps its
    models and data between jobs; it is replaced after an item that raised. Off: a
    fresh process per item. Either way a crash or OOM kill fails only the item that
    was running, and its slot gets a new process.
    """

    def __init__(self, devices: list[str], *, reuse: bool = True):
        self.devices = list(devices)
        self.reuse = reuse
        self.threads = max(1, (os.cpu_count() or 1) // len(self.devices))

    def map(self, fn, items, *, desc="experiments", progress=True):
        ctx = mp.get_context("spawn")  # never fork a process that may hold CUDA or Ray state
        bar, outcomes = _Progress(len(items), desc, progress), [None] * len(items)
        pending = list(range(len(items)))[::-1]
        slots = [_Slot(device) for device in self.devices]
        try:
            while pending or any(slot.index is not None for slot in slots):
                for number, slot in enumerate(slots):
                    if pending and slot.index is None:
                        if slot.process is None:
                            self._start(ctx, slot, number)
                        slot.index, slot.start = pending.pop(), time.perf_counter()
                        try:
                            slot.conn.send(pickle.dumps((fn, items[slot.index], slot.device)))
                        except OSError:  # the worker died before reading (BrokenPipeError): wait() sees EOF
                            pass
                busy = {slot.conn: slot for slot in slots if slot.index is not None}
                for conn in wait(list(busy)):  # readable: a message arrived or the process is gone
                    slot = busy[conn]
                    try:
                        message = conn.recv()
                    except (EOFError, OSError):  # died before sending: killed, os._exit, segfault (a reset
                        message = _DIED  # connection when it died with our item unread)
                    where = f"process {slot.process.pid} {slot.device}"
                    if message is _DIED or message is not None or not self.reuse:
                        self._stop(slot)  # the device is reused only once the process is gone
                    if message is _DIED:
                        message = f"worker exited with code {slot.exitcode}"
                    outcomes[slot.index] = Outcome(message is None, message, time.perf_counter() - slot.start, where)
                    bar.update(outcomes[slot.index])
                    slot.index = None
        except BaseException:
            for slot in slots:
                if slot.process is not None and slot.process.pid is not None:  # started: a failed start has none
                    slot.process.terminate()
                    slot.process.join()
            raise
        finally:
            bar.close()
        for slot in slots:  # idle workers: ask them to exit
            if slot.process is not None:
                slot.conn.send(None)
                self._stop(slot)
        return outcomes

    def _start(self, ctx, slot: _Slot, number: int) -> None:
        parent, child = ctx.Pipe()
        slot.process = ctx.Process(
            target=_serve, args=(child, self.threads, self.reuse), daemon=True, name=f"taskaffinity-worker-{number}"
        )
        slot.process.start()
        child.close()  # only the worker holds its end: EOF means it died
        slot.conn = parent

    @staticmethod
    def _stop(slot: _Slot) -> None:
        slot.process.join(timeout=30)
        if slot.process.is_alive():
            slot.process.terminate()
            slot.process.join()
        slot.exitcode = slot.process.exitcode
        slot.conn.close()
        slot.process = slot.conn = None


def _ray_task(fn, item, device: str) -> tuple[bool, str | None, float, str]:
    import ray

    start = time.perf_counter()
    try:
        fn(item, device)
        error = None
    except Exception as exc:  # reported as ours, not wrapped in a RayTaskError
        error = _describe(exc)
    return error is None, error, time.perf_counter() - start, f"ray node {ray.util.get_node_ip_address()} {device}"


class RayExecutor(Executor):
    """One Ray task per item, on a cluster (address) or a local instance started here."""

    def __init__(
        self, *, address: str | None = None, workers: int | None = None, num_cpus: float = 1.0, num_gpus: float = 0.0
    ):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError(
                "study.executor.kind is 'ray' but Ray is not installed: pip install 'taskaffinity[ray]'"
            ) from None
        self.address, self.workers, self.num_cpus, self.num_gpus = address, workers, num_cpus, num_gpus

    def map(self, fn, items, *, desc="experiments", progress=True):
        import ray
        from ray import cloudpickle

        started = not ray.is_initialized()
        if started and self.address:
            ray.init(address=self.address)
        elif started:
            ray.init(
                num_cpus=self.workers or os.cpu_count(), include_dashboard=False, object_store_memory=200 * 2**20
            )  # items carry configs, results go to disk
        # Workers may not be able to import fn's module (a test or script off their path): ship
        # it by value. taskaffinity itself must be importable where the workers run.
        module = sys.modules.get(getattr(fn, "__module__", None) or "")
        by_value = (
            module is not None
            and module.__name__ != "__main__"
            and module.__name__.split(".")[0] != "taskaffinity"
            and module.__name__ not in cloudpickle.list_registry_pickle_by_value()
        )
        if by_value:
            cloudpickle.register_pickle_by_value(module)
        device = "cuda" if self.num_gpus > 0 else "cpu"
        task = ray.remote(_ray_task).options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=0
        )  # a crashed experiment is reported, not re-run
        bar, outcomes = _Progress(len(items), desc, progress), [None] * len(items)
        pending, running = list(range(len(items)))[::-1], {}  # ref -> (index, submitted)
        limit = self.workers or len(items)
        try:
            while pending or running:
                while pending and len(running) < limit:
                    index = pending.pop()
                    running[task.remote(fn, items[index], device)] = (index, time.perf_counter())
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    index, submitted = running.pop(ref)
                    try:
                        outcomes[index] = Outcome(*ray.get(ref))
                    except ray.exceptions.RayError as exc:  # crashed worker, lost node, unpicklable fn
                        outcomes[index] = Outcome(
                            False, _describe(exc).splitlines()[0], time.perf_counter() - submitted, f"ray {device}"
                        )
                    bar.update(outcomes[index])
        except BaseException:
            for ref in running:
                ray.cancel(ref, force=True)
            raise
        finally:
            bar.close()
            if by_value:
                cloudpickle.unregister_pickle_by_value(module)
            if started:
                ray.shutdown()
        return outcomes


def _check_devices(devices: tuple) -> list[str]:
    import torch

    for name in devices:
        try:
            device = torch.device(name)
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(f"study.executor.devices: '{name}' is not a device ({exc})") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"study.executor.devices has '{name}' but no CUDA device is available")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"study.executor.devices has '{name}' but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    if devices:
        return list(devices)
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]


def make_executor(config) -> Executor:
    """The executor an ``ExecutorConfig`` asks for, after validating it."""
    if config.kind not in EXECUTOR_KINDS:
        raise ConfigError(f"study.executor.kind is '{config.kind}'; allowed: {', '.join(EXECUTOR_KINDS)}")
    if config.workers is not None and config.workers < 1:
        raise ConfigError(f"study.executor.workers must be at least 1, got {config.workers}")
    if config.checkpoint_seconds < 0:
        raise ConfigError(f"study.executor.checkpoint_seconds must be >= 0, got {config.checkpoint_seconds}")
    if config.kind == "local":
        return LocalExecutor()
    if config.kind == "parallel":
        devices = _check_devices(tuple(config.devices))
        n = config.workers or len(devices)
        return ParallelExecutor([devices[i % len(devices)] for i in range(n)], reuse=config.reuse_worker)
    if config.num_gpus > 0 and config.address is None:
        import torch

        if not torch.cuda.is_available():  # a local instance would wait forever for a GPU
            raise ConfigError(f"study.executor.num_gpus is {config.num_gpus} but no CUDA device is available")
    return RayExecutor(
        address=config.address, workers=config.workers, num_cpus=config.num_cpus, num_gpus=config.num_gpus
    )
