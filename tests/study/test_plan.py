"""Study settings and plan generation (no training)."""

from pathlib import Path

import pytest
import yaml

from taskaffinity.errors import ConfigError
from taskaffinity.study.plan import BASELINE, make_plan, scaling_order
from taskaffinity.study.settings import load_study

POOL = ["trec6", "bbc_topic", "sms_spam", "debate_party", "rt_sentiment", "rt_subjectivity", "vader_amazon"]


def study_file(tmp_path: Path, study: dict, **top) -> Path:
    raw = {"seed": 1, "tasks": POOL, "training": {"steps": 5}, **top, "study": study}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_combinations_cover_every_nonempty_combination_plus_baseline(tmp_path):
    groups = {"Q": ["trec6"], "T": ["bbc_topic", "sms_spam"], "P": ["debate_party", "rt_sentiment"]}
    study = load_study(
        study_file(
            tmp_path,
            {
                "kind": "combinations",
                "targets": ["rt_subjectivity", "vader_amazon"],
                "seeds": [0, 1, 2],
                "groups": groups,
            },
        )
    )
    plan = make_plan(study)
    frame = plan.frame()
    assert len(plan.train_jobs) == 2**3 - 1
    labels = list(dict.fromkeys(frame["label"]))
    assert labels[0] == BASELINE and len(labels) == 2**3
    assert {"Q", "T", "P", "Q+T", "Q+P", "T+P", "Q+T+P"} == set(labels[1:])
    assert len(plan.finetune_jobs) == 2**3 * 2 * 3  # sets x targets x seeds
    for job in plan.train_jobs.values():  # targets are never pre-finetuned on
        assert not set(job.tasks) & {"rt_subjectivity", "vader_amazon"}
    union = frame[frame["label"] == "Q+T"]["pretrain_set"].iloc[0].split("+")
    assert sorted(union) == sorted(["trec6", "bbc_topic", "sms_spam"])
    # every fine-tuning job of a combination starts from that combination's pre-finetuned encoder
    q_job = next(j for j in plan.train_jobs.values() if j.tasks == ("trec6",))
    assert {plan.finetune_jobs[i].pretrain for i in frame[frame["label"] == "Q"]["experiment_id"]} == {q_job.id}
    assert {plan.finetune_jobs[i].pretrain for i in frame[frame["label"] == BASELINE]["experiment_id"]} == {None}


def test_scaling_sets_are_nested_supersets(tmp_path):
    study = load_study(study_file(tmp_path, {"kind": "scaling", "targets": ["vader_amazon"], "sizes": [0, 1, 3, 6]}))
    plan = make_plan(study)
    sets = sorted((job.tasks for job in plan.train_jobs.values()), key=len)
    assert [len(s) for s in sets] == [1, 3, 6]
    order = scaling_order(study)
    for small, large in zip(sets, sets[1:]):
        assert set(small) < set(large)
    assert set(sets[-1]) == set(order[:6]) and "vader_amazon" not in order
    assert scaling_order(study) == order  # seeded: the same order every time
    labels = list(dict.fromkeys(plan.frame()["label"]))
    assert labels == [BASELINE, "k=1", "k=3", "k=6"]


def test_scaling_follows_an_explicit_order(tmp_path):
    order = ["sms_spam", "trec6", "bbc_topic"]
    study = load_study(
        study_file(tmp_path, {"kind": "scaling", "targets": ["vader_amazon"], "sizes": [1, 2, 3], "order": order})
    )
    pool_order = [t for t in POOL if t in order]
    sets = {len(j.tasks): set(j.tasks) for j in make_plan(study).train_jobs.values()}
    assert sets == {1: {"sms_spam"}, 2: {"sms_spam", "trec6"}, 3: set(order)}
    assert all(list(j.tasks) == [t for t in pool_order if t in j.tasks] for j in make_plan(study).train_jobs.values())


def test_low_resource_grid_crosses_fractions_and_scales(tmp_path):
    study = load_study(
        study_file(
            tmp_path,
            {
                "kind": "low_resource",
                "targets": ["vader_amazon"],
                "sizes": [0, 2, 4],
                "fractions": [0.1, 0.5, 1.0],
                "seeds": [0, 1],
            },
        )
    )
    frame = make_plan(study).frame()
    assert len(frame) == 3 * 3 * 2
    assert set(frame["fraction"]) == {0.1, 0.5, 1.0}


def test_validation_pairs_and_transfer_plans(tmp_path):
    pool = POOL[:4]
    pairs = load_study(study_file(tmp_path, {"kind": "validation"}, tasks=pool))
    plan = make_plan(pairs)
    assert len(plan.train_jobs) == 4 + 6 and not plan.finetune_jobs
    transfer = load_study(study_file(tmp_path, {"kind": "validation", "validation": {"mode": "transfer"}}, tasks=pool))
    plan = make_plan(transfer)
    assert len(plan.train_jobs) == 4 and all(j.save_encoder for j in plan.train_jobs.values())
    assert len(plan.finetune_jobs) == 4 * 3 + 4  # every source -> target, plus the base model per target


def test_validation_grouping_arms(tmp_path):
    pool = POOL[:6]
    study = load_study(study_file(tmp_path, {"kind": "validation", "validation": {"random_groupings": 2}}, tasks=pool))
    groups = {"G1": ("trec6", "bbc_topic", "sms_spam"), "G2": ("debate_party", "rt_sentiment", "trec6")}
    serves = {"G1": ("trec6", "bbc_topic", "sms_spam"), "G2": ("debate_party", "rt_sentiment")}
    assert "random1" not in set(make_plan(study, groups, serves).frame()["arm"])  # planned with the oracle
    oracle = {"O1": ("trec6", "sms_spam"), "O2": ("bbc_topic", "debate_party", "rt_sentiment")}
    frame = make_plan(study, groups, serves, solved={"oracle": oracle}).frame()
    for arm in ("chosen", "oracle", "all", "random1", "random2", "single"):
        measured = frame[frame["arm"] == arm]["target"]
        assert sorted(measured) == sorted(pool), arm  # every task measured exactly once per arm
    chosen = frame[frame["arm"] == "chosen"]
    assert chosen[chosen["target"] == "trec6"]["pretrain_set"].item() == "trec6+bbc_topic+sms_spam"
    assert chosen[chosen["target"] == "rt_subjectivity"]["pretrain_set"].item() == "rt_subjectivity"  # uncovered: alone


def test_random_groupings_never_repeat_each_other_or_the_chosen_one(tmp_path, caplog):
    pool = POOL[:4]  # parts of sizes 2 + 2: only 3 partitions exist, the chosen one among them
    study = load_study(
        study_file(tmp_path, {"kind": "validation", "seeds": [0, 1], "validation": {"random_groupings": 5}}, tasks=pool)
    )
    chosen = {"G1": ("trec6", "bbc_topic"), "G2": ("sms_spam", "debate_party")}
    oracle = {"O1": ("trec6", "sms_spam"), "O2": ("bbc_topic", "debate_party")}
    assert set(make_plan(study, chosen, solved={"oracle": chosen}).frame()["arm"]) >= {"random1", "random2"}
    with caplog.at_level("WARNING", logger="taskaffinity.study.plan"):
        frame = make_plan(study, chosen, solved={"oracle": oracle}).frame()
    assert caplog.text.count("random_groupings is 5, but only 1 groupings") == 1  # once, not per seed
    partitions = {}
    for (arm, _seed), rows in frame[frame["arm"].str.startswith("random")].groupby(["arm", "seed"]):
        partitions.setdefault(arm, set()).add(frozenset(frozenset(s.split("+")) for s in rows["pretrain_set"]))
    assert set(partitions) == {"random1"}  # the one partition left, no repeats
    assert all(len(p) == 1 for p in partitions.values())  # the same random grouping at every seed
    (key,) = partitions["random1"]
    assert key == frozenset({frozenset({"trec6", "debate_party"}), frozenset({"bbc_topic", "sms_spam"})})


def test_validation_group_samples(tmp_path):
    pool = POOL[:6]
    study = load_study(
        study_file(
            tmp_path,
            {"kind": "validation", "seeds": [0, 1, 2], "validation": {"group_samples": 7, "group_sizes": [3, 4]}},
            tasks=pool,
        )
    )
    frame = make_plan(study).frame()
    groups = frame[frame["arm"] == "group"]
    sets = groups.groupby("seed")["pretrain_set"].apply(lambda s: sorted(set(s)))
    assert all(s == sets.iloc[0] for s in sets)  # the same groups at every seed: paired gains
    assert len(sets.iloc[0]) == 7 and sorted(len(s.split("+")) for s in sets.iloc[0]) == [3] * 4 + [4] * 3
    for label, rows in groups[groups["seed"] == 0].groupby("label"):
        assert sorted(rows["target"]) == sorted(label.removeprefix("group:").split("+"))  # every member measured
    alone = frame[frame["arm"] == "single"]
    assert len(alone) == 6 * 3
    again = make_plan(
        load_study(
            study_file(
                tmp_path,
                {"kind": "validation", "seeds": [0, 1, 2], "validation": {"group_samples": 7, "group_sizes": [3, 4]}},
                tasks=pool,
            )
        )
    ).frame()
    assert set(again["experiment_id"]) == set(frame["experiment_id"])  # seeded: the same jobs on every call
    with pytest.raises(ConfigError, match="only 20 groups of sizes"):
        load_study(
            study_file(
                tmp_path, {"kind": "validation", "validation": {"group_samples": 21, "group_sizes": [3]}}, tasks=pool
            )
        )
    with pytest.raises(ConfigError, match="group_sizes must be >= 2"):
        load_study(study_file(tmp_path, {"kind": "validation", "validation": {"group_sizes": [1]}}, tasks=pool))


def test_job_ids_ignore_the_affinity_section_and_later_options_at_their_defaults(tmp_path):
    """A job records no affinities: changing the affinity defaults must not re-run every study's jobs."""
    import dataclasses

    from taskaffinity.config import AffinityConfig
    from taskaffinity.study.experiments import _job_id

    plan = make_plan(load_study(study_file(tmp_path, {"kind": "validation"}, tasks=POOL[:3])))
    job = next(iter(plan.train_jobs.values()))
    other = dataclasses.replace(job.config, affinity=AffinityConfig(lookahead="exact", probe_batch_size=7))
    assert _job_id("train", other, {}, save_encoder=False, measure=True) == job.id
    changed = dataclasses.replace(job.config, training=dataclasses.replace(job.config.training, lr=0.5))
    assert _job_id("train", changed, {}, save_encoder=False, measure=True) != job.id
    identity = job.config.identity()
    assert "weighting" not in identity["training"] and "aggregator" not in identity["training"]  # at defaults


def test_recipe_arms_train_the_whole_pool_with_their_own_recipe(tmp_path):
    """combinations: an arm pre-finetunes every pool task under its recipe, then fine-tunes every target
    (one more column); its encoder is not the default recipe's, the family findings do not see it."""
    groups = {"Q": ["trec6"], "T": ["bbc_topic", "sms_spam"]}
    study = load_study(
        study_file(
            tmp_path,
            {
                "kind": "combinations",
                "targets": ["vader_amazon"],
                "seeds": [0, 1],
                "groups": groups,
                "arms": {"uniform": {"sampling": "uniform"}, "unscaled": {"loss_scaling": False}},
            },
        )
    )
    plan = make_plan(study)
    frame = plan.frame()
    assert list(dict.fromkeys(frame["label"]))[-2:] == ["uniform", "unscaled"]
    pool = study.settings.pool(study.config)
    for arm, key, value in (("uniform", "sampling", "uniform"), ("unscaled", "loss_scaling", False)):
        rows = frame[frame["label"] == arm]
        assert set(rows["arm"]) == {arm} and len(rows) == 2  # target x seeds
        (encoder,) = {plan.finetune_jobs[i].pretrain for i in rows["experiment_id"]}
        job = plan.train_jobs[encoder]
        assert job.tasks == pool and getattr(job.config.training, key) == value
        assert job.config.training.steps == study.settings.pretrain.steps  # the rest of the recipe as study.pretrain
    default_all = {plan.finetune_jobs[i].pretrain for i in frame[frame["label"] == "Q+T"]["experiment_id"]}
    assert len(default_all | {plan.finetune_jobs[i].pretrain for i in frame[frame["arm"] != ""]["experiment_id"]}) == 3
    assert (frame[~frame["label"].isin(["uniform", "unscaled"])]["arm"] == "").all()


def test_validation_recipe_arms_are_read_against_the_all_arm(tmp_path):
    pool = POOL[:4]
    study = load_study(
        study_file(
            tmp_path, {"kind": "validation", "seeds": [0, 1], "arms": {"unscaled": {"loss_scaling": False}}}, tasks=pool
        )
    )
    plan = make_plan(study)  # no groups: the all arm is planned for the recipes to be read against
    frame = plan.frame()
    for arm in ("all", "unscaled"):
        rows = frame[frame["arm"] == arm]
        assert sorted(rows["target"]) == sorted(pool * 2), arm  # every task, every seed
    jobs = {arm: plan.train_jobs[frame[frame["arm"] == arm]["experiment_id"].iloc[0]] for arm in ("all", "unscaled")}
    assert jobs["all"].config.training.loss_scaling and not jobs["unscaled"].config.training.loss_scaling
    assert jobs["unscaled"].config.training.batch_size == jobs["all"].config.training.batch_size  # per-task budget
    with_groups = make_plan(study, {"G1": tuple(pool[:2]), "G2": tuple(pool[2:])}).frame()
    assert sorted(with_groups[with_groups["arm"] == "all"]["target"]) == sorted(pool * 2)  # once, not twice


def test_job_ids_depend_on_what_changes_results_only(tmp_path):
    base = {"kind": "combinations", "targets": ["vader_amazon"], "groups": {"A": ["trec6"]}}
    first = make_plan(load_study(study_file(tmp_path, base)))
    renamed = make_plan(load_study(study_file(tmp_path, base, name="other", affinity={"probe_every": 3})))
    assert set(first.train_jobs) == set(renamed.train_jobs) and set(first.finetune_jobs) == set(renamed.finetune_jobs)
    longer = make_plan(load_study(study_file(tmp_path, {**base, "pretrain": {"steps": 9}})))
    assert set(longer.train_jobs).isdisjoint(first.train_jobs)

    def by_label(plan):
        return {m.label: m.job for m in plan.measurements}

    assert by_label(longer)["A"] != by_label(first)["A"]  # fine-tuned from another encoder
    assert by_label(longer)[BASELINE] == by_label(first)[BASELINE]  # the baseline does not depend on pre-finetuning


def test_job_ids_include_the_data_of_exactly_their_tasks(tmp_path):
    groups = {"Q": ["trec6"], "T": ["bbc_topic", "sms_spam"]}
    study = load_study(study_file(tmp_path, {"kind": "combinations", "targets": ["vader_amazon"], "groups": groups}))
    data = {t: f"fp-{t}" for t in POOL}
    before = make_plan(study, data=data)
    after = make_plan(study, data={**data, "sms_spam": "fp-sms_spam-edited"})
    jobs = {**before.train_jobs, **before.finetune_jobs}

    def uses(job, task):
        if hasattr(job, "tasks"):
            return task in job.tasks
        return task == job.target or (job.pretrain is not None and uses(before.train_jobs[job.pretrain], task))

    changed = {i for i in jobs} - set(after.train_jobs) - set(after.finetune_jobs)
    assert changed == {i for i, job in jobs.items() if uses(job, "sms_spam")}
    assert len(changed) == 2 * 2  # T and Q+T, and the fine-tuning runs from them
    target_edited = make_plan(study, data={**data, "vader_amazon": "other"})
    assert set(target_edited.train_jobs) == set(before.train_jobs)  # pre-finetuning never sees the target
    assert set(target_edited.finetune_jobs).isdisjoint(before.finetune_jobs)


@pytest.mark.parametrize(
    "study, message",
    [
        ({"kind": "transfer"}, "study.kind must be one of"),
        ({"kind": "combinations", "targets": ["nope"], "groups": {"A": ["trec6"]}}, "study.targets: 'nope'"),
        ({"kind": "combinations", "targets": ["trec6"], "groups": {"A": ["trec6"]}}, "study.groups.A: 'trec6'"),
        ({"kind": "combinations", "targets": ["trec6"]}, "needs study.groups"),
        ({"kind": "scaling", "targets": ["trec6"], "sizes": [9]}, "study.sizes must be between 0 and 6"),
        ({"kind": "scaling", "targets": ["trec6"]}, "study.sizes must list"),
        (
            {"kind": "low_resource", "targets": ["trec6"], "sizes": [1], "fractions": [0]},
            "study.fractions must be in (0, 1]",
        ),
        ({"kind": "scaling", "targets": ["trec6"], "sizes": [1], "seed": [0]}, "unknown key 'study.seed'"),
        ({"kind": "combinations", "targets": ["trec6"], "groups": "missing.json"}, "grouping file not found"),
        (
            {"kind": "combinations", "targets": ["trec6"], "groups": {"A": ["sms_spam"]}, "finetune": {"stepz": 3}},
            "unknown key 'study.finetune.stepz'",
        ),
        (
            {
                "kind": "combinations",
                "targets": ["trec6"],
                "groups": {"A": ["sms_spam"]},
                "executor": {"kind": "slurm"},
            },
            None,
        ),  # checked when the executor is made (see test_executors)
        (
            {
                "kind": "combinations",
                "targets": ["trec6"],
                "groups": {"A": ["sms_spam"]},
                "arms": {"x": {"weightng": 1}},
            },
            "unknown key 'study.arms.x.weightng'",
        ),
        (
            {"kind": "combinations", "targets": ["trec6"], "groups": {"A": ["sms_spam"]}, "arms": {"all": {"lr": 0.1}}},
            "study.arms: 'all' cannot name an arm",
        ),
        (
            {"kind": "combinations", "targets": ["trec6"], "groups": {"A": ["sms_spam"]}, "arms": {"A": {"lr": 0.1}}},
            "study.arms: 'A' cannot name an arm",
        ),
        (
            {"kind": "combinations", "targets": ["trec6"], "groups": {"A": ["sms_spam"]}, "arms": {"x": {}}},
            "study.arms.x changes nothing",
        ),
        (
            {"kind": "scaling", "targets": ["trec6"], "sizes": [1], "arms": {"x": {"lr": 0.1}}},
            "study.arms is for combinations and validation studies",
        ),
        (
            {"kind": "combinations", "targets": ["trec6"], "groups": "affinity", "arms": {"G1": {"lr": 0.1}}},
            "study.arms: 'G1' cannot name an arm",
        ),
        (
            {
                "kind": "combinations",
                "targets": ["trec6"],
                "groups": {"A": ["sms_spam"]},
                "arms": {"x": {"sampling": "uniformm"}},
            },
            "study.arms.x: ",
        ),
        (
            {
                "kind": "combinations",
                "targets": ["trec6"],
                "groups": {"A": ["sms_spam"]},
                "arms": {"x": {"loss_scaling": True}},
            },
            "study.arms.x trains with the same recipe as study.pretrain",
        ),
        (
            {
                "kind": "combinations",
                "targets": ["trec6"],
                "groups": {"A": ["sms_spam"]},
                "arms": {"x": {"lr": 0.1}, "y": {"lr": 0.1}},
            },
            "study.arms.y trains with the same recipe as study.arms.x",
        ),
    ],
)
def test_bad_study_sections_name_the_option(tmp_path, study, message):
    path = study_file(tmp_path, study)
    if message is None:
        load_study(path)
        return
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load_study(path)


def test_groups_from_a_grouping_document(tmp_path):
    document = {
        "method": "tag",
        "groups": [
            {"tasks": ["trec6", "sms_spam"], "serves": ["trec6"], "score": 1.0},
            {"tasks": ["bbc_topic"], "serves": ["bbc_topic"], "score": 0.0},
        ],
    }
    (tmp_path / "groups.json").write_text(yaml.safe_dump(document))
    study = load_study(
        study_file(tmp_path, {"kind": "combinations", "targets": ["vader_amazon"], "groups": "groups.json"})
    )
    assert study.settings.groups == {"G1": ("trec6", "sms_spam"), "G2": ("bbc_topic",)}


@pytest.mark.parametrize(
    "path", sorted(Path(__file__).resolve().parents[2].glob("studies/*.yaml")), ids=lambda p: p.name
)
def test_shipped_study_files_load_and_plan(path):
    from taskaffinity.config import load_config

    raw = yaml.safe_load(path.read_text())
    assert raw["name"] and path.read_text().startswith("#")  # each file documents itself
    if "study" not in raw:
        load_config(path)  # joint / affinity runs
        return
    assert "runtime" in path.read_text().split("\nname:")[0].lower()  # says what it costs
    study = load_study(path)
    pool = study.settings.pool(study.config)
    groups = {"G1": pool[:2], "G2": pool[2:]} if study.settings.groups_from_affinity else None
    plan = make_plan(study, groups)
    assert plan.measurements
    for job in plan.train_jobs.values():
        assert not set(job.tasks) & set(study.settings.targets)


@pytest.mark.parametrize(
    "grouping, message",
    [
        ({"estimator": "stream_cosin"}, "study.grouping.estimator must be one of lookahead_sgd, "),
        ({"solver": "ilp"}, "study.grouping.solver must be one of auto, exact, heuristic, got 'ilp'"),
        ({"method": "kmeans"}, "study.grouping.method must be one of tag, hierarchical, spectral, louvain"),
    ],
)
def test_bad_grouping_settings_are_rejected_when_loaded(tmp_path, grouping, message):
    path = study_file(
        tmp_path, {"kind": "combinations", "targets": ["rt_subjectivity"], "groups": "affinity", "grouping": grouping}
    )
    with pytest.raises(ConfigError) as err:
        load_study(path)
    assert str(err.value).startswith(f"{path}: {message}")


@pytest.mark.parametrize(
    "affinity, estimator, message",
    [
        ({"rules": []}, "first_order_sgd", "affinity.rules has no sgd rule"),
        ({"rules": ["sgd"], "lookahead": "first_order"}, "lookahead_sgd", "affinity.lookahead is first_order"),
        ({"stream": False}, "stream_cosine", "affinity.stream is false"),
        ({"rules": ["sgd"]}, "stream_first_order_optimizer", "no optimizer rule"),
    ],
)
def test_a_grouping_estimator_the_affinity_run_does_not_record_fails_at_load(tmp_path, affinity, estimator, message):
    from taskaffinity.config import config_from_dict
    from taskaffinity.errors import ConfigError
    from taskaffinity.study.settings import settings_from_dict

    config = config_from_dict({"tasks": ["trec6", "sms_spam", "bbc_topic"], "affinity": affinity}, where="x.yaml")
    raw = {"kind": "combinations", "targets": ["bbc_topic"], "groups": "affinity", "grouping": {"estimator": estimator}}
    with pytest.raises(ConfigError, match=message):
        settings_from_dict(raw, config, where="x.yaml", base_dir=tmp_path)
    ok = {"kind": "combinations", "targets": ["bbc_topic"], "groups": "affinity", "grouping": {"estimator": "cosine"}}
    assert settings_from_dict(ok, config, where="x.yaml", base_dir=tmp_path).grouping.estimator == "cosine"
