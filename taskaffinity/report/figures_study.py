"""Study figures: transfer matrix, scaling curves, low-resource grid, grouping table.

Inputs are the tidy ``results.parquet`` frame (:mod:`taskaffinity.study.results`) and grouping
documents (:mod:`taskaffinity.grouping.output`); numbers come from :mod:`.tables`.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from ..errors import TaskAffinityError
from ..study.plan import BASELINE
from .figures_affinity import PALETTE, paper_figure
from .tables import at_fraction, critical_point, groups_frame, seed_summary, transfer_table

DOWN = " (\u2193 better)"


def _metric_name(metric: str, lower_is_better: bool) -> str:
    return metric + (DOWN if lower_is_better else "")


def _panels(n: int, *, width: float, height: float, columns: int = 3):
    import matplotlib.pyplot as plt

    ncols = min(columns, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), layout="constrained", squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


@paper_figure
def transfer_matrix(
    results: pd.DataFrame,
    *,
    split: str = "test",
    metric: str | None = None,
    fraction: float | None = None,
    families: dict[str, str] | None = None,
    title: str = "",
):
    """Padmakumar et al. (2022), Table 2 as a figure: target rows × pre-finetuning set columns
    (``baseline`` first), cells mean ± std over seeds and (Δ vs baseline), coloured by Δ
    (+ = better, sign flipped for lower-is-better metrics), best cell per row boxed and bold.
    Rows are grouped by ``families`` (target → family) when given. Δ is in metric units when all
    rows share a metric, else divided by each row's largest |Δ|."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    table = transfer_table(results, split=split, metric=metric, fraction=fraction, families=families)
    targets, labels = list(dict.fromkeys(table["target"])), list(dict.fromkeys(table["label"]))
    wide = {
        k: table.pivot(index="target", columns="label", values=k).reindex(index=targets, columns=labels)
        for k in ("mean", "std", "delta", "best")
    }
    row_info = table.drop_duplicates("target").set_index("target").loc[targets]
    delta = wide["delta"].to_numpy(dtype=float)
    shared = row_info["metric"].nunique() == 1
    if not shared:
        delta = delta / np.nanmax(np.abs(np.where(np.isfinite(delta), delta, 0)), axis=1, keepdims=True).clip(1e-12)
    bound = float(np.max(np.abs(delta[np.isfinite(delta)]), initial=0.0)) or 1.0
    nr, nc = len(targets), len(labels)
    fig, ax = plt.subplots(figsize=(1.05 * nc + 3.0, 0.62 * nr + 2.6), layout="constrained")
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.93")
    image = ax.imshow(
        np.where(wide["best"].notna().to_numpy() & (np.array(labels) != BASELINE), delta, np.nan),
        cmap=cmap,
        norm=TwoSlopeNorm(0.0, -bound, bound),
        aspect="auto",
    )
    for i, _target in enumerate(targets):
        for j, label in enumerate(labels):
            mean = wide["mean"].iat[i, j]
            if not np.isfinite(mean):
                continue
            std, d, best = wide["std"].iat[i, j], wide["delta"].iat[i, j], bool(wide["best"].iat[i, j])
            text = f"{mean:.3f}" + (f"\n\u00b1{std:.3f}" if np.isfinite(std) else "")
            if label != BASELINE and np.isfinite(d):
                text += f"\n({round(d, 3) + 0.0:+.3f})"  # + 0.0: no "-0.000"
            dark = label != BASELINE and abs(delta[i, j]) > 0.65 * bound
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=7,
                linespacing=1.1,
                color="white" if dark else "black",
                fontweight="bold" if best else "normal",
            )
            if best:  # black box with a white inner line: visible on dark and light cells
                ax.add_patch(
                    plt.Rectangle((j - 0.46, i - 0.46), 0.92, 0.92, fill=False, ec="black", lw=2.2, gid="best")
                )
                ax.add_patch(plt.Rectangle((j - 0.42, i - 0.42), 0.84, 0.84, fill=False, ec="white", lw=0.8))
    ax.set_xticks(range(nc), labels, rotation=40, ha="left", rotation_mode="anchor")
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("pre-finetuning set")
    ax.set_yticks(
        range(nr),
        [f"{t}\n[{_metric_name(m, lb)}]" for t, m, lb in zip(targets, row_info["metric"], row_info["lower_is_better"])],
    )
    ax.set_ylabel("target task")
    ax.tick_params(length=0)
    if families:
        fam = list(row_info["family"])
        for i in range(1, nr):
            if fam[i] != fam[i - 1]:
                ax.axhline(i - 0.5, color="black", lw=1.2)
        for name in dict.fromkeys(fam):
            rows = [i for i, f in enumerate(fam) if f == name]
            ax.text(
                1.01,
                1 - (np.mean(rows) + 0.5) / nr,
                name,
                transform=ax.transAxes,
                rotation=90,
                ha="left",
                va="center",
                fontsize=8,
                fontstyle="italic",
            )
    unit = "metric units" if shared else "scaled by the row's max |\u0394|"
    fig.colorbar(
        image, ax=ax, location="bottom", shrink=0.6, aspect=30, label=f"\u0394 vs baseline ({unit}; + = better)"
    )
    metric_name = row_info["metric"].iat[0] if shared else "primary metric"
    ax.set_title(
        title
        or f"Transfer to unseen targets\n({split} {metric_name}: mean \u00b1 std over seeds "
        f"and (\u0394 vs baseline); best per row boxed)",
        pad=12,
    )
    return fig


@paper_figure
def scaling_curves(
    results: pd.DataFrame,
    *,
    split: str = "test",
    metric: str | None = None,
    fraction: float | None = None,
    title: str = "",
):
    """Metric vs number of pre-finetuning tasks k per target (Aghajanyan et al. 2021, Fig. 2):
    mean ± std over seeds (shaded), the no-pre-finetuning baseline (k = 0) as a dashed line and
    the critical point (:func:`~taskaffinity.report.tables.critical_point`) starred."""
    summary = at_fraction(seed_summary(results, split=split, metric=metric), fraction)
    targets = list(dict.fromkeys(summary["target"]))
    fig, axes = _panels(len(targets), width=3.6, height=3.0)
    for _index, (ax, target) in enumerate(zip(axes, targets)):
        rows = summary[summary["target"] == target]
        lower = bool(rows["lower_is_better"].iat[0])
        base = rows[(rows["label"] == BASELINE) | (rows["n_pretrain_tasks"] == 0)]
        curve = rows.drop(base.index).sort_values("n_pretrain_tasks")
        k, mean, std = curve["n_pretrain_tasks"].to_numpy(), curve["mean"].to_numpy(), curve["std"].fillna(0).to_numpy()
        ax.plot(k, mean, marker="o", ms=4, color=PALETTE[0], label="pre-finetuned (mean)")
        ax.fill_between(k, mean - std, mean + std, color=PALETTE[0], alpha=0.2, lw=0, label="\u00b1 std over seeds")
        if not base.empty:
            level = float(base["mean"].iat[0])
            ax.axhline(level, color="0.3", ls="--", lw=1.1, label="baseline (k = 0)")
            point = critical_point(pd.Series(mean, index=k), level, lower_is_better=lower)
            if point is not None:
                y = float(curve.loc[curve["n_pretrain_tasks"] == point, "mean"].iat[0])
                ax.plot(
                    [point],
                    [y],
                    marker="*",
                    ms=13,
                    color=PALETTE[1],
                    ls="none",
                    zorder=5,
                    label=f"critical point (k = {point})",
                )
        ax.set_xticks(k)
        ax.set_xlabel("pre-finetuning tasks k")
        ax.set_ylabel(f"{split} {_metric_name(rows['metric'].iat[0], lower)}")
        ax.set_title(target)
        ax.legend(loc="best", frameon=False, fontsize=7)
    fig.suptitle(title or "Scaling the number of pre-finetuning tasks")
    return fig


@paper_figure
def low_resource_heatmap(
    results: pd.DataFrame,
    *,
    split: str = "test",
    metric: str | None = None,
    target: str | None = None,
    value: str = "mean",
    title: str = "",
):
    """Fraction of target training data (rows) × pre-finetuning scale k (columns), one panel per
    target (Aghajanyan et al. 2021, §5.3). ``value="mean"``: mean metric over seeds (viridis);
    ``"gain"``: Δ vs the k = 0 baseline at the same fraction (+ = better, diverging)."""
    from matplotlib.colors import TwoSlopeNorm

    if value not in ("mean", "gain"):
        raise TaskAffinityError(f"value must be 'mean' or 'gain', got '{value}'")
    summary = seed_summary(results, split=split, metric=metric)
    targets = [target] if target else list(dict.fromkeys(summary["target"]))
    if target and target not in set(summary["target"]):
        raise TaskAffinityError(f"no results for target '{target}'")
    fig, axes = _panels(len(targets), width=4.2, height=3.4, columns=2)
    for ax, name in zip(axes, targets):
        rows = summary[summary["target"] == name]
        lower = bool(rows["lower_is_better"].iat[0])
        grid = rows.pivot_table(
            index="fraction", columns="n_pretrain_tasks", values="mean" if value == "mean" else "delta", aggfunc="mean"
        ).sort_index()
        values = grid.to_numpy(dtype=float)
        if value == "mean":
            image = ax.imshow(values, cmap="viridis_r" if lower else "viridis", aspect="auto")
            label = f"{split} {_metric_name(rows['metric'].iat[0], lower)}"
        else:
            bound = float(np.nanmax(np.abs(values), initial=0.0)) or 1.0
            image = ax.imshow(values, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound), aspect="auto")
            label = f"\u0394 {rows['metric'].iat[0]} vs k = 0 (+ = better)"
        finite = values[np.isfinite(values)]
        middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
        bound = float(np.max(np.abs(finite), initial=0.0)) or 1.0
        for i, j in zip(*np.nonzero(np.isfinite(values))):
            v = values[i, j]
            bright = (v > middle) != lower if value == "mean" else abs(v) < 0.65 * bound  # viridis: high is bright
            ax.text(
                j,
                i,
                format(round(v, 3) + 0.0, "+.3f" if value == "gain" else ".3f"),
                ha="center",
                va="center",
                fontsize=7,
                color="black" if bright else "white",
            )
        ax.set_xticks(range(grid.shape[1]), [f"{int(k)}" + (" (base)" if k == 0 else "") for k in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [f"{f:.0%}" for f in grid.index])
        ax.set_xlabel("pre-finetuning tasks k")
        ax.set_ylabel("fraction of target training data")
        ax.set_title(name)
        fig.colorbar(image, ax=ax, label=label, shrink=0.9)
    fig.suptitle(title or f"Low-resource fine-tuning ({'mean over seeds' if value == 'mean' else 'gain over k = 0'})")
    return fig


@paper_figure
def groups_table(document: dict, *, title: str = "", wrap: int = 48):
    """The groups of a grouping document as a table: tasks trained together, tasks served
    (TAG's overlap, Fifty et al. 2021) and score, with the method and objective in the title."""
    import matplotlib.pyplot as plt

    frame = groups_frame(document)
    if frame.empty:
        raise TaskAffinityError("grouping document has no groups")
    cells = [
        [g, textwrap.fill(", ".join(t), wrap), textwrap.fill(", ".join(s), wrap), f"{score:.4g}"]
        for g, t, s, score in frame.itertuples(index=False)
    ]
    lines = [max(c.count("\n") for c in row) + 1 for row in cells]
    fig, ax = plt.subplots(figsize=(8.0, 0.7 + 0.28 * (sum(lines) + 2)), layout="constrained")
    ax.axis("off")
    table = ax.table(
        cellText=cells,
        colLabels=["group", "tasks (trained together)", "serves", "score"],
        colWidths=[0.08, 0.46, 0.34, 0.12],
        loc="upper center",
        cellLoc="left",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    unit = 1.0 / (sum(lines) + 2)
    for (row, _col), cell in table.get_celld().items():
        cell.set_height(unit * (lines[row - 1] if row else 1.2))
        cell.set_edgecolor("0.7")
        cell.PAD = 0.03
        if row == 0:
            cell.set_text_props(fontweight="bold")
            cell.set_facecolor("0.92")
    estimator = f", {document['estimator']}" if document.get("estimator") else ""
    ax.set_title(
        title
        or f"{document.get('method', '?')} grouping (k = {document.get('k', len(frame))}{estimator}): "
        f"objective = {document.get('objective', float('nan')):.4g}"
    )
    return fig
