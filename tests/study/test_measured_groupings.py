"""Groupings solved from a validation study's measured gains: the oracle (pairs) and the surrogate
(pairs and sampled groups), on results with a planted answer."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from taskaffinity.errors import ConfigError
from taskaffinity.study.measured_groupings import measured_subsets, solved_groupings, surrogate_document
from taskaffinity.study.plan import make_plan
from taskaffinity.study.settings import load_study

POOL = ["trec6", "bbc_topic", "sms_spam", "debate_party", "rt_sentiment", "rt_subjectivity"]
BLOCKS = [set(POOL[:3]), set(POOL[3:])]


def study_file(tmp_path, validation: dict, grouping: dict | None = None, **study):
    raw = {
        "seed": 0,
        "tasks": POOL,
        "training": {"steps": 5},
        "study": {
            "kind": "validation",
            "seeds": [0, 1, 2],
            "groups": "affinity",
            "grouping": {"method": "tag", "k": 2, "bootstrap": 20, **(grouping or {})},
            "validation": validation,
            **study,
        },
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def planted_results(shift: float = 0.0, seeds=(0, 1, 2)) -> pd.DataFrame:
    """Single, pair and sampled-group runs (test accuracy): a member gains ``0.04 + shift`` from each
    mate of its block and loses ``0.04 - shift`` from each other mate (its gain is the mean over
    its mates), plus seed noise."""
    rng = np.random.default_rng(0)
    rows = []

    def gain(target, mates):
        block = next(b for b in BLOCKS if target in b)
        return np.mean([(0.04 if m in block else -0.04) + shift for m in mates])

    subsets = [c for k in (2, 3, 4) for c in itertools.combinations(POOL, k)][::2]
    subsets += [tuple(p) for p in itertools.combinations(POOL, 2)]
    for seed in seeds:
        alone = {t: 0.7 + rng.normal(0, 0.02) for t in POOL}
        for t in POOL:
            rows.append(dict(label="alone", arm="single", pretrain_set=t, target=t, seed=seed, value=alone[t]))
        for subset in dict.fromkeys(subsets):
            name = "+".join(subset)
            label, arm = ("pair", "pair") if len(subset) == 2 else (f"group:{name}", "group")
            for t in subset:
                value = alone[t] + gain(t, [m for m in subset if m != t]) + rng.normal(0, 0.003)
                rows.append(dict(label=label, arm=arm, pretrain_set=name, target=t, seed=seed, value=value))
    frame = pd.DataFrame(rows)
    return frame.assign(split="test", metric="accuracy", primary=True, kind="validation")


def test_measured_subsets_hold_both_pair_members_and_every_group_member():
    results = planted_results()
    tidy = measured_subsets(results)
    pairs = tidy[tidy["group"].str.count(r"\+") == 1]
    assert len(pairs) == 15 * 2 * 3  # 15 pairs, both members, 3 seeds
    groups = tidy[tidy["group"].str.count(r"\+") >= 2]
    assert len(groups) == len(results[results["arm"] == "group"])
    row = pairs[(pairs["target"] == "bbc_topic") & pairs["group"].str.contains("trec6")].iloc[0]
    assert row["gain"] == pytest.approx(0.04, abs=0.02)


def test_oracle_and_surrogate_recover_the_planted_blocks(tmp_path):
    study = load_study(study_file(tmp_path, {"surrogate": "linear"}))
    solved = solved_groupings(study, planted_results(), tmp_path)
    assert list(solved) == ["oracle", "surrogate"]
    served = {arm: {frozenset(serves) for _, serves in parts} for arm, parts in solved.items()}
    assert served["oracle"] == served["surrogate"] == {frozenset(b) for b in BLOCKS}
    document = json.loads((tmp_path / "surrogate_groups.json").read_text())
    assert document["estimator"] == "linear_surrogate" and document["method"] == "surrogate"
    assert document["stability"]["resamples"] == 20 and document["stability"]["chosen_share"] >= 0.8
    assert document["fitted_on"]["sizes"]["2"] == 15 and document["fitted_on"]["subsets"] > 15
    assert json.loads((tmp_path / "oracle_groups.json").read_text())["estimator"] == "measured_gain"


def test_the_surrogate_leaves_every_task_alone_when_every_subset_hurts(tmp_path):
    study = load_study(study_file(tmp_path, {"surrogate": "linear"}, {"leave_alone": True}))
    document = surrogate_document(study, planted_results(shift=-0.1))
    assert document["groups"] == [] and all(a is None for a in document["assignment"].values())


def test_leave_alone_arms_keep_tasks_alone_where_every_mate_hurts(tmp_path):
    """Within-block mates now cost 0.03 each: the forced partitions still group every task, their
    leave-alone variants train every task alone (the single-task models: the best arm here)."""
    study = load_study(study_file(tmp_path, {"surrogate": "linear", "leave_alone_arms": True}))
    solved = solved_groupings(study, planted_results(shift=-0.07), tmp_path)
    assert list(solved) == ["oracle", "surrogate", "oracle_leave_alone", "surrogate_leave_alone"]  # no store
    assert sorted(t for _, serves in solved["oracle"] for t in serves) == sorted(POOL)
    assert solved["oracle_leave_alone"] == solved["surrogate_leave_alone"] == []
    assert (tmp_path / "oracle_leave_alone_groups.json").is_file()
    frame = make_plan(study, {"G1": tuple(POOL[:3]), "G2": tuple(POOL[3:])}, solved=solved).frame()
    alone = frame[frame["arm"] == "oracle_leave_alone"]
    assert (alone["pretrain_set"] == alone["target"]).all() and len(alone) == len(POOL) * 3  # alone, every seed


def test_arms_without_enough_measurements_are_left_out_with_a_warning(tmp_path, caplog):
    """Every joint job with trec6 failed (NaN values): neither the oracle nor the surrogate can
    place it, so both arms are left out, each with a warning naming the task."""
    study = load_study(study_file(tmp_path, {"surrogate": "linear"}))
    results = planted_results()
    failed = (results["arm"] != "single") & results["pretrain_set"].str.contains("trec6")
    results.loc[failed, "value"] = np.nan
    with caplog.at_level("WARNING", logger="taskaffinity.study.measured_groupings"):
        assert solved_groupings(study, results, tmp_path) == {}
    assert "no oracle arm: no measured pair gain onto trec6" in caplog.text
    assert "no surrogate arm: trec6: a member of fewer than 3 measured subsets" in caplog.text


def test_the_surrogate_arm_is_planned_and_random_groupings_avoid_it(tmp_path):
    study = load_study(study_file(tmp_path, {"surrogate": "kernel", "random_groupings": 2}))
    chosen = {"G1": tuple(POOL[:2]), "G2": tuple(POOL[2:])}
    oracle = {"O1": tuple(POOL[:4]), "O2": tuple(POOL[4:])}
    surrogate = {"S1": tuple(POOL[:3]), "S2": tuple(POOL[3:])}
    frame = make_plan(study, chosen, solved={"oracle": oracle, "surrogate": surrogate}).frame()
    rows = frame[frame["arm"] == "surrogate"]
    assert sorted(rows[rows["seed"] == 0]["target"]) == sorted(POOL)  # every task measured once per seed
    assert set(rows["pretrain_set"]) == {"+".join(POOL[:3]), "+".join(POOL[3:])}
    solved = {frozenset(frozenset(s) for s in parts) for parts in (surrogate.values(), oracle.values())}
    for _, parts in frame[frame["arm"].str.startswith("random")].groupby(["arm", "seed"]):
        assert frozenset(frozenset(s.split("+")) for s in parts["pretrain_set"]) not in solved


@pytest.mark.parametrize(
    ("validation", "study", "message"),
    [
        ({"surrogate": "cubic"}, {}, "study.validation.surrogate must be one of linear, kernel, got 'cubic'"),
        ({"surrogate": ["linear"]}, {}, "study.validation.surrogate must be one of linear, kernel, got ['linear']"),
        ({"surrogate": "linear", "mode": "transfer"}, {}, "study.validation.surrogate needs mode: pairs"),
        ({"surrogate": "linear"}, {"groups": None}, "study.validation.surrogate is measured as a grouping arm"),
        ({"leave_alone_arms": "yes"}, {}, "study.validation.leave_alone_arms must be true or false, got 'yes'"),
        ({"probe_draws": 0}, {}, "study.validation.probe_draws must be >= 1, got 0"),
        ({"probe_draws": 2}, {"kind": "combinations", "targets": [POOL[0]]}, "probe_draws needs kind: validation"),
        (
            {"leave_alone_arms": True},
            {"grouping": {"method": "tag", "k": 2, "leave_alone": True}},
            "study.grouping.leave_alone is already true",
        ),
    ],
)
def test_bad_solved_arm_settings_name_the_option(tmp_path, validation, study, message):
    path = study_file(tmp_path, validation, **study)
    if study.get("groups", "affinity") is None:
        raw = yaml.safe_load(path.read_text())
        del raw["study"]["groups"]
        path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_study(path)


def test_held_out_draws_are_asked_for_once(tmp_path):
    path = study_file(tmp_path, {"probe_draws": 3})
    raw = yaml.safe_load(path.read_text())
    raw["affinity"] = {"probe_draws": 2}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="study.validation.probe_draws and affinity.probe_draws are both set"):
        load_study(path)


def test_too_few_subsets_for_a_surrogate_fail_at_load(tmp_path):
    path = study_file(tmp_path, {"surrogate": "linear"})
    raw = yaml.safe_load(path.read_text())
    raw["tasks"] = POOL[:3]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="needs every task in at least 3 measured subsets, but 'trec6' is in 2"):
        load_study(path)
    raw["study"]["validation"].update(group_samples=1, group_sizes=[3])
    path.write_text(yaml.safe_dump(raw))
    assert load_study(path).settings.surrogate == "linear"
