"""Gradient conflicts over training: the figure and table of ``conflicts.parquet`` (an affinity run with
``affinity.conflicts``; :mod:`taskaffinity.affinity.conflicts`)."""

from __future__ import annotations

import pandas as pd

from .figures_affinity import PALETTE, paper_figure

PANELS = (
    ("conflicting_share", "share of task pairs\nwith cos < 0"),
    ("conflict_magnitude_similarity", "magnitude similarity\nof conflicting pairs"),
    ("update_cosine", "cos(sum, aggregated)"),
)


@paper_figure
def conflict_trajectories(frame: pd.DataFrame, *, smooth: int = 10, title: str = ""):
    """One panel per statistic over training steps: per-step values (thin) and a rolling mean over
    ``smooth`` steps (thick); the update-cosine panel only when an aggregator was on."""
    import matplotlib.pyplot as plt

    panels = [(c, label) for c, label in PANELS if c in frame and frame[c].notna().any()]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(6.4, 1.9 * len(panels)), sharex=True, layout="constrained", squeeze=False
    )
    for ax, (column, label), color in zip(axes[:, 0], panels, PALETTE):
        ax.plot(frame["step"], frame[column], color=color, lw=0.6, alpha=0.45)
        ax.plot(
            frame["step"],
            frame[column].rolling(smooth, min_periods=1).mean(),
            color=color,
            lw=1.6,
            label=f"rolling mean over {smooth} steps",
        )
        ax.set_ylabel(label)
        ax.set_ylim(0 if column != "update_cosine" else min(0.0, float(frame[column].min())), 1.02)
    axes[0, 0].legend(frameon=False, loc="upper right")
    axes[-1, 0].set_xlabel("training step")
    axes[0, 0].set_title(title or "gradient conflicts between tasks over training")
    return fig


# Steps close in training share the parameters, so their statistics are correlated: standard errors
# come from means of blocks of consecutive steps (batch means), the samples the streamed windows are too.
BLOCK = 10


def conflict_summary(frame: pd.DataFrame, *, block: int = BLOCK) -> pd.DataFrame:
    """Each statistic's mean over all recorded steps and over the first and last third of them, each
    with its standard error (``... se``: the spread of means over blocks of ``block`` consecutive
    steps / √blocks; NaN with fewer than two blocks). Rows: statistics; a statistic with no value
    (e.g. the update cosine without an aggregator) is left out."""
    frame = frame.sort_values("step").reset_index(drop=True)
    third = max(1, len(frame) // 3)
    parts = {"all steps": slice(None), "first third": slice(None, third), "last third": slice(-third, None)}
    rows = {}
    for column, _ in PANELS:
        if column in frame and frame[column].notna().any():
            row = {}
            for name, part in parts.items():
                values = frame[column].iloc[part]
                row[name], row[f"{name} se"] = values.mean(), block_se(values.to_numpy(), block)
            rows[column] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["steps"] = len(frame)
    return table.round(3)


def block_se(values, block: int) -> float:
    """Standard error of the mean of a series of correlated steps: from means of consecutive blocks."""
    values = values[~pd.isna(values)]
    means = [values[k : k + block].mean() for k in range(0, len(values) - block + 1, block)]
    return float(pd.Series(means).std(ddof=1) / len(means) ** 0.5) if len(means) >= 2 else float("nan")
