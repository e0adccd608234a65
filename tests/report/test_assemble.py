"""Report assembly from real (tiny-model) run folders: every section, embedded images, partial runs."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import TINY_MODEL

from taskaffinity.cli import main
from taskaffinity.report.assemble import build_report

SECTIONS = ("Run", "Affinities", "Groups", "Study", "Jobs")
STUDY = {
    "seed": 3,
    "tasks": ["trec6", "sms_spam", "bbc_topic", "vader_tweets", "rt_subjectivity"],
    "model": TINY_MODEL,
    "data": {"max_train": 80, "max_eval": 30},
    "training": {
        "steps": 6,
        "head_warmup_steps": 2,
        "batch_size": 12,
        "eval_every": 100,
        "checkpoint_every": 3,
        "eval_batch_size": 64,
    },
    "affinity": {"probe_every": 2, "probe_batch_size": 8, "stream_window": 2},
    "study": {
        "kind": "combinations",
        "targets": ["rt_subjectivity"],
        "seeds": [0, 1],
        "groups": "affinity",
        "grouping": {"k": 2, "estimator": "stream_cosine"},
        "finetune": {"steps": 4, "batch_size": 8},
    },
}


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """`taskaffinity run` end to end: affinity -> groups -> combinations study -> report."""
    folder = tmp_path_factory.mktemp("pipeline")
    (folder / "study.yaml").write_text(yaml.safe_dump(STUDY, sort_keys=False))
    assert main(["run", str(folder / "study.yaml"), "--out", str(folder / "out"), "--quiet"]) == 0
    return folder / "out"


def test_pipeline_report_has_every_section_with_embedded_figures(pipeline_run):
    page = (pipeline_run / "report.html").read_text()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    assert "Missing:" not in page
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) >= 5  # heatmaps, trajectories, fidelity, groups, transfer matrix
    assert all(len(i) > 1000 for i in images)
    assert "src='http" not in page and "<link" not in page and "<script" not in page  # self-contained
    markdown = (pipeline_run / "report.md").read_text()
    linked = re.findall(r"\]\((report/[^)]+\.png)\)", markdown)
    assert linked and all((pipeline_run / link).is_file() for link in linked)
    assert all((pipeline_run / link).with_suffix(".svg").is_file() for link in linked)
    assert "transfer_matrix" in markdown and "heatmap_stream_cosine" in markdown


def test_report_of_a_partial_study_marks_what_is_missing(pipeline_run, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(pipeline_run, partial, ignore=shutil.ignore_patterns("report*", "results.parquet", "tables"))
    for result in list(partial.glob("experiments/*/result.parquet"))[:3]:
        result.unlink()  # jobs "still running"
    html = build_report(partial).read_text()
    assert "Missing: no results.parquet yet" in html
    assert "<h2>Affinities</h2>" in html and "pending" in html


def test_report_of_an_affinity_run_alone(pipeline_run, tmp_path):
    only = tmp_path / "affinity_only"
    shutil.copytree(pipeline_run / "affinity", only)
    assert main(["report", str(only)]) == 0
    html = (only / "report.html").read_text()
    assert "Missing: no study plan in this folder" in html and "data:image/png;base64" in html


def test_report_of_a_missing_folder_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_report_opens_in_headless_chromium_without_errors(pipeline_run):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = Path(pipeline_run / "report.html").resolve()
    result = subprocess.run(
        [
            browser,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in result.stdout
    console_errors = [line for line in result.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line.upper()]
    assert not console_errors, console_errors
