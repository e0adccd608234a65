"""Plain reading of a validation study: are the gains measurable, and does any estimator predict them?

Inputs are the study's tables (``tables/noise_ceiling.csv``, ``tables/agreement.csv``,
``tables/arms.csv``); the output is a list of sentences generated from their numbers, so
the report can never claim more than the tables show.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ALPHA = 0.05  # one-sided permutation test of within-target agreement


def _fmt(value, digits: int = 2) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def validation_reading(
    agreement: pd.DataFrame | None,
    noise: dict | None,
    arms: pd.DataFrame | None = None,
    differences: pd.DataFrame | None = None,
    group_predictors: pd.DataFrame | None = None,
    draws_same_training: bool | None = None,
) -> list[str]:
    """Sentences: the gains' noise ceiling, which estimators beat chance against it, their agreement over
    draws of probe examples (``probe_draws``; ``draws_same_training`` from ``summary.json``), whether the
    best one is better than the others beyond noise, what they cost, the arms, and how well pairs and
    surrogates predict the sampled groups' gains (``tables/group_gain_predictors.csv``)."""
    lines = []
    if noise:
        ceiling = noise.get("within_target_ceiling", np.nan)
        lines.append(
            f"Noise ceiling: over {int(noise.get('seeds', 0))} seeds, the measured gains agree with themselves at "
            f"Spearman {_fmt(noise.get('within_target_seed_pair_spearman'))} within target between two seeds "
            f"({_fmt(noise.get('seed_pair_spearman'))} pooled), a reliability of "
            f"{_fmt(noise.get('within_target_reliability'))} for the seed average (Spearman–Brown): no predictor can "
            f"rank a target's sources better than ρ ≈ {_fmt(ceiling)} against these gains."
        )
        if not np.isfinite(ceiling) or ceiling < 0.3:
            lines.append(
                "The gains are mostly noise at this budget (ceiling below 0.3): agreement numbers below "
                "cannot show that any estimator predicts transfer; more seeds or larger test sets would."
            )
    if agreement is not None and not agreement.empty and "within_target" in agreement:
        ranked = agreement.assign(_rank=ranking_key(agreement)).sort_values(
            "_rank", ascending=False, na_position="last"
        )
        beating = ranked[ranked["within_p"] < ALPHA]
        best = ranked.iloc[0]
        drawn = int(best.get("draws", 1) or 1) > 1
        lines.append(
            "Best within-target agreement"
            + (
                f" over {int(best['draws'])} draws of probe examples: {best['estimator']} (mean ρ = "
                f"{_fmt(best['within_target_draws_mean'])} ± {_fmt(best['within_target_draws_sd'])}; the affinity "
                "run's own draw "
                if drawn
                else f": {best['estimator']} ("
            )
            + f"ρ = {_fmt(best['within_target'])}, "
            f"CI [{_fmt(best['within_ci_low'])}, {_fmt(best['within_ci_high'])}], permutation p = "
            f"{_fmt(best['within_p'], 3)}; pooled ρ = {_fmt(best['spearman'])})."
        )
        own = " in the affinity run's own draw" if drawn else ""
        if beating.empty:
            lines.append(f"No estimator ranks sources better than chance{own} (every permutation p ≥ {ALPHA}).")
        else:
            lines.append(
                f"Better than chance{own} (p < 0.05): "
                + ", ".join(
                    f"{row.estimator} (ρ = {_fmt(row.within_target)}, "
                    f"{_fmt(row.within_target / row.within_ceiling, 1)}× the ceiling)"
                    if np.isfinite(row.within_ceiling) and row.within_ceiling > 0
                    else row.estimator
                    for row in beating.itertuples()
                )
                + "."
            )
        lines.extend(_draws(ranked, draws_same_training))
        inverse = ranked[ranked["within_ci_high"] < 0]["estimator"].tolist()
        if inverse:
            lines.append(f"Ranking sources inversely (interval below 0): {', '.join(inverse)}.")
        if "overhead" in ranked and ranked["overhead"].notna().any():
            lines.append(
                "Cost, × the same training steps without recorders: "
                + ", ".join(
                    f"{row.estimator} {row.overhead:.2f}×" for row in ranked.itertuples() if np.isfinite(row.overhead)
                )
                + " (estimators of one recorder share its cost)."
            )
    lines.extend(_differences(differences))
    if arms is not None and not arms.empty:
        parts = [
            f"{row.arm} {row.mean_gain_over_single:+.3f} ± {_fmt(row.se, 3)}"
            for row in arms.itertuples()
            if row.arm != "single"
        ]
        if parts:
            lines.append(
                "Grouping arms, mean gain over single-task models (± standard error over seeds): "
                + "; ".join(parts)
                + "."
            )
        lines.extend(_against_random(arms))
    lines.extend(_group_gains(group_predictors))
    return lines


def ranking_key(agreement: pd.DataFrame) -> pd.Series:
    """What ranks estimators: within-target ρ averaged over the draws of probe examples where there are
    several (one draw's ρ is the noisy quantity the draws measure), else the affinity run's own."""
    if "within_target_draws_mean" not in agreement:
        return agreement["within_target"]
    return agreement["within_target_draws_mean"].where(agreement["draws"] > 1, agreement["within_target"])


def _draws(ranked: pd.DataFrame, same_training: bool | None = None) -> list[str]:
    """Within-target agreement over the held-out draws of the same training (``probe_draws``);
    ``same_training`` False: the draws' training did not match the affinity run's (summary.json)."""
    if "draws" not in ranked:
        return []
    drawn = ranked[ranked["draws"] > 1]
    if drawn.empty:
        return []

    def one(row) -> str:
        text = (
            f"{row.estimator} ρ = {_fmt(row.within_target_draws_mean)} ± {_fmt(row.within_target_draws_sd)} "
            f"({_fmt(row.within_target_draws_min)} to {_fmt(row.within_target_draws_max)}"
        )
        if "draws_reliability" in drawn:
            text += f"; between draws {_fmt(row.draws_reliability)}"
        if "mean_of_draws_within_target" in drawn:
            text += (
                f"; their mean matrix {_fmt(row.mean_of_draws_within_target)} [{_fmt(row.mean_of_draws_ci_low)}, "
                f"{_fmt(row.mean_of_draws_ci_high)}], p = {_fmt(row.mean_of_draws_p, 3)}"
            )
        return text + ")"

    n = int(drawn["draws"].max())
    training = {
        True: "the same training",
        False: "WARNING: the draws' second training did not match the affinity run's (summary.json, "
        "draws_max_loss_difference), so the spread mixes training noise with the draw of examples",
        None: "their training not checked against the affinity run's",
    }[same_training]
    return [
        f"Over {n} draws of probe examples from the same pool ({training}), within-target agreement as mean ± "
        "standard deviation (min to max; the within-target Spearman between draws: how far one draw's matrix "
        "replicates when the probes draw other examples of the pool, or the same ones in another split and "
        "order; the agreement of the matrix averaged over the draws): "
        + "; ".join(one(row) for row in drawn.sort_values("within_target_draws_mean", ascending=False).itertuples())
        + ". Streamed estimators read the training batches: one draw each."
    ]


def _group_gains(table: pd.DataFrame | None) -> list[str]:
    """How well each kind of predictor ranks members' measured gains in the sampled groups."""
    if table is None or table.empty:
        return []

    first = table.iloc[0]

    def best(rows: pd.DataFrame) -> str:
        row = rows.sort_values("within_target", ascending=False, na_position="last").iloc[0]
        text = f"{row['predictor']} ρ = {_fmt(row['within_target'])} [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
        if row["n_targets"] != first["n_targets"]:  # a predictor that scored fewer targets says so
            text += f" over {_fmt(row['n_targets'], 0)} targets"
        return text

    parts = []
    pairs = table[table["predictor"] == "measured_pairs"]
    if not pairs.empty:
        parts.append("TAG's mean of the measured pair gains " + best(pairs).split(" ", 1)[1])
    estimators = table[(table["kind"] == "mean_of_pairs") & (table["predictor"] != "measured_pairs")]
    if not estimators.empty:
        parts.append("best mean of an affinity estimator's pairs: " + best(estimators))
    surrogates = table[table["kind"] == "surrogate"]
    if not surrogates.empty:
        parts.append("best surrogate (out of fold): " + best(surrogates))
    return [
        f"Group gains ({_fmt(first['n_groups'], 0)} sampled groups, {_fmt(first['seeds'], 0)} seeds; within-target "
        f"Spearman against members' measured gains, 95 % CI over {_fmt(first['n_targets'], 0)} targets; ceiling "
        f"ρ ≈ {_fmt(first['within_target_ceiling'])}): " + "; ".join(parts) + "."
    ]


def _differences(differences: pd.DataFrame | None) -> list[str]:
    """Is the best estimator better than the others beyond the targets' noise (paired bootstrap)?"""
    if differences is None or differences.empty:
        return []
    best = differences["versus"].iloc[0]
    others = differences[differences["estimator"] != best]
    worse = others[others["excludes_zero"].astype(bool)]["estimator"].tolist()
    tied = others[~others["excludes_zero"].astype(bool)]["estimator"].tolist()
    drawn = "draws" in differences and differences["draws"].max() > 1
    averaged = ", each estimator's ρ averaged over its held-out draws" if drawn else ""
    line = (
        f"Paired over {int(differences['n_targets'].max())} targets (bootstrap CI of the difference in "
        f"within-target ρ{averaged}): {best} is "
    )
    if not tied:
        return [line + "better than every other estimator beyond noise."]
    return [
        line + f"not distinguishable from {', '.join(tied)}" + (f"; better than {', '.join(worse)}." if worse else ".")
    ]


def _against_random(arms: pd.DataFrame) -> list[str]:
    """Did the tool's grouping beat random groupings of the same sizes, and could pair knowledge (the
    oracle) or a surrogate of measured subsets?"""
    if "vs_random" not in arms:
        return []
    lines = []
    who = {
        "chosen": "The tool's grouping",
        "oracle": "The oracle grouping (solved from the measured pair gains)",
        "surrogate": "The surrogate grouping (fitted to the measured pair and sampled-group gains)",
    }
    who.update({f"{arm}_leave_alone": f"{name}, with training alone as an option," for arm, name in who.items()})
    for arm, name in who.items():
        row = arms[arms["arm"] == arm]
        if row.empty or not np.isfinite(row["vs_random"].iloc[0]):
            continue
        row = row.iloc[0]
        p = row["p_vs_random"]
        significant = p is not None and np.isfinite(p) and p < ALPHA
        if round(row["vs_random"], 3) == 0:  # the sign of a rounded 0 says nothing; the test may still
            outcome = "differed from random groupings" if significant else "did not differ from random groupings"
        elif row["vs_random"] > 0:
            outcome = "beat random groupings" if significant else "did not clearly beat random groupings"
        else:
            outcome = "did worse than random groupings" if significant else "did not beat random groupings"
        alone = row["p_vs_single"]
        lines.append(
            f"{name} {outcome}: {row['vs_random']:+.3f} ± {_fmt(row['vs_random_se'], 3)} (standard error over seeds) "
            f"against their mean, paired over {int(row['n_paired'])} task × seed pairs, Wilcoxon p = {_fmt(p, 3)}; "
            f"against training every task alone {row['mean_gain_over_single']:+.3f} (p = {_fmt(alone, 3)})."
        )
    if any(arm.startswith(("oracle", "surrogate")) for arm in arms["arm"]):
        lines.append(
            "The oracle and surrogate groupings are solved from this study's own measured gains at the same seeds "
            "(a pair group is the very run it was chosen from), so their numbers are optimistic, in-sample bounds; "
            "the tool's grouping is solved from the affinity run alone."
        )
    return lines
