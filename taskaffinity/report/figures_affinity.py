"""Affinity figures: clustered heatmap, trajectories over training, co-membership (estimator fidelity and
affinity vs gain: :mod:`.figures_fidelity`).

Each function takes DataFrames (plus keyword-only options) and returns a Figure; the caller saves it.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from ..errors import TaskAffinityError
from ..grouping import affinity_distance

# Okabe & Ito (2008) colour-blind-safe palette (black last).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
Z = "Z_{i\u2192j}"


def paper_figure(function):
    """Run a figure function on the Agg backend (unless one is set) with the paper font sizes."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        with plt.rc_context(STYLE):
            return function(*args, **kwargs)

    return wrapper


def _square(matrix: pd.DataFrame) -> pd.DataFrame:
    if set(matrix.index) != set(matrix.columns):
        raise TaskAffinityError("affinity matrix must have the same tasks as rows (sources) and columns (targets)")
    return matrix.reindex(columns=list(matrix.index))


def _linkage(matrix: pd.DataFrame, method: str):
    """Linkage of the tasks of a square matrix on :func:`~taskaffinity.grouping._base.affinity_distance`."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    values = matrix.to_numpy(dtype=float)
    off = ~np.eye(len(values), dtype=bool)
    if len(values) < 2 or not np.isfinite(values[off] + values.T[off]).any():
        return None
    return linkage(squareform(affinity_distance(values), checks=False), method=method)


def cluster_layout(matrix: pd.DataFrame, *, groups=None, method: str = "average"):
    """Task order, dendrograms ``[(offset, linkage, tasks)]`` and whether ``groups`` partition the tasks.

    Without a partition: one tree over all tasks, order = its leaves. With one: groups are
    placed by the mean leaf position of their members and each group is clustered on its own,
    so its tasks stay contiguous (one tree per group).
    """
    from scipy.cluster.hierarchy import leaves_list

    matrix = _square(matrix)
    tasks = list(matrix.index)
    full = _linkage(matrix, method)
    leaves = [tasks[i] for i in leaves_list(full)] if full is not None else tasks
    flat = [t for g in groups or [] for t in g]
    if not groups or len(flat) != len(set(flat)) or set(flat) != set(tasks):
        return leaves, [(0, full, leaves)], False
    position = {t: i for i, t in enumerate(leaves)}
    order, trees = [], []
    for group in sorted(groups, key=lambda g: np.mean([position[t] for t in g])):
        group = sorted(group, key=position.get)
        tree = _linkage(matrix.loc[group, group], method)
        members = [group[i] for i in leaves_list(tree)] if tree is not None else group
        trees.append((len(order), tree, members))
        order += members
    return order, trees, True


@paper_figure
def affinity_heatmap_clustered(
    matrix: pd.DataFrame,
    *,
    title: str = "",
    mask: pd.DataFrame | None = None,
    groups: list[list[str]] | None = None,
    fmt: str | None = None,
    method: str = "average",
):
    """Annotated heatmap (see :func:`~taskaffinity.report.heatmap.affinity_heatmap`) in clustered
    order, with the dendrogram on top (seaborn-clustermap style) and ``groups`` outlined:
    blocks on the diagonal when they partition the tasks, else each group's cells in its colour."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle
    from scipy.cluster.hierarchy import dendrogram

    from .heatmap import draw_affinity

    order, trees, partition = cluster_layout(matrix, groups=groups, method=method)
    ordered = _square(matrix).reindex(index=order, columns=order)
    if mask is not None:
        mask = mask.reindex(index=order, columns=order).fillna(False).astype(bool)
    n = len(order)
    cell = 0.5 if n <= 12 else 0.4
    fig = plt.figure(figsize=(cell * n + 3.0, cell * n + 3.2), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=[1.3, cell * n], width_ratios=[cell * n, 0.22])
    heat = fig.add_subplot(grid[1, 0])
    tree_ax = fig.add_subplot(grid[0, 0], sharex=heat)
    image = draw_affinity(heat, ordered, mask=mask, fmt=fmt, aspect="auto", fontsize=8 if n <= 8 else 6.5)
    fig.colorbar(image, cax=fig.add_subplot(grid[1, 1]), label=f"affinity ${Z}$ (diagonal excluded)")
    top = 0.0
    for offset, tree, _ in trees:
        if tree is None:
            continue
        drawn = dendrogram(tree, no_plot=True)
        for xs, ys in zip(drawn["icoord"], drawn["dcoord"]):
            tree_ax.plot((np.asarray(xs) - 5) / 10 + offset, ys, color="0.25", lw=0.9)
            top = max(top, max(ys))
    tree_ax.set_ylim(0, (top or 1.0) * (1.3 if partition else 1.05))
    tree_ax.axis("off")
    handles = []
    for index, group in enumerate(groups or []):
        name = f"G{index + 1}"
        if partition:
            start, size = order.index(next(t for t in order if t in group)), len(group)
            heat.add_patch(Rectangle((start - 0.5, start - 0.5), size, size, fill=False, ec="black", lw=2.2))
            tree_ax.text(
                start + (size - 1) / 2, top * 1.27 if top else 1.2, name, ha="center", va="top", fontweight="bold"
            )
            continue
        color, inset = PALETTE[index % len(PALETTE)], 0.05 + 0.06 * (index % 4)
        members = [order.index(t) for t in group if t in order]
        for i in members:
            for j in members:
                heat.add_patch(
                    Rectangle(
                        (j - 0.5 + inset, i - 0.5 + inset), 1 - 2 * inset, 1 - 2 * inset, fill=False, ec=color, lw=1.6
                    )
                )
        handles.append(Patch(fill=False, ec=color, lw=1.6, label=f"{name}: {', '.join(group)}"))
    if handles:
        fig.legend(
            handles=handles, loc="outside lower center", ncols=min(2, len(handles)), title="groups (overlapping)"
        )
    heat.set_xlim(-0.5, n - 0.5)
    linkage_note = f"order: {method}-linkage clustering of (Z + Z\u1d40)/2" + (" within groups" if partition else "")
    fig.suptitle(f"{title}\n{linkage_note}" if title else linkage_note)
    return fig


@paper_figure
def affinity_trajectories(
    records: pd.DataFrame,
    *,
    estimator: str | None = None,
    pairs=None,
    by: str = "source",
    window: tuple[int | None, int | None] | None = None,
    smooth: int = 1,
    title: str = "",
):
    """Affinity over training steps (Fifty et al. 2021, Fig. 3): the chosen ``(source, target)``
    ``pairs``, or per ``by`` task the mean over its partners (self excluded) ± 1.96·SE over partners.

    ``records``: ``AffinityStore.records`` (or ``.trajectories(estimator)``); ``window``: steps
    ``(start, end)`` as in ``AffinityStore.select``; ``smooth``: rolling mean over that many probes
    of each pair's trajectory, applied before averaging.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = records if estimator is None else records[records["estimator"] == estimator]
    estimators = list(rows["estimator"].unique())
    if len(estimators) != 1:
        raise TaskAffinityError(f"pass estimator= (records hold {', '.join(map(str, estimators)) or 'none'})")
    estimator = estimators[0]
    if window is not None:
        start, end = window
        rows = rows[
            (rows["step"] >= (-np.inf if start is None else start)) & (rows["step"] <= (np.inf if end is None else end))
        ]
    rows = rows.sort_values(["source", "target", "step"]).copy()
    if smooth > 1:
        rows["value"] = rows.groupby(["source", "target"])["value"].transform(
            lambda v: v.rolling(smooth, min_periods=1).mean()
        )
    fig, ax = plt.subplots(figsize=(6.8, 3.8), layout="constrained")
    handles_title = "source \u2192 target"
    if pairs:
        for index, (source, target) in enumerate(pairs):
            pair = rows[(rows["source"] == source) & (rows["target"] == target)]
            if pair.empty:
                raise TaskAffinityError(f"no {estimator} records for {source} \u2192 {target}")
            ax.plot(
                pair["step"],
                pair["value"],
                color=PALETTE[index % len(PALETTE)],
                lw=1.4,
                marker="o" if len(pair) <= 30 else None,
                ms=3,
                label=f"{source} \u2192 {target}",
            )
        default = f"{estimator}: affinity of selected pairs over training"
    else:
        if by not in ("source", "target"):
            raise TaskAffinityError(f"by must be 'source' or 'target', got '{by}'")
        partner = "target" if by == "source" else "source"
        stats = (
            rows[rows["source"] != rows["target"]]
            .groupby([by, "step"])["value"]
            .agg(["mean", "std", "count"])
            .reset_index()
        )
        for index, (name, task) in enumerate(stats.groupby(by, sort=True)):
            color = PALETTE[index % len(PALETTE)]
            half = 1.96 * task["std"].fillna(0.0) / np.sqrt(task["count"])
            ax.plot(task["step"], task["mean"], color=color, lw=1.4, label=name)
            ax.fill_between(task["step"], task["mean"] - half, task["mean"] + half, color=color, alpha=0.15, lw=0)
        handles_title = f"{by} task (mean over {partner}s)"
        default = (
            f"{estimator}: mean affinity of each source onto the other tasks"
            if by == "source"
            else f"{estimator}: mean affinity onto each target from the other tasks"
        )
    ax.axhline(0.0, color="0.5", lw=0.8, ls="--")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"affinity ${Z}$ ({estimator})")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3), useMathText=True)
    handles, _ = ax.get_legend_handles_labels()
    if not pairs:
        handles.append(Patch(color="0.6", alpha=0.4, label=f"mean \u00b1 1.96\u00b7SE over {partner}s"))
    if smooth > 1:
        handles.append(Patch(color="none", label=f"rolling mean over {smooth} probes"))
    ax.legend(handles=handles, title=handles_title, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title(title or default)
    return fig


@paper_figure
def comembership_heatmap(
    comembership: pd.DataFrame, *, chosen_share: float | None = None, resamples: int | None = None, title: str = ""
):
    """How often each pair of tasks shares a group over bootstrap resamples (0–1), tasks in
    cluster order; the title says how often the chosen grouping came back."""
    import matplotlib.pyplot as plt

    frame = _square(comembership)
    order, _, _ = cluster_layout(frame * 2 - 1)  # a similarity in [-1, 1]: the layout of affinity heatmaps
    frame = frame.loc[order, order]
    n = len(frame)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * n, 0.9 + 0.5 * n), layout="constrained")
    image = ax.imshow(frame.to_numpy(), cmap="Greys", vmin=0, vmax=1)
    if n <= 24:
        for i in range(n):
            for j in range(n):
                value = frame.iat[i, j]
                ax.text(
                    j,
                    i,
                    f"{value:.0%}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if value > 0.6 else "black",
                )
    ax.set_xticks(range(n), order, rotation=45, ha="right")
    ax.set_yticks(range(n), order)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of resamples in a common group")
    if not title and chosen_share is not None:
        title = f"grouping stability: chosen grouping returned in {chosen_share:.0%}"
        if resamples:
            title += f" of {resamples} resamples"
    ax.set_title(title)
    return fig
