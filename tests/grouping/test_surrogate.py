"""Surrogates of group gains: known answers, held-out accuracy, input checks."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from taskaffinity.grouping import GroupingError
from taskaffinity.grouping._base import group_scores, member_scores
from taskaffinity.grouping.gain_accuracy import held_out_accuracy, prediction_accuracy
from taskaffinity.grouping.subsets import tidy_to_subsets
from taskaffinity.grouping.surrogate import KernelSurrogate, LinearSurrogate, make_surrogate


def random_subsets(rng, n: int, m: int, sizes=(3, 4, 5, 6)) -> np.ndarray:
    M = np.zeros((m, n), dtype=bool)
    for row, size in zip(M, rng.choice(sizes, m)):
        row[rng.choice(n, size, replace=False)] = True
    return M


def interaction_world(seed: int, n: int = 8, m: int = 240, pair_weight: float = 0.3, noise: float = 0.05):
    """Member gains = pair_weight x mean of pair effects + an interaction among the mates + noise.

    The interaction of target t with mates a, b is Q[t, a, b] (standard normal), averaged over
    the mates: it dominates the pairwise part, which TAG's mean of pairs alone can see."""
    rng = np.random.default_rng(seed)
    P = rng.normal(0, 1, (n, n))
    np.fill_diagonal(P, 0)
    Q = rng.normal(0, 1, (n, n, n))
    Q = (Q + Q.transpose(0, 2, 1)) / 2
    M = random_subsets(rng, n, m)
    G = np.full(M.shape, np.nan)
    for r, row in enumerate(M):
        idx = np.flatnonzero(row)
        for t in idx:
            mates = [s for s in idx if s != t]
            interaction = sum(Q[t, a, b] for a, b in itertools.combinations(mates, 2)) / len(mates)
            G[r, t] = pair_weight * P[mates, t].mean() + interaction + rng.normal(0, noise)
    return P, M, G


TASKS8 = [f"t{i}" for i in range(8)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_surrogate_recovers_interactions_that_pair_averages_miss(seed):
    P, M, G = interaction_world(seed)
    train, test = slice(0, 160), slice(160, None)
    pairs = prediction_accuracy(member_scores(P, M[test]), G[test], M[test], TASKS8, n_boot=0)
    kernel = KernelSurrogate(tasks=TASKS8).fit(M[train].astype(int), G[train])
    linear = LinearSurrogate(tasks=TASKS8).fit(M[train].astype(int), G[train])
    k_acc = held_out_accuracy(kernel, M[test].astype(int), G[test], n_boot=200)
    l_acc = held_out_accuracy(linear, M[test].astype(int), G[test], n_boot=0)
    # the true pairs, averaged as TAG does, see only the minor pairwise term
    assert k_acc["within_target_spearman"] > 0.9
    assert k_acc["within_target_spearman"] - pairs["within_target_spearman"] > 0.3
    assert l_acc["within_target_spearman"] > pairs["within_target_spearman"]
    assert k_acc["within_target_ci"][0] < k_acc["within_target_spearman"] < k_acc["within_target_ci"][1]
    assert k_acc["relative_error"] < 0.2 and k_acc["n_targets"] == 8


def test_pairwise_additive_truth_linear_surrogate_matches_mean_of_pairs():
    """Groups of one size: TAG's mean of pairs is the additive model, and the linear surrogate,
    fitted on subsets only, ranks held-out groups as well as the true pairs do."""
    rng = np.random.default_rng(4)
    n = 10
    tasks = [f"t{i}" for i in range(n)]
    P = rng.normal(0, 1, (n, n))
    np.fill_diagonal(P, 0)
    M = np.array([[t in c for t in range(n)] for c in itertools.combinations(range(n), 4)])
    M = M[rng.permutation(len(M))]
    G = member_scores(P, M) + np.where(M, rng.normal(0, 0.05, M.shape), np.nan)
    train, test = slice(0, 150), slice(150, None)
    linear = LinearSurrogate(tasks=tasks).fit(M[train].astype(int), G[train])
    surrogate = held_out_accuracy(linear, M[test].astype(int), G[test], n_boot=0)["within_target_spearman"]
    pairs = prediction_accuracy(member_scores(P, M[test]), G[test], M[test], tasks, n_boot=0)["within_target_spearman"]
    assert pairs > 0.95 and abs(surrogate - pairs) < 0.03
    # theta recovers the pair effects scaled by the mean's 1/(size - 1) = 1/3, up to a per-target
    # constant (with one group size, a shift of every theta[:, t] trades against the intercept)
    for t in range(n):
        sources = [s for s in range(n) if s != t]
        theta, truth = linear.coef_.iloc[sources, t].to_numpy(), P[sources, t] / 3
        np.testing.assert_allclose(theta - theta.mean(), truth - truth.mean(), atol=0.05)


def test_source_effects_of_a_linear_surrogate_are_its_coefficients():
    P, M, G = interaction_world(0)
    linear = LinearSurrogate(tasks=TASKS8).fit(M.astype(int), G)
    effects = linear.source_effects("t3")
    pd.testing.assert_series_equal(
        effects, linear.coef_["t3"].drop("t3").rename_axis("source"), check_names=False, atol=1e-10
    )
    kernel = KernelSurrogate(tasks=TASKS8).fit(M.astype(int), G)
    assert list(kernel.source_effects("t3").index) == [t for t in TASKS8 if t != "t3"]


def test_predict_forms_members_and_singletons():
    P, M, G = interaction_world(1)
    frame = pd.DataFrame(M.astype(int), columns=TASKS8)
    gains = pd.DataFrame(G, columns=TASKS8)
    model = LinearSurrogate().fit(frame, gains)
    assert model.tasks_ == TASKS8 and model.targets_ == TASKS8
    by_frame = model.predict(frame.iloc[:5])
    assert isinstance(by_frame, pd.DataFrame) and list(by_frame.columns) == TASKS8
    by_names = model.predict([[t for t, x in zip(TASKS8, row) if x] for row in M[:5]])
    np.testing.assert_allclose(by_frame.to_numpy(), by_names, equal_nan=True)
    assert np.isnan(by_names[~M[:5]]).all() and np.isfinite(by_names[M[:5]]).all()
    alone = model.predict(["t2", "t0+t5"])
    assert alone[0, 2] == 0.0 and np.isfinite(alone[1, [0, 5]]).all()  # a group of one gains 0 by definition
    # columns in another order are aligned; the estimator clones like any scikit-learn one
    shuffled = frame[TASKS8[::-1]]
    np.testing.assert_allclose(model.predict(shuffled).to_numpy(), model.predict(frame).to_numpy(), equal_nan=True)
    assert clone(make_surrogate("kernel", cv=3)).get_params()["cv"] == 3


def test_member_scores_is_the_tag_group_score():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(5, 5))
    np.fill_diagonal(A, 0)
    M = random_subsets(rng, 5, 20, sizes=(1, 2, 3, 5))
    scores = member_scores(A, M, singleton_score=-1.0)
    for row, got in zip(M, scores):
        idx = np.flatnonzero(row)
        np.testing.assert_allclose(got[idx], group_scores(A, idx, -1.0))
        assert np.isnan(got[~row]).all()


def test_tidy_frame_of_seeds_becomes_subset_rows():
    tidy = pd.DataFrame(
        {
            "group": ["a+b+c"] * 6 + [("b", "d", "c")] * 3,
            "target": ["a", "b", "c"] * 2 + ["b", "c", "d"],
            "seed": [0, 0, 0, 1, 1, 1, 0, 0, 0],
            "gain": [1.0, 2.0, 3.0, 3.0, 4.0, 5.0, 0.5, 0.25, 0.0],
        }
    )
    subsets, gains = tidy_to_subsets(tidy)
    assert list(subsets.index) == ["a+b+c", "b+c+d"] and list(subsets.columns) == ["a", "b", "c", "d"]
    assert subsets.loc["b+c+d"].tolist() == [0, 1, 1, 1]
    assert gains.loc["a+b+c", "a"] == 2.0 and np.isnan(gains.loc["a+b+c", "d"])  # mean over seeds
    with pytest.raises(GroupingError, match="target d is not a member"):
        tidy_to_subsets(tidy.assign(target=["d"] * 9))


def test_too_few_subsets_leave_a_target_without_a_model():
    M = np.array([[1, 1, 0], [1, 0, 1], [1, 1, 1], [1, 1, 0]])
    G = np.where(M == 1, np.arange(12.0).reshape(4, 3), np.nan)
    model = LinearSurrogate(tasks=["a", "b", "c"], min_subsets=4).fit(M, G)
    assert model.targets_ == ["a"] and model.n_subsets_ == {"a": 4, "b": 3, "c": 2}
    predicted = model.predict(np.array([[1, 1, 1]]))
    assert np.isfinite(predicted[0, 0]) and np.isnan(predicted[0, 1:]).all()
    with pytest.raises(GroupingError, match="has no model: 3 measured subsets < min_subsets = 4"):
        model.source_effects("b")


@pytest.mark.parametrize(
    "kwargs, fit_args, match",
    [
        ({}, (np.array([[1, 2], [0, 1]]), np.zeros((2, 2))), "subsets entries must be 0 or 1"),
        ({}, (np.array([[1, 1], [0, 0]]), np.zeros((2, 2))), r"subsets row\(s\) \[1\] hold no task"),
        ({}, (np.ones(3), np.zeros(3)), "subsets must be 2-D"),
        ({"tasks": ["a", "b"]}, ([["a", "z"]], np.zeros((1, 2))), "subsets name unknown task"),
        ({"tasks": ["a", "a"]}, (np.ones((2, 2)), np.zeros((2, 2))), "tasks: duplicate task name"),
        ({}, (np.ones((3, 2)), np.zeros((2, 2))), r"gains must have shape \(3, 2\)"),
        ({}, (np.ones((3, 2)), np.array([[0, np.inf], [0, 0], [0, 0]])), "gains has an infinite member gain"),
        ({}, (np.ones((2, 2)), np.zeros((2, 2))), "min_subsets = 3"),
        ({"min_subsets": 1}, (np.ones((3, 2)), np.zeros((3, 2))), "min_subsets must be an integer >= 2"),
        ({"alphas": [0.1, -1]}, (np.ones((4, 2)), np.zeros((4, 2))), "alphas must be a sequence of positive numbers"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, fit_args, match):
    with pytest.raises(GroupingError, match=match):
        LinearSurrogate(**kwargs).fit(*fit_args)


def test_kernel_settings_and_unfitted_use_are_refused():
    M, G = np.ones((4, 2)), np.zeros((4, 2))
    for kwargs, match in (({"gammas": []}, "gammas must be"), ({"cv": 1}, "cv must be an integer >= 2")):
        with pytest.raises(GroupingError, match=match):
            KernelSurrogate(**kwargs).fit(M, G)
    with pytest.raises(GroupingError, match="not fitted"):
        KernelSurrogate().predict(M)
    with pytest.raises(GroupingError, match="unknown surrogate"):
        make_surrogate("mlp")
    with pytest.raises(GroupingError, match="unknown target task 'z'"):
        LinearSurrogate().fit(np.ones((4, 2)), np.arange(8.0).reshape(4, 2)).source_effects("z")
