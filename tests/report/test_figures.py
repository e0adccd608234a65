"""Paper figures: behaviour (order, groups, best cells, critical points, bands), not pixels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from taskaffinity.errors import TaskAffinityError  # noqa: E402
from taskaffinity.report.figures import (  # noqa: E402
    affinity_heatmap_clustered,
    affinity_trajectories,
    critical_point,
    fidelity_scatter,
    groups_table,
    low_resource_heatmap,
    predicted_vs_measured,
    scaling_curves,
    transfer_matrix,
    transfer_table,
)

TASKS = ["trec6", "bbc_topic", "sms_spam", "rt_sentiment", "vader_nyt"]
STEPS = list(range(10, 110, 10))


# -- fixtures --------------------------------------------------------------------------------------
def affinity_matrix() -> pd.DataFrame:
    """trec6 ↔ sms_spam and bbc_topic ↔ rt_sentiment help each other strongly (not adjacent in TASKS)."""
    rng = np.random.default_rng(0)
    values = rng.normal(0, 0.02, (5, 5))
    for a, b in (("trec6", "sms_spam"), ("bbc_topic", "rt_sentiment")):
        i, j = TASKS.index(a), TASKS.index(b)
        values[i, j], values[j, i] = 0.40, 0.35
    values[TASKS.index("vader_nyt"), :] -= 0.1
    np.fill_diagonal(values, 0.9)
    return pd.DataFrame(values, index=pd.Index(TASKS, name="source"), columns=pd.Index(TASKS, name="target"))


def affinity_records() -> pd.DataFrame:
    matrix, rng = affinity_matrix(), np.random.default_rng(1)
    rows = [
        {
            "step": step,
            "estimator": estimator,
            "source": s,
            "target": t,
            "value": scale * matrix.loc[s, t] + rng.normal(0, 0.01),
        }
        for estimator, scale in (("lookahead_sgd", 1.0), ("cosine", 2.0))
        for step in STEPS
        for s in TASKS
        for t in TASKS
    ]
    return pd.DataFrame(rows)


def results_frame(kind: str, cells: dict, *, fractions=(1.0,)) -> pd.DataFrame:
    """Tidy results: ``cells[(target, label)] = mean`` (three seeds at mean − 0.01, mean, mean + 0.01),
    plus a non-primary metric and a validation split that must be ignored."""
    rows = []
    for (target, label, *fraction), mean in cells.items():
        fraction = fraction[0] if fraction else fractions[0]
        metric = "mae" if target == "vader_nyt" else "accuracy"
        k = 0 if label == "baseline" else (int(label[2:]) if label.startswith("k=") else label.count("+") + 1)
        for seed, offset in enumerate((-0.01, 0.0, 0.01)):
            base = {
                "experiment_id": f"{target}-{label}-{seed}-{fraction}",
                "kind": kind,
                "label": label,
                "arm": "",
                "pretrain_set": "",
                "n_pretrain_tasks": k,
                "target": target,
                "seed": seed,
                "fraction": fraction,
                "job_type": "finetune",
                "baseline": label == "baseline",
                "wall_seconds": 1.0,
                "device": "cpu",
            }
            rows.append({**base, "split": "test", "metric": metric, "value": mean + offset, "primary": True})
            rows.append({**base, "split": "test", "metric": "f1", "value": 0.0, "primary": False})
            rows.append({**base, "split": "validation", "metric": metric, "value": 99.0, "primary": True})
    return pd.DataFrame(rows)


COMBINATIONS = {
    ("trec6", "baseline"): 0.70,
    ("trec6", "G1"): 0.72,
    ("trec6", "G2"): 0.69,
    ("trec6", "G1+G2"): 0.78,
    ("rt_sentiment", "baseline"): 0.80,
    ("rt_sentiment", "G1"): 0.79,
    ("rt_sentiment", "G2"): 0.76,
    ("rt_sentiment", "G1+G2"): 0.77,
    # mae: lower is better, so G1 (not G2) is the best cell of this row
    ("vader_nyt", "baseline"): 0.50,
    ("vader_nyt", "G1"): 0.30,
    ("vader_nyt", "G2"): 0.60,
    ("vader_nyt", "G1+G2"): 0.45,
}
SCALING = {
    **{("trec6", f"k={k}"): v for k, v in zip(range(1, 5), (0.72, 0.68, 0.73, 0.75))},
    ("trec6", "baseline"): 0.70,
    **{("vader_nyt", f"k={k}"): v for k, v in zip(range(1, 5), (0.55, 0.45, 0.52, 0.48))},
    ("vader_nyt", "baseline"): 0.50,
}
LOW = {
    (t, label, f): (0.5 if t == "vader_nyt" else 0.6) + 0.1 * f + 0.01 * k * (-1 if t == "vader_nyt" else 1)
    for t in ("trec6", "vader_nyt")
    for f in (0.1, 0.5, 1.0)
    for label, k in (("baseline", 0), ("k=2", 2), ("k=4", 4))
}
GROUPS_DOC = {
    "method": "tag_exact",
    "estimator": "lookahead_sgd",
    "k": 2,
    "objective": 1.234,
    "groups": [
        {"tasks": ["trec6", "sms_spam", "bbc_topic"], "score": 0.8, "serves": ["trec6", "sms_spam"]},
        {
            "tasks": ["bbc_topic", "rt_sentiment", "vader_nyt"],
            "score": 0.434,
            "serves": ["bbc_topic", "rt_sentiment", "vader_nyt"],
        },
    ],
    "assignment": {"trec6": 0, "sms_spam": 0, "bbc_topic": 1, "rt_sentiment": 1, "vader_nyt": 1},
    "per_task_score": {t: 0.1 for t in TASKS},
}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text)]


def image_axes(fig: Figure):
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


def check_figure(fig) -> None:
    assert isinstance(fig, Figure) and fig.axes
    assert any(ax.has_data() or ax.tables for ax in fig.axes)


# -- affinity figures ------------------------------------------------------------------------------
def test_clustered_heatmap_orders_by_affinity_and_draws_dendrogram_and_mask():
    matrix = affinity_matrix()
    mask = pd.DataFrame(False, index=TASKS, columns=TASKS)
    mask.loc["trec6", "bbc_topic"] = mask.loc["vader_nyt", "trec6"] = True
    fig = affinity_heatmap_clustered(matrix, title="lookahead_sgd", mask=mask)
    check_figure(fig)
    (heat,) = image_axes(fig)
    order = [t.get_text() for t in heat.get_xticklabels()]
    assert sorted(order) == sorted(TASKS) and order == [t.get_text() for t in heat.get_yticklabels()]
    assert abs(order.index("trec6") - order.index("sms_spam")) == 1
    assert abs(order.index("bbc_topic") - order.index("rt_sentiment")) == 1
    assert "lookahead_sgd" in fig._suptitle.get_text() and "average-linkage" in fig._suptitle.get_text()
    assert heat.get_xlabel() == "target task j" and heat.get_ylabel() == "source task i"
    tree = next(ax for ax in fig.axes if ax is not heat and ax.lines)
    assert len(tree.lines) == len(TASKS) - 1  # one U-shaped link per merge
    hatched = [p for p in heat.patches if p.get_hatch() == "///"]
    assert len(hatched) == 2
    # annotations follow the new order: the cell (trec6 row, sms_spam column) shows 0.40
    i, j = order.index("trec6"), order.index("sms_spam")
    assert any(t.get_text() == "0.40" and t.get_position() == (j, i) for t in heat.texts)


def test_clustered_heatmap_partition_groups_are_contiguous_blocks():
    groups = [["bbc_topic", "rt_sentiment", "vader_nyt"], ["trec6", "sms_spam"]]
    fig = affinity_heatmap_clustered(affinity_matrix(), groups=groups)
    (heat,) = image_axes(fig)
    order = [t.get_text() for t in heat.get_xticklabels()]
    for group in groups:
        spots = sorted(order.index(t) for t in group)
        assert spots == list(range(spots[0], spots[0] + len(group)))
    blocks = [p for p in heat.patches if isinstance(p, Rectangle) and p.get_linewidth() == pytest.approx(2.2)]
    assert sorted((p.get_width(), p.get_height()) for p in blocks) == [(2, 2), (3, 3)]
    assert {"G1", "G2"} <= set(texts(fig))


def test_clustered_heatmap_overlapping_groups_outline_cells_with_a_legend():
    groups = [g["tasks"] for g in GROUPS_DOC["groups"]]  # bbc_topic in both: not a partition
    fig = affinity_heatmap_clustered(affinity_matrix(), groups=groups)
    (heat,) = image_axes(fig)
    outlined = [p for p in heat.patches if p.get_linewidth() == pytest.approx(1.6)]
    assert len(outlined) == 3 * 3 + 3 * 3
    assert len({p.get_edgecolor() for p in outlined}) == 2
    legend_text = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_text[0].startswith("G1: trec6")


def test_trajectories_per_source_mean_with_band_over_steps():
    records = affinity_records()
    with pytest.raises(TaskAffinityError, match="estimator"):
        affinity_trajectories(records)
    fig = affinity_trajectories(records, estimator="lookahead_sgd")
    check_figure(fig)
    (ax,) = fig.axes
    lines = [line for line in ax.lines if line.get_label() in TASKS]
    assert len(lines) == len(TASKS)
    assert all(list(line.get_xdata()) == STEPS for line in lines)
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == len(TASKS)
    for band in bands:
        assert set(np.round(band.get_paths()[0].vertices[:, 0]).astype(int)) == set(STEPS)
    # the mean excludes self-affinity (0.9): trec6's mean onto others is far below it
    trec6 = next(line for line in lines if line.get_label() == "trec6")
    matrix = affinity_matrix()
    assert np.mean(trec6.get_ydata()) == pytest.approx(matrix.loc["trec6"].drop("trec6").mean(), abs=0.01)
    assert ax.get_xlabel() == "training step" and "lookahead_sgd" in ax.get_ylabel()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("1.96" in t and "SE" in t for t in legend)


def test_trajectories_of_pairs_window_and_smoothing():
    records = affinity_records()
    fig = affinity_trajectories(
        records, estimator="cosine", pairs=[("trec6", "sms_spam"), ("vader_nyt", "trec6")], window=(30, 80), smooth=3
    )
    (ax,) = fig.axes
    labelled = {line.get_label(): line for line in ax.lines if "\u2192" in line.get_label()}
    assert set(labelled) == {"trec6 \u2192 sms_spam", "vader_nyt \u2192 trec6"}
    assert list(labelled["trec6 \u2192 sms_spam"].get_xdata()) == [30, 40, 50, 60, 70, 80]
    assert "rolling mean over 3 probes" in [t.get_text() for t in ax.get_legend().get_texts()]
    with pytest.raises(TaskAffinityError, match="no cosine records"):
        affinity_trajectories(records, estimator="cosine", pairs=[("trec6", "nope")])


def test_fidelity_scatter_shows_given_numbers_or_computes_them():
    exact = affinity_matrix()
    given = {
        "probes": 10,
        "per_probe": {},
        "run_average": {"pearson": 0.987, "spearman": 0.123, "sign_agreement": 0.75, "n": 20},
    }
    fig = fidelity_scatter(exact, exact * 0.9, fidelity=given)
    check_figure(fig)
    (ax,) = fig.axes
    shown = "\n".join(texts(fig))
    assert "Spearman \u03c1 = 0.12" in shown and "sign agreement = 75%" in shown
    assert len(ax.collections[0].get_offsets()) == 20  # off-diagonal entries only
    assert "y = x" in [line.get_label() for line in ax.lines]
    assert "exact lookahead" in ax.get_xlabel() and "first-order" in ax.get_ylabel()
    computed = "\n".join(texts(fidelity_scatter(exact, exact * 0.9)))
    assert "Pearson r = 1.00" in computed and "sign agreement = 100%" in computed


def test_predicted_vs_measured_reports_spearman_and_labels_extremes():
    matrix = affinity_matrix()
    pairs = [(s, t) for s in TASKS for t in TASKS if s != t]
    gains = pd.DataFrame(
        {
            "source": [s for s, _ in pairs],
            "target": [t for _, t in pairs],
            "gain": [matrix.loc[s, t] * 0.1 for s, t in pairs],
            "n_seeds": 3,
        }
    )
    agreement = {"spearman": 0.456, "ci": [0.1, 0.8], "level": 0.95, "n_pairs": 20}
    fig = predicted_vs_measured(gains, matrix, agreement=agreement, estimator="lookahead_sgd", n_labels=2)
    check_figure(fig)
    (ax,) = fig.axes
    assert "Spearman \u03c1 = 0.46 [0.10, 0.80] (95% bootstrap CI), n = 20 pairs" in ax.get_title()
    assert "lookahead_sgd" in ax.get_xlabel() and "gain" in ax.get_ylabel()
    assert len([t for t in ax.texts if "\u2192" in t.get_text()]) == 2
    computed = predicted_vs_measured(gains, matrix).axes[0].get_title()
    assert "Spearman \u03c1 = 1.00" in computed  # gains are a monotone function of affinity


def test_groups_table_lists_groups_served_tasks_score_and_objective():
    fig = groups_table(GROUPS_DOC)
    check_figure(fig)
    (ax,) = fig.axes
    cells = {key: cell.get_text().get_text() for key, cell in ax.tables[0].get_celld().items()}
    assert cells[(0, 0)] == "group" and cells[(1, 0)] == "G1" and cells[(2, 0)] == "G2"
    assert cells[(1, 1)] == "trec6, sms_spam, bbc_topic" and cells[(1, 2)] == "trec6, sms_spam"
    assert cells[(2, 3)] == "0.434"
    assert "objective = 1.234" in ax.get_title() and "tag_exact" in ax.get_title()


# -- study figures ---------------------------------------------------------------------------------
def test_transfer_table_and_matrix_best_cells_respect_lower_is_better():
    results = results_frame("combinations", COMBINATIONS)
    table = transfer_table(results)
    assert list(dict.fromkeys(table["label"])) == ["baseline", "G1", "G2", "G1+G2"]
    best = dict(table.loc[table["best"], ["target", "label"]].itertuples(index=False))
    assert best == {"trec6": "G1+G2", "rt_sentiment": "baseline", "vader_nyt": "G1"}
    row = table.set_index(["target", "label"])
    assert row.loc[("vader_nyt", "G1"), "delta"] == pytest.approx(0.20)  # mae 0.50 → 0.30: +0.20 better
    assert row.loc[("trec6", "G2"), "std"] == pytest.approx(0.01) and row.loc[("trec6", "G2"), "n_seeds"] == 3

    fig = transfer_matrix(results, families={"trec6": "topic", "vader_nyt": "sentiment", "rt_sentiment": "sentiment"})
    check_figure(fig)
    (ax,) = image_axes(fig)
    columns = [t.get_text() for t in ax.get_xticklabels()]
    rows = [t.get_text().split("\n")[0] for t in ax.get_yticklabels()]
    assert columns == ["baseline", "G1", "G2", "G1+G2"]
    assert rows == ["trec6", "rt_sentiment", "vader_nyt"]  # grouped by family, in order of appearance
    assert "\u2193" in ax.get_yticklabels()[2].get_text()  # mae row marked lower-is-better
    bold = {(round(t.get_position()[1]), round(t.get_position()[0])) for t in ax.texts if t.get_fontweight() == "bold"}
    assert bold == {(0, 3), (1, 0), (2, 1)}
    boxes = {(round(p.get_y() + 0.46), round(p.get_x() + 0.46)) for p in ax.patches if p.get_gid() == "best"}
    assert boxes == bold
    cell = next(t.get_text() for t in ax.texts if t.get_position() == (1, 2))
    assert cell.splitlines() == ["0.300", "\u00b10.010", "(+0.200)"]
    assert {"topic", "sentiment"} <= set(texts(fig)) and "pre-finetuning set" == ax.get_xlabel()


@pytest.mark.parametrize(
    "values, lower, expected",
    [
        ([0.1, 0.9, 0.2, 0.8, 0.9], False, 3),
        ([0.6, 0.7, 0.8], False, 0),
        ([0.1, 0.2, 0.3], False, None),
        ([0.9, 0.1], False, None),  # ends below: never stays above
        ([0.6, 0.4, 0.6, 0.3, 0.2], True, 3),
        ([0.6, np.nan, 0.4], False, None),
    ],
)
def test_critical_point(values, lower, expected):
    assert critical_point(pd.Series(values), 0.5, lower_is_better=lower) == expected


def test_critical_point_returns_the_k_label_and_sorts():
    curve = pd.Series([0.8, 0.3, 0.7], index=[16, 2, 8])
    assert critical_point(curve, 0.5) == 8
    assert critical_point(pd.Series([0.5, 0.6], index=[1, 2]), 0.5) == 2  # equal is not above


def test_scaling_curves_baseline_band_and_critical_point():
    fig = scaling_curves(results_frame("scaling", SCALING))
    check_figure(fig)
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert set(panels) == {"trec6", "vader_nyt"}
    for target, k, baseline in (("trec6", 3, 0.70), ("vader_nyt", 4, 0.50)):
        ax = panels[target]
        lines = {line.get_label(): line for line in ax.lines}
        assert list(lines["baseline (k = 0)"].get_ydata()) == pytest.approx([baseline, baseline])
        star = lines[f"critical point (k = {k})"]
        assert list(star.get_xdata()) == [k] and star.get_marker() == "*"
        assert list(lines["pre-finetuned (mean)"].get_xdata()) == [1, 2, 3, 4]
        assert ax.get_xlabel() == "pre-finetuning tasks k"
    assert "mae" in panels["vader_nyt"].get_ylabel() and "\u2193" in panels["vader_nyt"].get_ylabel()
    assert "accuracy" in panels["trec6"].get_ylabel()


def test_low_resource_heatmap_fraction_by_scale_per_target():
    results = results_frame("low_resource", LOW)
    fig = low_resource_heatmap(results)
    check_figure(fig)
    panels = {ax.get_title(): ax for ax in image_axes(fig)}
    assert set(panels) == {"trec6", "vader_nyt"}
    ax = panels["trec6"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["10%", "50%", "100%"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0 (base)", "2", "4"]
    assert "fraction" in ax.get_ylabel() and "pre-finetuning" in ax.get_xlabel()
    cell = next(t.get_text() for t in ax.texts if t.get_position() == (2, 0))  # k = 4, 10% of the data
    assert cell == f"{0.6 + 0.01 + 0.04:.3f}"
    gain = low_resource_heatmap(results, target="vader_nyt", value="gain")
    (ax,) = image_axes(gain)
    assert next(t.get_text() for t in ax.texts if t.get_position() == (2, 1)) == "+0.040"  # mae down 0.04
    with pytest.raises(TaskAffinityError, match="target"):
        low_resource_heatmap(results, target="sms_spam")


def test_heatmap_prints_values_for_few_tasks_only():
    from taskaffinity.report.heatmap import ANNOTATE_UP_TO, affinity_heatmap

    rng = np.random.default_rng(0)
    for n, texts in ((4, 16), (ANNOTATE_UP_TO + 40, 0)):
        names = [f"t{i}" for i in range(n)]
        fig = affinity_heatmap(pd.DataFrame(rng.normal(size=(n, n)), index=names, columns=names))
        assert len(fig.axes[0].texts) == texts
        assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == names  # every task still labelled
        plt.close(fig)
