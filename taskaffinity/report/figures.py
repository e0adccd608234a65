"""Paper figures: each function takes DataFrames (plus keyword-only options) and returns a
matplotlib Figure; the caller saves it (``storage.write_figure``) and closes it.

Affinity (:mod:`.figures_affinity`): :func:`affinity_heatmap_clustered`, :func:`affinity_trajectories`,
:func:`fidelity_scatter`, :func:`predicted_vs_measured` (:mod:`.figures_fidelity`). Studies (:mod:`.figures_study`):
:func:`transfer_matrix`, :func:`scaling_curves`, :func:`low_resource_heatmap`, :func:`groups_table`.
The numbers behind them are in :mod:`.tables` (:func:`transfer_table`, :func:`critical_point` ...).
"""

from __future__ import annotations

from .figures_affinity import affinity_heatmap_clustered, affinity_trajectories, cluster_layout, comembership_heatmap
from .figures_fidelity import fidelity_scatter, predicted_vs_measured
from .figures_study import groups_table, low_resource_heatmap, scaling_curves, transfer_matrix
from .heatmap import affinity_heatmap
from .tables import critical_point, groups_frame, seed_summary, transfer_table

__all__ = [
    "affinity_heatmap",
    "affinity_heatmap_clustered",
    "affinity_trajectories",
    "cluster_layout",
    "comembership_heatmap",
    "critical_point",
    "fidelity_scatter",
    "groups_frame",
    "groups_table",
    "low_resource_heatmap",
    "predicted_vs_measured",
    "scaling_curves",
    "seed_summary",
    "transfer_matrix",
    "transfer_table",
]
