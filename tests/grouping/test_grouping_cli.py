"""The group and sources subcommands, run through argparse."""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from taskaffinity.affinity.store import AffinityStore
from taskaffinity.cli.grouping import add_commands
from taskaffinity.errors import TaskAffinityError

TASKS = ["a1", "a2", "a3", "b1", "b2", "b3"]


@pytest.fixture
def store_path(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for step in (10, 20, 30):
        for s, t in itertools.permutations(TASKS, 2):
            value = (0.8 if s[0] == t[0] else -0.3) + rng.normal(0, 0.05)
            rows.append({"step": step, "estimator": "lookahead_sgd", "source": s, "target": t, "value": value})
            rows.append({"step": step, "estimator": "cosine", "source": s, "target": t, "value": -value})
            rows.append({"step": step, "estimator": "stream_gram", "source": s, "target": t, "value": value})
    path = tmp_path / "affinity.parquet"
    AffinityStore(pd.DataFrame(rows), {"tasks": TASKS}).save(path)
    return path


def run(argv):
    parser = argparse.ArgumentParser(prog="taskaffinity")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.handler(args)


@pytest.mark.parametrize("method", ["tag", "hierarchical", "spectral", "louvain"])
def test_group_json(store_path, capsys, method):
    assert run(["group", store_path, "--estimator", "lookahead_sgd", "--method", method, "--k", 2, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["method"] == method and document["estimator"] == "lookahead_sgd" and document["k"] == 2
    assert sorted(sorted(g["tasks"]) for g in document["groups"]) == [["a1", "a2", "a3"], ["b1", "b2", "b3"]]
    assert set(document["assignment"]) == set(TASKS)
    assert document["objective"] == pytest.approx(sum(document["per_task_score"].values()))


def test_group_table_and_out(store_path, tmp_path, capsys):
    out = tmp_path / "groups.yaml"
    assert run(["group", store_path, "--estimator", "lookahead_sgd", "--k", 2, "--out", out]) == 0
    text = capsys.readouterr().out
    assert "objective" in text and "a1, a2, a3" in text
    assert "stability over 100 bootstrap resamples" in text and "came back in 100% (stable)" in text
    assert "fewer than 4 samples" in text  # 3 probes: too few for a split-half reliability
    document = yaml.safe_load(out.read_text())
    assert document["method"] == "tag" and len(document["groups"]) == 2
    assert document["stability"]["chosen_share"] == 1.0 and document["stability"]["resamples"] == 100


def test_group_leave_alone_when_joint_training_hurts(store_path, capsys):
    # cosine is the negative of the planted lookahead: within-block affinities hurt, across-block ones
    # barely help; with --leave-alone no group of two or more is kept where every member loses
    assert run(["group", store_path, "--estimator", "cosine", "--k", 2, "--leave-alone", "--bootstrap", 10]) == 0
    text = capsys.readouterr().out
    assert "left alone" in text and "share of resamples in which each task was left alone" in text
    assert (
        run(["group", store_path, "--estimator", "cosine", "--k", 2, "--leave-alone", "--json", "--bootstrap", 0]) == 0
    )
    document = json.loads(capsys.readouterr().out)
    assert document["leave_alone"] is True
    served = {t for g in document["groups"] for t in g["serves"]}
    assert all(document["per_task_score"][t] > 0 for t in served)
    assert {a["task"] for a in document["alone"]} == set(TASKS) - served


def test_sources(store_path, capsys):
    assert run(["sources", store_path, "--target", "a1", "--top", 3, "--estimator", "lookahead_sgd", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    ranked = [r["source"] for r in document["sources"]]
    assert len(ranked) == 3 and set(ranked[:2]) == {"a2", "a3"}
    assert {"affinity", "mean", "se", "low", "high", "significant", "top1_share", "rank_low", "rank_high"} <= set(
        document["sources"][0]
    )
    assert run(["sources", store_path, "--target", "b2", "--estimator", "cosine"]) == 0
    captured = capsys.readouterr()
    assert "onto b2" in captured.out and "stream_*" not in captured.err  # a probe estimator: no caveat


@pytest.mark.parametrize("command", [["sources", "--target", "a1"], ["group", "--k", 2]])
def test_a_streamed_estimator_comes_with_its_caveat_on_stderr(store_path, capsys, command):
    """Reliable is not right: ranking or grouping by a stream says so, and --json output stays JSON."""
    assert run([command[0], store_path, *command[1:], "--estimator", "stream_gram", "--json"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)
    assert "training sub-batches" in captured.err and "held-out probe estimator" in captured.err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sources", "{p}", "--target", "nope", "--estimator", "cosine"], "unknown target task 'nope'"),
        (["sources", "{p}", "--target", "a1"], "3 estimators"),
        (["group", "{p}", "--estimator", "nope", "--k", "2"], "unknown estimator 'nope'"),
        (["group", "{p}", "--estimator", "cosine", "--k", "0"], "k must be"),
        (["group", "{p}", "--estimator", "cosine", "--k", "7"], "k must be"),
        (["group", "{p}", "--estimator", "cosine", "--k", "2", "--method", "kmeans"], "unknown grouping method"),
        (["group", "{p}", "--estimator", "cosine", "--k", "2", "--out", "x.csv"], r"\.json, \.yaml"),
        (["group", "{p}", "--estimator", "cosine", "--k", "2", "--bootstrap", "-1"], "--bootstrap must be >= 0"),
        (["group", "missing.parquet", "--estimator", "cosine", "--k", "2"], "not found"),
    ],
)
def test_bad_arguments(store_path, argv, message):
    argv = [a.replace("{p}", str(store_path)) for a in argv]
    with pytest.raises(TaskAffinityError, match=message):
        run(argv)


def test_unmeasured_pair_is_reported(tmp_path):
    rows = [
        {"step": 1, "estimator": "e", "source": s, "target": t, "value": 0.1}
        for s, t in itertools.permutations("abc", 2)
        if (s, t) != ("a", "c")
    ]
    path = tmp_path / "partial.parquet"
    AffinityStore(pd.DataFrame(rows)).save(path)
    with pytest.raises(TaskAffinityError, match="a->c"):
        run(["group", path, "--k", "2"])


def _draw_folder(tmp_path, *, draw_blocks):
    """A run folder as ``affinity.probe_draws: 2`` leaves it: the run's store (blocks a*, b*) and one
    further draw whose planted blocks are ``draw_blocks`` (task -> block)."""
    from taskaffinity.affinity.run import draw_folder

    def store(blocks, probe_seed):
        rng = np.random.default_rng(probe_seed)
        rows = [
            {
                "step": step,
                "estimator": "first_order_sgd",
                "source": s,
                "target": t,
                "value": (0.8 if blocks[s] == blocks[t] else -0.3) + rng.normal(0, 0.05),
            }
            for step in (10, 20, 30, 40)
            for s, t in itertools.permutations(TASKS, 2)
        ]
        meta = {"tasks": TASKS, "probe_seed": probe_seed, "probe_draws": 2, "run_fingerprint": "f"}
        return AffinityStore(pd.DataFrame(rows), meta)

    store({t: t[0] for t in TASKS}, 0).save(tmp_path / "affinity.parquet")
    (tmp_path / draw_folder(1)).mkdir(parents=True)
    store(draw_blocks, 1).save(tmp_path / draw_folder(1) / "affinity.parquet")
    return tmp_path / "affinity.parquet"


@pytest.mark.parametrize("same", [True, False])
def test_group_reads_the_run_s_held_out_draws(tmp_path, capsys, same):
    """A grouping the bootstrap calls stable can still change with the held-out examples drawn: with
    the run's further draws beside its store, `group` groups each alike and says whether it agreed."""
    blocks = {t: t[0] for t in TASKS} if same else {"a1": "x", "b1": "x", "a2": "x", "a3": "y", "b2": "y", "b3": "y"}
    path = _draw_folder(tmp_path, draw_blocks=blocks)
    argv = ["group", path, "--estimator", "first_order_sgd", "--method", "hierarchical", "--k", 2]
    assert run([*argv, "--json"]) == 0
    draws = json.loads(capsys.readouterr().out)["draws"]
    assert draws["probe_seeds"] == [1] and draws["same_as_chosen"] == [same]
    assert draws["chosen_share"] == (1.0 if same else 0.0)
    if not same:
        assert sorted(sorted(g) for g in draws["groupings"][0]) == [["a1", "a2", "b1"], ["a3", "b2", "b3"]]
    assert run(argv) == 0
    text = capsys.readouterr().out
    assert "came back in 100% (stable)" in text  # the bootstrap of the run's own probes sees no doubt
    assert (
        f"{int(same)} of 1 further draw of held-out examples (probe seed 1)" in text
        and ("another grouping" in text) is not same
    )
    assert ("a bootstrap of one draw's probes cannot show this" in text) is not same
    assert run([*argv, "--bootstrap", 0]) == 0  # no bootstrap: the draws line does not speak of one
    assert "bootstrap" not in capsys.readouterr().out


def test_group_never_compares_a_draw_of_another_run(tmp_path, capsys):
    from taskaffinity.affinity.run import draw_folder

    path = _draw_folder(tmp_path, draw_blocks={t: t[0] for t in TASKS})
    draw = AffinityStore.load(tmp_path / draw_folder(1) / "affinity.parquet")
    AffinityStore(draw.records, {**draw.metadata, "run_fingerprint": "other"}).save(
        tmp_path / draw_folder(1) / "affinity.parquet"
    )
    assert run(["group", path, "--estimator", "first_order_sgd", "--k", 2, "--json"]) == 0
    captured = capsys.readouterr()
    assert "draws" not in json.loads(captured.out) and "belongs to another run" in captured.err


def _damage(records: pd.DataFrame, how: str) -> pd.DataFrame:
    one_pair = (records["source"] == "a1") & (records["target"] == "b2")
    if how == "missing pair":
        return records[~one_pair]
    if how == "missing estimator":
        return records.assign(estimator="gram")
    if how == "empty":
        return records.iloc[:0]
    if how == "non-finite value":
        return records.assign(value=records["value"].mask(one_pair))
    if how == "duplicated rows":
        return pd.concat([records, records[one_pair]])
    if how == "other steps":
        return records.assign(step=records["step"] + 1)
    raise ValueError(how)


@pytest.mark.parametrize(
    "how, says",
    [
        ("missing pair", "lacks 1 pair(s) the run measured (e.g. source a1 -> target b2)"),
        ("missing estimator", "no 'first_order_sgd' records"),
        ("empty", "no 'first_order_sgd' records"),
        ("non-finite value", "a1 -> b2 at step 10: a non-finite value"),
        ("duplicated rows", "a1 -> b2 at step 10: recorded twice"),
        ("other steps", "at steps [11, 21, 31, 41], the run's probes at [10, 20, 30, 40]"),
    ],
)
def test_a_damaged_draw_is_named_not_grouped(tmp_path, capsys, how, says):
    """A draw that is not the run's probes at the run's steps (an edited or truncated file) is named
    with its path and what is wrong, and grouping goes on from the run's store alone."""
    from taskaffinity.affinity.run import draw_folder, load_draws
    from taskaffinity.errors import TaskAffinityError

    path = _draw_folder(tmp_path, draw_blocks={t: t[0] for t in TASKS})
    draw_path = tmp_path / draw_folder(1) / "affinity.parquet"
    draw = AffinityStore.load(draw_path)
    AffinityStore(_damage(draw.records, how), draw.metadata).save(draw_path)
    with pytest.raises(TaskAffinityError, match=r"probe_seed_1/affinity\.parquet: ") as error:
        load_draws(tmp_path)
    assert says in str(error.value)
    assert run(["group", path, "--estimator", "first_order_sgd", "--k", 2, "--json"]) == 0
    captured = capsys.readouterr()
    assert "draws" not in json.loads(captured.out) and str(draw_path) in captured.err


def test_a_draw_without_a_task_its_probes_left_out_is_whole(tmp_path):
    """A task the draw's probes left out (non-finite values: ``probe_skipped``) is not damage."""
    from taskaffinity.affinity.run import draw_folder, load_draws

    _draw_folder(tmp_path, draw_blocks={t: t[0] for t in TASKS})
    draw_path = tmp_path / draw_folder(1) / "affinity.parquet"
    draw = AffinityStore.load(draw_path)
    kept = draw.records[(draw.records["source"] != "b3") & (draw.records["target"] != "b3")]
    AffinityStore(kept, {**draw.metadata, "probe_skipped": {"b3": 4}}).save(draw_path)
    assert [d.metadata["probe_seed"] for d in load_draws(tmp_path)] == [1]


def test_draws_without_the_estimator_are_not_compared(store_path):
    """Held-out draws record the probe estimators only: a streamed grouping has no draws to compare."""
    from taskaffinity.study.choose import store_grouping

    store = AffinityStore.load(store_path)
    draw = AffinityStore(store.records[store.records["estimator"] != "stream_gram"], {"probe_seed": 1})
    streamed = store_grouping(store, "stream_gram", "hierarchical", n_boot=0, k=2, draws=[draw])
    probed = store_grouping(store, "lookahead_sgd", "hierarchical", n_boot=0, k=2, draws=[draw])
    assert "draws" not in streamed and probed["draws"]["same_as_chosen"] == [True]


def test_group_reads_a_store_whose_draws_are_not_beside_it(tmp_path, capsys):
    """Grouping reads the store: a copy away from its run folder, a draw's own store, a stream, or a
    run whose draw folder was removed are grouped without draws (a note on stderr where one is missing)."""
    import shutil

    from taskaffinity.affinity.run import draw_folder

    path = _draw_folder(tmp_path / "run", draw_blocks={t: t[0] for t in TASKS})
    copy = tmp_path / "elsewhere.parquet"
    shutil.copy(path, copy)
    argv = ["--estimator", "first_order_sgd", "--method", "hierarchical", "--k", 2, "--json"]
    assert run(["group", copy, *argv]) == 0
    assert "draws" not in json.loads(capsys.readouterr().out)
    shutil.rmtree(tmp_path / "run" / draw_folder(1))
    assert run(["group", path, *argv]) == 0
    captured = capsys.readouterr()
    assert "draws" not in json.loads(captured.out) and "held-out draws not compared" in captured.err
