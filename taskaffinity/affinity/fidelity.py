"""How well estimators agree: exact lookahead vs its first-order form, SGD vs optimizer rule,
probes vs streams.

For each pair of estimators, over off-diagonal (source ≠ target) entries:
Pearson and Spearman correlation and the fraction of entries with the same sign,
per probe (steps where both were recorded; summarised by median, min and max)
and for the run-averaged matrices. Given the estimators' reliabilities
(:mod:`.reliability`), each pair also gets the ``ceiling`` √(ρ_a·ρ_b) that its
run-average Spearman is read against: two noisy estimators of one quantity agree
at most that well.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import pearsonr, spearmanr

from ..stats import ceiling
from .store import AffinityStore

PAIRS = (
    ("lookahead_sgd", "first_order_sgd"),
    ("lookahead_optimizer", "first_order_optimizer"),
    ("lookahead_sgd", "lookahead_optimizer"),
    ("first_order_sgd", "first_order_optimizer"),
    ("lookahead_sgd", "cosine"),
    ("gram", "stream_gram"),
    ("first_order_sgd", "stream_first_order_sgd"),
    ("first_order_optimizer", "stream_first_order_optimizer"),
    ("cosine", "stream_cosine"),
)


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Pearson, Spearman and sign agreement of two equally shaped sets of values."""
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"pearson": float("nan"), "spearman": float("nan"), "sign_agreement": float("nan"), "n": int(len(a))}
    return {
        "pearson": float(pearsonr(a, b)[0]),
        "spearman": float(spearmanr(a, b)[0]),
        "sign_agreement": float(np.mean(np.sign(a) == np.sign(b))),
        "n": int(len(a)),
    }


def off_diagonal(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["source"] != frame["target"]]


def fidelity(store: AffinityStore, pairs=PAIRS, reliability: dict[str, dict] | None = None) -> dict:
    """Agreement for every pair of recorded estimators in ``pairs``; with ``reliability``
    (estimator -> :func:`.reliability.estimator_reliability`) also each pair's ``ceiling``."""
    report = {}
    for a, b in pairs:
        if a not in store.estimators or b not in store.estimators:
            continue
        left = off_diagonal(store.select(a)).set_index(["step", "source", "target"])["value"]
        right = off_diagonal(store.select(b)).set_index(["step", "source", "target"])["value"]
        joined = pd.concat({"a": left, "b": right}, axis=1, join="inner")
        per_probe = [agreement(g["a"].to_numpy(), g["b"].to_numpy()) for _, g in joined.groupby(level="step")]
        per_probe = pd.DataFrame(per_probe)
        mean_a = off_diagonal(store.matrix(a).stack().rename("value").reset_index())
        mean_b = off_diagonal(store.matrix(b).stack().rename("value").reset_index())
        both = mean_a.merge(mean_b, on=["source", "target"], suffixes=("_a", "_b"))
        report[f"{a} vs {b}"] = {
            "probes": int(len(per_probe)),
            "per_probe": {metric: _spread(per_probe[metric]) for metric in ("pearson", "spearman", "sign_agreement")}
            if len(per_probe)
            else {},
            "run_average": agreement(both["value_a"].to_numpy(), both["value_b"].to_numpy()),
        }
        if reliability and a in reliability and b in reliability:
            report[f"{a} vs {b}"]["ceiling"] = ceiling(reliability[a]["reliability"], reliability[b]["reliability"])
    return report


def _spread(values: pd.Series) -> dict[str, float]:
    values = values.dropna()
    if values.empty:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"median": float(values.median()), "min": float(values.min()), "max": float(values.max())}
