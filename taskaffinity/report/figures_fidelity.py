"""Affinity against a reference: one estimator against another (fidelity, with Pearson and
Spearman over the off-diagonal pairs) and predicted affinity against measured transfer gains.

Each function takes DataFrames (plus keyword-only options) and returns a Figure; the caller saves it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .figures_affinity import PALETTE, Z, _square, paper_figure


@paper_figure
def fidelity_scatter(
    exact: pd.DataFrame,
    first_order: pd.DataFrame,
    *,
    fidelity: dict | None = None,
    labels: tuple[str, str] = ("exact lookahead", "first-order"),
    identity: bool | None = None,
    title: str = "Fidelity of the first-order approximation",
):
    """Off-diagonal entries of two affinity matrices against each other, with y = x and the
    agreement numbers of ``fidelity.json`` (one entry, e.g. ``report["lookahead_sgd vs first_order_sgd"]``,
    whose ``run_average`` is used; computed from the matrices when None).

    ``identity``: draw y = x (default: when both scales are within a factor 10 of each other).
    """
    import matplotlib.pyplot as plt

    from ..affinity.fidelity import agreement

    exact = _square(exact)
    other = first_order.reindex(index=exact.index, columns=exact.columns).to_numpy(dtype=float)
    off = ~np.eye(len(exact), dtype=bool)
    x, y = exact.to_numpy(dtype=float)[off], other[off]
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    stats = (fidelity.get("run_average", fidelity) if fidelity else None) or agreement(x, y)
    fig, ax = plt.subplots(figsize=(4.8, 4.4), layout="constrained")
    ax.axhline(0, color="0.8", lw=0.8)
    ax.axvline(0, color="0.8", lw=0.8)
    ax.scatter(
        x, y, s=24, color=PALETTE[0], alpha=0.85, edgecolor="white", lw=0.4, label="pairs (source \u2260 target)"
    )
    scale_x, scale_y = np.max(np.abs(x), initial=0.0), np.max(np.abs(y), initial=0.0)
    if identity if identity is not None else (scale_x > 0 and 0.1 <= scale_y / scale_x <= 10):
        low, high = min(x.min(initial=0), y.min(initial=0)), max(x.max(initial=0), y.max(initial=0))
        pad = 0.05 * (high - low or 1.0)
        ax.plot([low - pad, high + pad], [low - pad, high + pad], ls="--", color="0.35", lw=1.0, label="y = x")
        ax.set_xlim(low - pad, high + pad)
        ax.set_ylim(low - pad, high + pad)
    lines = [
        f"Pearson r = {stats.get('pearson', np.nan):.2f}",
        f"Spearman \u03c1 = {stats.get('spearman', np.nan):.2f}",
        f"sign agreement = {stats.get('sign_agreement', np.nan):.0%}",
        f"n = {stats.get('n', len(x))} pairs",
    ]
    ax.text(
        0.03,
        0.97,
        "\n".join(lines),
        transform=ax.transAxes,
        va="top",
        ha="left",
        bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"},
    )
    ax.set_xlabel(f"{labels[0]} affinity ${Z}$")
    ax.set_ylabel(f"{labels[1]} affinity ${Z}$")
    ax.ticklabel_format(style="sci", scilimits=(-3, 3), useMathText=True)
    ax.legend(loc="lower right")
    ax.set_title(title)
    return fig


@paper_figure
def predicted_vs_measured(
    gains: pd.DataFrame,
    matrix: pd.DataFrame,
    *,
    agreement: dict | None = None,
    estimator: str = "",
    n_labels: int = 3,
    title: str = "",
):
    """Affinity i→j (x) against the measured gain of j from i (y) per pair (Fifty et al. 2021, §5),
    with Spearman ρ and its bootstrap CI (``affinity_agreement``; computed when ``agreement`` is None).
    The ``n_labels`` pairs farthest from the median in rank are labelled."""
    import matplotlib.pyplot as plt

    frame = gains.assign(
        affinity=[
            matrix.loc[s, t] if s in matrix.index and t in matrix.columns else np.nan
            for s, t in zip(gains["source"], gains["target"])
        ]
    ).dropna(subset=["affinity", "gain"])
    if agreement is None:
        from ..study.results import affinity_agreement

        agreement = affinity_agreement(gains, matrix)
    rho, ci = agreement.get("spearman"), agreement.get("ci")
    text = "Spearman \u03c1 = n/a" if rho is None else f"Spearman \u03c1 = {rho:.2f}"
    if rho is not None and ci:
        text += f" [{ci[0]:.2f}, {ci[1]:.2f}] ({agreement.get('level', 0.95):.0%} bootstrap CI)"
    text += f", n = {agreement.get('n_pairs', len(frame))} pairs"
    if agreement.get("within_target") is not None:
        text += f"\nwithin target \u03c1 = {agreement['within_target']:.2f}"
        if agreement.get("within_target_p") is not None:
            text += f" (permutation p = {agreement['within_target_p']:.3f})"
    if agreement.get("ceiling") is not None and np.isfinite(agreement["ceiling"]):
        text += f", noise ceiling {agreement['ceiling']:.2f}"
    fig, ax = plt.subplots(figsize=(5.6, 4.6), layout="constrained")
    ax.axhline(0, color="0.6", lw=0.8, ls="--")
    ax.axvline(0, color="0.8", lw=0.8)
    if "se" in frame and frame["se"].notna().any():
        ax.errorbar(
            frame["affinity"],
            frame["gain"],
            yerr=frame["se"].fillna(0),
            fmt="none",
            ecolor="0.75",
            elinewidth=0.8,
            zorder=1,
        )
    ax.scatter(
        frame["affinity"], frame["gain"], s=28, color=PALETTE[1], alpha=0.85, edgecolor="white", lw=0.4, zorder=2
    )
    if len(frame):
        spread = (frame["affinity"].rank(pct=True) - 0.5).abs() + (frame["gain"].rank(pct=True) - 0.5).abs()
        middle = frame["affinity"].median()
        for row in frame.loc[spread.nlargest(n_labels).index].itertuples():
            right = row.affinity > middle  # label towards the centre so it stays inside the axes
            ax.annotate(
                f"{row.source}\u2192{row.target}",
                (row.affinity, row.gain),
                xytext=(-4 if right else 4, 4),
                textcoords="offset points",
                fontsize=7,
                ha="right" if right else "left",
            )
    ax.set_xlabel(f"predicted: affinity ${Z}$" + (f" ({estimator})" if estimator else ""))
    ax.set_ylabel("measured gain of target j from source i\n(metric, + = better)")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 3), useMathText=True)
    ax.set_title(text, fontsize=8)
    fig.suptitle(title or "Predicted affinity vs measured transfer")
    return fig
