"""The report's affinity and groups sections: clustered heatmaps, trajectories, estimator fidelity
and how far to trust each estimator; conflicts between task gradients; the chosen groups."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..affinity.estimators import REPORT_ORDER, report_order
from ..affinity.reliability import stream_caveat
from ..stats import snap
from ..storage import read_json
from .section import Section
from .section import save_figure as _save


def affinity_section(run: Path, folder: Path) -> Section:
    from ..affinity.reliability import reliability_table
    from ..affinity.store import AffinityStore
    from .figures import affinity_heatmap_clustered, affinity_trajectories, fidelity_scatter

    section = Section("Affinities")
    path = next((p for p in (run / "affinity" / "affinity.parquet", run / "affinity.parquet") if p.is_file()), None)
    if path is None:
        section.missing = "no affinity run in this folder (affinity/affinity.parquet)"
        return section
    store = AffinityStore.load(path)
    meta = store.metadata
    kind = "exact lookahead" if meta.get("lookahead", "exact") == "exact" else "first-order"
    cost = (
        f" Recording cost {meta['overhead']:.2f}× the same training steps without recorders "
        f"({meta.get('recording_seconds', 0):.0f} s of {meta.get('training_seconds', 0):.0f} s)."
        if meta.get("overhead")
        else ""
    )
    section.text.append(
        f"One joint run over {len(store.tasks)} tasks, recording from step {meta.get('start_step')} "
        f"to {meta.get('steps')}; {kind} probes every {meta.get('probe_every')} steps with "
        f"{meta.get('probe_batch_size')} {meta.get('probe_split', 'validation')}-split examples per task, rules "
        f"{', '.join(meta.get('rules', []))}.{cost} "
        "Rows are sources i, columns targets j: positive Z_{i→j} means i's update lowers j's loss. "
        "Hatched cells: the confidence interval covers 0."
    )
    groups = _groups(run)
    for estimator in report_order(store.estimators):
        matrix = store.matrix(estimator)
        mask = store.covers_zero(estimator, n_boot=200, seed=0)
        fig = affinity_heatmap_clustered(matrix, title=estimator, mask=mask, groups=groups)
        section.figures.append(
            (
                _save(fig, folder, f"heatmap_{estimator}"),
                f"{estimator}: run-averaged affinity, clustered (average linkage)",
            )
        )
    lead = next((e for e in REPORT_ORDER if e in store.estimators), store.estimators[0])
    fig = affinity_trajectories(store.trajectories(lead))
    section.figures.append((_save(fig, folder, f"trajectories_{lead}"), f"{lead} over training steps, per source"))
    conflicts_path = path.parent / "conflicts.parquet"
    if conflicts_path.is_file():
        _conflicts(pd.read_parquet(conflicts_path), section, folder, meta.get("aggregator", "sum"))
    fidelity_path = path.parent / "fidelity.json"
    report = read_json(fidelity_path, nulls_as_nan=True) if fidelity_path.is_file() else {}
    agreement = report.get("agreement", {} if "reliability" in report else report)  # older runs: pairs only
    for pair in (("lookahead_sgd", "first_order_sgd"), ("lookahead_optimizer", "first_order_optimizer")):
        if all(e in store.estimators for e in pair):
            numbers = next((v for k, v in agreement.items() if pair[0] in k and pair[1] in k), None)
            fig = fidelity_scatter(
                store.matrix(pair[0]), store.matrix(pair[1]), fidelity=numbers, title=f"{pair[1]} vs {pair[0]}"
            )
            section.figures.append((_save(fig, folder, f"fidelity_{pair[0]}"), f"first-order form vs exact: {pair[0]}"))
    trust = reliability_table(report)
    if not trust.empty:
        section.text.append(trust_sentence(trust))
        section.tables.append(
            (
                "reliability of each run-averaged matrix (split-half over its probes or windows, "
                "Spearman-Brown corrected; within_target: how each target ranks its sources; "
                "significant_share: off-diagonal pairs whose interval excludes 0; "
                "samples_for_0.9: probes or windows a within-target reliability of 0.9 needs)",
                trust,
            )
        )
    draws = report.get("draws") or {}
    if draws:  # affinity.probe_draws: how far the matrix replicates with other held-out examples
        seeds = next(iter(draws.values()))["probe_seeds"]
        section.text.append(
            f"Over {len(seeds)} draws of probe examples during the same training (probe seeds "
            f"{', '.join(map(str, seeds))}; the further draws in draws/), each matrix agrees with another "
            "draw's within target at Spearman "
            + ", ".join(f"{e} {_shown(v['within_target_between_draws']):.2f}" for e, v in draws.items())
            + ": what the matrix owes to which examples of the probe pool met which probes (draws share the "
            "pool: with at most twice the probe batch in it, every draw sees the same examples in another "
            "split and order). The split-half reliability also sees the matrix's drift over training."
        )
    if agreement:
        rows = [
            {
                "pair": k,
                **{
                    f"run {m}": _shown(v.get("run_average", {}).get(m))
                    for m in ("pearson", "spearman", "sign_agreement")
                },
                "ceiling": _shown(v.get("ceiling")),
            }
            for k, v in agreement.items()
        ]
        section.tables.append(
            (
                "agreement of run-averaged matrices (off-diagonal); two noisy estimators of one "
                "quantity cannot exceed the ceiling their reliabilities allow",
                pd.DataFrame(rows),
            )
        )
    return section


def _shown(value) -> float:
    """A number as the report shows it: rounding residue of 0 as 0, a missing one as NaN."""
    return float("nan") if value is None else snap(value)


def _conflicts(frame: pd.DataFrame, section: Section, folder: Path, aggregator: str) -> None:
    """Gradient conflicts over training (affinity.conflicts): a figure and a table."""
    from .conflicts import conflict_summary, conflict_trajectories

    if frame.empty:
        return
    fig = conflict_trajectories(frame)
    section.figures.append(
        (
            _save(fig, folder, "conflicts"),
            "gradient conflicts per step: share of task pairs with negative cosine, magnitude "
            "similarity of conflicting pairs (Yu et al. 2020)"
            + (f", cosine between the summed and the {aggregator} update" if aggregator != "sum" else ""),
        )
    )
    section.tables.append(
        (
            "gradient conflicts (means over the recorded steps, and over their first and last third; "
            "se: standard error from the means of blocks of 10 consecutive steps)",
            conflict_summary(frame),
        )
    )


def trust_sentence(trust: pd.DataFrame) -> str:
    """One plain sentence on which matrices can be believed."""
    ranked = trust.sort_values("within_target", ascending=False)
    good = ranked[ranked["within_target"] >= 0.75]["estimator"].tolist()
    noise = ranked[~(ranked["within_target"] >= 0.5)]["estimator"].tolist()
    parts = [
        f"Most reliable: {ranked.iloc[0]['estimator']} (within-target reliability "
        f"{ranked.iloc[0]['within_target']:.2f}, {ranked.iloc[0]['verdict']})."
    ]
    if good:
        parts.append(f"Good or better: {', '.join(good)}.")
    if noise:
        parts.append(
            f"Mostly noise at this budget (within-target reliability below 0.5; more steps or larger "
            f"probes would be needed, see samples_for_0.9): {', '.join(noise)}."
        )
    caveat = stream_caveat(trust["estimator"])
    if caveat:
        parts.append(caveat)
    return " ".join(parts)


def _groups(run: Path) -> list[list[str]] | None:
    if (run / "groups.json").is_file():
        return [g["tasks"] for g in read_json(run / "groups.json")["groups"]]
    return None


def groups_section(run: Path, folder: Path) -> Section:
    from ..grouping.output import trust_lines
    from .figures import comembership_heatmap, groups_table

    section = Section("Groups")
    if not (run / "groups.json").is_file():
        section.missing = "no groups.json (groups come from an affinity run with `groups: affinity`)"
        return section
    document = read_json(run / "groups.json")
    section.text.append(
        f"{document['method']} grouping from {document.get('estimator')}, k = {document['k']}, "
        f"objective {document['objective']:.4g}."
    )
    section.text += trust_lines(document)
    if document["groups"]:
        section.figures.append((_save(groups_table(document), folder, "groups"), "chosen groups, served tasks, scores"))
    else:
        section.text.append("No group: every task is better trained alone (leave_alone).")
    stability = document.get("stability")
    if stability:
        comembership = pd.DataFrame(stability["comembership"])
        fig = comembership_heatmap(
            comembership, chosen_share=stability["chosen_share"], resamples=stability["resamples"]
        )
        section.figures.append(
            (
                _save(fig, folder, "grouping_stability"),
                "how often each pair of tasks shares a group when the grouping is re-solved on "
                "bootstrap resamples of the affinity run's probes or windows",
            )
        )
    return section
