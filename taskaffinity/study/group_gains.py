"""Group gains: how well each predictor ranks members' measured gains in sampled groups.

The second level of validity (docs/grouping.md, "Group gains"): groups of 3-4 tasks are trained
at several seeds, each member's gain against its single-task run is measured, and every
predictor is read within target (how a target ranks the groups that contain it) against the
seed-split noise ceiling of those gains (:func:`.results.seed_reliability`). Predictors:

* TAG's mean of pairs (Fifty et al. 2021): a member's score is the mean over its group mates of
  the pair value mate -> member, from any pair matrix (each affinity estimator, or the measured
  pair gains: the best any pair-based score can do);
* a group-gain surrogate (Li et al. 2023; kernel surrogate models, ICLR 2026), scored by K-fold
  cross-validation over the groups: each group's prediction comes from a surrogate fitted on
  the other folds, never on itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import KFold

from ..affinity.estimators import report_order
from ..grouping import GroupingError, member_scores
from ..grouping.gain_accuracy import prediction_accuracy
from ..grouping.subsets import SEPARATOR, tidy_to_subsets
from ..grouping.surrogate import make_surrogate
from .results import pair_subsets, seed_reliability

COLUMNS = [
    "predictor",
    "kind",
    "within_target",
    "ci_low",
    "ci_high",
    "relative_error",
    "n_targets",
    "n_groups",
    "within_target_ceiling",
    "within_target_reliability",
    "seeds",
]


def compare_group_predictors(
    gains: pd.DataFrame,
    pairs=None,
    *,
    surrogates=None,
    train_also: pd.DataFrame | None = None,
    folds: int = 5,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Within-target Spearman of each predictor against the measured group gains, with its
    bootstrap CI over targets and the gains' seed-split ceiling.

    ``gains``: tidy, one row per (group, member, seed): columns ``group`` (member names, or
    ``"a+b+c"``), ``target`` (the member), ``seed``, ``gain`` (member's metric in the group minus
    alone, same seed). The predictors score the seed-mean gains. ``pairs``: a sources x targets
    DataFrame or a mapping name -> DataFrame (affinity estimators, measured pair gains; a pair it
    lacks makes that member's score NaN, left out). ``surrogates``: a mapping name -> surrogate
    (fitted or not: each is cloned, then fitted fold by fold on ``folds`` splits of the groups).
    ``train_also``: more measured subsets, tidy like ``gains`` (e.g. the pairs), added to every
    fold's training set and never scored: surrogates named ``<name>_with_pairs`` are fitted on them
    as well (besides ``<name>``, fitted on the sampled groups alone).

    Returns one row per predictor (``COLUMNS``): ``kind`` (``mean_of_pairs`` / ``surrogate``),
    ``within_target`` with ``ci_low``/``ci_high``, ``relative_error`` (MSE / variance of the
    measured gains per target, meaningful only for predictors in gain units), counts, and the
    ceiling (``within_target_ceiling``, NaN below 2 seeds; :func:`.results.seed_reliability`).
    """
    missing = [c for c in ("group", "target", "seed", "gain") if c not in gains.columns]
    if missing:
        raise GroupingError(f"gains lacks column(s) {', '.join(missing)} (tidy: group, target, seed, gain)")
    if isinstance(pairs, pd.DataFrame):
        pairs = {"pairs": pairs}
    pairs, surrogates = dict(pairs or {}), dict(surrogates or {})
    if not pairs and not surrogates:
        raise GroupingError("pairs and surrogates: give at least one predictor")
    for name, matrix in pairs.items():
        if not isinstance(matrix, pd.DataFrame):
            raise GroupingError(f"pairs['{name}'] must be a sources x targets DataFrame, got {type(matrix).__name__}")
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise GroupingError(f"folds must be an integer >= 2, got {folds!r}")

    subsets, measured = tidy_to_subsets(gains)
    tasks = list(subsets.columns)
    M, G = subsets.to_numpy().astype(bool), measured.to_numpy(dtype=float)
    per_seed = gains.assign(group=[_key(g, tasks) for g in gains["group"]], target=gains["target"].astype(str))
    noise = seed_reliability(per_seed[["group", "target", "seed", "gain"]], keys=["group", "target"])
    settings = {"n_boot": n_boot, "level": level, "seed": seed, "min_size": 2}

    rows = []
    for name, matrix in pairs.items():
        A = np.array(matrix.rename(index=str, columns=str).reindex(index=tasks, columns=tasks), dtype=float)
        np.fill_diagonal(A, 0.0)
        rows.append(_row(name, "mean_of_pairs", prediction_accuracy(member_scores(A, M), G, M, tasks, **settings)))
    extra = None
    if train_also is not None and not train_also.empty:
        extra = tidy_to_subsets(train_also)
        columns = sorted(set(tasks) | set(extra[0].columns))  # tasks only the extra subsets hold
        extra = (extra[0].reindex(columns=columns, fill_value=0), extra[1].reindex(columns=columns))
        subsets, measured = subsets.reindex(columns=columns, fill_value=0), measured.reindex(columns=columns)
    for name, surrogate in surrogates.items():
        variants = {name: None} if extra is None else {name: None, f"{name}_with_pairs": extra}
        for label, also in variants.items():
            predicted = cross_validated_gains(surrogate, subsets, measured, folds=folds, seed=seed, train_also=also)
            predicted = predicted[:, [list(subsets.columns).index(t) for t in tasks]]
            rows.append(_row(label, "surrogate", prediction_accuracy(predicted, G, M, tasks, **settings)))
    table = pd.DataFrame(rows)
    table["within_target_ceiling"] = noise["within_target_ceiling"]
    table["within_target_reliability"] = noise["within_target_reliability"]
    table["seeds"] = noise["seeds"]
    return table[COLUMNS]


def cross_validated_gains(
    surrogate,
    subsets: pd.DataFrame,
    gains: pd.DataFrame,
    *,
    folds: int = 5,
    seed: int = 0,
    train_also: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> np.ndarray:
    """Out-of-fold predictions of members' gains: the groups split into ``folds`` (shuffled by
    ``seed``), each fold predicted by a clone of ``surrogate`` fitted on the others, plus the
    ``train_also`` ``(subsets, gains)`` in every fold (same task columns); NaN where a fold's fit left
    the target without a model."""
    M = subsets.to_numpy().astype(bool)
    out = np.full(M.shape, np.nan)
    splits = KFold(n_splits=min(folds, len(M)), shuffle=True, random_state=seed)
    for train, test in splits.split(M):
        model = clone(surrogate)
        fit_subsets, fit_gains = subsets.iloc[train], gains.iloc[train]
        if train_also is not None:
            fit_subsets = pd.concat([fit_subsets, train_also[0]])
            fit_gains = pd.concat([fit_gains, train_also[1]])
        try:
            model.fit(fit_subsets, fit_gains)
        except GroupingError:  # too few groups in this fold for any target: nothing to predict
            continue
        out[test] = model.predict_members(M[test])
    return out


def _key(group, tasks: list[str]) -> str:
    names = group.split(SEPARATOR) if isinstance(group, str) else [str(t) for t in group]
    return SEPARATOR.join(sorted(names, key=tasks.index))


def _row(name: str, kind: str, accuracy: dict) -> dict:
    ci = accuracy["within_target_ci"] or [None, None]
    return {
        "predictor": name,
        "kind": kind,
        "within_target": accuracy["within_target_spearman"],
        "ci_low": ci[0],
        "ci_high": ci[1],
        "relative_error": accuracy["relative_error"],
        "n_targets": accuracy["n_targets"],
        "n_groups": accuracy["n_subsets"],
    }


def group_gain_table(groups: pd.DataFrame, pair_gains: pd.DataFrame, store=None, *, seed: int = 0) -> pd.DataFrame:
    """A validation study's group-gain comparison (``tables/group_gain_predictors.csv``): TAG's mean of
    pairs from the measured pair gains (``pair_gains``: ``source, target, gain``) and from every
    estimator of the affinity ``store``, and the linear and kernel surrogates (5-fold over the sampled
    groups; fitted on the held-in groups alone, and ``_with_pairs`` on them and every measured pair),
    against the members' measured group gains (``groups``: :func:`.results.group_gains`)."""
    pairs = {"measured_pairs": pair_gains.pivot_table(index="source", columns="target", values="gain")}
    if store is not None:
        pairs.update({name: store.matrix(name) for name in report_order(store.estimators)})
    surrogates = {"linear_surrogate": make_surrogate("linear"), "kernel_surrogate": make_surrogate("kernel")}
    return compare_group_predictors(
        groups, pairs, surrogates=surrogates, train_also=pair_subsets(pair_gains), seed=seed
    )
