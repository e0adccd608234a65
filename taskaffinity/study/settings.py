"""The ``study:`` section of a study YAML: which subset pre-finetuning experiments to run.

The top-level ``tasks`` list is the study's task pool; ``study.targets`` name the
pool tasks that are only ever fine-tuned (never pre-finetuned on), every other
pool task can be pre-finetuned on. ``training`` is the pre-finetuning recipe
(``study.pretrain`` overrides it) and ``study.finetune`` overrides it again for
fine-tuning a fresh head on each target. Example::

    study:
      kind: combinations            # combinations | scaling | low_resource | validation
      targets: [rt_subjectivity, vader_amazon]
      seeds: [0, 1, 2]              # fine-tuning seeds
      groups: affinity              # or {name: [tasks]} inline, or a file written by `taskaffinity group`
      grouping: {method: tag, k: 2, estimator: first_order_sgd}
      finetune: {steps: 60, batch_size: 16}
      arms:                         # optional: the whole pool trained together with another recipe
        uniform: {sampling: uniform}
      executor: {kind: local}       # local | parallel | ray

``arms`` (``combinations`` and ``validation`` studies) name other answers to negative
transfer beside grouping: each arm trains every pool task together with the pre-finetuning
recipe changed by its training options (loss weighting, gradient aggregation, sampling,
...), on the same targets and seeds, and appears as one more column of the study's tables.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import ExecutorConfig, RunConfig, TrainConfig, load_config
from ..config.run import _build, _reject_unknown, coerce
from ..errors import ConfigError
from .settings_sections import (
    GroupingSettings,
    _arms,
    _check_recorded,
    _check_solved_arms,
    _grouping,
    _groups,
    _list,
    _names,
    _training,
    _validation,
)

KINDS = ("combinations", "scaling", "low_resource", "validation")


@dataclass(frozen=True)
class StudySettings:
    kind: str
    targets: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    groups: dict | None = None  # name -> tuple of tasks, when given inline or by file
    groups_from_affinity: bool = False
    grouping: GroupingSettings = field(default_factory=GroupingSettings)
    sizes: tuple[int, ...] = ()  # scaling / low_resource: numbers of pre-finetuning tasks
    order: tuple[str, ...] | None = None  # scaling order of pool tasks; None: random with the study seed
    fractions: tuple[float, ...] = (1.0,)  # share of each target's training data used for fine-tuning
    validation_mode: str = "pairs"  # pairs: every task alone and every pair; transfer: source -> target
    random_groupings: int = 3  # validation: random groupings with the chosen grouping's group sizes
    group_samples: int = 0  # validation: random groups of group_sizes tasks trained to measure group gains
    group_sizes: tuple[int, ...] = (3, 4)
    surrogate: str | None = None  # validation: linear | kernel: a grouping from a surrogate of every measured subset
    leave_alone_arms: bool = False  # validation: chosen, oracle and surrogate groupings also solved with leave_alone
    # validation: held-out draws of the affinity run's probes, the further ones recorded in one more training
    # (affinity_draws/): agreement as mean ± spread over draws
    probe_draws: int = 1
    arms: dict = field(default_factory=dict)  # name -> TrainConfig: the whole pool under another recipe
    pretrain: TrainConfig = field(default_factory=TrainConfig)
    finetune: TrainConfig = field(default_factory=TrainConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    def pool(self, config: RunConfig) -> tuple[str, ...]:
        """Tasks that can be pre-finetuned on: the pool without the targets."""
        return tuple(t.name for t in config.tasks if t.name not in self.targets)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Study:
    config: RunConfig
    settings: StudySettings


STUDY_KEYS = {
    "kind",
    "targets",
    "seeds",
    "groups",
    "grouping",
    "sizes",
    "order",
    "fractions",
    "validation",
    "pretrain",
    "finetune",
    "arms",
    "executor",
}


def load_study(path: str | Path) -> Study:
    """A study YAML with a ``study:`` section."""
    path = Path(path)
    config = load_config(path)  # checks the file, the tasks and the training sections
    raw = yaml.safe_load(path.read_text(encoding="utf-8")).get("study")
    if raw is None:
        raise ConfigError(f"{path}: no 'study' section (add study: {{kind: combinations, ...}})")
    return Study(config, settings_from_dict(raw, config, where=str(path), base_dir=path.parent))


def settings_from_dict(raw, config: RunConfig, *, where: str, base_dir: Path) -> StudySettings:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'study' must be a mapping")
    _reject_unknown(raw, STUDY_KEYS, where, "study.")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where}: study.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    names = [t.name for t in config.tasks]
    targets = _names(raw.get("targets", []), names, where, "study.targets")
    pool = [n for n in names if n not in targets]
    if kind != "validation" and not targets:
        raise ConfigError(f"{where}: study.targets must name at least one task of 'tasks' for a {kind} study")
    if not pool:
        raise ConfigError(f"{where}: every task is a target; nothing is left to pre-finetune on")
    values: dict = {"kind": kind, "targets": targets}
    values["seeds"] = tuple(
        coerce(s, int, f"{where}: study.seeds[{i}]") for i, s in enumerate(_list(raw, "seeds", [0], where))
    )
    if not values["seeds"]:
        raise ConfigError(f"{where}: study.seeds must list at least one seed")
    values["fractions"] = tuple(
        coerce(f, float, f"{where}: study.fractions[{i}]") for i, f in enumerate(_list(raw, "fractions", [1.0], where))
    )
    if not values["fractions"] or any(not 0 < f <= 1 for f in values["fractions"]):
        raise ConfigError(f"{where}: study.fractions must be in (0, 1], got {list(values['fractions'])}")
    values["sizes"] = tuple(
        coerce(k, int, f"{where}: study.sizes[{i}]") for i, k in enumerate(_list(raw, "sizes", [], where))
    )
    if any(not 0 <= k <= len(pool) for k in values["sizes"]):
        raise ConfigError(
            f"{where}: study.sizes must be between 0 and {len(pool)} (pre-finetuning tasks), "
            f"got {list(values['sizes'])}"
        )
    if kind in ("scaling", "low_resource") and not values["sizes"]:
        raise ConfigError(f"{where}: study.sizes must list the numbers of pre-finetuning tasks for a {kind} study")
    if "order" in raw and raw["order"] != "random":
        order = _names(raw["order"], pool, where, "study.order")
        if len(order) < max(values["sizes"] or [0]):
            raise ConfigError(
                f"{where}: study.order lists {len(order)} tasks but study.sizes go up to {max(values['sizes'])}"
            )
        values["order"] = order
    values.update(_groups(raw, pool, kind, where, base_dir))
    values.update(_validation(raw.get("validation") or {}, where, len(pool)))
    values["grouping"] = _grouping(raw.get("grouping") or {}, where)
    if values.get("groups_from_affinity"):
        _check_recorded(values["grouping"].estimator, config.affinity, where)
    _check_solved_arms(values, kind, pool, config.seed, where)
    if values["probe_draws"] > 1 and (kind != "validation" or not config.affinity.rules):
        raise ConfigError(
            f"{where}: study.validation.probe_draws needs kind: validation and held-out probes "
            f"(affinity.rules), got kind {kind} and rules {list(config.affinity.rules)}"
        )
    if values["probe_draws"] > 1 and config.affinity.probe_draws > 1:
        raise ConfigError(
            f"{where}: study.validation.probe_draws and affinity.probe_draws are both set: choose one "
            "(affinity.probe_draws records the draws in the affinity run itself, its cost included; "
            "study.validation.probe_draws in one more training, leaving the affinity run as a user records it)"
        )
    values["pretrain"] = _training(config.training, raw.get("pretrain") or {}, where, "study.pretrain")
    values["arms"] = _arms(raw.get("arms"), kind, values["pretrain"], values.get("groups") or {}, where)
    finetune_defaults = dataclasses.replace(config.training, head_warmup_steps=0)
    values["finetune"] = _training(finetune_defaults, raw.get("finetune") or {}, where, "study.finetune")
    values["executor"] = _build(ExecutorConfig, raw.get("executor") or {}, where, "study.executor")
    return StudySettings(**values)
