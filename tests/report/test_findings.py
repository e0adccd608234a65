"""Known-answer results frames: each published finding clearly holds, clearly does not, or is within noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from taskaffinity.report.findings import (
    DOES_NOT_HOLD,
    HOLDS,
    NOT_MEASURED,
    OPPOSITE_DIRECTION,
    SAME_DIRECTION,
    family_findings,
    low_resource_findings,
    paired_test,
    scaling_findings,
    study_findings,
    verdict,
)

GROUPS = {"sent": ["s1", "s2"], "quest": ["q1"], "style": ["y1"]}
FAMILIES = {
    "s1": "sentiment",
    "s2": "sentiment",
    "q1": "question",
    "y1": "style",
    "t_sent": "sentiment",
    "t_quest": "question",
    "t_style": "style",
}
TARGETS = ["t_sent", "t_quest", "t_style"]
COMBOS = ["sent", "quest", "style", "sent+quest", "sent+style", "quest+style", "sent+quest+style"]


def frame(
    cells: dict,
    *,
    kind: str,
    seeds=range(4),
    noise: float = 0.002,
    metric: dict | None = None,
    members: dict | None = None,
    sizes: dict | None = None,
) -> pd.DataFrame:
    """Tidy test rows: ``cells[(target, label)]`` (or ``[(target, label, fraction)]``) = true value; each seed
    adds deterministic noise of the given amplitude."""
    rng = np.random.default_rng(0)
    rows = []
    for key, value in cells.items():
        target, label, fraction = (*key, 1.0) if len(key) == 2 else key
        tasks = (members or {}).get(label, label.split("+") if label != "baseline" else [])
        for seed in seeds:
            m = (metric or {}).get(target, "accuracy")
            rows.append(
                {
                    "experiment_id": f"{target}-{label}-{seed}-{fraction}",
                    "kind": kind,
                    "label": label,
                    "arm": "",
                    "pretrain_set": "+".join(tasks),
                    "n_pretrain_tasks": (sizes or {}).get(label, len(tasks)),
                    "target": target,
                    "seed": seed,
                    "fraction": fraction,
                    "split": "test",
                    "metric": m,
                    "value": value + noise * rng.standard_normal(),
                    "baseline": 0.5,
                    "primary": True,
                }
            )
    return pd.DataFrame(rows)


def family_frame(delta: dict[str, float], own: float, noise: float = 0.002, seeds=range(4)) -> pd.DataFrame:
    """Targets at baseline 0.70; ``own``: gain of the target's own family; ``delta[label]``: other labels."""
    members = {label: [t for g in label.split("+") for t in GROUPS[g]] for label in COMBOS}
    own_of = {"t_sent": "sent", "t_quest": "quest", "t_style": "style"}
    cells = {}
    for target in TARGETS:
        cells[(target, "baseline")] = 0.70
        for label in COMBOS:
            cells[(target, label)] = 0.70 + (own if label == own_of[target] else delta[label])
    return frame(cells, kind="combinations", noise=noise, members=members, seeds=seeds)


def by_claim(findings):
    return {f.claim[:3]: f for f in findings}


def test_paired_test_and_verdicts():
    assert paired_test([0.1] * 3).p is None and paired_test([0.1] * 3).n == 3  # too few pairs for any test
    assert paired_test([0.0] * 8).p is None
    strong = paired_test([0.05, 0.06, 0.04, 0.05, 0.07, 0.05, 0.06, 0.04])
    assert strong.p == pytest.approx(2 / 2**8) and verdict(strong) == HOLDS and verdict(strong, -1) == DOES_NOT_HOLD
    mixed = paired_test([0.05, -0.04, 0.03, -0.05, 0.02, -0.01, 0.04, -0.03])
    assert mixed.p > 0.5 and verdict(mixed) == SAME_DIRECTION and verdict(mixed, -1) == OPPOSITE_DIRECTION
    assert verdict(paired_test([])) == NOT_MEASURED


def test_families_findings_hold_when_built_in():
    delta = {
        "sent": 0.01,
        "quest": 0.01,
        "style": 0.01,
        "sent+quest": 0.02,
        "sent+style": -0.04,
        "quest+style": 0.01,
        "sent+quest+style": 0.08,
    }
    results = family_frame(delta, own=0.05)
    findings = by_claim(family_findings(results, FAMILIES))
    assert findings["(a)"].verdict == HOLDS
    assert "+0.050" in findings["(a)"].evidence and "n = 12 pairs" in findings["(a)"].evidence
    assert findings["(b)"].verdict == HOLDS and "ranks 1 of 7" in findings["(b)"].evidence
    table_b = findings["(b)"].table
    assert table_b.loc["sent+quest+style", "mean Δ vs baseline"] == pytest.approx(0.08, abs=0.003)
    assert table_b.loc["sent+quest+style", "best for n targets"] == 3
    assert findings["(c)"].verdict == HOLDS
    below = findings["(c)"].table
    assert set(below.index.get_level_values("set")) == {"sent+style"}
    assert below["clearly below"].all() and len(below) == 3  # each target clearly below
    assert findings["(c)"].evidence.startswith(
        "3 of 21 (target, set) cells are below the baseline on average over 4 seeds; 3 clearly"
    )


def test_families_findings_that_do_not_hold():
    """Own family clearly worst, all-families clearly behind a pair, nothing below the baseline."""
    delta = {
        "sent": 0.06,
        "quest": 0.06,
        "style": 0.06,
        "sent+quest": 0.09,
        "sent+style": 0.03,
        "quest+style": 0.03,
        "sent+quest+style": 0.05,
    }
    findings = by_claim(family_findings(family_frame(delta, own=0.01), FAMILIES))
    assert findings["(a)"].verdict == DOES_NOT_HOLD  # better than baseline, but worse than the other families
    assert findings["(b)"].verdict == DOES_NOT_HOLD and "ranks " in findings["(b)"].evidence
    assert "'sent+quest'" in findings["(b)"].evidence
    assert findings["(c)"].verdict == DOES_NOT_HOLD and findings["(c)"].table.empty  # every cell clearly above


def test_families_findings_within_noise():
    """True effects of 0.002 under seed noise of 0.03: the right direction at best, never 'holds'."""
    delta = {label: 0.0 for label in COMBOS} | {"sent+quest+style": 0.002}
    findings = by_claim(family_findings(family_frame(delta, own=0.002, noise=0.03), FAMILIES))
    for key in ("(a)", "(b)"):
        assert findings[key].verdict in (SAME_DIRECTION, OPPOSITE_DIRECTION), findings[key]
    assert findings["(c)"].verdict == SAME_DIRECTION  # some cells below the baseline by chance, none clearly
    assert len(findings["(c)"].table) > 3 and not findings["(c)"].table["clearly below"].any()


def test_families_with_too_few_pairs_are_untested():
    delta = {label: 0.05 for label in COMBOS}
    results = family_frame(delta, own=0.08, seeds=[0])
    findings = by_claim(family_findings(results[results["target"] != "t_style"], FAMILIES))
    assert findings["(a)"].verdict == SAME_DIRECTION and "n = 2 is too small for a test" in findings["(a)"].evidence


def test_lower_is_better_metrics_count_as_gains_when_they_fall():
    members = {"sent": ["s1"], "quest": ["q1"], "sent+quest": ["s1", "q1"]}
    cells = {
        ("t_sent", "baseline"): 0.80,
        ("t_sent", "sent"): 0.60,
        ("t_sent", "quest"): 0.75,
        ("t_sent", "sent+quest"): 0.70,
    }
    results = frame(cells, kind="combinations", metric={"t_sent": "mae"}, members=members, seeds=range(8))
    findings = by_claim(family_findings(results, FAMILIES))
    assert findings["(a)"].verdict == HOLDS
    table = findings["(a)"].table.iloc[0]
    assert table["own vs baseline: mean"] == pytest.approx(0.20, abs=0.005)  # mae 0.80 -> 0.60 is a gain
    assert table["own vs other singles (mean): mean"] == pytest.approx(0.15, abs=0.005)


def test_families_without_family_groups_say_so():
    members = {"G1": ["s1", "q1"], "G2": ["y1", "s2"], "G1+G2": ["s1", "q1", "y1", "s2"]}
    cells = {("t_sent", label): 0.7 for label in ("baseline", "G1", "G2", "G1+G2")}
    findings = by_claim(study_findings(frame(cells, kind="combinations", members=members), "combinations", FAMILIES))
    assert findings["(a)"].verdict == NOT_MEASURED and "family" in findings["(a)"].evidence


def scaling_frame(curve: dict[int, float], noise: float = 0.003) -> pd.DataFrame:
    cells, sizes = {}, {"baseline": 0}
    for target in ("a", "b", "c"):
        cells[(target, "baseline")] = 0.6
        for k, gain in curve.items():
            cells[(target, f"k={k}")] = 0.6 + gain
            sizes[f"k={k}"] = k
    members = {f"k={k}": [f"p{i}" for i in range(k)] for k in curve}
    return frame(cells, kind="scaling", noise=noise, members=members, sizes=sizes)


def test_scaling_hurts_then_helps_past_a_critical_point():
    hurt, helps = scaling_findings(scaling_frame({1: -0.03, 2: -0.01, 4: 0.02, 8: 0.05}))
    assert hurt.verdict == HOLDS and "k = 1" in hurt.claim and "-0.030" in hurt.evidence
    assert helps.verdict == HOLDS and "critical point k = 4" in helps.evidence
    assert hurt.table.index.tolist() == [1, 2, 4, 8]
    assert hurt.table["mean Δ vs baseline"].tolist() == pytest.approx([-0.03, -0.01, 0.02, 0.05], abs=0.003)


def test_scaling_that_only_hurts_has_no_critical_point():
    hurt, helps = scaling_findings(scaling_frame({1: -0.02, 4: -0.03, 8: -0.04}))
    assert hurt.verdict == HOLDS
    assert helps.verdict == DOES_NOT_HOLD and "no critical point" in helps.evidence


def test_flat_scaling_is_within_noise():
    hurt, helps = scaling_findings(scaling_frame({1: 0.0, 4: 0.0, 8: 0.0}, noise=0.03))
    assert hurt.verdict in (SAME_DIRECTION, OPPOSITE_DIRECTION)
    assert helps.verdict in (SAME_DIRECTION, OPPOSITE_DIRECTION)


def low_resource_frame(gain_at: dict[float, float], noise: float = 0.003) -> pd.DataFrame:
    cells, sizes = {}, {"baseline": 0}
    for target in ("a", "b"):
        for fraction, gain in gain_at.items():
            cells[(target, "baseline", fraction)] = 0.5 + fraction / 4
            for k, scale in ((3, 0.8), (6, 1.0), (12, 1.2)):
                cells[(target, f"k={k}", fraction)] = 0.5 + fraction / 4 + gain * scale
                sizes[f"k={k}"] = k
    members = {f"k={k}": [f"p{i}" for i in range(k)] for k in (3, 6, 12)}
    return frame(cells, kind="low_resource", noise=noise, members=members, sizes=sizes)


def test_low_resource_gain_largest_at_the_smallest_fraction():
    (finding,) = low_resource_findings(low_resource_frame({0.05: 0.10, 0.25: 0.04, 1.0: 0.0}))
    assert finding.verdict == HOLDS and "largest mean gain at 0.05" in finding.evidence
    table = finding.table
    assert table.loc[0.05, "Δ at k = 12"] == pytest.approx(0.12, abs=0.003)
    assert table.loc[1.0, "n"] == 2 * 4 * 3  # targets x seeds x scales


def test_low_resource_gain_reversed_does_not_hold():
    (finding,) = low_resource_findings(low_resource_frame({0.05: 0.0, 0.25: 0.03, 1.0: 0.06}))
    assert finding.verdict == DOES_NOT_HOLD


def test_low_resource_peak_in_the_middle_is_not_a_full_hold():
    (finding,) = low_resource_findings(low_resource_frame({0.05: 0.04, 0.25: 0.08, 1.0: 0.0}))
    assert finding.verdict == SAME_DIRECTION and "largest mean gain at 0.25" in finding.evidence


def with_arms(results: pd.DataFrame, arms: dict[str, float], noise: float = 0.002) -> pd.DataFrame:
    """Recipe arms: the whole pool (all groups) under another recipe, ``arms[name]`` above it on every target."""
    pool = "+".join(t for g in GROUPS.values() for t in g)
    everything = results[results["label"] == "sent+quest+style"]
    rng = np.random.default_rng(1)
    extra = [
        everything.assign(
            label=name,
            arm=name,
            pretrain_set=pool,
            experiment_id=everything["experiment_id"] + name,
            value=everything["value"] + shift + noise * rng.standard_normal(len(everything)),
        )
        for name, shift in arms.items()
    ]
    return pd.concat([results, *extra], ignore_index=True)


def test_recipe_arms_are_read_against_the_whole_pool_and_grouping():
    delta = {
        "sent": 0.01,
        "quest": 0.01,
        "style": 0.01,
        "sent+quest": 0.02,
        "sent+style": 0.0,
        "quest+style": 0.01,
        "sent+quest+style": 0.03,
    }
    results = with_arms(family_frame(delta, own=0.05), {"better": 0.04, "same": 0.0, "worse": -0.03})
    findings = by_claim(study_findings(results, "combinations", FAMILIES))
    assert findings["(a)"].verdict == HOLDS  # the family findings read the group combinations only
    assert "ranks 1 of 7" in findings["(b)"].evidence
    arms = findings["(d)"]
    assert (
        arms.verdict == HOLDS
        and "best arm 'better': +0.040" in arms.evidence
        and "Bonferroni over 3 arms" in arms.evidence
    )
    table = arms.table
    assert list(table.index) == ["better", "same", "worse"]
    assert table.loc["better", "Δ vs sent+quest+style"] == pytest.approx(0.04, abs=0.003)
    assert table.loc["worse", "Δ vs sent+quest+style"] == pytest.approx(-0.03, abs=0.003)
    assert table.loc["better", "Δ vs own-family group"] == pytest.approx(0.03 + 0.04 - 0.05, abs=0.003)
    assert table.loc["better", "Δ vs baseline"] == pytest.approx(0.07, abs=0.003)
    none_better = by_claim(
        study_findings(
            with_arms(family_frame(delta, own=0.05), {"same": 0.0, "worse": -0.03}), "combinations", FAMILIES
        )
    )["(d)"]
    assert none_better.verdict in (SAME_DIRECTION, OPPOSITE_DIRECTION)
    assert "(d)" not in by_claim(study_findings(family_frame(delta, own=0.05), "combinations", FAMILIES))
