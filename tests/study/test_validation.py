"""Validation studies: budget-fixed joint runs, paired seeds, gains with errors, the noise ceiling."""

import itertools

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import TINY_MODEL

from taskaffinity.api import build
from taskaffinity.config import config_from_dict
from taskaffinity.study import load_study, run_study
from taskaffinity.study.plan import make_plan
from taskaffinity.study.results import affinity_agreement, gain_reliability, measured_gains

POOL = ["trec6", "sms_spam", "bbc_topic"]


def results_frame(true_gain: dict, noise: float, seeds=(0, 1, 2, 3), seed: int = 0) -> pd.DataFrame:
    """A pairs-mode results table: every task alone and every pair, test accuracy per seed.

    The value of target j in the pair (i, j) is alone_j + true_gain[(i, j)] + noise.
    """
    rng = np.random.default_rng(seed)
    tasks = sorted({t for pair in true_gain for t in pair})
    rows = []
    for s in seeds:
        alone = {t: 0.6 + rng.normal(0, 0.05) for t in tasks}
        for t in tasks:
            rows.append(
                {"label": "alone", "arm": "single", "pretrain_set": t, "target": t, "seed": s, "value": alone[t]}
            )
        for a, b in itertools.combinations(tasks, 2):
            for source, target in ((a, b), (b, a)):
                rows.append(
                    {
                        "label": "pair",
                        "arm": "pair",
                        "pretrain_set": f"{a}+{b}",
                        "target": target,
                        "seed": s,
                        "value": alone[target] + true_gain[(source, target)] + rng.normal(0, noise),
                    }
                )
    frame = pd.DataFrame(rows)
    return frame.assign(split="test", metric="accuracy", primary=True, kind="validation")


TASKS = [f"t{i}" for i in range(6)]
TRUE = {
    (s, t): g for (s, t), g in zip(itertools.permutations(TASKS, 2), np.random.default_rng(7).normal(0, 0.05, size=30))
}


def test_gains_are_paired_differences_with_standard_errors():
    frame = results_frame(TRUE, noise=0.0)
    gains = measured_gains(frame).set_index(["source", "target"])
    assert len(gains) == 30 and (gains["n_seeds"] == 4).all()
    for pair, gain in TRUE.items():  # the alone run's seed noise cancels in the paired difference
        assert gains.loc[pair, "gain"] == pytest.approx(gain, abs=1e-12)
        assert gains.loc[pair, "se"] == pytest.approx(0.0, abs=1e-12)
    noisy = measured_gains(results_frame(TRUE, noise=0.02)).set_index(["source", "target"])
    assert noisy["se"].median() == pytest.approx(0.02 / np.sqrt(4), rel=0.5)


def test_noise_ceiling_separates_measurable_gains_from_noise():
    clean = gain_reliability(results_frame(TRUE, noise=0.005))
    assert clean["seeds"] == 4 and clean["reliability"] > 0.95 and clean["within_target_ceiling"] > 0.9
    noise = gain_reliability(results_frame({k: 0.0 for k in TRUE}, noise=0.05))
    assert abs(noise["seed_pair_spearman"]) < 0.3 and noise["within_target_ceiling"] < 0.6
    one_seed = gain_reliability(results_frame(TRUE, noise=0.01, seeds=(0,)))
    assert one_seed["seeds"] == 1 and np.isnan(one_seed["ceiling"])


def test_within_target_agreement_and_its_permutation_test():
    gains = measured_gains(results_frame(TRUE, noise=0.0))
    truth = pd.DataFrame(0.0, index=TASKS, columns=TASKS)
    for (s, t), g in TRUE.items():
        truth.loc[s, t] = g
    perfect = affinity_agreement(gains, truth, permutations=500)
    assert perfect["spearman"] == pytest.approx(1.0) and perfect["within_target"] == pytest.approx(1.0)
    assert perfect["within_target_p"] < 0.01
    inverse = affinity_agreement(gains, -truth, permutations=500)
    assert inverse["within_target"] == pytest.approx(-1.0) and inverse["within_target_p"] > 0.99
    # target offsets alone (a column effect) carry no within-target information
    offsets = pd.DataFrame(np.tile(np.arange(6.0), (6, 1)), index=TASKS, columns=TASKS)
    assert affinity_agreement(gains, offsets)["within_target"] is None  # constant within every target


def write_validation(folder, **study):
    raw = {
        "seed": 1,
        "tasks": POOL,
        "model": TINY_MODEL,
        "data": {"max_train": 60, "max_eval": 20},
        "training": {
            "steps": 4,
            "batch_size": 8,
            "eval_every": 100,
            "checkpoint_every": 100,
            "eval_batch_size": 64,
            "head_warmup_steps": 1,
        },
        "affinity": {"rules": ["sgd"], "probe_every": 1, "probe_batch_size": 8, "stream_window": 1},
        "study": {
            "kind": "validation",
            "seeds": [0, 1],
            "groups": "affinity",
            "grouping": {"method": "tag", "k": 2, "estimator": "stream_cosine", "bootstrap": 10},
            "validation": {"random_groupings": 1},
            **study,
        },
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_joint_runs_hold_each_tasks_budget(tmp_path):
    study = load_study(write_validation(tmp_path))
    plan = make_plan(study, {"G1": ("trec6", "sms_spam")}, {"G1": ("trec6", "sms_spam")})
    for job in plan.train_jobs.values():
        training = job.config.training
        assert training.batch_size == 8 * len(job.tasks) and training.steps == 4
        assert training.sampling == ("uniform" if len(job.tasks) > 1 else "natural")
    seeds = {frozenset(j.tasks): set() for j in plan.train_jobs.values()}
    for job in plan.train_jobs.values():
        seeds[frozenset(job.tasks)].add(job.config.seed)
    assert all(s == {0, 1} for s in seeds.values())  # single and joint runs share the seeds


def test_heads_start_the_same_alone_and_in_company():
    config = config_from_dict(
        {"seed": 5, "tasks": ["trec6", "sms_spam"], "model": TINY_MODEL, "data": {"max_train": 30, "max_eval": 10}},
        where="<test>",
    )
    alone = config_from_dict(
        {"seed": 5, "tasks": ["sms_spam"], "model": TINY_MODEL, "data": {"max_train": 30, "max_eval": 10}},
        where="<test>",
    )
    _, joint_model, _ = build(config, progress=False)
    _, alone_model, _ = build(alone, progress=False)
    for a, b in zip(joint_model.head("sms_spam").parameters(), alone_model.head("sms_spam").parameters()):
        assert torch_equal(a, b)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_validation_study_end_to_end(tmp_path):
    out = tmp_path / "out"
    validation = {
        "random_groupings": 1,
        "surrogate": "linear",
        "group_samples": 1,
        "group_sizes": [3],
        "leave_alone_arms": True,
        "probe_draws": 2,
    }
    result = run_study(load_study(write_validation(tmp_path, validation=validation)), out, progress=False)
    assert (result.status["status"] == "done").all()
    noise = pd.read_csv(out / "tables" / "noise_ceiling.csv")
    assert noise.loc[0, "seeds"] == 2 and {"reliability", "within_target_ceiling"} <= set(noise.columns)
    agreement = pd.read_csv(out / "tables" / "agreement.csv")
    assert {
        "spearman",
        "within_target",
        "within_p",
        "ceiling",
        "within_ceiling",
        "estimator_reliability",
        "cost_seconds",
        "cost_share_of_run",
    } <= set(agreement.columns)
    assert set(agreement["estimator"]) >= {"stream_cosine", "first_order_sgd"}
    assert (agreement["cost_seconds"] > 0).all()
    # probe_draws: a second held-out draw of the same training, in affinity_draws/
    draws = agreement.set_index("estimator")["draws"]
    assert draws["first_order_sgd"] == 2 and draws["stream_cosine"] == 1
    per_draw = pd.read_csv(out / "tables" / "agreement_draws.csv")
    seeds = per_draw.loc[per_draw["estimator"] == "first_order_sgd", "probe_seed"]
    assert sorted(seeds) == [1, 2]  # the run's seed 1, then 2
    summary = yaml.safe_load((out / "summary.json").read_text())
    assert summary["draws_same_training"] is True and summary["draws_max_loss_difference"] <= 1e-6
    gains = pd.read_csv(out / "tables" / "gains.csv")
    assert len(gains) == 6 and (gains["n_seeds"] == 2).all() and gains["se"].notna().all()
    groups = yaml.safe_load((out / "groups.json").read_text())
    assert groups["stability"]["resamples"] == 10 and "within_target_reliability" in groups["reliability"]
    assert "draws" not in groups  # the draws trained apart come after the grouping: they do not choose it
    oracle = yaml.safe_load((out / "oracle_groups.json").read_text())
    assert oracle["estimator"] == "measured_gain" and sorted(
        t for g in oracle["groups"] for t in g["serves"]
    ) == sorted(POOL)
    surrogate = yaml.safe_load((out / "surrogate_groups.json").read_text())
    assert surrogate["fitted_on"]["sizes"] == {"2": 3, "3": 1} and "stability" in surrogate  # pairs and group
    arms = pd.read_csv(out / "tables" / "arms.csv").set_index("arm")
    assert {"single", "chosen", "oracle", "surrogate", "all", "random1"} <= set(arms.index)
    for arm in ("chosen", "oracle", "surrogate"):
        assert (out / f"{arm}_leave_alone_groups.json").is_file()
        assert arm + "_leave_alone" in arms.index  # every task measured (alone where the grouping leaves it)
    assert np.isfinite(arms.loc["chosen", "vs_random"]) and np.isnan(arms.loc["random1", "vs_random"])
    assert arms.loc["chosen", "n_paired"] == len(POOL) * 2  # every task x seed
    from taskaffinity.report.assemble import build_report

    text = (build_report(out).with_suffix(".md")).read_text()
    assert "Noise ceiling" in text and "Best within-target agreement" in text and "stability" in text
    assert "| cost: brute force over affinity run" in text and "bench/brute_force_ratio.py" in text
    assert (
        "Over 2 draws of probe examples from the same pool (the same training)" in text
        and "tables/agreement_draws.csv" in text
    )
    # the draws recorded in the affinity run itself (affinity.probe_draws): no second training is read
    path = out.parent / "study.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["affinity"]["probe_draws"] = 2
    del raw["study"]["validation"]["probe_draws"]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    run_study(load_study(path), out, progress=False)
    per_draw = pd.read_csv(out / "tables" / "agreement_draws.csv")
    rows = per_draw[per_draw["estimator"] == "first_order_sgd"].set_index("probe_seed")
    assert sorted(rows.index) == [1, 2]
    from taskaffinity.affinity.store import AffinityStore

    own = AffinityStore.load(out / "affinity" / "draws" / "probe_seed_2" / "affinity.parquet").metadata
    assert rows.loc[2, "probe_seconds"] == pytest.approx(own["probe_seconds"])  # not affinity_draws/'s
    assert yaml.safe_load((out / "summary.json").read_text())["draws_in_affinity_run"] is True
    # the run's own draws reach the grouping, but it reads a stream: one draw, the training's
    assert "draws" not in yaml.safe_load((out / "groups.json").read_text())
    # a held-out probe estimator's grouping reads the run's own further draw (the affinity run is reused)
    raw["study"]["grouping"]["estimator"] = "first_order_sgd"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    run_study(load_study(path), out, progress=False)
    groups = yaml.safe_load((out / "groups.json").read_text())
    assert groups["draws"]["probe_seeds"] == [2] and len(groups["draws"]["groupings"]) == 1
    assert groups["draws"]["chosen_share"] == float(groups["draws"]["same_as_chosen"][0])
    assert "further draw of held-out examples (probe seed 2)" in build_report(out).with_suffix(".md").read_text()


def test_agreement_over_held_out_draws_known_answer():
    """Three draws whose matrices rank every target's sources as the gains do, as they do, and reversed:
    per-draw within-target ρ 1, 1, −1 → mean 1/3, sd √(4/3), min −1, max 1; between draws (1 − 1 − 1)/3;
    their mean matrix (truth/3) ranks like the gains: 1. Streamed estimators have one draw."""
    from taskaffinity.affinity.store import AffinityStore
    from taskaffinity.study.agreement import agreement_draws, agreement_table, estimator_differences

    tasks = TASKS[:5]
    pairs = list(itertools.permutations(tasks, 2))
    truth = dict(zip(pairs, np.random.default_rng(3).normal(size=len(pairs))))
    gains = pd.DataFrame(
        [{"source": s, "target": t, "gain": g, "se": 0.01, "n_seeds": 3} for (s, t), g in truth.items()]
    )

    def store(sign: float, seed: int, streamed: bool = False) -> AffinityStore:
        rows = [
            {"step": step, "estimator": e, "source": s, "target": t, "value": sign * g}
            for step in (1, 2, 3, 4)
            for (s, t), g in truth.items()
            for e in ("first_order_sgd", *(("stream_gram",) if streamed else ()))
        ]
        meta = {"tasks": tasks, "probe_seed": seed, "training_seconds": 100.0, "probe_seconds": 5.0}
        return AffinityStore(pd.DataFrame(rows), {**meta, "recording_seconds": 6.0, "stream_seconds": 1.0})

    run, draws = store(1, 0, streamed=True), [store(1, 1), store(-1, 2)]
    noise = {"ceiling": 0.9, "within_target_reliability": 0.8, "within_target_ceiling": 0.9}
    table = agreement_table(run, gains, noise, draws=draws).set_index("estimator")
    row = table.loc["first_order_sgd"]
    assert row["draws"] == 3 and row["within_target"] == pytest.approx(1.0)
    assert row["within_target_draws_mean"] == pytest.approx(1 / 3)
    assert row["within_target_draws_sd"] == pytest.approx(np.sqrt(4 / 3))
    assert (row["within_target_draws_min"], row["within_target_draws_max"]) == pytest.approx((-1.0, 1.0))
    assert row["draws_reliability"] == pytest.approx(-1 / 3)
    assert row["mean_of_draws_within_target"] == pytest.approx(1.0)
    assert table.loc["stream_gram", "draws"] == 1 and np.isnan(table.loc["stream_gram", "within_target_draws_sd"])
    per_draw = agreement_draws(run, gains, draws)
    assert list(per_draw[per_draw["estimator"] == "first_order_sgd"]["probe_seed"]) == [0, 1, 2]
    differences = estimator_differences(run, gains, draws=draws).set_index("estimator")
    assert differences.loc["first_order_sgd", "draws"] == 3  # compared on per-target ρ averaged over draws
    assert differences.loc["first_order_sgd", "versus"] == "stream_gram"  # one draw at ρ 1: the best
    assert differences.loc["first_order_sgd", "difference"] == pytest.approx(1 / 3 - 1)
