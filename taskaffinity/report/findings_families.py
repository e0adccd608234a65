"""Findings of a combinations study: task families (Padmakumar et al. 2022, Table 2) and
multi-task recipes against the plain Muppet recipe (loss weightings, gradient aggregators).

(a) pre-finetuning on the target's own family beats the baseline and the other single families;
(b) all families together are best on average; (c) some combinations fall below the
no-pre-finetuning baseline. Pure functions over the tidy results frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from ..study.plan import BASELINE
from .verdicts import (
    ALPHA,
    DOES_NOT_HOLD,
    HOLDS,
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

PADMAKUMAR = "Padmakumar et al. 2022"


def group_labels(results: pd.DataFrame) -> tuple[list[str], str | None]:
    """Single-group labels (in plan order) and the label of all groups together (None if absent)."""
    labels = [label for label in dict.fromkeys(results["label"]) if label != BASELINE]
    singles = [label for label in labels if "+" not in label]
    everything = next((label for label in labels if set(label.split("+")) == set(singles) and len(singles) > 1), None)
    return singles, everything


def own_groups(results: pd.DataFrame, families: dict[str, str]) -> dict[str, str]:
    """target -> the single group made of the target's family (most of its members share it)."""
    singles, _ = group_labels(results)
    members = results.drop_duplicates("label").set_index("label")["pretrain_set"]
    family_of_group = {}
    for label in singles:
        fams = pd.Series([families.get(t) for t in str(members[label]).split("+")]).value_counts()
        if not fams.empty and fams.iloc[0] * 2 > fams.sum():
            family_of_group[label] = fams.index[0]
    out = {}
    for target in dict.fromkeys(results["target"]):
        matches = [g for g, fam in family_of_group.items() if fam == families.get(target)]
        if len(matches) == 1:
            out[target] = matches[0]
    return out


def family_findings(results: pd.DataFrame, families: dict[str, str], *, split: str = "test") -> list[Finding]:
    """Padmakumar et al. (2022)'s three findings for a combinations study whose groups are task families.

    ``families``: task -> family (targets and pre-finetuning tasks). Uses the largest data fraction.
    """
    results = largest_fraction(results)
    if "arm" in results.columns:  # recipe arms (study.arms) are not family combinations
        results = results[results["arm"].fillna("").eq("")]
    wide = signed_wide(results, ["target", "seed"], split)
    if BASELINE not in wide.columns:
        return [
            Finding(
                "pre-finetuning is compared with the baseline",
                PADMAKUMAR,
                NOT_MEASURED,
                "the study has no baseline (no-pre-finetuning) results",
            )
        ]
    singles, everything = group_labels(results)
    gains = wide.drop(columns=BASELINE).sub(wide[BASELINE], axis=0)  # per (target, seed), + = better
    return [
        _own_family(gains, singles, own_groups(results, families)),
        _all_best(gains, everything),
        _below_baseline(gains, wide),
    ]


def _own_family(gains: pd.DataFrame, singles: list[str], own: dict[str, str]) -> Finding:
    claim = "(a) pre-finetuning on the target's own family beats the baseline and the other single families"
    rows = []
    for (target, seed), row in gains.iterrows():
        if target not in own:
            continue
        others = [row[g] for g in singles if g != own[target] and np.isfinite(row.get(g, np.nan))]
        rows.append(
            {
                "target": target,
                "seed": seed,
                "own family": own[target],
                "own vs baseline": row[own[target]],
                "own vs other singles (mean)": row[own[target]] - np.mean(others) if others else np.nan,
            }
        )
    if not rows:
        return Finding(claim, PADMAKUMAR, NOT_MEASURED, "no single group is made of a target's family")
    frame = pd.DataFrame(rows)
    vs_base = paired_test(frame["own vs baseline"])
    vs_others = paired_test(frame["own vs other singles (mean)"])
    verdicts = (verdict(vs_base), verdict(vs_others))
    overall = verdicts[0] if verdicts[0] == verdicts[1] else _weaker(*verdicts)
    evidence = (
        f"Own family vs baseline: {vs_base.describe()}; own family vs the mean of the other single "
        f"families: {vs_others.describe()} (pairs: target × seed)."
    )
    table = (
        frame.groupby(["target", "own family"], sort=False)[["own vs baseline", "own vs other singles (mean)"]]
        .agg(["mean", "std"])
        .round(4)
    )
    table.columns = [f"{a}: {b}" for a, b in table.columns]
    return Finding(claim, PADMAKUMAR, overall, evidence, table)


def _weaker(a: str, b: str) -> str:
    order = [DOES_NOT_HOLD, OPPOSITE_DIRECTION, SAME_DIRECTION, HOLDS]
    return min(a, b, key=order.index)


def _all_best(gains: pd.DataFrame, everything: str | None) -> Finding:
    claim = "(b) all families together are best on average over targets"
    if everything is None or everything not in gains.columns:
        return Finding(claim, PADMAKUMAR, NOT_MEASURED, "the study has no combination of all groups")
    per_target = gains.groupby(level="target", sort=False).mean()  # mean over seeds
    average = per_target.mean().sort_values(ascending=False)  # mean over targets of Δ vs baseline
    runner_up = next(label for label in average.index if label != everything)
    rival = runner_up if average.index[0] == everything else average.index[0]
    test = paired_test(gains[everything] - gains[rival])
    rank = int(list(average.index).index(everything)) + 1
    result = (
        verdict(test) if rank == 1 else (DOES_NOT_HOLD if test.p is not None and test.p < ALPHA else OPPOSITE_DIRECTION)
    )
    evidence = (
        f"'{everything}' ranks {rank} of {len(average)} pre-finetuning sets by mean Δ vs baseline "
        f"({average[everything]:+.3f}); against {'the runner-up' if rank == 1 else 'the best'} "
        f"'{rival}' ({average[rival]:+.3f}): {test.describe()}."
    )
    table = pd.DataFrame(
        {
            "mean Δ vs baseline": average,
            "std over targets": per_target.std()[average.index],
            "best for n targets": per_target.idxmax(axis=1).value_counts().reindex(average.index).fillna(0).astype(int),
        }
    ).round(4)
    return Finding(claim, PADMAKUMAR, result, evidence, table.rename_axis("pre-finetuning set"))


def _below_baseline(gains: pd.DataFrame, wide: pd.DataFrame) -> Finding:
    """Cells (target, set) below the baseline: on average, and beyond seed noise.

    Noise: a target's seed variance pooled over all its sets (df = Σ (n_seeds − 1)); a
    cell is clearly below when its one-sided t-test of Δ = mean(set) − mean(baseline)
    passes at 0.05 / (number of cells) (Bonferroni: with many cells some fall below by
    chance).
    """
    claim = "(c) some combinations fall below the no-pre-finetuning baseline"
    cells = []
    for target, block in wide.groupby(level="target", sort=False):
        counts, variances = block.count(), block.var(ddof=1)
        df = int((counts - 1).clip(lower=0).sum())
        pooled = float(((counts - 1).clip(lower=0) * variances.fillna(0)).sum() / df) if df else np.nan
        for label in gains.columns:
            d = gains.loc[target, label].dropna()
            if d.empty:
                continue
            se = np.sqrt(pooled * (1 / counts[label] + 1 / counts[BASELINE])) if df else np.nan
            cells.append(
                {
                    "target": target,
                    "set": label,
                    "Δ vs baseline": d.mean(),
                    "seed std": np.sqrt(pooled),
                    "t": d.mean() / se if se > 0 else np.nan,
                    "df": df,
                }
            )
    frame = pd.DataFrame(cells, columns=["target", "set", "Δ vs baseline", "seed std", "t", "df"])
    m = max(len(frame), 1)
    below_p = pd.Series(student_t.cdf(frame["t"].astype(float), frame["df"].clip(lower=1)), index=frame.index)
    frame["p (one-sided, below)"] = below_p.where(frame["df"] > 0)  # NaN: one seed, no noise estimate
    frame["p (one-sided, above)"] = 1 - frame["p (one-sided, below)"]
    frame["clearly below"] = frame["p (one-sided, below)"] < ALPHA / m
    below = frame[frame["Δ vs baseline"] < 0]
    clear = below[below["clearly below"]]
    n_seeds = int(wide.groupby(level="target").size().min())
    if not below.empty:
        result = HOLDS if len(clear) else SAME_DIRECTION
    else:
        result = DOES_NOT_HOLD if (frame["p (one-sided, above)"] < ALPHA / m).all() else OPPOSITE_DIRECTION
    worst = below.loc[below["Δ vs baseline"].idxmin()] if len(below) else None
    evidence = (
        f"{len(below)} of {len(frame)} (target, set) cells are below the baseline on average over "
        f"{n_seeds} seeds; {len(clear)} clearly (one-sided t-test with the target's pooled seed variance, "
        f"Bonferroni over {m} cells)"
        + (
            f"; the largest drop: '{worst['set']}' on {worst['target']}, "
            f"{worst['Δ vs baseline']:+.3f} (seed std {worst['seed std']:.3f})"
            if worst is not None
            else ""
        )
        + "."
    )
    table = below.sort_values("Δ vs baseline")[
        ["target", "set", "Δ vs baseline", "seed std", "p (one-sided, below)", "clearly below"]
    ]
    return Finding(claim, PADMAKUMAR, result, evidence, table.round(4).set_index(["target", "set"]))


# -- scaling (Muppet §5.1) -------------------------------------------------------------------------
RECIPES = "Kendall et al. 2018; Chen et al. 2018; Guo et al. 2018; Yu et al. 2020; Quinton & Rey 2024"


def recipe_findings(results: pd.DataFrame, families: dict[str, str], *, split: str = "test") -> Finding | None:
    """Each recipe arm against the same pool under the study's own recipe, and against grouping.

    The reference is the combination of every group (the whole pool, default recipe); grouping is
    each target's own-family group where families are known. Paired over target × seed; the
    verdict is the best arm's, with its p multiplied by the number of arms (Bonferroni).
    None when the study has no arms.
    """
    if "arm" not in results.columns or not results["arm"].fillna("").ne("").any():
        return None
    results = largest_fraction(results)
    claim = "(d) another recipe for the whole pool (loss weighting, gradient surgery) beats the default recipe"
    wide = signed_wide(results, ["target", "seed"], split)
    arms = list(dict.fromkeys(results.loc[results["arm"].fillna("").ne(""), "label"]))
    plain = results[results["arm"].fillna("").eq("")]
    _, everything = group_labels(plain)
    if everything is None or everything not in wide.columns:
        return Finding(claim, RECIPES, NOT_MEASURED, "the study has no combination of all groups to compare with")
    own = own_groups(plain, families)
    grouping = pd.Series([wide.loc[(t, s), own[t]] if t in own else np.nan for t, s in wide.index], index=wide.index)
    rows, tests = [], {}
    for arm in arms:
        tests[arm] = test = paired_test(wide[arm] - wide[everything])
        vs_group = paired_test(wide[arm] - grouping)
        rows.append(
            {
                "arm": arm,
                "Δ vs baseline": (wide[arm] - wide[BASELINE]).mean() if BASELINE in wide else np.nan,
                f"Δ vs {everything}": test.mean,
                "std": test.std,
                "p": test.p,
                "Δ vs own-family group": vs_group.mean,
                "p (vs group)": vs_group.p,
            }
        )
    best = max(tests, key=lambda a: tests[a].mean)
    bonferroni = None if tests[best].p is None else min(1.0, tests[best].p * len(tests))
    adjusted = PairedTest(tests[best].n, tests[best].mean, tests[best].std, bonferroni)
    evidence = (
        f"against '{everything}' under the default recipe, the best arm '{best}': {adjusted.describe()} "
        f"(Bonferroni over {len(tests)} arms); " + ", ".join(f"{a} {t.mean:+.3f}" for a, t in tests.items()) + "."
    )
    if own:
        evidence += (
            " Against each target's own-family group (grouping): "
            + ", ".join(f"{r['arm']} {r['Δ vs own-family group']:+.3f}" for r in rows)
            + "."
        )
    table = pd.DataFrame(rows).set_index("arm").round(4)
    return Finding(claim, RECIPES, verdict(adjusted), evidence, table)
