"""Annotated affinity heatmap: diverging colours centred at zero, source rows × target columns."""

from __future__ import annotations

import numpy as np
import pandas as pd


def affinity_heatmap(matrix: pd.DataFrame, *, title: str = "", mask: pd.DataFrame | None = None,
                     fmt: str | None = None):
    """Figure of ``matrix`` (rows: sources i, columns: targets j of Z_{i→j}).

    Cells where ``mask`` is True (e.g. not significantly different from 0) are hatched.
    Values are annotated in scientific notation when they are small (lookahead Z ~ 1e-5).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    values = matrix.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    bound = float(np.max(np.abs(finite))) if finite.size else 1.0
    bound = bound or 1.0
    n = len(matrix)
    size = max(4.0, 0.6 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(values, cmap="RdBu_r", norm=TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound))
    ax.set_xticks(range(n), matrix.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(matrix.index)), matrix.index)
    ax.set_xlabel("target task j")
    ax.set_ylabel("source task i")
    fmt = fmt or (".2f" if bound >= 0.01 else ".1e")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                dark = abs(values[i, j]) > 0.6 * bound
                ax.text(j, i, format(values[i, j], fmt), ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
            if mask is not None and bool(mask.iloc[i, j]):
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", lw=0, alpha=0.4))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="affinity of source onto target")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
