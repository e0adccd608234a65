"""bench/brute_force_ratio.py: the projection of a validation study's brute force from timed jobs."""

from pathlib import Path

import pytest
import yaml
from test_validation import POOL, write_validation
from tests_support import load_script

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    return load_script(ROOT / "bench" / "brute_force_ratio.py")


def test_projects_every_single_and_pair_of_every_seed(bench, tmp_path):
    """Every single of one seed and 2 of the 3 pairs are timed; the brute force of 2 seeds is
    projected from them, with the sampled pairs' standard error."""
    result = bench.measure(str(write_validation(tmp_path)), pairs=2, threads=1)
    n, seeds, n_pairs = len(POOL), 2, 3
    assert (result["tasks"], result["seeds"]) == (n, seeds)
    assert len(result["pairs_timed"]) == 2 and len(set(result["pairs_timed"])) == 2
    assert all(len(p.split("+")) == 2 and set(p.split("+")) <= set(POOL) for p in result["pairs_timed"])
    for clock in ("wall", "cpu"):
        times = result[clock]
        assert len(times["singles"]) == n and len(times["pairs"]) == 2 and times["affinity_run"] > 0
        brute = seeds * (sum(times["singles"]) + n_pairs * sum(times["pairs"]) / 2)
        assert times["brute_force"] == pytest.approx(brute)
        assert times["ratio"] == pytest.approx(brute / times["affinity_run"])
        spread = abs(times["pairs"][0] - times["pairs"][1]) / 2  # sd / sqrt(2) of two values
        se = spread * (1 - 2 / n_pairs) ** 0.5
        assert times["pair_mean_se"] == pytest.approx(se)
        assert times["ratio_se"] == pytest.approx(seeds * n_pairs * se / times["affinity_run"])
    assert bench.rounded({"ratio": 15.387, "pairs": [106.46], "x": None}) == {
        "ratio": 15.39,
        "pairs": [106.5],
        "x": None,
    }


def test_refuses_a_study_that_is_not_a_pairs_validation(bench, tmp_path, capsys):
    path = write_validation(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["study"] = {"kind": "combinations", "targets": [POOL[0]], "seeds": [0], "groups": {"G1": POOL[1:]}}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit) as stop:
        bench.main([str(path)])
    assert stop.value.code == 2 and "mode: pairs" in capsys.readouterr().err
