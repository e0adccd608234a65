"""Do the published findings hold in a study's results? Effect sizes, seed spread and paired tests.

Pure functions over the tidy results frame (:mod:`taskaffinity.study.results`); each
returns :class:`Finding` records that the report prints as "What this shows".

- Families (Padmakumar et al. 2022, Table 2): (a) pre-finetuning on the target's own
  family beats the baseline and the other single families; (b) all families together
  are best on average; (c) some combinations fall below the no-pre-finetuning baseline.
- Scaling (Aghajanyan et al. 2021, Muppet §5.1): few pre-finetuning tasks can hurt,
  more help past a critical point.
- Low resource (Muppet §5.3): the gain from pre-finetuning is largest when the target
  has the least training data.

Every comparison is paired: the same target, seed (and data fraction, scale) under two
conditions, on the test split's primary metric, differences signed so that positive
means better (``mae`` is negated). Differences are pooled over targets in metric units.
The test is the Wilcoxon signed-rank test (two-sided, scipy); with n paired
differences its smallest attainable p is 2/2^n, so below n = 6 no difference can
reach p < 0.05 and the finding is reported as untested.
"""

from __future__ import annotations

import pandas as pd

from ..study.plan import BASELINE
from .findings_families import family_findings, group_labels, own_groups, recipe_findings
from .tables import critical_point
from .verdicts import (
    ALPHA,
    DOES_NOT_HOLD,
    HOLDS,
    MIN_TEST_N,
    NOT_MEASURED,
    OPPOSITE_DIRECTION,
    SAME_DIRECTION,
    Finding,
    PairedTest,
    largest_fraction,
    paired_test,
    signed_wide,
    verdict,
)

__all__ = [
    "ALPHA",
    "DOES_NOT_HOLD",
    "HOLDS",
    "MIN_TEST_N",
    "NOT_MEASURED",
    "OPPOSITE_DIRECTION",
    "SAME_DIRECTION",
    "Finding",
    "PairedTest",
    "family_findings",
    "group_labels",
    "low_resource_findings",
    "own_groups",
    "paired_test",
    "recipe_findings",
    "scaling_findings",
    "study_findings",
    "verdict",
]


MUPPET = "Aghajanyan et al. 2021 (Muppet)"


def _k_gains(results: pd.DataFrame, split: str) -> pd.DataFrame:
    """Gains over the baseline per (target, seed) row and number of pre-finetuning tasks column."""
    wide = signed_wide(largest_fraction(results), ["target", "seed"], split)
    sizes = results.drop_duplicates("label").set_index("label")["n_pretrain_tasks"]
    gains = wide.drop(columns=BASELINE).sub(wide[BASELINE], axis=0)
    gains.columns = [int(sizes[label]) for label in gains.columns]
    return gains.sort_index(axis=1)


def scaling_findings(results: pd.DataFrame, *, split: str = "test") -> list[Finding]:
    """Muppet §5.1: few pre-finetuning tasks can hurt, more help past a critical point."""
    if BASELINE not in set(results["label"]):
        return [Finding("pre-finetuning is compared with the baseline", MUPPET, NOT_MEASURED, "no baseline results")]
    gains = _k_gains(results, split)
    tests = {k: paired_test(gains[k]) for k in gains.columns}
    table = (
        pd.DataFrame(
            {
                "k": list(tests),
                "mean Δ vs baseline": [t.mean for t in tests.values()],
                "std": [t.std for t in tests.values()],
                "n": [t.n for t in tests.values()],
                "Wilcoxon p": [t.p for t in tests.values()],
            }
        )
        .round(4)
        .set_index("k")
    )
    smallest, largest = min(tests), max(tests)
    curve = pd.Series({k: t.mean for k, t in tests.items()})
    point = critical_point(curve, 0.0)
    per_target = {
        target: critical_point(block.mean().rename(int), 0.0)
        for target, block in gains.groupby(level="target", sort=False)
    }
    hurt = Finding(
        f"few pre-finetuning tasks hurt (k = {smallest} below the baseline)",
        MUPPET,
        verdict(tests[smallest], expected=-1),
        f"Δ at k = {smallest}: {tests[smallest].describe()}.",
        table,
    )
    trend = paired_test(gains[largest] - gains[smallest])
    helps_verdict = verdict(tests[largest])
    if point is None and helps_verdict == HOLDS:
        helps_verdict = SAME_DIRECTION  # the mean curve never stays above the baseline
    critical = (
        "no critical point: the mean curve does not stay above the baseline up to the largest k"
        if point is None
        else f"critical point k = {point} (the mean curve stays above the baseline from there)"
    )
    helps = Finding(
        f"more tasks help past a critical point (k = {largest} above the baseline)",
        MUPPET,
        helps_verdict,
        f"Δ at k = {largest}: {tests[largest].describe()}; {critical}; per target: "
        + ", ".join(f"{t} {'none' if p is None else p}" for t, p in per_target.items())
        + f". k = {largest} vs k = {smallest}: {trend.describe()}.",
    )
    return [hurt, helps]


# -- low resource (Muppet §5.3) --------------------------------------------------------------------
def low_resource_findings(results: pd.DataFrame, *, split: str = "test") -> list[Finding]:
    """Muppet §5.3: the gain from pre-finetuning is largest at the smallest fraction of target data."""
    claim = "the gain from pre-finetuning is largest when the target has the least training data"
    if BASELINE not in set(results["label"]):
        return [Finding(claim, MUPPET, NOT_MEASURED, "no baseline results")]
    wide = signed_wide(results, ["target", "seed", "fraction"], split)
    gains = wide.drop(columns=BASELINE).sub(wide[BASELINE], axis=0)
    sizes = results.drop_duplicates("label").set_index("label")["n_pretrain_tasks"]
    long = (
        gains.stack()
        .rename("gain")
        .reset_index()
        .rename(columns={"label": "set"})
        .assign(k=lambda f: f["set"].map(sizes).astype(int))
    )
    long["fraction"] = long["fraction"].astype(float)
    fractions = sorted(long["fraction"].unique())
    if len(fractions) < 2:
        return [Finding(claim, MUPPET, NOT_MEASURED, "the study has one data fraction")]
    by_fraction = long.groupby("fraction")["gain"].agg(["mean", "std", "count"])
    grid = long.pivot_table(index="fraction", columns="k", values="gain", aggfunc="mean")
    grid.columns = [f"Δ at k = {k}" for k in grid.columns]
    table = (
        pd.concat([by_fraction.rename(columns={"mean": "mean Δ (all k)", "std": "std", "count": "n"}), grid], axis=1)
        .round(4)
        .rename_axis("fraction")
    )
    paired = long.pivot_table(index=["target", "seed", "set"], columns="fraction", values="gain")
    test = paired_test(paired[fractions[0]] - paired[fractions[-1]])
    peak = float(by_fraction["mean"].idxmax())
    result = verdict(test)
    if result == HOLDS and peak != fractions[0]:
        result = SAME_DIRECTION  # larger than at the full data, but not the largest of all fractions
    evidence = (
        f"Mean gain {by_fraction.loc[fractions[0], 'mean']:+.3f} at fraction {fractions[0]:g} vs "
        f"{by_fraction.loc[fractions[-1], 'mean']:+.3f} at {fractions[-1]:g} (largest mean gain at "
        f"{peak:g}); paired over target × seed × scale: {test.describe()}."
    )
    return [Finding(claim, MUPPET, result, evidence, table)]


# -- recipe arms (study.arms) ---------------------------------------------------------------------
def study_findings(results: pd.DataFrame, kind: str, families: dict[str, str] | None = None) -> list[Finding]:
    """The findings a study of ``kind`` can test (empty for kinds without published findings here)."""
    if results.empty:
        return []
    if kind == "combinations":
        arms = recipe_findings(results, families or {})
        return family_findings(results, families or {}) + ([arms] if arms is not None else [])
    if kind == "scaling":
        return scaling_findings(results)
    if kind == "low_resource":
        return low_resource_findings(results)
    return []
