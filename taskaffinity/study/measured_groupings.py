"""Groupings solved from a validation study's measured gains, measured as arms beside the tool's own.

* ``oracle``: the study's grouping method on the measured pair gains (source -> target, mean over
  seeds) in place of an affinity matrix: the best grouping pair knowledge could give.
* ``surrogate`` (``study.validation.surrogate``): a group-gain surrogate (Li et al. 2023; kernel
  surrogate models, Zhang et al. 2026) fitted to every measured subset -- the pairs and the sampled
  groups of ``group_samples`` -- and :class:`~taskaffinity.grouping.SurrogateGrouping` on its
  predicted member gains: the route that learns from groups, not only from pairs.

Both read the first wave of jobs (single, pair and sampled-group runs) and are written as grouping
documents (``oracle_groups.json``, ``surrogate_groups.json``) before their arms are planned.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..grouping.output import write_document
from ..grouping.subsets import SEPARATOR
from .results import group_gains, measured_gains, seed_gains
from .settings import Study


def oracle_groups(study: Study, results: pd.DataFrame, out: Path) -> dict[str, tuple[str, ...]]:
    """The grouping the study's method solves from the measured pair gains (``oracle_groups.json``);
    a pair not measured counts 0."""
    from ..grouping.stability import choose_groups

    pool = list(study.settings.pool(study.config))
    matrix = (
        measured_gains(results)
        .pivot_table(index="source", columns="target", values="gain")
        .reindex(index=pool, columns=pool)
        .fillna(0.0)
    )
    settings = study.settings.grouping
    document = choose_groups(
        matrix, settings.method, estimator="measured_gain", seed=study.config.seed, k=settings.k, solver=settings.solver
    )
    write_document(out / "oracle_groups.json", document)
    return {f"O{i + 1}": tuple(g["tasks"]) for i, g in enumerate(document["groups"])}


def measured_subsets(results: pd.DataFrame) -> pd.DataFrame:
    """Every measured subset of two or more tasks, tidy (``group, target, seed, gain``): each pair
    run gives both members' gains, each sampled group every member's (paired with the member's
    single-task run of the same seed)."""
    pairs = seed_gains(results)
    pairs = pd.DataFrame(
        {
            "group": [f"{s}{SEPARATOR}{t}" for s, t in zip(pairs["source"], pairs["target"])],
            "target": pairs["target"],
            "seed": pairs["seed"],
            "gain": pairs["gain"],
        }
    )
    return pd.concat([frame for frame in (pairs, group_gains(results)) if not frame.empty], ignore_index=True)


def surrogate_groups(
    study: Study, results: pd.DataFrame, out: Path, *, progress: bool = False
) -> dict[str, tuple[str, ...]]:
    """Fit ``study.validation.surrogate`` to every measured subset (seed means), choose at most ``k``
    groups by its predicted member gains (the study's ``k``, ``leave_alone`` and solver), and write the
    document with its stability over ``grouping.bootstrap`` resamples of the subsets
    (``surrogate_groups.json``)."""
    from tqdm.auto import tqdm

    from ..grouping import SurrogateGrouping, make_surrogate
    from ..grouping.output import grouping_document
    from ..grouping.stability import grouping_stability
    from ..grouping.subsets import tidy_to_subsets

    pool = list(study.settings.pool(study.config))
    subsets, gains = tidy_to_subsets(measured_subsets(results), tasks=pool)
    settings, kind = study.settings.grouping, study.settings.surrogate
    seed = study.config.seed

    def make() -> SurrogateGrouping:
        return SurrogateGrouping(k=settings.k, leave_alone=settings.leave_alone, solver=settings.solver, seed=seed)

    grouping = make().fit(make_surrogate(kind).fit(subsets, gains))
    stability = None
    if settings.bootstrap:
        rng = np.random.default_rng(seed)
        draws = (rng.integers(0, len(subsets), len(subsets)) for _ in range(settings.bootstrap))
        resamples = (make_surrogate(kind).fit(subsets.iloc[rows], gains.iloc[rows]) for rows in draws)
        bar = tqdm(resamples, total=settings.bootstrap, desc="surrogate stability", disable=not progress, leave=False)
        stability = grouping_stability(make, grouping, bar)
    document = grouping_document(grouping, estimator=f"{kind}_surrogate", stability=stability)
    document["fitted_on"] = {"subsets": int(len(subsets)), "sizes": subsets.sum(axis=1).value_counts().to_dict()}
    document["fitted_on"]["sizes"] = {str(int(k)): int(v) for k, v in sorted(document["fitted_on"]["sizes"].items())}
    write_document(out / "surrogate_groups.json", document)
    return {f"S{i + 1}": tuple(g["tasks"]) for i, g in enumerate(document["groups"])}
