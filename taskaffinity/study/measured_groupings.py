"""Groupings solved from a validation study's measured gains, measured as arms beside the tool's own.

* ``oracle``: the study's grouping method on the measured pair gains (source -> target, mean over
  seeds) in place of an affinity matrix: the best grouping pair knowledge could give.
* ``surrogate`` (``study.validation.surrogate``): a group-gain surrogate (Li et al. 2023; kernel
  surrogate models, Zhang et al. 2026) fitted to every measured subset -- the pairs and the sampled
  groups of ``group_samples`` -- and :class:`~taskaffinity.grouping.SurrogateGrouping` on its
  predicted member gains: the route that learns from groups, not only from pairs.
* ``*_leave_alone`` (``study.validation.leave_alone_arms``): the chosen, oracle and surrogate
  problems again with training alone as a free option (``grouping/alone.py``): what the tool
  recommends when joint training hurts, measured against the forced partitions.

All read the first wave of jobs (single, pair and sampled-group runs) and are written as grouping
documents (``<arm>_groups.json``) before their arms are planned.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..grouping.output import write_document
from .choose import study_grouping
from .results import group_gains, measured_gains, pair_subsets, seed_gains
from .settings import Study

log = logging.getLogger(__name__)


def solved_groupings(study: Study, results: pd.DataFrame, out: Path, *, store=None, progress: bool = False) -> dict:
    """Arm name -> ``[(tasks, serves), ...]`` of every grouping solved from the first wave's measured
    gains (module docstring), each written as ``<arm>_groups.json`` and solved with the study's
    grouping settings (``leave_alone`` included): ``oracle``; ``surrogate`` with
    ``study.validation.surrogate`` (each left out, with a warning, where failed first-wave jobs left
    a task without a measured pair or too few subsets for its model);
    with ``study.validation.leave_alone_arms`` also ``chosen_leave_alone`` (from the affinity
    ``store``), ``oracle_leave_alone`` and ``surrogate_leave_alone``: the same problems with training
    alone as a free option (``grouping/alone.py``)."""
    from ..grouping import GroupingError

    settings = study.settings
    documents = {}
    for suffix in ("", "_leave_alone") if settings.leave_alone_arms else ("",):
        leave_alone = bool(suffix) or settings.grouping.leave_alone
        if suffix and store is not None and settings.groups_from_affinity:
            documents["chosen_leave_alone"] = study_grouping(study, store, leave_alone=True)
        solvers = {"oracle": oracle_document}
        if settings.surrogate:
            solvers["surrogate"] = lambda *a, **k: surrogate_document(*a, progress=progress, **k)
        for arm, solve in solvers.items():
            try:
                documents[arm + suffix] = solve(study, results, leave_alone=leave_alone)
            except GroupingError as err:  # failed first-wave jobs left too little measured
                log.warning("no %s%s arm: %s", arm, suffix, err)
    for arm, document in documents.items():
        write_document(out / f"{arm}_groups.json", document)
    return {arm: [(tuple(g["tasks"]), tuple(g["serves"])) for g in d["groups"]] for arm, d in documents.items()}


def oracle_document(study: Study, results: pd.DataFrame, *, leave_alone: bool = False) -> dict:
    """The grouping document the study's method solves from the measured pair gains (a pair not
    measured counts 0), with training alone as a free option if ``leave_alone``."""
    from ..grouping import GroupingError
    from ..grouping.stability import choose_groups

    pool = list(study.settings.pool(study.config))
    gains = measured_gains(results).dropna(subset=["gain"])
    matrix = gains.pivot_table(index="source", columns="target", values="gain").reindex(index=pool, columns=pool)
    unmeasured = [t for t in pool if matrix[t].notna().sum() == 0]
    if unmeasured:
        raise GroupingError(f"no measured pair gain onto {', '.join(unmeasured)}")
    missing = int(matrix.isna().sum().sum()) - len(pool)  # off-diagonal pairs without a measurement
    if missing:
        log.warning(
            "oracle grouping: %d of %d ordered pairs not measured, counted as 0", missing, len(pool) ** 2 - len(pool)
        )
    settings = study.settings.grouping
    document = choose_groups(
        matrix.fillna(0.0),
        settings.method,
        estimator="measured_gain",
        seed=study.config.seed,
        k=settings.k,
        solver=settings.solver,
        leave_alone=leave_alone,
    )
    document["unmeasured_pairs"] = missing
    return document


def measured_subsets(results: pd.DataFrame) -> pd.DataFrame:
    """Every measured subset of two or more tasks, tidy (``group, target, seed, gain``): each pair
    run gives both members' gains, each sampled group every member's (paired with the member's
    single-task run of the same seed)."""
    pairs = pair_subsets(seed_gains(results))
    frames = [frame for frame in (pairs, group_gains(results)) if not frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else pairs


def surrogate_document(
    study: Study, results: pd.DataFrame, *, leave_alone: bool | None = None, progress: bool = False
) -> dict:
    """Fit ``study.validation.surrogate`` to every measured subset (seed means) and choose at most ``k``
    groups by its predicted member gains (the study's ``k`` and solver; ``leave_alone``, default the
    study's): the grouping document, with its stability over ``grouping.bootstrap`` resamples of the
    subsets and ``fitted_on`` (how many subsets of each size)."""
    from tqdm.auto import tqdm

    from ..grouping import GroupingError, SurrogateGrouping, make_surrogate
    from ..grouping.output import grouping_document
    from ..grouping.stability import grouping_stability
    from ..grouping.subsets import tidy_to_subsets

    pool = list(study.settings.pool(study.config))
    subsets, gains = tidy_to_subsets(measured_subsets(results), tasks=pool)
    settings, kind = study.settings.grouping, study.settings.surrogate
    leave_alone = settings.leave_alone if leave_alone is None else leave_alone
    seed = study.config.seed

    def make() -> SurrogateGrouping:
        return SurrogateGrouping(k=settings.k, leave_alone=leave_alone, solver=settings.solver, seed=seed)

    surrogate = make_surrogate(kind).fit(subsets, gains)
    without = [t for t in pool if t not in surrogate.models_]
    if without:
        raise GroupingError(
            f"{', '.join(without)}: a member of fewer than {surrogate.min_subsets} measured subsets, no surrogate model"
        )
    grouping = make().fit(surrogate)
    stability = None
    if settings.bootstrap:
        rng = np.random.default_rng(seed)
        draws = (rng.integers(0, len(subsets), len(subsets)) for _ in range(settings.bootstrap))
        resamples = (make_surrogate(kind).fit(subsets.iloc[rows], gains.iloc[rows]) for rows in draws)
        bar = tqdm(resamples, total=settings.bootstrap, desc="surrogate stability", disable=not progress, leave=False)
        stability = grouping_stability(make, grouping, bar)
    document = grouping_document(grouping, estimator=f"{kind}_surrogate", stability=stability)
    sizes = subsets.sum(axis=1).value_counts().sort_index()
    document["fitted_on"] = {"subsets": int(len(subsets)), "sizes": {str(int(k)): int(v) for k, v in sizes.items()}}
    return document
