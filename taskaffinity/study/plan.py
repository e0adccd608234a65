"""From a study to its experiments (:mod:`.experiments`: the jobs, each keyed by a hash of its fully
resolved config), one planner per study kind.

Protocols: combinations of task families/groups with unseen targets (Padmakumar
et al. 2022), nested supersets and the low-resource grid (Aghajanyan et al. 2021,
§5.1, §5.3), and brute-force validation of affinities (Fifty et al. 2021, §5).
A job's id depends only on what changes its result, so re-running a study skips
finished jobs and jobs shared between studies are found again.
"""

from __future__ import annotations

import logging
import random
from itertools import combinations

from ..config import TrainConfig
from .experiments import BASELINE, FinetuneJob, Measurement, Plan, TrainJob, per_task_training
from .group_draws import random_groupings, sample_groups
from .settings import Study

log = logging.getLogger(__name__)

__all__ = [
    "BASELINE",
    "FinetuneJob",
    "Measurement",
    "Plan",
    "TrainJob",
    "make_plan",
    "per_task_training",
    "plan_combinations",
    "plan_nested",
    "plan_validation",
    "random_groupings",
    "sample_groups",
    "scaling_order",
    "wants_oracle",
]


def make_plan(
    study: Study,
    groups: dict[str, tuple[str, ...]] | None = None,
    serves: dict[str, tuple[str, ...]] | None = None,
    data: dict[str, str] | None = None,
    solved: dict | None = None,
) -> Plan:
    """Every experiment of the study.

    ``groups`` override the settings' (chosen from an affinity run); ``serves``
    says which members each group is measured on (TAG groups overlap: a task may
    help in one group and be served by another). ``solved`` (validation): arm name -> a grouping
    solved from the first wave's measured gains (``oracle``, ``surrogate``, their ``_leave_alone``
    variants; :mod:`.measured_groupings`), each ``{name: tasks}`` (a task served by the first group
    listing it) or a list of ``(tasks, serves)``; a study that wants the oracle plans its random
    groupings only with them (they must differ from all). ``data``: each task's prepared-data
    fingerprint; a job's id includes those of the tasks it trains on, so a job whose
    data changed gets a new id and runs again, and the others are kept.
    """
    kind = study.settings.kind
    plan = Plan(data=dict(data or {}))
    # an empty chosen grouping (every task better trained alone) is an answer, not a missing one
    groups = groups if groups is not None else study.settings.groups
    if kind == "combinations":
        return plan_combinations(study, groups or {}, plan)
    if kind in ("scaling", "low_resource"):
        return plan_nested(study, plan)
    return plan_validation(study, groups, serves, plan, solved=solved)


def plan_combinations(study: Study, groups: dict[str, tuple[str, ...]], plan: Plan | None = None) -> Plan:
    """Every non-empty combination of groups (2^g − 1) plus the baseline, fine-tuned on each target."""
    plan, settings = plan or Plan(), study.settings
    sets = [(BASELINE, ())]
    for size in range(1, len(groups) + 1):
        for combo in combinations(groups, size):
            members = {t for name in combo for t in groups[name]}
            sets.append(("+".join(combo), tuple(t for t in settings.pool(study.config) if t in members)))
    _fine_tune_targets(plan, study, "combinations", sets)
    _fine_tune_arms(plan, study)
    return plan


def _fine_tune_arms(plan: Plan, study: Study) -> None:
    """Recipe arms: every pool task pre-finetuned together under the arm's recipe, then each target."""
    pool = study.settings.pool(study.config)
    for arm, training in study.settings.arms.items():
        _fine_tune_targets(plan, study, "combinations", [(arm, pool)], training=training, arm=arm)


def scaling_order(study: Study) -> tuple[str, ...]:
    """Pool tasks in the order supersets grow: the configured order, or a seeded permutation."""
    if study.settings.order is not None:
        return study.settings.order
    pool = list(study.settings.pool(study.config))
    random.Random(study.config.seed).shuffle(pool)
    return tuple(pool)


def plan_nested(study: Study, plan: Plan | None = None) -> Plan:
    """Nested supersets of k tasks (each contains the previous), fine-tuned on each target (and fraction)."""
    plan, order = plan or Plan(), scaling_order(study)
    sets = [(f"k={k}" if k else BASELINE, order[:k]) for k in sorted(set(study.settings.sizes))]
    _fine_tune_targets(plan, study, study.settings.kind, sets)
    return plan


def _fine_tune_targets(
    plan: Plan,
    study: Study,
    kind: str,
    sets: list[tuple[str, tuple[str, ...]]],
    *,
    training: TrainConfig | None = None,
    arm: str = "",
) -> None:
    """Each (label, tasks) set pre-finetuned (with ``training``, default ``study.pretrain``), then every
    target fine-tuned from it for every seed and fraction."""
    settings = study.settings
    for label, tasks in sets:
        pretrain = plan.train(study, tasks, seed=study.config.seed, training=training) if tasks else None
        for target in settings.targets:
            for seed in settings.seeds:
                for fraction in settings.fractions:
                    job = plan.finetune(study, target, seed, fraction, pretrain)
                    plan.measurements.append(
                        Measurement(job.id, kind, label, tasks, (target,), seed, fraction, arm=arm)
                    )


def wants_oracle(study: Study, groups) -> bool:
    """A validation study with grouping arms also measures the oracle grouping (solved from the
    measured gains of its brute-force runs): the best any pair-based grouping could do."""
    return study.settings.kind == "validation" and bool(
        groups or study.settings.groups or study.settings.groups_from_affinity
    )


def plan_validation(
    study: Study,
    groups: dict[str, tuple[str, ...]] | None,
    serves: dict[str, tuple[str, ...]] | None = None,
    plan: Plan | None = None,
    *,
    solved: dict | None = None,
) -> Plan:
    """Brute-force transfer among the pool tasks, and the chosen grouping against alternatives.

    ``pairs``: every task alone and every pair trained jointly; the gain of j from
    training with i is compared with the affinity i→j. ``transfer``: pre-finetune on
    each task alone, fine-tune on every other (intermediate-task transfer), against
    fine-tuning from the base model. With ``groups``: one model per chosen group,
    one all-task model, single-task models, and (once the first wave is measured, see
    :func:`make_plan`) the ``solved`` groupings (oracle, surrogate, leave-alone variants) and
    random groupings of the chosen sizes.
    ``group_samples``: random groups of ``group_sizes`` tasks, every member measured (group gains).

    Every joint run holds each task's budget at its single-task value (``per_task_training``:
    ``study.pretrain.batch_size`` examples of every task per step), and a task's single run and
    its joint runs share the seed (same head initialisation and example order), so a gain is
    a paired difference.
    """
    plan, settings = plan or Plan(), study.settings
    pool = settings.pool(study.config)
    for seed in settings.seeds:
        transfer = settings.validation_mode == "transfer"  # fine-tuning starts from the alone models' encoders
        alone = {t: plan.train(study, (t,), seed=seed, save_encoder=transfer, measure=True) for t in pool}
        for t, job in alone.items():
            plan.measurements.append(Measurement(job.id, "validation", "alone", (t,), (t,), seed, arm="single"))
        if not transfer:
            for a, b in combinations(pool, 2):
                job = plan.train(study, (a, b), seed=seed, save_encoder=False, measure=True, per_task_budget=True)
                plan.measurements.append(Measurement(job.id, "validation", "pair", (a, b), (a, b), seed, arm="pair"))
        else:
            for target in pool:
                base = plan.finetune(study, target, seed, 1.0, None)
                plan.measurements.append(
                    Measurement(base.id, "validation", BASELINE, (), (target,), seed, arm="transfer")
                )
                for source in pool:
                    if source != target:
                        job = plan.finetune(study, target, seed, 1.0, alone[source])
                        plan.measurements.append(
                            Measurement(
                                job.id, "validation", f"source:{source}", (source,), (target,), seed, arm="transfer"
                            )
                        )
        for group in sample_groups(pool, settings.group_samples, settings.group_sizes, study.config.seed):
            job = plan.train(study, group, seed=seed, save_encoder=False, measure=True, per_task_budget=True)
            plan.measurements.append(
                Measurement(job.id, "validation", f"group:{'+'.join(group)}", group, group, seed, arm="group")
            )
        if groups:
            _plan_grouping_arms(plan, study, groups, serves, pool, seed, solved=solved)
        if study.settings.arms:
            _plan_recipe_arms(plan, study, pool, seed, with_all=not groups)
    return plan


def _with_singletons(groups: dict, pool: tuple[str, ...]) -> dict:
    """Tasks no group lists train alone (TAG's singletons)."""
    return {**groups, **{t: (t,) for t in pool if not any(t in g for g in groups.values())}}


def _plan_grouping_arms(
    plan: Plan,
    study: Study,
    groups: dict,
    serves: dict | None,
    pool: tuple[str, ...],
    seed: int,
    *,
    solved: dict | None = None,
) -> None:
    groups = _with_singletons(groups, pool)
    served = {**_served(groups), **(serves or {})}
    arms = {"chosen": [(groups[name], served[name]) for name in groups], "all": [(pool, pool)]}
    for arm, grouping in (solved or {}).items():
        arms[arm] = _arm_parts(grouping, pool)
    if solved is not None or not wants_oracle(study, groups):
        sizes = [len(served[name]) for name in groups if served[name]]
        avoid = [[served[name] for name in groups if served[name]]]
        avoid += [[part for _, part in arms[arm] if part] for arm in solved or {}]
        drawn = random_groupings(pool, sizes, study.settings.random_groupings, study.config.seed, avoid=avoid)
        if len(drawn) < study.settings.random_groupings and seed == study.settings.seeds[0]:
            log.warning(
                "study.validation.random_groupings is %d, but only %d groupings of sizes %s differ from each other "
                "and from the chosen and solved ones: %d random arm(s)",
                study.settings.random_groupings,
                len(drawn),
                sizes,
                len(drawn),
            )
        for r, parts in enumerate(drawn):
            arms[f"random{r + 1}"] = [(part, part) for part in parts]
    for arm, parts in arms.items():
        for tasks, measured in parts:
            if not measured:
                continue
            tasks = tuple(t for t in pool if t in tasks)
            job = plan.train(study, tasks, seed=seed, save_encoder=False, measure=True, per_task_budget=True)
            plan.measurements.append(
                Measurement(job.id, "validation", f"{arm}:{'+'.join(tasks)}", tasks, tuple(measured), seed, arm=arm)
            )


def _plan_recipe_arms(plan: Plan, study: Study, pool: tuple[str, ...], seed: int, *, with_all: bool) -> None:
    """Every pool task trained together under each arm's recipe (and, ``with_all``, under the study's
    own: the ``all`` arm the recipes are read against), each task at its single-task budget."""
    recipes = {"all": None} if with_all else {}
    recipes.update(study.settings.arms)
    for arm, training in recipes.items():
        job = plan.train(
            study, pool, seed=seed, save_encoder=False, measure=True, per_task_budget=True, training=training
        )
        plan.measurements.append(
            Measurement(job.id, "validation", f"{arm}:{'+'.join(pool)}", pool, pool, seed, arm=arm)
        )


def _arm_parts(grouping, pool: tuple[str, ...]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """``(tasks, serves)`` of every group of an arm, a task no group serves trained alone."""
    if isinstance(grouping, dict):
        grouping = list(zip(grouping.values(), _served(grouping).values()))
    covered = {t for _, serves in grouping for t in serves}
    return [(tuple(tasks), tuple(serves)) for tasks, serves in grouping] + [
        ((t,), (t,)) for t in pool if t not in covered
    ]


def _served(groups: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Each task is measured in one group only: the first that lists it."""
    seen, served = set(), {}
    for name, tasks in groups.items():
        served[name] = tuple(t for t in tasks if t not in seen)
        seen.update(served[name])
    return served
