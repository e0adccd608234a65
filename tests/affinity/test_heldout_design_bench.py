"""bench/heldout_design.py's whole-pool bound, on the committed set-A recording."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests_support import load_script

ROOT = Path(__file__).resolve().parents[2]
RECORDING = ROOT / "reports" / "heldout_design" / "design_a"


@pytest.fixture(scope="module")
def bench():
    return load_script(ROOT / "bench" / "heldout_design.py")


def test_whole_pool_is_the_mean_over_every_held_out_chunk(bench):
    """A whole-pool probe's affinity is the mean Gram block over all of both tasks' chunks over the
    target's mean chunk loss, whatever the generator: there is nothing left to draw."""
    meta, points = bench.load_recording(RECORDING)
    tasks = meta["tasks"]
    own = {t: [i for i, c in enumerate(meta["chunks"]) if c[0] == t] for t in tasks}
    a = bench.draw_chunks(meta, np.random.default_rng(0), batch=None, probes=3, rotate=False)
    b = bench.draw_chunks(meta, np.random.default_rng(1), batch=None, probes=3, rotate=False)
    assert all(sorted(a[t][k]) == own[t] and list(a[t][k]) == list(b[t][k]) for t in tasks for k in range(3))

    top = bench.parameter_groups(meta, "top1")
    matrix = bench.design_matrix(meta, points, [0], a, top, "gram")
    gram, losses = points[0]["gram"][top].sum(axis=0), points[0]["losses"]
    i, j = 0, 1
    expected = gram[np.ix_(own[tasks[i]], own[tasks[j]])].mean() / losses[own[tasks[j]]].mean()
    assert matrix[i, j] == pytest.approx(expected, rel=1e-9)


def test_analyse_whole_pool_scores_one_draw_per_design_beside_the_reference(bench, tmp_path):
    reference = "top1/b128/every2/rotate/sgd"
    bench.main(
        [
            "analyse",
            str(RECORDING),
            "--gains",
            str(RECORDING / "gains.csv"),
            "--whole-pool",
            "--reference",
            reference,
            "--draws",
            "3",
            "--out",
            str(tmp_path),
        ]
    )
    table = pd.read_csv(tmp_path / "designs.csv").set_index("design")
    pool = table[table.index.str.contains("/bpool/")]
    # 5 parameter sets x 3 stretches of the run x 2 rules, each from one (the only) draw
    assert len(pool) == 30 and pool["rho_sd"].isna().all()
    assert table.loc[reference, "vs_reference"] == 0 and np.isfinite(table.loc[reference, "rho_sd"])
    # the whole pool at every point costs more than the default's 4 probes of 128
    assert (pool.loc[pool["schedule"] == "all", "overhead"] > table.loc[reference, "overhead"]).all()


def test_candidates_reproduce_the_committed_analysis(bench, tmp_path):
    """A design's draws are seeded by its place in the whole grid: scoring only the CANDIDATES gives
    the committed candidates.csv, whatever the filter."""
    argv = ["analyse", str(RECORDING), "--gains", str(RECORDING / "gains.csv"), "--candidates", "--draws", "20"]
    bench.main([*argv, "--out", str(tmp_path)])
    ours = pd.read_csv(tmp_path / "designs.csv").set_index("design")
    committed = pd.read_csv(RECORDING / "candidates.csv").set_index("design")
    assert sorted(ours.index) == sorted(committed.index)
    assert np.allclose(ours["rho"], committed.loc[ours.index, "rho"], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "options, says",
    [
        (["--reference", "top1/b128/every9/rotate/sgd"], "not among this recording's designs"),
        (["--candidates", "--reference", "top1/b16/all/rotate/sgd"], "not among the CANDIDATES (--candidates)"),
        (["--whole-pool", "--candidates"], "not allowed with argument"),
        (["--draws", "0"], "--draws must be >= 1"),
    ],
)
def test_analyse_refuses_bad_options(bench, tmp_path, capsys, options, says):
    argv = ["analyse", str(RECORDING), "--gains", str(RECORDING / "gains.csv"), "--out", str(tmp_path), *options]
    with pytest.raises(SystemExit) as stop:
        bench.main(argv)
    assert stop.value.code == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "designs.csv").exists()


def test_analyse_names_a_missing_gains_file(bench, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        bench.main(["analyse", str(RECORDING), "--gains", str(tmp_path / "gains.csv"), "--out", str(tmp_path)])
    assert stop.value.code == 2 and f"--gains: {tmp_path / 'gains.csv'} not found" in capsys.readouterr().err
