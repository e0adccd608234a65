"""Groups from an affinity run: the store's matrix and bootstrap resamples handed to a grouping
method, with the estimator's reliability. The glue between ``affinity/`` (which measures) and
``grouping/`` (maths on matrices), used by ``taskaffinity group`` and by studies with
``groups: affinity``.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from ..affinity.reliability import estimator_reliability
from ..affinity.store import AffinityStore
from ..grouping.stability import choose_groups


def store_grouping(
    store: AffinityStore,
    estimator: str,
    method: str,
    *,
    n_boot: int = 100,
    seed: int = 0,
    progress: bool = False,
    **settings,
) -> dict:
    """The grouping document of ``method`` on a store's ``estimator``, with the estimator's
    reliability and the grouping's stability over ``n_boot`` resamples of the run's probes or
    windows (used by ``taskaffinity group`` and by studies with ``groups: affinity``)."""
    resamples = None
    if n_boot and store.select(estimator)["step"].nunique() > 1:
        resamples = tqdm(
            store.bootstrap_matrices(estimator, n_boot=n_boot, seed=seed),
            total=n_boot,
            desc="grouping stability",
            disable=not progress,
            leave=False,
        )
    return choose_groups(
        store.matrix(estimator),
        method,
        resamples=resamples,
        estimator=estimator,
        reliability=estimator_reliability(store, estimator, seed=seed),
        seed=seed,
        **settings,
    )


def study_grouping(study, store: AffinityStore, *, leave_alone: bool | None = None) -> dict:
    """The grouping document of a study's ``grouping`` settings on its affinity ``store``
    (``leave_alone``: the settings' unless given): ``groups.json`` of ``groups: affinity``, and its
    leave-alone variant for ``validation.leave_alone_arms``."""
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
    )
