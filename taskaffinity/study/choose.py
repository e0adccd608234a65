"""Groups from an affinity run: the store's matrix and bootstrap resamples handed to a grouping
method, with the estimator's reliability. The glue between ``affinity/`` (which measures) and
``grouping/`` (maths on matrices), used by ``taskaffinity group`` and by studies with
``groups: affinity``.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from ..affinity.reliability import estimator_reliability
from ..affinity.store import AffinityStore
from ..grouping.stability import choose_groups, groups_key


def store_grouping(
    store: AffinityStore,
    estimator: str,
    method: str,
    *,
    n_boot: int = 100,
    seed: int = 0,
    progress: bool = False,
    draws: list[AffinityStore] | None = None,
    **settings,
) -> dict:
    """The grouping document of ``method`` on a store's ``estimator``, with the estimator's
    reliability and the grouping's stability over ``n_boot`` resamples of the run's probes or
    windows (used by ``taskaffinity group`` and by studies with ``groups: affinity``).

    ``draws``: the run's further held-out draws (``affinity.run.load_draws``). Each is grouped with
    the same settings, and ``document["draws"]`` says which draws chose the same grouping: what a
    bootstrap over one draw's probes cannot show, since its probes all saw that draw's examples.
    """
    resamples = None
    if n_boot and store.select(estimator)["step"].nunique() > 1:
        resamples = tqdm(
            store.bootstrap_matrices(estimator, n_boot=n_boot, seed=seed),
            total=n_boot,
            desc="grouping stability",
            disable=not progress,
            leave=False,
        )
    document = choose_groups(
        store.matrix(estimator),
        method,
        resamples=resamples,
        estimator=estimator,
        reliability=estimator_reliability(store, estimator, seed=seed),
        seed=seed,
        **settings,
    )
    draws = [d for d in draws or () if estimator in d.estimators]  # a stream has one draw: the training's
    if draws:
        document["draws"] = draw_groupings(document, draws, estimator, method, seed=seed, **settings)
    return document


def draw_groupings(document: dict, draws: list[AffinityStore], estimator: str, method: str, **settings) -> dict:
    """Each further held-out draw's grouping (same method and settings) against the chosen one.

    Returns ``probe_seeds``, ``groupings`` (per draw, its groups' task lists), ``same_as_chosen`` (per
    draw) and ``chosen_share`` (the share of draws that chose the grouping of ``document``).
    """
    chosen = groups_key(g["tasks"] for g in document["groups"])
    groupings, same = [], []
    for draw in draws:
        other = choose_groups(draw.matrix(estimator), method, estimator=estimator, **settings)
        groupings.append([list(g["tasks"]) for g in other["groups"]])
        same.append(groups_key(g["tasks"] for g in other["groups"]) == chosen)
    return {
        "probe_seeds": [draw.metadata.get("probe_seed") for draw in draws],
        "groupings": groupings,
        "same_as_chosen": same,
        "chosen_share": sum(same) / len(same),
    }


def study_grouping(
    study, store: AffinityStore, *, leave_alone: bool | None = None, draws: list[AffinityStore] | None = None
) -> dict:
    """The grouping document of a study's ``grouping`` settings on its affinity ``store``
    (``leave_alone``: the settings' unless given): ``groups.json`` of ``groups: affinity``, and its
    leave-alone variant for ``validation.leave_alone_arms``; ``draws``: see :func:`store_grouping`."""
    settings = study.settings.grouping
    return store_grouping(
        store,
        settings.estimator,
        settings.method,
        n_boot=settings.bootstrap,
        seed=study.config.seed,
        k=settings.k,
        solver=settings.solver,
        leave_alone=settings.leave_alone if leave_alone is None else leave_alone,
        draws=draws,
    )
