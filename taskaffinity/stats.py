"""Small statistics shared by every layer: Spearman–Brown, attenuation ceilings, reliability words.

Reliability here is the correlation of a measurement with a repetition of itself (split
halves of probes or windows; seeds of a study). The Spearman–Brown formula steps it up to
a longer measurement (Spearman 1910; Brown 1910); the attenuation bound √(ρ_a·ρ_b) limits
how well two noisy measurements of one quantity can correlate (Spearman 1904).
"""

from __future__ import annotations

import numpy as np

# Correlations and shares below this size are rounding residue of an exact 0 (a mean of rank
# correlations that cancel leaves 1e-17): reported as 0, so that a prophecy never divides by them.
ROUNDING = 1e-12


def snap(value: float) -> float:
    """``value`` as a float, with rounding residue of 0 (|value| < 1e-12) made exactly 0; NaN stays NaN."""
    value = float(value)
    return 0.0 if abs(value) < ROUNDING else value


def spearman_brown(r: float, factor: float = 2.0) -> float:
    """Reliability of a mean over ``factor`` times as many samples as one with reliability ``r``."""
    if not np.isfinite(r):
        return float("nan")
    r = snap(r)
    return snap(factor * r / (1 + (factor - 1) * r)) if r > -1 / (factor - 1) else -1.0


def samples_needed(reliability: float, samples: int, target: float = 0.9) -> float | None:
    """Samples (probes or windows) the Spearman–Brown prophecy needs for ``target`` reliability.

    None when the measured reliability is not positive: no number of samples is predicted
    to help an estimator whose halves do not agree at all.
    """
    if not np.isfinite(reliability) or snap(reliability) <= 0:
        return None
    if reliability >= target:
        return float(samples)
    return float(samples * target * (1 - reliability) / (reliability * (1 - target)))


def ceiling(reliability_a: float, reliability_b: float) -> float:
    """The largest correlation two estimators with these reliabilities can show (√(ρ_a·ρ_b))."""
    if not (np.isfinite(reliability_a) and np.isfinite(reliability_b)):
        return float("nan")
    return float(np.sqrt(max(reliability_a, 0.0) * max(reliability_b, 0.0)))


# Conventional bands of reliability coefficients (Koo & Li 2016 use 0.5 / 0.75 / 0.9 for ICCs).
BANDS = ((0.9, "excellent"), (0.75, "good"), (0.5, "moderate"), (-np.inf, "mostly noise"))


def verdict(reliability: float) -> str:
    """A word for a reliability coefficient: excellent, good, moderate or mostly noise."""
    if not np.isfinite(reliability):
        return "unknown (fewer than 4 samples)"
    return next(word for bound, word in BANDS if reliability >= bound)


def within_target_spearman(
    frame, x: str, y: str, *, by: str = "target", n_boot: int = 1000, level: float = 0.95, rng=None
) -> dict:
    """Mean over targets of the Spearman correlation of columns ``x`` and ``y`` across each target's rows.

    What source ranking and grouping read: how each target orders its sources or groups (a
    per-target offset is invisible to it). Only targets with at least 3 rows and variation in both
    columns count. Returns ``mean`` (None when no target counts), ``ci`` (percentile bootstrap over
    targets at ``level``, None without ``n_boot``), ``n_targets`` and ``per_target`` (target -> ρ).
    ``rng``: a ``numpy.random.Generator`` (or seed) for the bootstrap.
    """
    from scipy.stats import spearmanr

    per_target = {
        t: float(spearmanr(g[x], g[y]).statistic)
        for t, g in frame.groupby(by, sort=True)
        if len(g) >= 3 and g[x].nunique() > 1 and g[y].nunique() > 1
    }
    out = {"mean": None, "ci": None, "n_targets": len(per_target), "per_target": per_target, "level": level}
    if not per_target:
        return out
    values = np.array(list(per_target.values()))
    out["mean"] = float(values.mean())
    if n_boot:
        out["ci"] = bootstrap_mean_ci(values, n_boot=n_boot, level=level, rng=rng)
    return out


def bootstrap_mean_ci(values, *, n_boot: int = 1000, level: float = 0.95, rng=None) -> list[float] | None:
    """Percentile bootstrap interval ``[low, high]`` of the mean of ``values`` (resampled with
    replacement, e.g. over targets); None for no values. ``rng``: a Generator or a seed."""
    values = np.asarray(values, dtype=float)
    if not values.size:
        return None
    rng = np.random.default_rng(rng)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    tail = (1 - level) / 2
    return [float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))]
