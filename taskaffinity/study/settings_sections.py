"""The sections of a study's ``study:`` mapping, read and checked one by one: task groups (inline or
from a grouping file), the validation options, arms (training recipes compared on the same jobs),
the grouping from the study's own affinity run, and training overrides. Each raises ConfigError
naming the file and key path; :func:`taskaffinity.study.settings.settings_from_dict` assembles them."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..config import TrainConfig
from ..config.run import _build, _reject_unknown, coerce
from ..config.sections import MAX_PROBE_DRAWS
from ..errors import ConfigError
from ..grouping.surrogate import SURROGATES

VALIDATION_MODES = ("pairs", "transfer")

#: labels and arm names the plans use themselves: an arm may not take them
RESERVED_ARMS = {"baseline", "alone", "pair", "single", "all", "chosen", "transfer", "oracle", "surrogate", "group"}


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
    _reject_unknown(
        raw,
        {"mode", "random_groupings", "group_samples", "group_sizes", "surrogate", "leave_alone_arms", "probe_draws"},
        where,
        "study.validation.",
    )
    mode = raw.get("mode", "pairs")
    if mode not in VALIDATION_MODES:
        raise ConfigError(f"{where}: study.validation.mode must be one of {', '.join(VALIDATION_MODES)}, got {mode!r}")
    out = {"validation_mode": mode}
    for key, default, low in (("random_groupings", 3, 0), ("group_samples", 0, 0), ("probe_draws", 1, 1)):
        out[key] = coerce(raw.get(key, default), int, f"{where}: study.validation.{key}")
        if out[key] < low:
            raise ConfigError(f"{where}: study.validation.{key} must be >= {low}, got {out[key]}")
    if out["probe_draws"] > MAX_PROBE_DRAWS:
        raise ConfigError(
            f"{where}: study.validation.probe_draws must be <= {MAX_PROBE_DRAWS}, got {out['probe_draws']}"
        )
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
    surrogate = raw.get("surrogate")
    if surrogate is not None:
        if not isinstance(surrogate, str) or surrogate not in SURROGATES:
            raise ConfigError(
                f"{where}: study.validation.surrogate must be one of {', '.join(SURROGATES)}, got {surrogate!r}"
            )
        if mode != "pairs":
            raise ConfigError(
                f"{where}: study.validation.surrogate needs mode: pairs (it is fitted to measured pair and group gains)"
            )
        out["surrogate"] = surrogate
    if "leave_alone_arms" in raw:
        out["leave_alone_arms"] = raw["leave_alone_arms"]
        if not isinstance(out["leave_alone_arms"], bool):
            raise ConfigError(
                f"{where}: study.validation.leave_alone_arms must be true or false, got {raw['leave_alone_arms']!r}"
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


def _check_solved_arms(values: dict, kind: str, pool: list[str], seed: int, where: str) -> None:
    """``study.validation.surrogate`` and ``leave_alone_arms``: arms of validation studies with grouping
    arms; a surrogate needs every task in enough measured subsets (its pairs and sampled groups), or
    the study would fail only after its first wave of jobs."""
    from .group_draws import sample_groups

    for key in ("surrogate", "leave_alone_arms"):
        if values.get(key) and kind != "validation":
            raise ConfigError(f"{where}: study.validation.{key} is for validation studies, not {kind}")
        if values.get(key) and not (values.get("groups") or values.get("groups_from_affinity")):
            raise ConfigError(
                f"{where}: study.validation.{key} is measured as a grouping arm beside the tool's own: "
                "set study.groups (affinity, a mapping or a grouping file)"
            )
    if values.get("leave_alone_arms") and values["grouping"].leave_alone:
        raise ConfigError(
            f"{where}: study.validation.leave_alone_arms adds leave-alone variants of the arms, but "
            "study.grouping.leave_alone is already true (the arms leave tasks alone): drop one of them"
        )
    if not values.get("surrogate"):
        return
    need = SURROGATES[values["surrogate"]]().min_subsets
    groups = sample_groups(tuple(pool), values["group_samples"], values["group_sizes"], seed)
    counts = {t: len(pool) - 1 + sum(t in g for g in groups) for t in pool}
    fewest = min(pool, key=counts.get)
    if counts[fewest] < need:
        raise ConfigError(
            f"{where}: study.validation.surrogate needs every task in at least {need} measured subsets, but "
            f"'{fewest}' is in {counts[fewest]} (pairs: {len(pool) - 1}, sampled groups: "
            f"{counts[fewest] - len(pool) + 1}): add tasks or study.validation.group_samples"
        )
