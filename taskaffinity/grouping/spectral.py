"""Baseline: spectral clustering of a non-negative similarity (scikit-learn).

Transform: ``S = (A + A^T) / 2``, then min-max scaled off the diagonal to
``[0, 1]`` (``(S - min) / (max - min)``; the most hostile pair gets 0, the most
helpful 1; the diagonal is set to 1). Spectral clustering needs a non-negative
similarity; min-max scaling keeps the order of all pairs and, unlike clipping
negatives to 0, keeps "mildly harmful" apart from "very harmful". A constant
matrix becomes all ones. ``SpectralClustering(affinity="precomputed")`` then
makes exactly ``k`` clusters (one cluster when ``k == 1``), scored with the TAG
objective (Fifty et al. 2021).
"""

from __future__ import annotations

import warnings

import numpy as np

from ._base import BaseGrouping


def similarity(A: np.ndarray) -> np.ndarray:
    """Min-max scaled symmetrised affinity, diagonal 1."""
    S = (A + A.T) / 2
    off = ~np.eye(len(A), dtype=bool)
    if not off.any():
        return np.ones_like(S)
    low, high = S[off].min(), S[off].max()
    out = (S - low) / (high - low) if high > low else np.ones_like(S)
    np.fill_diagonal(out, 1.0)
    return out


class SpectralGrouping(BaseGrouping):
    """Spectral clustering into ``k`` groups; ``seed`` fixes the k-means label assignment."""

    method = "spectral"

    def __init__(self, *, k: int, seed: int = 0, singleton_score: float = 0.0, leave_alone: bool = False):
        super().__init__(k=k, singleton_score=singleton_score, leave_alone=leave_alone)
        self.seed = seed

    def _fit_groups(self, A: np.ndarray):
        from sklearn.cluster import SpectralClustering

        n = len(A)
        if self.k == 1 or n < 2:
            return [tuple(range(n))]
        if self.k == n:
            return [(t,) for t in range(n)]
        self.similarity_ = similarity(A)
        model = SpectralClustering(
            n_clusters=self.k, affinity="precomputed", random_state=self.seed, assign_labels="kmeans", n_init=10
        )
        with warnings.catch_warnings():  # "graph not fully connected" is expected for block matrices
            warnings.simplefilter("ignore", UserWarning)
            labels = model.fit_predict(self.similarity_)
        return [tuple(np.flatnonzero(labels == c).tolist()) for c in np.unique(labels)]
