"""The validation report's sentences come from its tables' numbers and say no more than they show."""

import numpy as np
import pandas as pd

from taskaffinity.report.validation import validation_reading


def arms_table() -> pd.DataFrame:
    rows = [
        ("single", 0.0, np.nan, np.nan, None),
        ("chosen", -0.01, 0.002, 0.004, 0.4),
        ("surrogate", 0.02, 0.025, 0.003, 0.001),
        ("chosen_leave_alone", 0.0, 0.01, 0.002, 0.03),
        ("random1", -0.01, np.nan, np.nan, None),
    ]
    return pd.DataFrame(
        [
            {
                "arm": arm,
                "mean_gain_over_single": gain,
                "se": 0.002,
                "vs_random": vs,
                "vs_random_se": se,
                "p_vs_random": p,
                "p_vs_single": 0.5,
                "n_paired": 24,
            }
            for arm, gain, vs, se, p in rows
        ]
    )


def group_table() -> pd.DataFrame:
    rows = [
        ("measured_pairs", "mean_of_pairs", 0.48, 0.19, 0.73),
        ("first_order_sgd", "mean_of_pairs", -0.13, -0.34, 0.12),
        ("cosine", "mean_of_pairs", 0.01, -0.23, 0.28),
        ("linear_surrogate", "surrogate", -0.22, -0.57, 0.15),
        ("linear_surrogate_with_pairs", "surrogate", 0.47, 0.08, 0.76),
    ]
    return pd.DataFrame(
        [
            {
                "predictor": name,
                "kind": kind,
                "within_target": rho,
                "ci_low": lo,
                "ci_high": hi,
                "n_targets": 8,
                "n_groups": 20,
                "within_target_ceiling": 0.81,
                "seeds": 3,
            }
            for name, kind, rho, lo, hi in rows
        ]
    )


def test_arms_say_which_grouping_beat_random_ones_and_group_gains_name_the_best_of_each_kind():
    lines = validation_reading(None, None, arms_table(), None, group_table())
    text = "\n".join(lines)
    assert "The tool's grouping did not clearly beat random groupings: +0.002" in text
    assert "The surrogate grouping (fitted to the measured pair and sampled-group gains) beat random groupings" in text
    assert "The tool's grouping, with training alone as an option, beat random groupings: +0.010" in text
    assert "optimistic, in-sample bounds" in text
    group = next(line for line in lines if line.startswith("Group gains"))
    assert "20 sampled groups, 3 seeds" in group and "over 8 targets; ceiling ρ ≈ 0.81" in group
    assert "measured pair gains ρ = 0.48 [0.19, 0.73]" in group
    assert "affinity estimator's pairs: cosine ρ = 0.01" in group
    assert "best surrogate (out of fold): linear_surrogate_with_pairs ρ = 0.47 [0.08, 0.76]" in group


def test_a_difference_that_rounds_to_zero_takes_no_direction():
    arms = arms_table()
    arms.loc[arms["arm"] == "surrogate", "vs_random"] = -0.0002
    text = "\n".join(validation_reading(None, None, arms))
    assert "The surrogate grouping (fitted to the measured pair and sampled-group gains) differed from random" in text


def test_no_group_table_no_group_sentence_and_no_in_sample_caveat_without_solved_arms():
    assert not any(line.startswith("Group gains") for line in validation_reading(None, None, arms_table()))
    chosen_only = arms_table()[lambda t: ~t["arm"].isin(["surrogate"])]
    assert not any("in-sample" in line for line in validation_reading(None, None, chosen_only))


def test_with_draws_the_best_estimator_is_read_over_the_draws_and_the_training_check_is_said():
    """The estimator best in the affinity run's own draw (cosine 0.23) is not the best over 3 draws
    (first_order_sgd 0.30): the headline reads the draws, as the paired comparison does."""
    from pathlib import Path

    tables = Path(__file__).parents[2] / "reports" / "validation_b" / "tables"
    agreement = pd.read_csv(tables / "agreement.csv")
    differences = pd.read_csv(tables / "estimator_differences.csv")
    for same, said in ((True, "the same training"), (False, "WARNING"), (None, "not checked")):
        text = " ".join(validation_reading(agreement, None, differences=differences, draws_same_training=same))
        assert said in text
    assert "Best within-target agreement over 3 draws of probe examples: first_order_sgd (mean ρ = 0.30" in text
    assert "in the affinity run's own draw (every permutation p ≥ 0.05)" in text
    assert "first_order_sgd is not distinguishable from" in text
