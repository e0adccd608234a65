"""Assemble a run folder into ``report.html`` (self-contained) and ``report.md``.

Sections: the run (configuration, costs), affinities (clustered heatmaps,
trajectories, fidelity), groups, the study (transfer matrix, scaling curves,
low-resource grid, predicted vs measured transfer), the jobs and what the results show about
the published findings (:mod:`.findings`). Figures are also
saved as PNG and SVG under ``report/``. A section whose inputs are missing (a run
still in progress, a study without an affinity run) says so instead of failing.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd
import yaml

from ..affinity.estimators import REPORT_ORDER
from ..storage import read_json, write_text
from .section import Section
from .section import save_figure as _save
from .sections_affinity import affinity_section, groups_section


def build_report(run_dir: str | Path) -> Path:
    """Write ``report.html``, ``report.md`` and ``report/*.png|svg`` into ``run_dir``; return the HTML path."""
    run = Path(run_dir)
    figures = run / "report"
    from .reading import findings_section

    sections = [
        run_section(run),
        affinity_section(run, figures),
        groups_section(run, figures),
        study_section(run, figures),
        jobs_section(run),
        findings_section(run),
    ]
    title = _study_name(run)
    write_text(run / "report.md", to_markdown(title, sections))
    write_text(run / "report.html", to_html(title, sections, figures))
    return run / "report.html"


def _study_name(run: Path) -> str:
    for name in ("study.yaml", "config.yaml"):
        if (run / name).is_file():
            return str(yaml.safe_load((run / name).read_text()).get("name", run.name))
    return run.name


# -- sections ------------------------------------------------------------------------------------
def run_section(run: Path) -> Section:
    section = Section("Run")
    config_path = next(
        (run / n for n in ("study.yaml", "affinity/config.yaml", "config.yaml") if (run / n).is_file()), None
    )
    if config_path is None:
        section.missing = "no study.yaml or config.yaml in the run folder"
        return section
    config = yaml.safe_load(config_path.read_text())
    tasks = [t if isinstance(t, str) else t.get("name") for t in config.get("tasks", [])]
    model, training = config.get("model", {}), config.get("training", {})
    rows = {
        "model": model.get("name"),
        "tasks": ", ".join(map(str, tasks)),
        "seed": config.get("seed"),
        "max_length": model.get("max_length"),
        "steps (joint / head warm-up)": f"{training.get('steps')} / {training.get('head_warmup_steps', 0)}",
        "batch size": training.get("batch_size"),
        "encoder lr": training.get("lr"),
    }
    study = config.get("study") or {}
    if study:
        rows.update(
            {
                "study kind": study.get("kind"),
                "targets": ", ".join(study.get("targets") or []),
                "seeds": ", ".join(map(str, study.get("seeds") or [])),
            }
        )
    if (run / "summary.json").is_file():
        summary = read_json(run / "summary.json")
        rows.update(
            {
                f"cost: {k.replace('_', ' ')}": v
                for k, v in summary.items()
                if k
                in (
                    "jobs",
                    "done",
                    "failed",
                    "pending",
                    "experiment_seconds",
                    "affinity_run_seconds",
                    "brute_force_seconds",
                    "brute_force_over_affinity_run",
                )
            }
        )
    section.tables.append(
        ("configuration and costs", pd.DataFrame({"value": [str(v) for v in rows.values()]}, index=list(rows)))
    )
    if "cost: brute force over affinity run" in rows:  # each job was timed whenever the study ran it
        section.text.append(
            "The brute-force ratio divides wall seconds timed whenever each job and the affinity run "
            "ran; on a shared or busy machine they met different loads. `bench/brute_force_ratio.py` "
            "times the affinity run, every single job and random pair jobs side by side."
        )
    return section


def study_section(run: Path, folder: Path) -> Section:
    from . import figures

    section = Section("Study")
    if not (run / "results.parquet").is_file():
        section.missing = "no results.parquet yet (run `taskaffinity study run`)"
        return section
    results = pd.read_parquet(run / "results.parquet")
    if results.empty:
        section.missing = "no experiment has finished yet"
        return section
    kind = results["kind"].iloc[0]
    if kind == "combinations":
        section.figures.append(
            (
                _save(figures.transfer_matrix(results), folder, "transfer_matrix"),
                "targets × pre-finetuning sets: mean test metric ± seed std, colour = change vs "
                "baseline, best per row outlined",
            )
        )
    elif kind == "scaling":
        section.figures.append(
            (
                _save(figures.scaling_curves(results), folder, "scaling"),
                "target metric vs number of pre-finetuning tasks (mean ± std over seeds)",
            )
        )
    elif kind == "low_resource":
        section.figures.append(
            (
                _save(figures.low_resource_heatmap(results), folder, "low_resource"),
                "fraction of target training data × pre-finetuning scale",
            )
        )
    else:
        _validation_figures(run, results, section, folder)
    for name in (
        "transfer",
        "summary",
        "noise_ceiling",
        "agreement",
        "agreement_draws",
        "estimator_differences",
        "arms",
        "group_gain_predictors",
        "gains",
    ):
        path = run / "tables" / f"{name}.csv"
        if path.is_file():
            section.tables.append(
                (f"tables/{name}.csv", pd.read_csv(path, index_col=0 if name == "transfer" else None))
            )
    return section


def _validation_figures(run: Path, results: pd.DataFrame, section: Section, folder: Path) -> None:
    from ..affinity.store import AffinityStore
    from ..study.results import affinity_agreement, measured_gains
    from .figures import predicted_vs_measured
    from .validation import ranking_key, validation_reading

    tables = {
        name: pd.read_csv(run / "tables" / f"{name}.csv")
        for name in ("noise_ceiling", "agreement", "arms", "estimator_differences", "group_gain_predictors")
        if (run / "tables" / f"{name}.csv").is_file()
    }
    noise = tables["noise_ceiling"].iloc[0].to_dict() if "noise_ceiling" in tables else None
    summary = read_json(run / "summary.json") if (run / "summary.json").is_file() else {}
    section.text += validation_reading(
        tables.get("agreement"),
        noise,
        tables.get("arms"),
        tables.get("estimator_differences"),
        tables.get("group_gain_predictors"),
        draws_same_training=summary.get("draws_same_training"),
    )
    gains = measured_gains(results)
    path = run / "affinity" / "affinity.parquet"
    if gains.empty or not path.is_file():
        section.text.append("Predicted vs measured transfer needs the pair runs and the affinity run.")
        return
    store = AffinityStore.load(path)
    agreement = tables.get("agreement")
    if agreement is not None and "within_target" in agreement:  # the three best predictors
        key = ranking_key(agreement)  # over the draws of probe examples where there are several
        shown = agreement.assign(_rank=key).sort_values("_rank", ascending=False)["estimator"].head(3).tolist()
    else:
        shown = [e for e in REPORT_ORDER if e in store.estimators][:3]
    for estimator in shown:
        matrix = store.matrix(estimator)
        numbers = affinity_agreement(gains, matrix)
        if noise:
            numbers["ceiling"] = noise.get("within_target_ceiling")
        fig = predicted_vs_measured(gains, matrix, agreement=numbers, estimator=estimator)
        section.figures.append(
            (
                _save(fig, folder, f"predicted_vs_measured_{estimator}"),
                f"affinity ({estimator}) vs measured gain of the target from training with the "
                "source (bars: ± standard error over seeds)",
            )
        )


def jobs_section(run: Path) -> Section:
    section = Section("Jobs")
    if not (run / "jobs.parquet").is_file():
        section.missing = "no study plan in this folder"
        return section
    from ..study.status import study_status

    status = study_status(run)
    counts = status["status"].value_counts()
    section.text.append(
        ", ".join(f"{counts.get(s, 0)} {s}" for s in ("done", "pending", "failed")) + f" of {len(status)} jobs."
    )
    unfinished = status[status["status"] != "done"]
    if not unfinished.empty:
        section.tables.append(("jobs not done", unfinished[["experiment_id", "job_type", "tasks", "status", "error"]]))
    return section


# -- rendering -----------------------------------------------------------------------------------
def to_markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}: taskaffinity report", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.missing:
            lines += [f"*Missing: {section.missing}.*", ""]
            continue
        lines += [*(t + "\n" for t in section.text)]
        for stem, caption in section.figures:
            lines += [f"![{caption}](report/{stem}.png)", "", f"*{caption}*", ""]
        for caption, table in section.tables:
            lines += [f"**{caption}**", "", table.to_markdown(floatfmt=".4g"), ""]
    return "\n".join(lines)


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
figure{margin:1.2em 0}figure img{max-width:100%;height:auto}figcaption{color:#555;font-size:.9em}
table{border-collapse:collapse;font-size:.85em;margin:1em 0}td,th{border:1px solid #ddd;padding:3px 8px}
.missing{color:#a33;font-style:italic}"""


def to_html(title: str, sections: list[Section], folder: Path) -> str:
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}: taskaffinity report</h1>"
    ]
    for section in sections:
        anchor = section.title.lower()
        parts.append(f"<section id='{anchor}'><h2>{html.escape(section.title)}</h2>")
        if section.missing:
            parts.append(f"<p class='missing'>Missing: {html.escape(section.missing)}.</p></section>")
            continue
        parts += [f"<p>{html.escape(t)}</p>" for t in section.text]
        for stem, caption in section.figures:
            data = base64.b64encode((folder / f"{stem}.png").read_bytes()).decode()
            parts.append(
                f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        for caption, table in section.tables:
            parts.append(
                f"<h3>{html.escape(caption)}</h3>"
                + table.to_html(float_format=lambda v: f"{v:.4g}", na_rep="", border=0)
            )
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)
