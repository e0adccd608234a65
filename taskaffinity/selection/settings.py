"""Settings of bandit source selection (:mod:`.bandit`) and their checks; no torch here, so the
CLI and study files can check them before anything heavy is imported."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import RunConfig
from ..errors import ConfigError

# option -> how the CLI spells it (``credible`` has no flag: the CLI reports 90 % intervals)
CLI_NAMES = {
    "target": "--target",
    "rounds": "--rounds",
    "steps_per_round": "--steps-per-round",
    "decay": "--decay",
    "seeds": "--seeds",
}


@dataclass(frozen=True)
class BanditSettings:
    """How long and how the bandit runs (:mod:`taskaffinity.selection.bandit`)."""

    rounds: int = 40
    steps_per_round: int = 4
    # γ of the discounted update. AutoSeM's reference code uses 0.3, but then a posterior holds
    # ~3 observations and the final ranking is read from the last few pulls: on simulated
    # rewards with one helpful source it ranked it first in 73 % of 200 runs at 40 rounds,
    # against 93 % at 0.1 and 99.5 % at 0 (bench/bandit_decay.py, docs/grouping.md)
    decay: float = 0.1
    seeds: int = 1
    credible: float = 0.9  # central credible interval of the posterior

    def check(self, names: dict[str, str] | None = None) -> BanditSettings:
        """Raise ConfigError naming the bad option (``names``: option -> its spelling, e.g. CLI flags)."""
        name = (names or {}).get
        for key in ("rounds", "steps_per_round", "seeds"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name(key, key)} must be an integer >= 1, got {value!r}")
        if not 0 <= self.decay < 1:
            raise ConfigError(f"{name('decay', 'decay')} must be in [0, 1), got {self.decay}")
        if not 0 < self.credible < 1:
            raise ConfigError(f"{name('credible', 'credible')} must be in (0, 1), got {self.credible}")
        return self


def bandit_sources(config: RunConfig, target: str, names: dict[str, str] | None = None) -> list[str]:
    """The candidate sources of ``target``: every other task of the config (at least two)."""
    name = (names or {}).get
    tasks = [t.name for t in config.tasks]
    if target not in tasks:
        raise ConfigError(
            f"{name('target', 'target')}: unknown target task '{target}' "
            f"(tasks of {config.source_file or 'the config'}: {', '.join(tasks)})"
        )
    sources = [t for t in tasks if t != target]
    if len(sources) < 2:
        raise ConfigError(
            f"{name('target', 'target')} {target}: bandit selection needs at least two candidate "
            f"sources besides the target; {config.source_file or 'the config'} lists "
            f"{len(sources)}"
        )
    return sources
