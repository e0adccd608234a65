"""Baseline: agglomerative clustering of the symmetrised affinity (scipy ``linkage``).

Transform: ``S = (A + A^T) / 2`` (the undirected view), distance
``D = max(S) - S`` off the diagonal (0 on it): the most mutually helpful pair is
at distance 0, every distance is non-negative and the order of pairs is that of
``S``. ``linkage`` (``method``, default ``"average"``) builds the dendrogram,
kept in ``linkage_`` with ``dendrogram_labels_`` for
``scipy.cluster.hierarchy.dendrogram``; ``fcluster(criterion="maxclust")`` cuts
it into at most ``k`` clusters. The clusters form a partition and are scored
with the TAG objective (Fifty et al. 2021) like every method here.
"""

from __future__ import annotations

import numpy as np

from ._base import BaseGrouping, GroupingError, affinity_distance

LINKAGE_METHODS = ("average", "complete", "single", "weighted")


class HierarchicalGrouping(BaseGrouping):
    """Cut an average-linkage (by default) dendrogram of the affinity distance into <= k groups."""

    method = "hierarchical"

    def __init__(self, *, k: int, linkage: str = "average", singleton_score: float = 0.0, leave_alone: bool = False):
        super().__init__(k=k, singleton_score=singleton_score, leave_alone=leave_alone)
        self.linkage = linkage

    def _fit_groups(self, A: np.ndarray):
        from scipy.cluster.hierarchy import fcluster, linkage
        from scipy.spatial.distance import squareform

        if self.linkage not in LINKAGE_METHODS:
            raise GroupingError(f"unknown linkage '{self.linkage}' (choose from {', '.join(LINKAGE_METHODS)})")
        n = len(A)
        if n == 1:
            self.linkage_ = np.empty((0, 4))
            return [(0,)]
        self.linkage_ = linkage(squareform(affinity_distance(A), checks=False), method=self.linkage)
        labels = fcluster(self.linkage_, self.k, criterion="maxclust")
        return [tuple(np.flatnonzero(labels == c).tolist()) for c in np.unique(labels)]

    def _set_results(self, tasks, A, groups):
        super()._set_results(tasks, A, groups)
        self.dendrogram_labels_ = list(tasks)
