"""A run configuration (:class:`RunConfig`: tasks and sections) and how it is read from YAML
(``yaml.safe_load`` only), its identity and fingerprint."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from ..errors import ConfigError
from ..tasks.data_config import DataConfig
from ..tasks.registry import task_spec_from_entry
from ..tasks.spec import CLASSIFICATION, METRICS, PAIR_CLASSIFICATION, TASK_TYPES, TaskSpec
from ..tracking.settings import TrackingConfig
from .sections import AffinityConfig, ModelConfig, TrainConfig, _check


@dataclass(frozen=True)
class RunConfig:
    """One joint run: its tasks and the ``model``, ``data``, ``training`` and ``affinity`` sections, and
    ``tracking`` (where the run is also logged: never part of its identity)."""

    tasks: tuple[TaskSpec, ...]
    name: str = "study"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    affinity: AffinityConfig = field(default_factory=AffinityConfig)
    source_file: str | None = field(default=None, compare=False)
    tracking: TrackingConfig = field(default_factory=TrackingConfig, compare=False)

    def __post_init__(self):  # options that span sections
        total = self.training.head_warmup_steps + self.training.steps
        start = self.affinity.start_step
        _check(start is None or start <= total, f"affinity.start_step {start} is outside the run's steps 1..{total}")

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out.pop("source_file")
        out["data"].pop("deduplicate")  # an alias, resolved into shared_inputs
        return _plain(out)

    def identity(self) -> dict:
        """``to_dict`` less the options added after runs were recorded, where they are at their
        defaults: what a run's fingerprint and a study job's id are made of, so runs and study
        jobs made before an option existed keep their identity."""
        out = self.to_dict()
        out.pop("tracking")  # where a run is logged never changes it
        if out["affinity"].get("probe_seed") == out["seed"]:  # the default written out: the same run
            out["affinity"]["probe_seed"] = None
        for section, defaults in LATER_OPTIONS.items():
            for key, default in defaults.items():
                if out[section].get(key) == default:
                    out[section].pop(key)
        return out

    def fingerprint(self) -> str:
        """Hash of everything that changes results (checkpoints refuse to resume across it)."""
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


LATER_OPTIONS = {
    "training": {
        "weighting": "muppet",
        "weighting_lr": 0.025,
        "gradnorm_alpha": 1.5,
        "dtp_gamma": 2.0,
        "dtp_smoothing": 0.9,
        "aggregator": "sum",
        "cagrad_c": 0.4,
    },
    "affinity": {"conflicts": False, "probe_seed": None, "probe_draws": 1},
}

StudyConfig = RunConfig  # its earlier name (it configures one joint run, not a study)


def _plain(value):
    """Tuples to lists, recursively: YAML and JSON friendly."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


SECTIONS = {
    "model": ModelConfig,
    "data": DataConfig,
    "training": TrainConfig,
    "affinity": AffinityConfig,
    "tracking": TrackingConfig,
}
TOP_KEYS = {"name", "seed", "tasks", "study", *SECTIONS}  # "study": taskaffinity.study.settings


def load_config(path: str | Path) -> RunConfig:
    """Read a run (or study) YAML into a :class:`RunConfig`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return config_from_dict(raw, where=str(path), base_dir=path.parent)


def config_from_dict(raw: Any, *, where: str = "<config>", base_dir: Path | None = None) -> RunConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the top level must be a mapping with keys {sorted(TOP_KEYS)}")
    _reject_unknown(raw, TOP_KEYS, where, "")
    if not raw.get("tasks"):
        raise ConfigError(f"{where}: 'tasks' must list at least one task")
    if not isinstance(raw["tasks"], list):
        raise ConfigError(f"{where}: 'tasks' must be a list")
    tasks = tuple(
        task_spec_from_entry(entry, where=f"{where}: tasks[{i}]", base_dir=base_dir or Path("."))
        for i, entry in enumerate(raw["tasks"])
    )
    _check_task_set(tasks, where)
    if isinstance(raw.get("data"), dict) and {"deduplicate", "shared_inputs"} <= set(raw["data"]):
        raise ConfigError(f"{where}: data.deduplicate is the old name of data.shared_inputs: give only one")
    sections = {key: _build(cls, raw.get(key) or {}, where, key) for key, cls in SECTIONS.items()}
    name = coerce(raw.get("name", "study"), str, f"{where}: name")
    seed = coerce(raw.get("seed", 0), int, f"{where}: seed")
    try:
        return RunConfig(tasks=tasks, name=name, seed=seed, source_file=where, **sections)
    except ConfigError as err:  # a check across sections (RunConfig.__post_init__)
        raise ConfigError(f"{where}: {err}") from None


def _check_task_set(tasks: tuple[TaskSpec, ...], where: str) -> None:
    names = [t.name for t in tasks]
    seen = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{where}: duplicate task name '{name}' (task names must be unique)")
        seen.add(name)
    earlier: dict[str, TaskSpec] = {}
    for task in tasks:
        if task.type not in TASK_TYPES:
            raise ConfigError(
                f"{where}: task '{task.name}': unknown type '{task.type}' (use one of {', '.join(TASK_TYPES)})"
            )
        if task.metric is not None and task.metric not in METRICS[task.type]:
            raise ConfigError(
                f"{where}: task '{task.name}': metric '{task.metric}' does not fit type {task.type} "
                f"(use one of {', '.join(METRICS[task.type])})"
            )
        if task.duplicate_of is not None and task.duplicate_of not in seen:
            raise ConfigError(f"{where}: task '{task.name}': duplicate_of names unknown task '{task.duplicate_of}'")
        original = task.options.get("one_vs_rest")
        if original is not None:
            if original not in earlier:
                problem = (
                    f"task '{original}' listed after it (list the original first)"
                    if original in seen
                    else f"unknown task '{original}'"
                )
                raise ConfigError(f"{where}: task '{task.name}': one_vs_rest names {problem}")
            root, visited = earlier[original], set()
            while root.name not in visited:  # a duplicate or derived task has its original's type
                visited.add(root.name)
                parent = root.duplicate_of or root.options.get("one_vs_rest")
                if parent not in earlier:
                    break
                root = earlier[parent]
            if root.type not in (CLASSIFICATION, PAIR_CLASSIFICATION):
                raise ConfigError(
                    f"{where}: task '{task.name}': one_vs_rest needs a classification or pair_classification task; "
                    f"'{original}' is {root.type}"
                )
        earlier[task.name] = task


def _reject_unknown(raw: dict, allowed: set[str], where: str, prefix: str) -> None:
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key '{prefix}{key}' (allowed: {', '.join(sorted(allowed))})")


def _build(cls, raw: Any, where: str, section: str):
    """Instantiate a config dataclass from a mapping, checking keys and scalar types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: '{section}' must be a mapping")
    prefix = f"{section}." if section else ""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _reject_unknown(raw, set(fields), where, prefix)
    hints = get_type_hints(cls)
    values = {key: coerce(value, hints[key], f"{where}: {prefix}{key}") for key, value in raw.items()}
    try:
        return cls(**values)
    except ConfigError as err:  # a check of the section's own (e.g. DataConfig.__post_init__)
        raise ConfigError(f"{where}: {err}") from None


def coerce(value: Any, hint: Any, what: str) -> Any:
    """Check a YAML scalar against a field's annotation (YAML 1.1 reads 5e-5 as a string)."""
    allows_none = type(None) in getattr(hint, "__args__", ())
    base = next((a for a in getattr(hint, "__args__", (hint,)) if a is not type(None)), hint)
    if value is None:
        if allows_none:
            return None
        raise ConfigError(f"{what}: must not be empty")
    if base is bool:
        if isinstance(value, bool):
            return value
    elif base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif base is float:
        try:
            if not isinstance(value, bool):
                return float(value)
        except (TypeError, ValueError):
            pass
    elif base is str:
        if isinstance(value, str):
            return value
    elif base is tuple:
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        if isinstance(value, str):
            return (value,)
    elif base is dict or getattr(base, "__origin__", None) is dict:
        if isinstance(value, dict):
            return value
    else:
        return value
    raise ConfigError(f"{what}: expected {getattr(base, '__name__', base)}, got {value!r}")
