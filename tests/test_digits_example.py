"""The digits example's known answer (twin and shuffled control) over three seeds, and its outputs."""

import json
from pathlib import Path

import pytest
import torch
from tests_support import load_script

from taskaffinity.affinity.store import AffinityStore

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits_affinity.py"


@pytest.fixture(scope="module")
def example():
    module = load_script(EXAMPLE)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the example's main(): tiny layers
    yield module
    torch.set_num_threads(threads)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_twin_is_top_partner_and_shuffled_is_nobodys(example, seed):
    meter = example.train(seed)
    twin = f"{example.TWIN_OF}_twin"
    for task, accuracy in meter.accuracy.items():  # every real task learned, the control cannot be
        assert (accuracy < 0.25) if task == "shuffled" else (accuracy > 0.9), (task, accuracy)
    store = meter.store
    assert set(example.ESTIMATORS + example.PROBED) == set(store.estimators)
    for estimator in example.ESTIMATORS + example.PROBED:
        partners = example.top_partners(store.matrix(estimator))
        assert partners[example.TWIN_OF] == twin, (estimator, partners)
        assert partners[twin] == example.TWIN_OF, (estimator, partners)
        assert "shuffled" not in partners.values(), (estimator, partners)


def test_main_writes_store_heatmaps_and_groups(example, tmp_path):
    assert example.main(["--out", str(tmp_path), "--seed", "0"]) == 0
    store = AffinityStore.load(tmp_path / "affinity.parquet")
    assert "stream_cosine" in store.estimators and "first_order_sgd" in store.estimators
    assert (tmp_path / "heatmap_stream_cosine.png").stat().st_size > 10_000
    groups = json.loads((tmp_path / "groups.json").read_text())
    assert any({"parity", "parity_twin"} <= set(g["tasks"]) for g in groups["groups"])
    assert groups["stability"]["resamples"] == 100 and "reliability" in groups
    assert "reliability" in json.loads((tmp_path / "fidelity.json").read_text())
