"""Reliability of run-averaged matrices: known answers for split halves, Spearman-Brown, effect shares."""

import itertools

import numpy as np
import pandas as pd
import pytest

from taskaffinity.affinity.fidelity import fidelity
from taskaffinity.affinity.reliability import (
    STREAM_CAVEAT,
    effect_shares,
    estimator_reliability,
    sample_matrices,
    split_half,
)
from taskaffinity.affinity.store import AffinityStore
from taskaffinity.stats import ceiling, samples_needed, spearman_brown, verdict

TASKS = [f"t{i}" for i in range(6)]


def store_of(signal: np.ndarray, noise: float, samples: int = 20, seed: int = 0, name: str = "x") -> AffinityStore:
    """Every sample = signal + independent Gaussian noise of sd ``noise``."""
    rng = np.random.default_rng(seed)
    rows = [
        {"step": step, "estimator": name, "source": s, "target": t, "value": signal[i, j] + rng.normal(0, noise)}
        for step in range(1, samples + 1)
        for (i, s), (j, t) in itertools.product(enumerate(TASKS), repeat=2)
    ]
    return AffinityStore(pd.DataFrame(rows), {"tasks": TASKS})


SIGNAL = np.random.default_rng(42).normal(size=(6, 6))


def test_spearman_brown_and_prophecy_by_hand():
    assert spearman_brown(0.5) == pytest.approx(2 * 0.5 / 1.5)
    assert spearman_brown(0.5, factor=4) == pytest.approx(4 * 0.5 / (1 + 3 * 0.5))
    # 0.9 from 0.6 over 10 samples: 10 * 0.9 * 0.4 / (0.6 * 0.1) = 60
    assert samples_needed(0.6, 10) == pytest.approx(60.0)
    assert samples_needed(0.95, 10) == 10 and samples_needed(-0.1, 10) is None
    assert ceiling(0.64, 0.81) == pytest.approx(0.72) and ceiling(-0.2, 0.9) == 0.0
    assert [verdict(v) for v in (0.95, 0.8, 0.6, 0.1)] == ["excellent", "good", "moderate", "mostly noise"]


def test_sample_matrices_place_every_value():
    store = store_of(SIGNAL, 0.0, samples=3)
    tasks, cube = sample_matrices(store, "x")
    assert tasks == TASKS and cube.shape == (3, 6, 6)
    np.testing.assert_allclose(cube[1], SIGNAL)


def test_pure_signal_is_perfectly_reliable_and_pure_noise_is_not():
    clean = split_half(sample_matrices(store_of(SIGNAL, 0.01), "x")[1])
    assert clean["reliability"] > 0.99 and clean["within_target_reliability"] > 0.99
    noise = split_half(sample_matrices(store_of(np.zeros((6, 6)), 1.0), "x")[1])
    assert abs(noise["split_half"]) < 0.15 and abs(noise["within_target_split_half"]) < 0.15


def test_reliability_grows_with_samples_as_spearman_brown_predicts():
    """Quadrupling the samples of a moderately noisy estimator: the prophecy from the small run
    (ρ_4k = 4ρ/(1+3ρ)) matches what the large run measures."""
    small, large = [], []
    for seed in range(6):
        small.append(split_half(sample_matrices(store_of(SIGNAL, 3.0, samples=8, seed=seed), "x")[1])["reliability"])
        large.append(split_half(sample_matrices(store_of(SIGNAL, 3.0, samples=32, seed=seed), "x")[1])["reliability"])
    predicted = spearman_brown(float(np.mean(small)), factor=4)
    assert np.mean(small) < 0.8
    assert np.mean(large) == pytest.approx(predicted, abs=0.1)


def test_effect_shares_separate_target_offsets_from_pair_structure():
    offsets = np.tile(np.arange(6.0), (6, 1))  # A_ij = j: a term every source shares
    shares = effect_shares(offsets)
    assert shares["target_share"] == pytest.approx(1.0) and shares["additive_share"] == pytest.approx(1.0)
    assert shares["source_share"] < 0.1
    pairs = effect_shares(SIGNAL)
    assert pairs["additive_share"] < 0.6  # a random matrix is mostly pair-specific


def test_target_offsets_make_a_matrix_reliable_pooled_but_not_within_target():
    """The optimizer rule's trap: a large per-target term common to all sources is reliable
    pooled, yet says nothing about how a target ranks its sources."""
    offsets = np.tile(np.arange(6.0) * 3, (6, 1))
    result = split_half(sample_matrices(store_of(offsets, 1.0), "x")[1])
    assert result["reliability"] > 0.9 and abs(result["within_target_split_half"]) < 0.2


def test_estimator_reliability_and_fidelity_ceiling():
    store = store_of(SIGNAL, 0.5)
    other = store_of(SIGNAL, 0.5, seed=1, name="y")
    both = AffinityStore(pd.concat([store.records, other.records]), {"tasks": TASKS})
    summary = both.summary("x", n_boot=200)
    values = estimator_reliability(both, "x", summary=summary)
    assert values["samples"] == 20 and 0.5 < values["significant_share"] <= 1.0
    assert values["samples_for_0.9"] <= 20
    reliability = {e: estimator_reliability(both, e) for e in ("x", "y")}
    report = fidelity(both, pairs=[("x", "y")], reliability=reliability)["x vs y"]
    expected = np.sqrt(reliability["x"]["reliability"] * reliability["y"]["reliability"])
    assert report["ceiling"] == pytest.approx(expected)
    assert report["run_average"]["spearman"] <= report["ceiling"] + 0.05


def test_bootstrap_matrices_resample_probes_jointly():
    """With per-step values that are equal across pairs, a joint resample keeps them equal."""
    rows = [
        {"step": step, "estimator": "x", "source": s, "target": t, "value": float(step)}
        for step in range(1, 11)
        for s, t in itertools.product(TASKS[:3], repeat=2)
    ]
    store = AffinityStore(pd.DataFrame(rows), {"tasks": TASKS[:3]})
    matrices = list(store.bootstrap_matrices("x", n_boot=20, seed=3))
    assert len(matrices) == 20
    for matrix in matrices:
        assert list(matrix.index) == TASKS[:3] and np.ptp(matrix.to_numpy()) == pytest.approx(0.0)
    assert np.std([m.iloc[0, 0] for m in matrices]) > 0  # the resamples differ


def test_early_late_flags_a_matrix_that_changes_during_training():
    """Random halves interleave in time (sampling noise only); early vs late sees the drift."""
    other = np.random.default_rng(3).normal(size=(6, 6))
    early, late = store_of(SIGNAL, 0.05, samples=10), store_of(other, 0.05, samples=10, seed=1)
    records = pd.concat([early.records, late.records.assign(step=late.records["step"] + 10)])
    result = split_half(sample_matrices(AffinityStore(records, {"tasks": TASKS}), "x")[1])
    assert result["within_target_reliability"] > 0.8
    assert result["early_late"] == pytest.approx(within_target(SIGNAL, other), abs=0.1)
    steady = split_half(sample_matrices(store_of(SIGNAL, 0.05), "x")[1])
    assert steady["early_late"] > 0.95


def within_target(a, b):
    from taskaffinity.affinity.reliability import within_target_spearman

    return within_target_spearman(a, b)


def test_consecutive_probes_draw_from_disjoint_halves_of_the_pool():
    from taskaffinity.affinity.probe import LookaheadRecorder

    recorder = LookaheadRecorder(every=5, batch_size=8)
    first, second, third = (recorder.pool_half(11, 0, step) for step in (20, 25, 30))
    assert not set(first) & set(second)  # no example in both halves
    assert sorted(set(first) | set(second)) == list(range(11))  # together: the whole pool
    assert np.array_equal(first, third)  # every other probe: the same half
    assert not np.array_equal(first, recorder.pool_half(11, 1, 20))  # each task its own split


def test_pool_halves_split_shared_example_noise_that_random_halves_miss():
    """Probes of one small pool share its examples: a noise term fixed per half of the pool
    (the examples' own idiosyncrasy) replicates across random halves of probes but not across
    the two disjoint pool halves, so only the pool split sees it."""
    rng = np.random.default_rng(0)
    half_noise = rng.normal(0, 1.0, size=(2, 6, 6))  # one fixed draw per pool half, no signal
    cube = np.stack([half_noise[k % 2] + rng.normal(0, 0.05, size=(6, 6)) for k in range(20)])
    halves = np.arange(20) % 2 == 0
    random_halves = split_half(cube)
    by_pool = split_half(cube, halves=halves)
    assert random_halves["within_target_reliability"] > 0.75  # looks reliable ("good")
    assert verdict(by_pool["within_target_reliability"]) == "mostly noise"  # it is not: new examples disagree
    rows = [
        {"step": 20 + 5 * k, "estimator": "gram", "source": s, "target": t, "value": cube[k, i, j]}
        for k in range(20)
        for (i, s), (j, t) in itertools.product(enumerate(TASKS), repeat=2)
    ]
    store = AffinityStore(pd.DataFrame(rows), {"tasks": TASKS, "probe_every": 5, "probe_pool_halves": True})
    assert estimator_reliability(store, "gram")["within_target_reliability"] == pytest.approx(
        by_pool["within_target_reliability"]
    )


def test_rounding_residue_reads_as_zero_and_a_moot_prophecy_as_not_reachable():
    """A within-target reliability of 1.388e-17 (rank correlations that cancel) was printed as such, with
    samples_for_0.9 = 9.7e+18: it is 0, and no number of samples is predicted to reach 0.9."""
    from taskaffinity.affinity.reliability import reliability_table

    assert spearman_brown(1.388e-17) == 0.0 and samples_needed(1.388e-17, 30) is None
    assert samples_needed(1e-6, 10) > 1e6
    report = {
        "reliability": {
            "old": {
                "samples": 30,
                "reliability": 1.388e-17,
                "within_target_reliability": 1.388e-17,
                "target_share": -2e-17,
                "samples_for_0.9": 9.7e18,
            },
            "tiny": {
                "samples": 10,
                "reliability": 0.2,
                "within_target_reliability": 1e-6,
                "target_share": 0.1,
                "samples_for_0.9": samples_needed(1e-6, 10),
            },
            "good": {
                "samples": 20,
                "reliability": 0.8,
                "within_target_reliability": 0.6,
                "target_share": 0.1,
                "samples_for_0.9": 60.0,
                "early_late": None,
            },
        }
    }
    table = reliability_table(report).set_index("estimator")
    assert table.loc["old", "within_target"] == 0 and table.loc["old", "reliability"] == 0
    assert table.loc["old", "target_offset_share"] == 0
    assert list(table["samples_for_0.9"]) == ["not reachable", "not reachable", "60"]
    assert np.isnan(table.loc["good", "early_late"])  # a null of fidelity.json


def test_draw_reliability_reads_how_far_draws_of_one_matrix_agree_within_target():
    from taskaffinity.affinity.reliability import draw_reliability

    tasks = [f"t{i}" for i in range(6)]
    rng = np.random.default_rng(0)
    truth = pd.DataFrame(rng.normal(size=(6, 6)), index=tasks, columns=tasks)
    assert np.isnan(draw_reliability([truth]))  # one draw has no partner
    assert draw_reliability([truth, truth.copy(), truth[tasks[::-1]]]) == pytest.approx(1.0)  # order-free
    assert draw_reliability([truth, -truth]) == pytest.approx(-1.0)
    noisy = [truth + rng.normal(scale=s, size=(6, 6)) for s in (0.3, 0.3, 0.3)]
    unrelated = [pd.DataFrame(rng.normal(size=(6, 6)), index=tasks, columns=tasks) for _ in range(200)]
    assert 0.6 < draw_reliability(noisy) < 1.0
    assert abs(draw_reliability(unrelated)) < 0.05  # 19,900 pairs of independent draws: about 0


def test_the_report_trust_sentence_warns_about_streams_only_where_they_are():
    from taskaffinity.report.sections_affinity import trust_sentence

    def table(*names):
        return pd.DataFrame(
            {
                "estimator": list(names),
                "within_target": [0.8, 0.6][: len(names)],
                "verdict": ["good", "moderate"][: len(names)],
            }
        )

    probes = trust_sentence(table("first_order_sgd", "cosine"))
    assert probes.startswith("Most reliable: first_order_sgd") and "training sub-batches" not in probes
    streams = trust_sentence(table("stream_gram", "first_order_sgd"))
    # the most reliable matrix here is a stream: the sentence says reliable is not right
    assert streams.startswith("Most reliable: stream_gram") and streams.endswith(STREAM_CAVEAT)
