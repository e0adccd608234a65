"""Group-gain predictors compared within target, against the seed-split ceiling."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from taskaffinity.grouping import GroupingError, KernelSurrogate, LinearSurrogate
from taskaffinity.study.group_gains import compare_group_predictors, cross_validated_gains

TASKS = [f"t{i}" for i in range(7)]


def group_world(seed: int = 0, noise: float = 0.02, seeds=(0, 1, 2), interaction: float = 0.0):
    """Every group of 3 or 4 of 7 tasks; a member's gain is the mean of its mates' pair effects
    (plus ``interaction`` x a pure interaction term), plus per-seed noise."""
    rng = np.random.default_rng(seed)
    n = len(TASKS)
    P = rng.normal(0, 1, (n, n))
    np.fill_diagonal(P, 0.0)
    Q = rng.normal(0, 1, (n, n, n))
    rows = []
    for size in (3, 4):
        for group in itertools.combinations(range(n), size):
            for t in group:
                mates = [s for s in group if s != t]
                truth = P[mates, t].mean() + interaction * np.mean(
                    [Q[t, a, b] for a, b in itertools.combinations(mates, 2)]
                )
                for s in seeds:
                    rows.append(
                        {
                            "group": "+".join(TASKS[i] for i in group),
                            "target": TASKS[t],
                            "seed": s,
                            "gain": truth + rng.normal(0, noise),
                        }
                    )
    return pd.DataFrame(rows), pd.DataFrame(P, index=TASKS, columns=TASKS)


def test_true_pairs_rank_additive_group_gains_near_the_ceiling():
    gains, P = group_world()
    noise = pd.DataFrame(np.random.default_rng(9).normal(size=P.shape), index=TASKS, columns=TASKS)
    table = compare_group_predictors(
        gains, {"measured_pairs": P, "noise": noise}, surrogates={"linear": LinearSurrogate()}, n_boot=200
    ).set_index("predictor")
    assert table.loc["measured_pairs", "kind"] == "mean_of_pairs" and table.loc["linear", "kind"] == "surrogate"
    assert table.loc["measured_pairs", "within_target"] > 0.95
    assert (
        table.loc["measured_pairs", "ci_low"]
        < table.loc["measured_pairs", "within_target"]
        <= table.loc["measured_pairs", "ci_high"]
    )
    assert abs(table.loc["noise", "within_target"]) < 0.3
    assert table.loc["linear", "within_target"] > 0.8  # cross-validated: mixed sizes break pure additivity
    assert (table["within_target_ceiling"] > 0.95).all() and (table["seeds"] == 3).all()
    assert (table["n_targets"] == 7).all() and (table["n_groups"] == 70).all()


def test_interactions_favour_the_surrogate_and_noise_lowers_the_ceiling():
    gains, P = group_world(interaction=3.0, noise=0.05)
    table = compare_group_predictors(gains, P, surrogates={"kernel": KernelSurrogate(cv=3)}, n_boot=200)
    table = table.set_index("predictor")
    assert table.loc["kernel", "within_target"] > table.loc["pairs", "within_target"] + 0.2
    noisy, _ = group_world(noise=3.0)
    assert compare_group_predictors(noisy, P, n_boot=0)["within_target_ceiling"].iloc[0] < 0.7


def test_surrogate_predictions_are_out_of_fold():
    gains, _ = group_world()
    from taskaffinity.grouping.subsets import tidy_to_subsets

    subsets, measured = tidy_to_subsets(gains)
    fitted = LinearSurrogate().fit(subsets, measured)  # fitted on everything: cloned, so never in-sample
    a = cross_validated_gains(fitted, subsets, measured, folds=5, seed=1)
    b = cross_validated_gains(LinearSurrogate(), subsets, measured, folds=5, seed=1)
    np.testing.assert_allclose(a, b, equal_nan=True)
    assert not np.allclose(np.nan_to_num(a), np.nan_to_num(fitted.predict_members(subsets.to_numpy().astype(bool))))


def test_bad_inputs_name_the_argument():
    gains, P = group_world()
    with pytest.raises(GroupingError, match="gains lacks column"):
        compare_group_predictors(gains.drop(columns="seed"), P)
    with pytest.raises(GroupingError, match="give at least one predictor"):
        compare_group_predictors(gains)
    with pytest.raises(GroupingError, match=r"pairs\['x'\] must be a sources x targets DataFrame"):
        compare_group_predictors(gains, {"x": P.to_numpy()})
    with pytest.raises(GroupingError, match="folds must be an integer >= 2"):
        compare_group_predictors(gains, P, folds=1)


def test_the_study_table_scores_measured_pairs_each_estimator_and_both_surrogates():
    """``group_gain_table``: what a validation study writes (tables/group_gain_predictors.csv). The
    measured pair gains (tidy source, target, gain) of an additive world predict it; an affinity
    estimator equal to those pairs does too, and one of pure noise does not."""
    from taskaffinity.affinity.store import AffinityStore
    from taskaffinity.study.group_gains import group_gain_table

    gains, P = group_world()
    pairs = P.stack().rename_axis(["source", "target"]).rename("gain").reset_index()
    pairs = pairs[pairs["source"] != pairs["target"]]
    noise = np.random.default_rng(3).normal(size=P.shape)
    records = [
        {"step": step, "estimator": name, "source": s, "target": t, "value": float(values[i, j])}
        for step in (10, 20)
        for name, values in (("first_order_sgd", P.to_numpy()), ("stream_cosine", noise))
        for i, s in enumerate(TASKS)
        for j, t in enumerate(TASKS)
    ]
    store = AffinityStore(pd.DataFrame(records), {"tasks": TASKS})
    table = group_gain_table(gains, pairs, store).set_index("predictor")
    assert list(table.index) == [
        "measured_pairs",
        "first_order_sgd",
        "stream_cosine",
        "linear_surrogate",
        "linear_surrogate_with_pairs",
        "kernel_surrogate",
        "kernel_surrogate_with_pairs",
    ]
    assert table.loc["measured_pairs", "within_target"] > 0.95
    assert table.loc["first_order_sgd", "within_target"] == pytest.approx(table.loc["measured_pairs", "within_target"])
    assert abs(table.loc["stream_cosine", "within_target"]) < 0.3
    assert table.loc["linear_surrogate", "within_target"] > 0.8
    assert table.loc["linear_surrogate_with_pairs", "within_target"] > 0.8


def test_pairs_added_to_every_fold_rescue_a_surrogate_of_few_groups():
    """With 12 sampled groups a per-target surrogate has ~6 rows for 6 mates and ranks nothing; the
    21 measured pairs (added to every training fold, never scored) give it each mate's effect."""
    gains, P = group_world(noise=0.01)
    keep = sorted(gains["group"].unique())[::6][:12]
    few = gains[gains["group"].isin(keep)]
    pairs = pd.DataFrame(  # both members of every pair: t's gain from s is P[s, t]
        [{"group": f"{s}+{t}", "target": t, "gain": P.loc[s, t]} for s, t in itertools.permutations(TASKS, 2)]
    )
    table = compare_group_predictors(few, surrogates={"linear": LinearSurrogate()}, train_also=pairs, n_boot=0)
    table = table.set_index("predictor")
    assert (table["n_groups"] == 12).all()  # the pairs are never scored
    assert table.loc["linear_with_pairs", "within_target"] > table.loc["linear", "within_target"] + 0.3
