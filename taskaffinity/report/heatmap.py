"""Annotated affinity heatmap: diverging colours centred at zero, source rows × target columns."""

from __future__ import annotations

import numpy as np
import pandas as pd

ANNOTATE_UP_TO = 24  # tasks; past that, numbers would not fit the cells (the CSV files hold them)


def affinity_heatmap(
    matrix: pd.DataFrame, *, title: str = "", mask: pd.DataFrame | None = None, fmt: str | None = None
):
    """Figure of ``matrix`` (rows: sources i, columns: targets j of Z_{i→j}).

    Cells where ``mask`` is True (e.g. not significantly different from 0) are hatched;
    the diagonal (self-affinity) is grey and kept out of the colour scale.
    Values are annotated (in scientific notation when small: lookahead Z ~ 1e-5) up to
    ``ANNOTATE_UP_TO`` tasks.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = len(matrix)
    size = max(4.0, 0.6 * n + 2.5) if n <= ANNOTATE_UP_TO else 0.25 * n + 9.0  # many tasks: no numbers
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = draw_affinity(ax, matrix, mask=mask, fmt=fmt)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="affinity of source onto target")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def draw_affinity(
    ax,
    matrix: pd.DataFrame,
    *,
    mask: pd.DataFrame | None = None,
    fmt: str | None = None,
    aspect: str = "equal",
    fontsize: float = 7,
):
    """Draw the annotated heatmap of ``matrix`` onto ``ax``; returns the image (for a colorbar).

    ``mask`` is aligned by position with ``matrix`` (reindex it first when reordering).
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    values = matrix.to_numpy(dtype=float)
    # Self-affinity (a task's update on its own loss) dwarfs transfer between tasks:
    # colour only source != target cells, grey the diagonal, and still print its value.
    is_self = np.array([[s == t for t in matrix.columns] for s in matrix.index])
    shown = np.where(is_self, np.nan, values)
    finite = shown[np.isfinite(shown)]
    bound = float(np.max(np.abs(finite))) if finite.size else 1.0
    bound = bound or 1.0
    n = len(matrix)
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.85")
    image = ax.imshow(shown, cmap=cmap, norm=TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound), aspect=aspect)
    ax.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=45, ha="right")
    ax.set_yticks(range(n), matrix.index)
    ax.set_xlabel("target task j")
    ax.set_ylabel("source task i")
    fmt = fmt or (".2f" if bound >= 0.01 else ".1e")
    annotate = max(values.shape) <= ANNOTATE_UP_TO
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if annotate and np.isfinite(values[i, j]):
                dark = not is_self[i, j] and abs(values[i, j]) > 0.6 * bound
                ax.text(
                    j,
                    i,
                    format(values[i, j], fmt),
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color="white" if dark else ("0.35" if is_self[i, j] else "black"),
                    style="italic" if is_self[i, j] else "normal",
                )
            if mask is not None and bool(mask.iloc[i, j]):
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", lw=0, alpha=0.4))
    return image
