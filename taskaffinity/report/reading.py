"""The report's closing "What this shows" section: the published findings a study can test, read from
its results table by :mod:`.findings`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..storage import read_json
from .findings import ALPHA, MIN_TEST_N, study_findings
from .section import Section

TITLE = "What this shows"


def families_of(run: Path) -> dict[str, str]:
    """task -> family, as the study prepared its pool (``data/index.json``)."""
    index = run / "data" / "index.json"
    if not index.is_file():
        return {}
    return {name: meta.get("family") for name, meta in read_json(index).get("tasks", {}).items()}


def findings_section(run: Path) -> Section:
    section = Section(TITLE)
    path = run / "results.parquet"
    if not path.is_file():
        section.missing = "no results.parquet yet"
        return section
    results = pd.read_parquet(path)
    if results.empty:
        section.missing = "no experiment has finished yet"
        return section
    kind = results["kind"].iloc[0]
    findings = study_findings(results, kind, families_of(run))
    if not findings:
        section.missing = f"no published finding is tested by a {kind} study"
        return section
    section.text.append(
        "Generated from results.parquet (test split, each target's primary metric; differences signed so that "
        "positive means better, in metric units, pooled over targets). Comparisons are paired: the same target "
        f"and seed (and data fraction and scale) under both conditions; Wilcoxon signed-rank test, two-sided, "
        f"α = {ALPHA}; fewer than {MIN_TEST_N} pairs cannot reach significance and are left untested. "
        "'holds': the published direction and significant; 'same direction, within noise': the published "
        "direction, not significant; 'opposite direction, within noise' / 'does not hold': the other way, "
        "not significant / significant."
    )
    for finding in findings:
        section.text.append(f"{finding.claim} ({finding.source}): {finding.verdict}. {finding.evidence}")
        if finding.table is not None and not finding.table.empty:
            section.tables.append((finding.claim, finding.table))
    return section
