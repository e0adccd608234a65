"""bench/brute_force_ratio.py: the projection of a validation study's brute force from timed jobs."""

import importlib.util
from pathlib import Path

import pytest
import yaml
from test_validation import POOL, write_validation

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("brute_force_ratio", ROOT / "bench" / "brute_force_ratio.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_projects_every_single_and_pair_of_every_seed(bench, tmp_path):
    result = bench.measure(str(write_validation(tmp_path)), jobs=1, threads=1)
    n, seeds = len(POOL), 2
    assert (result["tasks"], result["seeds"]) == (n, seeds)
    for clock in ("wall", "cpu"):
        times = result[clock]
        assert times["affinity_run"] > 0 and times["single_job"] > 0 and times["pair_job"] > 0
        brute = seeds * (n * times["single_job"] + n * (n - 1) / 2 * times["pair_job"])
        assert times["brute_force"] == pytest.approx(brute, abs=1.0)  # from the job times rounded to 0.1 s
        assert times["ratio"] == pytest.approx(times["brute_force"] / times["affinity_run"], rel=0.02)


def test_refuses_a_study_that_is_not_a_pairs_validation(bench, tmp_path, capsys):
    path = write_validation(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["study"] = {"kind": "combinations", "targets": [POOL[0]], "seeds": [0], "groups": {"G1": POOL[1:]}}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit) as stop:
        bench.main([str(path)])
    assert stop.value.code == 2 and "mode: pairs" in capsys.readouterr().err
