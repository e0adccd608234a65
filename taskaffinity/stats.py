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


