"""Paired comparisons behind every finding: the Wilcoxon signed-rank test over paired differences,
its verdict against an expected direction, and the :class:`Finding` records the report prints.

With n paired differences the test's smallest attainable p is 2/2^n, so below n = 6
(``MIN_TEST_N``) no difference can reach p < ``ALPHA`` and the finding is reported as untested.
Differences are signed so that positive means better (``mae`` is negated: ``signed_wide``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from ..tasks.spec import LOWER_IS_BETTER
from .tables import select_rows

ALPHA = 0.05
MIN_TEST_N = 6  # 2 / 2^5 = 0.0625: five or fewer pairs cannot reach p < 0.05

HOLDS = "holds"
SAME_DIRECTION = "same direction, within noise"
OPPOSITE_DIRECTION = "opposite direction, within noise"
DOES_NOT_HOLD = "does not hold"
NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class PairedTest:
    """Summary of paired differences (positive = the first condition is better)."""

    n: int
    mean: float
    std: float  # spread of the differences (ddof 1; NaN when n < 2)
    p: float | None  # Wilcoxon signed-rank, two-sided; None when n < MIN_TEST_N or every difference is 0

    def describe(self) -> str:
        spread = f" ± {self.std:.3f} (std)" if np.isfinite(self.std) else ""
        test = (
            f"Wilcoxon p = {self.p:.3g}"
            if self.p is not None
            else f"n = {self.n} is too small for a test"
            if self.n < MIN_TEST_N
            else "no test (all equal)"
        )
        return f"{self.mean:+.3f}{spread} over n = {self.n} pairs, {test}"


@dataclass(frozen=True)
class Finding:
    claim: str  # the published finding, as a statement that can hold or not
    source: str
    verdict: str  # HOLDS, SAME_DIRECTION, OPPOSITE_DIRECTION, DOES_NOT_HOLD or NOT_MEASURED
    evidence: str  # one or two sentences: effect size, spread, test
    table: pd.DataFrame | None = field(default=None, compare=False)


def paired_test(differences) -> PairedTest:
    """Mean, spread and Wilcoxon signed-rank p of paired differences (NaNs dropped)."""
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    std = float(d.std(ddof=1)) if n > 1 else float("nan")
    p = None
    if n >= MIN_TEST_N and np.any(d != 0):
        p = float(wilcoxon(d).pvalue)
    return PairedTest(n, float(d.mean()) if n else float("nan"), std, p)


def verdict(test: PairedTest, expected: int = 1) -> str:
    """How ``test`` bears on a claim that predicts differences of sign ``expected`` (+1 or -1)."""
    if test.n == 0 or not np.isfinite(test.mean):
        return NOT_MEASURED
    agrees = np.sign(test.mean) == expected
    significant = test.p is not None and test.p < ALPHA
    if agrees:
        return HOLDS if significant else SAME_DIRECTION
    return DOES_NOT_HOLD if significant else OPPOSITE_DIRECTION


def signed_wide(results: pd.DataFrame, index: list[str], split: str) -> pd.DataFrame:
    """Primary-metric values, rows ``index`` × columns label, sign-flipped for lower-is-better metrics."""
    rows = select_rows(results, split=split)
    rows = rows.assign(value=np.where(rows["metric"].isin(LOWER_IS_BETTER), -rows["value"], rows["value"]))
    return rows.pivot_table(index=index, columns="label", values="value", aggfunc="mean", sort=False)


def largest_fraction(results: pd.DataFrame) -> pd.DataFrame:
    fractions = results["fraction"].astype(float)
    return results[np.isclose(fractions, fractions.max())]


# -- families (Padmakumar et al. 2022) -------------------------------------------------------------
