"""Baseline: Louvain community detection (networkx) on the helpful pairs.

Graph: one node per task, an edge of weight ``S[i, j]`` for every pair whose
symmetrised affinity ``S = (A + A^T) / 2`` is positive (modularity needs
non-negative weights; a harmful pair simply gets no edge).
``louvain_communities(weight="weight", resolution=resolution, seed=seed)`` finds
the communities; its count is data-driven, so ``k`` is honoured as a **cap**:
while there are more than ``k`` communities, the two with the largest mean
symmetrised affinity between them are merged (isolated tasks included). Fewer
than ``k`` communities are kept as they are. Scored with the TAG objective
(Fifty et al. 2021).
"""

from __future__ import annotations

import numpy as np

from ._base import BaseGrouping


def merge_to_cap(S: np.ndarray, groups: list[list[int]], k: int) -> list[list[int]]:
    """Merge the closest pair (mean between-group ``S``) until at most ``k`` groups remain."""
    groups = [list(g) for g in groups]
    while len(groups) > k:
        best, pair = -np.inf, (0, 1)
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                link = S[np.ix_(groups[a], groups[b])].mean()
                if link > best:
                    best, pair = link, (a, b)
        a, b = pair
        groups[a] = sorted(groups[a] + groups[b])
        del groups[b]
    return groups


class LouvainGrouping(BaseGrouping):
    """Louvain communities of the positive symmetrised affinity, at most ``k`` of them."""

    method = "louvain"

    def __init__(
        self, *, k: int, resolution: float = 1.0, seed: int = 0, singleton_score: float = 0.0, leave_alone: bool = False
    ):
        super().__init__(k=k, singleton_score=singleton_score, leave_alone=leave_alone)
        self.resolution = resolution
        self.seed = seed

    def _fit_groups(self, A: np.ndarray):
        import networkx as nx

        n = len(A)
        S = (A + A.T) / 2
        graph = nx.Graph()
        graph.add_nodes_from(range(n))
        graph.add_weighted_edges_from((i, j, float(S[i, j])) for i in range(n) for j in range(i + 1, n) if S[i, j] > 0)
        if graph.number_of_edges():
            found = nx.community.louvain_communities(graph, weight="weight", resolution=self.resolution, seed=self.seed)
        else:  # no helpful pair at all: every task on its own
            found = [{t} for t in range(n)]
        communities = sorted((sorted(c) for c in found), key=lambda c: c[0])
        self.n_communities_ = len(communities)
        return [tuple(g) for g in merge_to_cap(S, communities, self.k)]
