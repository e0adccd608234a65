"""Pictures of an affinity run's folder: one annotated heatmap per estimator.

``OUT/heatmap_<estimator>.png``  run-averaged matrix, diverging colours centred at 0, cells whose
                                bootstrap interval covers 0 hatched (:meth:`AffinityStore.covers_zero`)

:func:`write_affinity_outputs` writes the data (:func:`taskaffinity.affinity.outputs.write_data`)
and the pictures: everything ``taskaffinity affinity`` and ``AffinityMeter.save`` leave behind.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..affinity.outputs import write_data
from ..affinity.store import AffinityStore
from ..storage import write_figure
from .heatmap import affinity_heatmap


def write_heatmaps(
    store: AffinityStore, summaries: dict[str, pd.DataFrame], out: str | Path, *, confidence: float
) -> None:
    """``heatmap_<estimator>.png`` for every estimator; ``summaries`` as in ``fidelity.json``'s run
    (their ``significant`` column at level ``confidence`` decides the hatching)."""
    import matplotlib.pyplot as plt

    for estimator in store.estimators:
        mask = store.covers_zero(estimator, summary=summaries[estimator])
        fig = affinity_heatmap(
            store.matrix(estimator), mask=mask, title=f"{estimator} (hatched: {confidence:.0%} CI covers 0)"
        )
        write_figure(Path(out) / f"heatmap_{estimator}.png", fig, dpi=120)
        plt.close(fig)


def write_affinity_outputs(
    store: AffinityStore, summaries: dict[str, pd.DataFrame], report: dict, out: str | Path, *, confidence: float
) -> None:
    """The data files and the heatmaps of an affinity folder."""
    write_data(store, summaries, report, out)
    write_heatmaps(store, summaries, out, confidence=confidence)
