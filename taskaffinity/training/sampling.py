"""Heterogeneous batches: which examples of which tasks go into each update.

Muppet (Aghajanyan et al. 2021, §3.2) found that updates mixing many tasks beat
homogeneous ones; every step here draws one global batch from all tasks at once.
Task proportions follow natural (size-proportional), uniform or temperature
sampling. The draw at step t depends only on (seed, t) and per-task cursors, so
a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import zlib

import numpy as np

from ..config import SAMPLING_METHODS


def task_probabilities(sizes: dict[str, int], method: str = "natural", temperature: float = 2.0) -> dict[str, float]:
    """p_i ∝ n_i (natural), 1 (uniform) or n_i^(1/T) (temperature, T > 0)."""
    if method not in SAMPLING_METHODS:
        raise ValueError(f"training.sampling must be one of {', '.join(SAMPLING_METHODS)}, got '{method}'")
    if method == "temperature" and temperature <= 0:
        raise ValueError(f"training.temperature must be > 0, got {temperature}")
    n = np.array([sizes[t] for t in sizes], dtype=float)
    weights = {"natural": n, "uniform": np.ones_like(n), "temperature": n ** (1.0 / temperature)}[method]
    return dict(zip(sizes, (weights / weights.sum()).tolist()))


class HeterogeneousSampler:
    """Draws per-task row indices for every step; walks each task's data in seeded epochs."""

    def __init__(
        self,
        sizes: dict[str, int],
        *,
        batch_size: int,
        method: str = "natural",
        temperature: float = 2.0,
        seed: int = 0,
        tasks_per_step: int | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"training.batch_size must be >= 1, got {batch_size}")
        if tasks_per_step is not None and not 1 <= tasks_per_step <= batch_size:
            raise ValueError(
                f"training.tasks_per_step must be between 1 and batch_size ({batch_size}), got {tasks_per_step}"
            )
        self.tasks_per_step = tasks_per_step
        self.sizes = dict(sizes)
        self.batch_size = batch_size
        self.seed = seed
        self.probabilities = task_probabilities(self.sizes, method, temperature)
        self.position = {task: [0, 0] for task in self.sizes}  # task -> [epoch, offset]
        self._orders: dict[tuple[str, int], np.ndarray] = {}

    def counts(self, step: int) -> dict[str, int]:
        """Examples per task at this step, B·p_i in expectation.

        Each task gets floor(B·p_i) examples and the remainder is drawn at random in
        proportion to the fractional parts: unbiased like a plain multinomial draw,
        but every task with B·p_i >= 1 is in every update (heterogeneous batches).
        """
        if self.tasks_per_step is not None and self.tasks_per_step < len(self.sizes):
            return self._slot_counts(step)
        expected = self.batch_size * np.array(list(self.probabilities.values()))
        counts = np.floor(expected).astype(int)
        rest = self.batch_size - counts.sum()
        if rest:
            fraction = expected - counts
            rng = np.random.default_rng([self.seed, step, 0x5EED])
            counts += rng.multinomial(rest, fraction / fraction.sum())
        return {task: int(c) for task, c in zip(self.probabilities, counts) if c > 0}

    def _slot_counts(self, step: int) -> dict[str, int]:
        """At most ``tasks_per_step`` tasks per update, for runs with many tasks.

        The batch is cut into m equal slots and each slot's task is drawn from p
        independently: every task still gets B·p_i examples per step in expectation
        (an unbiased mixture), but sub-batches are B/m examples, not B/n, which keeps
        per-task passes efficient when n is large (Muppet's ~50 tasks).
        """
        m = self.tasks_per_step
        sizes = np.full(m, self.batch_size // m) + (np.arange(m) < self.batch_size % m)
        rng = np.random.default_rng([self.seed, step, 0x5107])
        slots = rng.choice(len(self.probabilities), size=m, p=list(self.probabilities.values()))
        counts = np.bincount(slots, weights=sizes, minlength=len(self.probabilities)).astype(int)
        return {task: int(c) for task, c in zip(self.probabilities, counts) if c > 0}

    def draw(self, step: int) -> dict[str, np.ndarray]:
        """Row indices of each task present at this step (advances the cursors)."""
        return {task: self.take(task, count) for task, count in self.counts(step).items()}

    def take(self, task: str, count: int) -> np.ndarray:
        """Next ``count`` rows of a task, without replacement inside an epoch."""
        rows = []
        epoch, offset = self.position[task]
        while count > 0:
            order = self._order(task, epoch)
            chunk = order[offset : offset + count]
            rows.append(chunk)
            count -= len(chunk)
            offset += len(chunk)
            if offset == len(order):
                epoch, offset = epoch + 1, 0
        self.position[task] = [epoch, offset]
        return np.concatenate(rows)

    def _order(self, task: str, epoch: int) -> np.ndarray:
        key = (task, epoch)
        if key not in self._orders:
            self._orders = {k: v for k, v in self._orders.items() if k[0] != task}  # keep one epoch per task
            rng = np.random.default_rng([self.seed, zlib.crc32(task.encode()), epoch])
            self._orders[key] = rng.permutation(self.sizes[task])
        return self._orders[key]

    def state_dict(self) -> dict:
        return {"position": {t: list(p) for t, p in self.position.items()}}

    def load_state_dict(self, state: dict) -> None:
        unknown = set(state["position"]) ^ set(self.sizes)
        if unknown:
            raise ValueError(f"sampler state is for other tasks: {sorted(unknown)}")
        self.position = {t: list(p) for t, p in state["position"].items()}
