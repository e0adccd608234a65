"""Every numeric command-line option: a bad value is the CLI's one-line error with exit status 2, before
anything is read or written (not argparse's usage block)."""

import pytest

from taskaffinity.cli import main


@pytest.mark.parametrize(
    "argv, option",
    [
        (["sources", "a.parquet", "--method", "bandit", "--rounds", "abc"], "--rounds"),
        (["sources", "a.parquet", "--method", "bandit", "--steps-per-round", "1.5"], "--steps-per-round"),
        (["sources", "a.parquet", "--method", "bandit", "--decay", "x"], "--decay"),
        (["sources", "a.parquet", "--method", "bandit", "--decay", "nan"], "--decay"),
        (["sources", "a.parquet", "--method", "bandit", "--seeds", "two"], "--seeds"),
        (["sources", "a.parquet", "--method", "bandit", "--group-size", ""], "--group-size"),
        (["sources", "a.parquet", "--top", "3x"], "--top"),
        (["sources", "a.parquet", "--bootstrap", "1e3"], "--bootstrap"),
        (["group", "a.parquet", "--k", "two"], "--k"),
        (["group", "a.parquet", "--k", "2", "--singleton-score", "inf"], "--singleton-score"),
        (["group", "a.parquet", "--k", "2", "--seed", "0.5"], "--seed"),
        (["group", "a.parquet", "--k", "2", "--bootstrap", "many"], "--bootstrap"),
        (["affinity", "study.yaml", "--out", "o", "--steps", "ten"], "--steps"),
        (["train", "study.yaml", "--out", "o", "--steps", "-"], "--steps"),
        (["group", "a.parquet"], "--k"),  # a missing option: the same one line
    ],
)
def test_a_bad_numeric_option_is_one_line_and_exit_2(argv, option, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taskaffinity: error: ") and option in lines[0], captured.err
    assert "usage:" not in captured.err and captured.out == ""
    assert list(tmp_path.iterdir()) == []
