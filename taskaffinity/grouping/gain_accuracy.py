"""How well predicted group gains match measured ones, on held-out subsets.

Within target (what grouping reads: how a target ranks the groups that contain it), the Spearman
correlation of predicted and measured gains over the subsets containing the target, averaged over
targets. Relative error as the kernel surrogate reference code scores it
(``calculate_normalized_error`` in VirtuosoResearch/Kernel-surrogate-models): per target, mean
squared error over its held-out subsets divided by the variance of its measured gains (``1 - R^2``:
0 is perfect, 1 is what predicting the target's mean gain would give). Every mean over targets
comes with a percentile bootstrap interval over targets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..stats import bootstrap_mean_ci, within_target_spearman
from ._base import GroupingError
from .subsets import as_gains, as_indicators


def prediction_accuracy(
    predicted: np.ndarray,
    measured: np.ndarray,
    members: np.ndarray,
    tasks: list[str],
    *,
    min_size: int = 1,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """Accuracy of ``predicted`` member gains against ``measured`` ones, per target and on average.

    All arrays are (n_subsets, n_tasks) in ``tasks`` order; ``members`` is boolean. Only members
    of subsets with at least ``min_size`` tasks and both values finite count. Returns
    ``within_target_spearman`` with ``within_target_ci``, ``relative_error`` with
    ``relative_error_ci``, ``mean_absolute_error`` (gain units), ``n_targets``, ``n_subsets``,
    ``level`` and ``per_target`` (DataFrame: ``target, n, spearman, relative_error, mae``;
    Spearman needs 3 subsets with varying values, relative error a target whose gains vary).
    """
    predicted, measured, members = (
        np.asarray(predicted, dtype=float),
        np.asarray(measured, dtype=float),
        np.asarray(members, dtype=bool),
    )
    if not (predicted.shape == measured.shape == members.shape) or predicted.shape[1] != len(tasks):
        raise GroupingError(
            f"predicted {predicted.shape}, measured {measured.shape} and members {members.shape} "
            f"must all be (subsets, {len(tasks)} tasks)"
        )
    use = members & (members.sum(axis=1) >= min_size)[:, None] & np.isfinite(predicted) & np.isfinite(measured)
    rows, cols = np.nonzero(use)
    tidy = pd.DataFrame(
        {
            "target": np.asarray(tasks, dtype=object)[cols],
            "predicted": predicted[rows, cols],
            "measured": measured[rows, cols],
        }
    )
    rng = np.random.default_rng(seed)
    within = within_target_spearman(tidy, "predicted", "measured", n_boot=n_boot, level=level, rng=rng)
    per_target = []
    for target, g in tidy.groupby("target", sort=False):
        variance = float(np.var(g["measured"]))
        mse = float(np.mean((g["predicted"] - g["measured"]) ** 2))
        per_target.append(
            {
                "target": target,
                "n": len(g),
                "spearman": within["per_target"].get(target, np.nan),
                "relative_error": mse / variance if variance > 0 else np.nan,
                "mae": float(np.mean(np.abs(g["predicted"] - g["measured"]))),
            }
        )
    per_target = pd.DataFrame(per_target, columns=["target", "n", "spearman", "relative_error", "mae"])
    errors = per_target["relative_error"].dropna().to_numpy()
    return {
        "within_target_spearman": within["mean"],
        "within_target_ci": within["ci"],
        "relative_error": float(errors.mean()) if errors.size else None,
        "relative_error_ci": bootstrap_mean_ci(errors, n_boot=n_boot, level=level, rng=rng) if n_boot else None,
        "mean_absolute_error": float(np.mean(np.abs(tidy["predicted"] - tidy["measured"]))) if len(tidy) else None,
        "n_targets": within["n_targets"],
        "n_subsets": int(use.any(axis=1).sum()),
        "level": level,
        "per_target": per_target,
    }


def held_out_accuracy(surrogate, subsets, gains, **settings) -> dict:
    """:func:`prediction_accuracy` of a fitted surrogate on held-out ``subsets`` with measured
    ``gains`` (same forms as ``fit``). Pass subsets the surrogate was *not* fitted on: on its own
    training subsets this is an in-sample fit, not an accuracy."""
    if not hasattr(surrogate, "tasks_"):
        raise GroupingError("surrogate is not fitted: call fit(subsets, gains) first")
    tasks, M, index = as_indicators(subsets, surrogate.tasks_, "subsets")
    G = as_gains(gains, M, tasks, index, "gains")
    return prediction_accuracy(surrogate.predict_members(M), G, M, tasks, **settings)
