"""How far a run-averaged affinity matrix can be trusted: reliability, noise ceilings, structure.

An estimator's run average is the mean of k samples (probes, or streamed windows).
Its **split-half reliability** is the Spearman correlation of the off-diagonal
entries of two means over disjoint random halves of those samples, averaged over
random splits; the **Spearman–Brown** formula ρ_k = f·r / (1 + (f − 1)·r) turns it
into the reliability of the mean over all k samples (f = 2) and predicts how many
samples a target reliability needs (Spearman 1910; Brown 1910). Two estimators of the
same quantity cannot agree better than √(ρ_a·ρ_b), the **ceiling** their reliabilities
allow (Spearman's attenuation bound).

Reliability is reported twice: *pooled* over every off-diagonal pair, and *within
target*: the mean over targets j of the Spearman correlation of column j (how j ranks
its sources), which is what source ranking and grouping read. A matrix can be
reliable pooled only because of per-target or per-source offsets that never change
a within-target ranking; :func:`effect_shares` measures those offsets directly.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ..stats import samples_needed, snap, spearman_brown, verdict
from .estimators import STREAMED
from .store import AffinityStore

SPLITS = 100  # random half-splits averaged: the split-half estimate's own noise stays below ~0.02


def sample_matrices(store: AffinityStore, estimator: str) -> tuple[list[str], np.ndarray]:
    """Per-sample matrices of ``estimator``: task names and an array (k samples, n sources, n targets).

    One sample per recorded step (a probe, or the end of a streamed window); NaN where a
    sample did not measure a pair (sampled probe pairs).
    """
    tasks = store.tasks
    rows = store.select(estimator)
    steps = np.sort(rows["step"].unique())
    at = {t: i for i, t in enumerate(tasks)}
    cube = np.full((len(steps), len(tasks), len(tasks)), np.nan)
    k = np.searchsorted(steps, rows["step"].to_numpy())
    cube[k, rows["source"].map(at).to_numpy(), rows["target"].map(at).to_numpy()] = rows["value"].to_numpy()
    return tasks, cube


def pool_halves(store: AffinityStore, estimator: str) -> np.ndarray | None:
    """For a probe estimator whose probes alternated between two disjoint halves of their example
    pool: which samples (sorted steps) came from the first half; None otherwise (random halves)."""
    every = store.metadata.get("probe_every")
    if estimator.startswith("stream_") or not store.metadata.get("probe_pool_halves") or not every:
        return None
    steps = np.sort(store.select(estimator)["step"].unique())
    return (steps // every) % 2 == 0


def _off_diagonal(matrix: np.ndarray) -> np.ndarray:
    return matrix[~np.eye(len(matrix), dtype=bool)]


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return float("nan")
    return float(spearmanr(a[keep], b[keep]).statistic)


def within_target_spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over targets j of the Spearman correlation of columns j (sources ≠ j) of two matrices."""
    values = []
    for j in range(a.shape[1]):
        rows = np.arange(a.shape[0]) != j
        values.append(_spearman(a[rows, j], b[rows, j]))
    values = np.asarray(values)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def draw_reliability(matrices: list[pd.DataFrame]) -> float:
    """Within-target reliability of one draw of probe examples: the mean, over pairs of draws of the
    same training (``affinity.probe_draws``: the probes draw other examples of the same pool, or the
    same ones in another split and order), of their within-target Spearman. Unlike the split-half
    estimate it holds the training still, so it measures only what the matrix owes to which examples
    met which probes. NaN with fewer than 2 draws."""
    if len(matrices) < 2:
        return float("nan")
    first = matrices[0]
    aligned = [m.reindex(index=first.index, columns=first.columns).to_numpy(float) for m in matrices]
    values = [within_target_spearman(a, b) for i, a in enumerate(aligned) for b in aligned[i + 1 :]]
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _half_means(cube: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(len(cube))
    half = len(cube) // 2
    with warnings.catch_warnings():  # a pair no sample of a half measured is NaN, on purpose
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(cube[order[:half]], axis=0), np.nanmean(cube[order[half : 2 * half]], axis=0)


def _given_halves(cube: np.ndarray, halves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(cube[halves], axis=0), np.nanmean(cube[~halves], axis=0)


def split_half(cube: np.ndarray, *, splits: int = SPLITS, seed: int = 0, halves: np.ndarray | None = None) -> dict:
    """Split-half reliability of the mean of ``cube`` (k, n, n) over its first axis.

    Returns ``samples`` (k), ``split_half`` and ``within_target_split_half`` (mean over
    ``splits`` random halves, or the one split given by the boolean ``halves`` of length k:
    probes that drew from disjoint halves of their example pool, see
    ``LookaheadRecorder.pool_half``), and their Spearman–Brown full-length ``reliability`` and
    ``within_target_reliability``; NaN with fewer than 4 samples. Also ``early_late``
    (within target): the agreement of the first and the second half of the recording. Random
    halves interleave in time, so they measure sampling noise; when ``early_late`` is much
    lower, the matrix itself changed during training and its run average depends on when it
    was recorded.
    """
    k = len(cube)
    out = {
        "samples": int(k),
        "split_half": float("nan"),
        "within_target_split_half": float("nan"),
        "early_late": float("nan"),
    }
    if k >= 4:
        rng = np.random.default_rng(seed)
        pooled, within = [], []
        for _ in range(splits if halves is None else 1):
            a, b = _half_means(cube, rng) if halves is None else _given_halves(cube, np.asarray(halves, bool))
            pooled.append(_spearman(_off_diagonal(a), _off_diagonal(b)))
            within.append(within_target_spearman(a, b))
        out["split_half"] = snap(np.nanmean(pooled)) if np.isfinite(pooled).any() else float("nan")
        out["within_target_split_half"] = snap(np.nanmean(within)) if np.isfinite(within).any() else float("nan")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            early, late = np.nanmean(cube[: k // 2], axis=0), np.nanmean(cube[k - k // 2 :], axis=0)
        out["early_late"] = snap(within_target_spearman(early, late))
    out["reliability"] = spearman_brown(out["split_half"])
    out["within_target_reliability"] = spearman_brown(out["within_target_split_half"])
    return out


def effect_shares(matrix: np.ndarray) -> dict[str, float]:
    """How much of the off-diagonal variance per-target and per-source offsets explain.

    Least-squares fits of A_ij = μ + c_j (``target_share``), μ + r_i (``source_share``) and
    μ + r_i + c_j (``additive_share``) to the off-diagonal entries; each share is the
    fit's R². ``1 − additive_share`` is what depends on the pair itself. A large
    ``target_share`` means a term common to every source dominates the matrix (e.g. the
    optimizer rule's momentum and decay, identical for every source i: −Δ_0·g_j), which
    no source ranking can use.
    """
    n = len(matrix)
    off = ~np.eye(n, dtype=bool)
    i, j = np.nonzero(off)
    y = matrix[i, j]
    keep = np.isfinite(y)
    i, j, y = i[keep], j[keep], y[keep]
    total = float(((y - y.mean()) ** 2).sum()) if len(y) else 0.0
    if total == 0 or n < 3:
        return {"target_share": float("nan"), "source_share": float("nan"), "additive_share": float("nan")}

    def r2(*factors: np.ndarray) -> float:
        design = np.column_stack([np.ones(len(y))] + [np.eye(n)[f][:, 1:] for f in factors])
        fitted = design @ np.linalg.lstsq(design, y, rcond=None)[0]
        return snap(1 - ((y - fitted) ** 2).sum() / total)

    return {"target_share": r2(j), "source_share": r2(i), "additive_share": r2(i, j)}


def estimator_reliability(
    store: AffinityStore,
    estimator: str,
    *,
    splits: int = SPLITS,
    seed: int = 0,
    target: float = 0.9,
    summary: pd.DataFrame | None = None,
) -> dict:
    """Everything that says how far ``estimator``'s run-averaged matrix can be trusted.

    Keys: those of :func:`split_half`; ``samples_for_<target>`` (Spearman–Brown prophecy
    from the within-target reliability, the one rankings read); the shares of
    :func:`effect_shares`; with ``summary`` (``AffinityStore.summary``) also
    ``significant_share``: the share of off-diagonal pairs whose interval excludes 0.
    """
    tasks, cube = sample_matrices(store, estimator)
    out = split_half(cube, splits=splits, seed=seed, halves=pool_halves(store, estimator))
    out[f"samples_for_{target:g}"] = samples_needed(out["within_target_reliability"], out["samples"], target)
    out.update(effect_shares(store.matrix(estimator).to_numpy()))
    if summary is not None:
        off = summary[summary["source"] != summary["target"]]
        out["significant_share"] = float(off["significant"].mean()) if len(off) else float("nan")
    return out


# Reliability says a matrix would replicate, not that it is right. Streamed matrices replicate and
# can still be wrong: measured on the known answers (seed 2) and the validation studies (docs/affinity.md).
STREAM_CAVEAT = (
    "stream_* matrices come from training sub-batches: a reliable stream can still be biased (it took a "
    "shuffled-label task as a real task's top source at moderate reliability in a known-answer test) and "
    "the validation studies found streams near chance against measured transfer (within target -0.10 to "
    "0.40; only stream_gram on one set beat chance); rank sources and group with a held-out probe "
    "estimator (docs/affinity.md)."
)


def stream_caveat(estimators) -> str | None:
    """:data:`STREAM_CAVEAT` where any of ``estimators`` is streamed, else None."""
    return STREAM_CAVEAT if any(e in STREAMED for e in estimators) else None


# A prophecy beyond this many samples (probes or windows) is not a plan anyone can follow.
REACHABLE = 1e6


def reliability_table(report: dict) -> pd.DataFrame:
    """``fidelity.json``'s reliability section as one row per estimator, for printing and reports.

    Numbers are shown as measured, rounding residue of 0 as 0; ``samples_for_0.9`` is text:
    the count, or ``not reachable`` when no number of samples is predicted to get there
    (reliability ≤ 0) or the count exceeds 10^6.
    """

    def number(value):
        return float("nan") if value is None else snap(value)

    rows = []
    for estimator, values in report.get("reliability", {}).items():
        needed = number(next((v for k, v in values.items() if k.startswith("samples_for_")), None))
        within = number(values["within_target_reliability"])
        rows.append(
            {
                "estimator": estimator,
                "samples": values["samples"],
                "reliability": number(values["reliability"]),
                "within_target": within,
                "verdict": verdict(within),
                "early_late": number(values.get("early_late")),
                "significant_share": number(values.get("significant_share")),
                "target_offset_share": number(values["target_share"]),
                "samples_for_0.9": f"{needed:.0f}" if np.isfinite(needed) and needed <= REACHABLE else "not reachable",
            }
        )
    return pd.DataFrame(rows)
