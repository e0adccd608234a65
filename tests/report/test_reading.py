"""The report's "What this shows" section, from a real (tiny-model) families study and from study folders
whose results are known."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from conftest import TINY_MODEL
from test_findings import low_resource_frame, scaling_frame

from taskaffinity.report.assemble import build_report
from taskaffinity.report.findings import HOLDS, study_findings
from taskaffinity.report.reading import families_of
from taskaffinity.storage import write_json, write_parquet
from taskaffinity.study import load_study, run_study

# groups are catalog families; each target belongs to one of them (and is never pre-finetuned on)
FAMILIES_STUDY = {
    "name": "tiny_families",
    "seed": 3,
    "tasks": ["trec6", "sms_spam", "trec50", "rt_subjectivity"],
    "model": TINY_MODEL,
    "data": {"max_train": 80, "max_eval": 30},
    "training": {"steps": 4, "batch_size": 12, "eval_every": 100, "checkpoint_every": 100, "eval_batch_size": 64},
    "study": {
        "kind": "combinations",
        "targets": ["trec50", "rt_subjectivity"],
        "seeds": [0, 1],
        "groups": {"question": ["trec6"], "style": ["sms_spam"]},
        "finetune": {"steps": 4, "batch_size": 8, "lr": 1e-3},
    },
}


def section(markdown: str) -> str:
    assert "## What this shows" in markdown
    return markdown.split("## What this shows", 1)[1]


@pytest.fixture(scope="module")
def families_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("families")
    (folder / "study.yaml").write_text(yaml.safe_dump(FAMILIES_STUDY, sort_keys=False))
    run_study(load_study(folder / "study.yaml"), folder / "out", progress=False)
    build_report(folder / "out")
    return folder / "out"


def test_families_report_ends_with_what_this_shows(families_run):
    markdown = (families_run / "report.md").read_text()
    assert markdown.rindex("## ") == markdown.index("## What this shows")  # the last section
    text = section(markdown)
    results = pd.read_parquet(families_run / "results.parquet")
    assert families_of(families_run)["trec50"] == "question"
    findings = study_findings(results, "combinations", families_of(families_run))
    assert [f.claim[:3] for f in findings] == ["(a)", "(b)", "(c)"]
    for finding in findings:  # the report says exactly what the statistics over its own table say
        assert f"{finding.claim} ({finding.source}): {finding.verdict}. {finding.evidence}" in text
    # 2 targets x 2 seeds: too few pairs for any test, and the report says so instead of a verdict of "holds"
    assert "n = 4 is too small for a test" in text
    assert all(f.verdict != HOLDS for f in findings[:2])
    html = (families_run / "report.html").read_text()
    assert "<h2>What this shows</h2>" in html and findings[0].claim.replace("'", "&#x27;") in html


def known_folder(tmp_path, results: pd.DataFrame, kind: str):
    run = tmp_path / kind
    run.mkdir()
    write_parquet(run / "results.parquet", results)
    (run / "study.yaml").write_text(yaml.safe_dump({"name": kind, "tasks": [], "study": {"kind": kind}}))
    write_json(run / "data" / "index.json", {"tasks": {}})
    build_report(run)
    return section((run / "report.md").read_text())


def test_scaling_report_states_the_critical_point(tmp_path):
    text = known_folder(tmp_path, scaling_frame({1: -0.03, 2: -0.01, 4: 0.02, 8: 0.05}), "scaling")
    assert "few pre-finetuning tasks hurt (k = 1 below the baseline) (Aghajanyan et al. 2021 (Muppet)): holds." in text
    assert "critical point k = 4" in text
    assert "**few pre-finetuning tasks hurt (k = 1 below the baseline)**" in text  # the per-k table's caption


def test_low_resource_report_says_when_the_gain_is_not_largest_at_the_least_data(tmp_path):
    text = known_folder(tmp_path, low_resource_frame({0.05: 0.0, 0.25: 0.03, 1.0: 0.06}), "low_resource")
    assert (
        "the gain from pre-finetuning is largest when the target has the least training data "
        "(Aghajanyan et al. 2021 (Muppet)): does not hold."
    ) in text
