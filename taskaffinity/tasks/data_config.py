"""How task data is split and capped: the ``data:`` section of a run config.

It lives with the tasks (``taskaffinity.config`` re-exports it) so that preparing
tasks needs neither the run config nor the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

SHARED_INPUTS = ("same_split", "one_task", "independent")


@dataclass(frozen=True)
class DataConfig:
    """How task data is split and capped (``taskaffinity.tasks.prepare``).

    ``shared_inputs``: what happens to a text that several tasks of the study contain
    (one file with two label columns; TREC-6 and TREC-50): ``same_split`` puts it in the
    same split of every task (nothing leaks from one task's train into another's test,
    nothing is thrown away); ``one_task`` keeps it in one task only, chosen by a hash of
    the text (disjoint inputs); ``independent`` splits each task on its own (leaks).
    ``deduplicate`` is its old name: true means ``one_task``, false ``independent``.
    """

    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_train: int | None = 2000  # per task, stratified; a task's own max_train wins
    max_eval: int | None = 500  # per task and split (validation, test)
    split_seed: int = 0  # splits stay fixed when the training seed changes
    shared_inputs: str = "same_split"  # same_split | one_task | independent
    deduplicate: bool | None = None  # old name of shared_inputs (true: one_task, false: independent)

    def __post_init__(self):
        if self.deduplicate is not None:
            object.__setattr__(self, "shared_inputs", "one_task" if self.deduplicate else "independent")
            object.__setattr__(self, "deduplicate", None)
        if self.shared_inputs not in SHARED_INPUTS:
            raise ConfigError(
                f"data.shared_inputs must be one of {', '.join(SHARED_INPUTS)}, got {self.shared_inputs!r}"
            )
        for key in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"data.{key} must be in [0, 1), got {getattr(self, key)}")
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError("data.val_fraction + data.test_fraction must be below 1 (train needs rows)")
        for key in ("max_train", "max_eval"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"data.{key} must be a positive integer or null, got {getattr(self, key)}")
