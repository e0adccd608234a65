"""The data an affinity run (or :meth:`AffinityMeter.save`) leaves in its folder.

``OUT/affinity.parquet``        tidy records + run metadata (see :mod:`.store`)
``OUT/matrix_<estimator>.csv``  run-averaged matrix per estimator (rows sources, columns targets)
``OUT/summary_<estimator>.csv`` mean, standard error, bootstrap CI, significance per pair
``OUT/fidelity.json``           (strict JSON, null for a number that could not be computed)
                               how far to trust each matrix: ``reliability`` per estimator (split-half,
                               significant share, per-target offsets; see :mod:`.reliability`) and
                               ``agreement`` between estimators against their ceilings (see :mod:`.fidelity`);
                               with ``affinity.probe_draws`` > 1, ``draws`` (:func:`draws_report`)

Pictures of the same folder (``heatmap_<estimator>.png``) are the report's:
:func:`taskaffinity.report.affinity_outputs.write_heatmaps`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..storage import write_json, write_text
from .fidelity import fidelity
from .reliability import draw_reliability, estimator_reliability
from .store import AffinityStore


def summaries_of(
    store: AffinityStore, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> dict[str, pd.DataFrame]:
    """:meth:`AffinityStore.summary` of every recorded estimator."""
    return {e: store.summary(e, n_boot=n_boot, level=level, seed=seed) for e in store.estimators}


def trust_report(store: AffinityStore, summaries: dict[str, pd.DataFrame], *, seed: int = 0) -> dict:
    """``{"reliability": {estimator: ...}, "agreement": {"a vs b": ...}}``: the content of ``fidelity.json``."""
    reliability = {e: estimator_reliability(store, e, summary=summaries[e], seed=seed) for e in store.estimators}
    return {"reliability": reliability, "agreement": fidelity(store, reliability=reliability)}


def draws_report(stores: list[AffinityStore]) -> dict:
    """Per estimator held in every draw: the draws' probe seeds and one draw's within-target
    reliability between draws (:func:`~.reliability.draw_reliability`): the ``draws`` entry of
    ``fidelity.json`` for a run with ``affinity.probe_draws`` > 1."""
    common = [e for e in stores[0].estimators if all(e in s.estimators for s in stores[1:])]
    return {
        e: {
            "probe_seeds": [s.metadata.get("probe_seed") for s in stores],
            "within_target_between_draws": draw_reliability([s.matrix(e) for s in stores]),
        }
        for e in common
    }


def affinity_files(estimators: list[str]) -> list[str]:
    """The names :func:`write_data` and the heatmaps write for ``estimators``."""
    return [
        "affinity.parquet",
        "fidelity.json",
        *(
            f"{kind}_{e}.{suffix}"
            for e in estimators
            for kind, suffix in (("matrix", "csv"), ("summary", "csv"), ("heatmap", "png"))
        ),
    ]


def write_data(store: AffinityStore, summaries: dict[str, pd.DataFrame], report: dict, out: str | Path) -> None:
    """Write the store, ``fidelity.json`` and each estimator's matrix and summary CSV to ``out``."""
    out = Path(out)
    store.save(out / "affinity.parquet")
    write_json(out / "fidelity.json", report, strict=True)  # valid JSON: unknown numbers are null
    for estimator in store.estimators:
        write_text(out / f"matrix_{estimator}.csv", store.matrix(estimator).to_csv())
        write_text(out / f"summary_{estimator}.csv", summaries[estimator].to_csv(index=False))
