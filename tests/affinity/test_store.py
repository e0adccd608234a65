"""AffinityStore: matrices, windows, trajectories, bootstrap intervals, Parquet round trip."""

import numpy as np
import pandas as pd
import pytest

from taskaffinity.affinity.fidelity import agreement, fidelity
from taskaffinity.affinity.store import AffinityStore, symmetrise
from taskaffinity.errors import TaskAffinityError

TASKS = ["a", "b", "c"]


def make_store(seed=0, steps=range(10, 210, 10)):
    rng = np.random.default_rng(seed)
    truth = np.array([[0.0, 1.0, -1.0], [0.5, 0.0, 0.0], [-0.2, 0.3, 0.0]])
    rows = []
    for step in steps:
        noise = rng.normal(0, 0.1, size=(3, 3))
        for i, s in enumerate(TASKS):
            for j, t in enumerate(TASKS):
                rows.append(
                    {
                        "step": step,
                        "estimator": "lookahead_sgd",
                        "source": s,
                        "target": t,
                        "value": truth[i, j] + noise[i, j],
                    }
                )
                rows.append(
                    {
                        "step": step,
                        "estimator": "first_order_sgd",
                        "source": s,
                        "target": t,
                        "value": 2 * (truth[i, j] + noise[i, j]),
                    }
                )
    return AffinityStore(pd.DataFrame(rows), {"tasks": TASKS, "lr": 1e-4}), truth


def test_matrix_window_and_symmetric_views():
    store, truth = make_store()
    matrix = store.matrix("lookahead_sgd")
    assert list(matrix.index) == TASKS and list(matrix.columns) == TASKS
    np.testing.assert_allclose(matrix.to_numpy(), truth, atol=0.06)
    early = store.matrix("lookahead_sgd", window=(None, 50))
    rows = store.select("lookahead_sgd", (None, 50))
    assert early.loc["a", "b"] == pytest.approx(rows[(rows.source == "a") & (rows.target == "b")]["value"].mean())
    sym = store.matrix("lookahead_sgd", symmetric=True)
    assert sym.loc["a", "b"] == pytest.approx((matrix.loc["a", "b"] + matrix.loc["b", "a"]) / 2)
    assert symmetrise(matrix).equals(sym)


def test_summary_intervals_cover_truth_and_flag_significance():
    store, truth = make_store()
    summary = store.summary("lookahead_sgd", n_boot=2000, seed=1).set_index(["source", "target"])
    covered = [
        summary.loc[(s, t), "low"] <= truth[i, j] <= summary.loc[(s, t), "high"]
        for i, s in enumerate(TASKS)
        for j, t in enumerate(TASKS)
    ]
    assert sum(covered) >= 7  # 95% intervals: nearly all of the 9 cover the truth
    ab, bc = summary.loc[("a", "b")], summary.loc[("b", "c")]
    assert ab["significant"] and not bc["significant"] and bc["low"] < 0.0 < bc["high"]
    assert ab["se"] == pytest.approx(0.1 / np.sqrt(20), rel=0.5) and ab["n"] == 20
    # a percentile interval of the mean is about ±1.96 standard errors wide
    assert ab["high"] - ab["low"] == pytest.approx(2 * 1.96 * ab["se"], rel=0.3)
    masked = store.significant_matrix("lookahead_sgd", n_boot=2000)
    assert np.isnan(masked.loc["b", "c"]) and masked.loc["a", "c"] < -0.9


def test_trajectories_and_round_trip(tmp_path):
    store, _ = make_store()
    path = tmp_path / "affinity.parquet"
    store.save(path)
    loaded = AffinityStore.load(path)
    assert loaded.metadata == {"tasks": TASKS, "lr": 1e-4}
    pd.testing.assert_frame_equal(loaded.records, store.records)
    trajectory = loaded.trajectories("lookahead_sgd", sources=["a"], targets=["b"])
    assert list(trajectory["step"]) == list(range(10, 210, 10))


def test_errors_name_the_problem(tmp_path):
    store, _ = make_store()
    with pytest.raises(TaskAffinityError, match="unknown estimator 'cosin'"):
        store.matrix("cosin")
    with pytest.raises(TaskAffinityError, match="affinity file not found"):
        AffinityStore.load(tmp_path / "none.parquet")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(TaskAffinityError, match="cannot read affinity file"):
        AffinityStore.load(tmp_path / "bad.parquet")


def test_fidelity_of_a_scaled_copy_is_perfect():
    store, _ = make_store()
    report = fidelity(store)["lookahead_sgd vs first_order_sgd"]
    assert report["probes"] == 20
    assert report["run_average"]["pearson"] == pytest.approx(1.0)
    assert report["per_probe"]["sign_agreement"]["min"] == 1.0
    anti = agreement(np.array([1.0, 2.0, 3.0, -1.0]), np.array([-1.0, -2.0, -3.0, 1.0]))
    assert anti["pearson"] == pytest.approx(-1.0) and anti["sign_agreement"] == 0.0


def test_covers_zero_is_the_hatching_mask_of_the_bootstrap_intervals():
    store, truth = make_store()
    mask = store.covers_zero("lookahead_sgd", n_boot=500)
    assert list(mask.index) == list(mask.columns) == TASKS and mask.dtypes.eq(bool).all()
    # |truth| >= 0.2 is 9+ standard errors (0.1 / sqrt(20)) away from 0; truth 0 is covered unless by chance
    assert not mask.to_numpy()[np.abs(truth) >= 0.2].any()
    summary = store.summary("lookahead_sgd", n_boot=500)
    expected = summary.pivot(index="source", columns="target", values="significant").reindex(index=TASKS, columns=TASKS)
    assert mask.equals(~expected.astype(bool))
    assert store.covers_zero("lookahead_sgd", summary=summary).equals(mask)
    unmeasured = AffinityStore(store.records[store.records["source"] != "c"], store.metadata)
    assert unmeasured.covers_zero("lookahead_sgd", n_boot=50).loc["c"].all()  # never measured: hatched
