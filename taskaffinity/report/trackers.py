"""What a finished run shows in an experiment tracker: the report's figures and final numbers.

Each function returns ``{name: Figure}`` or ``{name: float}`` for a tracker run
(:class:`taskaffinity.tracking.run.TrackingRun`); :func:`log_affinity_run` and :func:`log_study_run`
log them (a figure that cannot be drawn is a warning: the run's own files are already written).

- an affinity run: ``affinity/heatmap/<estimator>`` (clustered, intervals covering 0 hatched,
  group boundaries when there are groups), ``affinity/reliability`` (split-half reliability of
  every run-averaged matrix), ``affinity/fidelity/<estimator>`` (first-order form vs exact
  lookahead); numbers ``reliability/<estimator>/{pooled,within_target,significant_share}``;
- a grouping: ``groups/table`` and ``groups/stability`` (co-membership over bootstrap resamples);
- a study: ``study/transfer_matrix``, ``study/scaling`` or ``study/low_resource``; numbers
  ``transfer/<target>/<label>`` (mean test metric over seeds, the study's ``tables/transfer.csv``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .figures_affinity import PALETTE, affinity_heatmap_clustered, comembership_heatmap, paper_figure
from .figures_fidelity import fidelity_scatter
from .figures_study import groups_table, low_resource_heatmap, scaling_curves, transfer_matrix

EXACT = (("lookahead_sgd", "first_order_sgd"), ("lookahead_optimizer", "first_order_optimizer"))


def affinity_figures(
    store, summaries: dict[str, pd.DataFrame], fidelity: dict, *, groups=None, confidence: float = 0.95
) -> dict:
    """Figures of an affinity run (module docstring); ``summaries`` and ``fidelity`` as the run wrote them."""
    from ..affinity.reliability import reliability_table

    figures = {}
    for estimator in store.estimators:
        mask = store.covers_zero(estimator, summary=summaries[estimator])
        figures[f"affinity/heatmap/{estimator}"] = affinity_heatmap_clustered(
            store.matrix(estimator),
            mask=mask,
            groups=groups,
            title=f"{estimator} (hatched: {confidence:.0%} CI covers 0)",
        )
    table = reliability_table(fidelity)
    if not table.empty:
        figures["affinity/reliability"] = reliability_figure(table)
    agreement = fidelity.get("agreement", {})
    for exact, first in EXACT:
        if exact in store.estimators and first in store.estimators:
            numbers = next((v for k, v in agreement.items() if exact in k and first in k), None)
            figures[f"affinity/fidelity/{exact}"] = fidelity_scatter(
                store.matrix(exact), store.matrix(first), fidelity=numbers, title=f"{first} vs {exact}"
            )
    return figures


def affinity_numbers(fidelity: dict) -> dict[str, float]:
    """``reliability/<estimator>/pooled``, ``.../within_target``, ``.../significant_share`` (finite ones)."""
    out = {}
    for estimator, values in fidelity.get("reliability", {}).items():
        for name, key in (
            ("pooled", "reliability"),
            ("within_target", "within_target_reliability"),
            ("significant_share", "significant_share"),
        ):
            value = values.get(key)
            if value is not None and np.isfinite(value):
                out[f"reliability/{estimator}/{name}"] = float(value)
    return out


@paper_figure
def reliability_figure(table: pd.DataFrame):
    """Split-half reliability of each run-averaged matrix (Spearman-Brown corrected), pooled and within
    target, one bar pair per estimator; 0.5 and 0.75 marked (noise below, good above).
    ``table``: :func:`taskaffinity.affinity.reliability.reliability_table`."""
    import matplotlib.pyplot as plt

    table = table.sort_values("within_target", na_position="first")
    fig, ax = plt.subplots(figsize=(6.0, 0.9 + 0.32 * len(table)), layout="constrained")
    y = np.arange(len(table))
    ax.barh(y + 0.18, table["reliability"], height=0.36, color=PALETTE[0], label="pooled")
    ax.barh(y - 0.18, table["within_target"], height=0.36, color=PALETTE[1], label="within target")
    for line in (0.5, 0.75):
        ax.axvline(line, color="0.6", lw=0.8, ls="--")
    ax.axvline(0, color="0.2", lw=0.8)
    ax.set_yticks(y, table["estimator"])
    ax.set_xlim(min(-0.2, float(np.nanmin(table[["reliability", "within_target"]].to_numpy(), initial=0))), 1)
    ax.set_xlabel("split-half reliability (Spearman-Brown)")
    ax.legend(loc="lower right", frameon=False)
    return fig


def grouping_figures(document: dict) -> dict:
    """``groups/table`` and, when the grouping was resampled, ``groups/stability``."""
    figures = {"groups/table": groups_table(document)}
    stability = document.get("stability")
    if stability:
        figures["groups/stability"] = comembership_heatmap(
            pd.DataFrame(stability["comembership"]),
            chosen_share=stability["chosen_share"],
            resamples=stability["resamples"],
        )
    return figures


def study_figures(results: pd.DataFrame) -> dict:
    """The figure of a study's kind (a validation study's are in its report)."""
    if results.empty:
        return {}
    kind = results["kind"].iloc[0]
    if kind == "combinations":
        return {"study/transfer_matrix": transfer_matrix(results)}
    if kind == "scaling":
        return {"study/scaling": scaling_curves(results)}
    if kind == "low_resource":
        return {"study/low_resource": low_resource_heatmap(results)}
    return {}


def study_numbers(tables: dict[str, pd.DataFrame]) -> dict[str, float]:
    """``transfer/<target>/<label>``: the cells of the study's transfer table."""
    transfer = tables.get("transfer")
    if transfer is None:
        return {}
    return {
        f"transfer/{target}/{label}": float(value)
        for target, row in transfer.iterrows()
        for label, value in row.items()
        if pd.notna(value)
    }


def log_affinity_run(
    run, store, summaries: dict[str, pd.DataFrame], fidelity: dict, *, confidence: float = 0.95, groups=None
) -> None:
    """An affinity run's figures and reliability numbers into ``run``."""
    _safely(
        lambda: log_figures(run, affinity_figures(store, summaries, fidelity, groups=groups, confidence=confidence))
    )
    _safely(lambda: run.log_summary(affinity_numbers(fidelity)))


def log_study_run(
    run, out: str | Path, results: pd.DataFrame, tables: dict[str, pd.DataFrame], *, summaries, confidence: float = 0.95
) -> None:
    """A study's figures and transfer table into its run: its affinity run's (with the chosen groups'
    boundaries), the grouping's, and its kind's. ``summaries(store)``: the affinity summaries as the
    study computes them."""
    from ..affinity.store import AffinityStore
    from ..storage import read_json

    out = Path(out)
    document = read_json(out / "groups.json") if (out / "groups.json").is_file() else None

    def affinity() -> None:
        store = AffinityStore.load(out / "affinity" / "affinity.parquet")
        fidelity = out / "affinity" / "fidelity.json"
        log_affinity_run(
            run,
            store,
            summaries(store),
            read_json(fidelity) if fidelity.is_file() else {},
            confidence=confidence,
            groups=[g["tasks"] for g in document["groups"]] if document else None,
        )

    if (out / "affinity" / "affinity.parquet").is_file():
        _safely(affinity)
    _safely(lambda: log_figures(run, {**(grouping_figures(document) if document else {}), **study_figures(results)}))
    _safely(lambda: run.log_summary(study_numbers(tables)))


def _safely(action) -> None:
    """Figures for trackers are extras: one that cannot be made is a warning, never a failed run."""
    try:
        action()
    except Exception as err:  # noqa: BLE001 -- the run's own files are already written
        logging.getLogger("taskaffinity.tracking").warning(
            "tracking: figures not logged (%s: %s)", type(err).__name__, err
        )


def log_figures(run, figures: dict) -> None:
    """``run.log_figure`` for each, then close them (matplotlib keeps open figures alive)."""
    import matplotlib.pyplot as plt

    for name, figure in figures.items():
        run.log_figure(name, figure)
        plt.close(figure)
