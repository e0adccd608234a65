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
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import ExecutorConfig, RunConfig, TrainConfig, load_config
from ..config.run import _build, _reject_unknown, coerce
from ..errors import ConfigError

KINDS = ("combinations", "scaling", "low_resource", "validation")
VALIDATION_MODES = ("pairs", "transfer")


@dataclass(frozen=True)
class GroupingSettings:
    """How groups are chosen from the study's own affinity run (``groups: affinity``)."""

    method: str = "tag"
    k: int = 2
    # the validation study's pick: held-out probes rank sources within target at 0.58 against a
    # ceiling of 0.91, every streamed estimator at chance (reports/validation, docs/affinity.md)
    estimator: str = "first_order_sgd"
    solver: str = "auto"
    bootstrap: int = 100  # resamples of the affinity run's probes/windows for the grouping's stability
    # training alone as a free option: k bounds the groups of two or more tasks (grouping/alone.py)
    leave_alone: bool = False


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
#: labels and arm names the plans use themselves: an arm may not take them
RESERVED_ARMS = {"baseline", "alone", "pair", "single", "all", "chosen", "transfer"}


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
    values["pretrain"] = _training(config.training, raw.get("pretrain") or {}, where, "study.pretrain")
    values["arms"] = _arms(raw.get("arms"), kind, values["pretrain"], values.get("groups") or {}, where)
    finetune_defaults = dataclasses.replace(config.training, head_warmup_steps=0)
    values["finetune"] = _training(finetune_defaults, raw.get("finetune") or {}, where, "study.finetune")
    values["executor"] = _build(ExecutorConfig, raw.get("executor") or {}, where, "study.executor")
    return StudySettings(**values)


def _list(raw: dict, key: str, default, where: str) -> list:
    value = raw.get(key, default)
    if not isinstance(value, list):
        raise ConfigError(f"{where}: study.{key} must be a list, got {value!r}")
    return value


def _names(value, allowed: list[str], where: str, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {what} must be a list of task names, got {value!r}")
    for name in value:
        if name not in allowed:
            raise ConfigError(f"{where}: {what}: '{name}' is not one of the tasks it may name ({', '.join(allowed)})")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: {what} names a task twice")
    return tuple(value)


def _groups(raw: dict, pool: list[str], kind: str, where: str, base_dir: Path) -> dict:
    groups = raw.get("groups")
    if groups is None:
        if kind == "combinations":
            raise ConfigError(
                f"{where}: a combinations study needs study.groups "
                "(a mapping name: [tasks], a grouping file, or 'affinity')"
            )
        return {}
    if groups == "affinity":
        return {"groups_from_affinity": True}
    if isinstance(groups, str):
        groups = _read_grouping_file(base_dir / groups, where)
    if not isinstance(groups, dict) or not groups:
        raise ConfigError(f"{where}: study.groups must be a mapping name: [tasks], a grouping file or 'affinity'")
    resolved = {str(name): _names(tasks, pool, where, f"study.groups.{name}") for name, tasks in groups.items()}
    if any(not tasks for tasks in resolved.values()):
        raise ConfigError(f"{where}: study.groups: every group needs at least one task")
    return {"groups": resolved}


def _read_grouping_file(path: Path, where: str) -> dict:
    """Groups of a document written by ``taskaffinity group --out`` (JSON or YAML)."""
    if not path.is_file():
        raise ConfigError(f"{where}: study.groups: grouping file not found: {path}")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
        return {f"G{i + 1}": list(group["tasks"]) for i, group in enumerate(document["groups"])}
    except (yaml.YAMLError, KeyError, TypeError) as err:
        raise ConfigError(f"{where}: study.groups: {path} is not a grouping document ({err})") from None


def _validation(raw: dict, where: str, pool_size: int) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: study.validation must be a mapping")
    _reject_unknown(raw, {"mode", "random_groupings", "group_samples", "group_sizes"}, where, "study.validation.")
    mode = raw.get("mode", "pairs")
    if mode not in VALIDATION_MODES:
        raise ConfigError(f"{where}: study.validation.mode must be one of {', '.join(VALIDATION_MODES)}, got {mode!r}")
    out = {"validation_mode": mode}
    for key, default in (("random_groupings", 3), ("group_samples", 0)):
        out[key] = coerce(raw.get(key, default), int, f"{where}: study.validation.{key}")
        if out[key] < 0:
            raise ConfigError(f"{where}: study.validation.{key} must be >= 0, got {out[key]}")
    sizes = raw.get("group_sizes", [3, 4])
    if not isinstance(sizes, list) or not sizes:
        raise ConfigError(
            f"{where}: study.validation.group_sizes must be a non-empty list of group sizes, got {sizes!r}"
        )
    out["group_sizes"] = tuple(coerce(v, int, f"{where}: study.validation.group_sizes") for v in sizes)
    if any(v < 2 for v in out["group_sizes"]):
        raise ConfigError(
            f"{where}: study.validation.group_sizes must be >= 2 (pairs and single runs are planned anyway), "
            f"got {sizes!r}"
        )
    sizes = sorted({v for v in out["group_sizes"] if v <= pool_size})
    possible = sum(math.comb(pool_size, v) for v in sizes)
    if out["group_samples"] > possible:
        raise ConfigError(
            f"{where}: study.validation.group_samples is {out['group_samples']} but the {pool_size} pool "
            f"tasks have only {possible} groups of sizes {list(out['group_sizes'])}"
        )
    if out["group_samples"] and mode != "pairs":
        raise ConfigError(
            f"{where}: study.validation.group_samples needs mode: pairs (group gains are read against single-task runs)"
        )
    return out


def _arms(raw, kind: str, pretrain: TrainConfig, groups: dict, where: str) -> dict[str, TrainConfig]:
    """``study.arms``: name -> pre-finetuning recipe (``study.pretrain`` with the arm's training options)."""
    if raw is None:
        return {}
    if kind not in ("combinations", "validation"):
        raise ConfigError(f"{where}: study.arms is for combinations and validation studies, not {kind}")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: study.arms must be a mapping name: {{training options}}, got {raw!r}")
    arms = {}
    for name, overrides in raw.items():
        name = str(name)
        if (
            not re.fullmatch(r"[A-Za-z0-9_.-]+", name)
            or name in RESERVED_ARMS
            or name in groups
            or name.startswith("random")
            or re.fullmatch(r"G\d+(\+G\d+)*", name)
        ):
            raise ConfigError(
                f"{where}: study.arms: '{name}' cannot name an arm (letters, digits, '_', '.', '-'; "
                "not a group name, G<n> (the names of groups chosen from an affinity run), "
                f"'random...' or one of {', '.join(sorted(RESERVED_ARMS))})"
            )
        if not overrides:
            raise ConfigError(
                f"{where}: study.arms.{name} changes nothing: give the training options it changes "
                "(e.g. {sampling: uniform})"
            )
        try:
            arms[name] = _training(pretrain, overrides, where, f"study.arms.{name}")
        except ConfigError as err:  # a bad value: name the arm, not the user's training section
            message = str(err).removeprefix(f"{where}: ")
            raise ConfigError(f"{where}: study.arms.{name}: {message}") from None
        same = (
            "study.pretrain"
            if arms[name] == pretrain
            else next(
                (f"study.arms.{other}" for other, training in arms.items() if other != name and training == arms[name]),
                None,
            )
        )
        if same:
            raise ConfigError(
                f"{where}: study.arms.{name} trains with the same recipe as {same}: it would repeat "
                "that run under another name"
            )
    return arms


def _check_recorded(estimator: str, affinity, where: str) -> None:
    """The grouping estimator must be one the study's affinity run records: fail at load, not after the run."""
    why = None
    if estimator.startswith("stream_"):
        if not affinity.stream:
            why = "affinity.stream is false"
        elif estimator == "stream_first_order_optimizer" and "optimizer" not in affinity.rules:
            why = "affinity.rules has no optimizer rule"
    elif estimator.startswith(("first_order_", "lookahead_")):
        rule = estimator.split("_")[-1]
        if rule not in affinity.rules:
            why = f"affinity.rules has no {rule} rule"
        elif estimator.startswith("lookahead_") and affinity.lookahead != "exact":
            why = "affinity.lookahead is first_order (no lookahead passes)"
    if why:
        raise ConfigError(
            f"{where}: study.grouping.estimator {estimator} is not recorded: {why}; "
            "choose another estimator or record it"
        )


def _grouping(raw: dict, where: str) -> GroupingSettings:
    from ..affinity.estimators import ESTIMATORS
    from ..grouping import METHODS
    from ..grouping.tag import SOLVERS

    settings = _build(GroupingSettings, raw, where, "study.grouping")
    if settings.method not in METHODS:
        raise ConfigError(
            f"{where}: study.grouping.method must be one of {', '.join(METHODS)}, got {settings.method!r}"
        )
    if settings.k < 1:
        raise ConfigError(f"{where}: study.grouping.k must be >= 1, got {settings.k}")
    if settings.bootstrap < 0:
        raise ConfigError(f"{where}: study.grouping.bootstrap must be >= 0, got {settings.bootstrap}")
    if settings.estimator not in ESTIMATORS:
        raise ConfigError(
            f"{where}: study.grouping.estimator must be one of {', '.join(ESTIMATORS)}, got {settings.estimator!r}"
        )
    if settings.solver not in SOLVERS:
        raise ConfigError(
            f"{where}: study.grouping.solver must be one of {', '.join(SOLVERS)}, got {settings.solver!r}"
        )
    if not isinstance(settings.leave_alone, bool):
        raise ConfigError(f"{where}: study.grouping.leave_alone must be true or false, got {settings.leave_alone!r}")
    return settings


def _training(base: TrainConfig, overrides: dict, where: str, section: str) -> TrainConfig:
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}: '{section}' must be a mapping of training options")
    merged = {**dataclasses.asdict(base), **overrides}
    return _build(TrainConfig, merged, where, section)
