"""Run configuration: frozen dataclasses loaded from YAML (``yaml.safe_load`` only).

:class:`RunConfig` configures one joint run (tasks, model, data, training, affinity
recording); a study (``taskaffinity.study.settings.Study``) adds a ``study:`` section on top.

Unknown keys are rejected with the key path and the file named, so a typo never
silently falls back to a default.
"""

from ..tasks.data_config import DataConfig
from ..tracking.settings import TrackingConfig
from .run import LATER_OPTIONS, SECTIONS, TOP_KEYS, RunConfig, StudyConfig, coerce, config_from_dict, load_config
from .sections import (
    AGGREGATOR_DEPENDENCIES,
    AGGREGATORS,
    DEFAULT_MODEL,
    INIT_MODES,
    LOOKAHEAD_MODES,
    LOOKAHEAD_RULES,
    POOLING_METHODS,
    PROBE_SPLITS,
    SAMPLING_METHODS,
    WEIGHTINGS,
    AffinityConfig,
    ExecutorConfig,
    ModelConfig,
    TrainConfig,
)

__all__ = [
    "AGGREGATORS",
    "AGGREGATOR_DEPENDENCIES",
    "DEFAULT_MODEL",
    "INIT_MODES",
    "LATER_OPTIONS",
    "LOOKAHEAD_MODES",
    "LOOKAHEAD_RULES",
    "POOLING_METHODS",
    "PROBE_SPLITS",
    "SAMPLING_METHODS",
    "SECTIONS",
    "TOP_KEYS",
    "WEIGHTINGS",
    "AffinityConfig",
    "DataConfig",
    "ExecutorConfig",
    "ModelConfig",
    "RunConfig",
    "StudyConfig",
    "TrackingConfig",
    "TrainConfig",
    "coerce",
    "config_from_dict",
    "load_config",
]
