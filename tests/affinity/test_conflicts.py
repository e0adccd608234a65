"""Gradient conflict statistics: the pair maths by hand, the recorder against the trainer's own
per-task gradients and update, and the affinity run's file and report."""

import dataclasses
import math

import pandas as pd
import pytest
import torch
from conftest import tiny_config
from test_weighting import TaskGradients, trainer_for

from taskaffinity.affinity.conflicts import ConflictRecorder, conflict_statistics
from taskaffinity.affinity.run import record_affinity
from taskaffinity.report.assemble import build_report


def test_pair_statistics_by_hand():
    """a = (3, 0), b = (−1, 1), c = (0, 2): only (a, b) conflicts, cos = −3 / (3·√2);
    its magnitude similarity 2·3·√2 / (9 + 2); the three cosines −1/√2, 0, 1/√2 average 0."""
    rows = torch.tensor([[3.0, 0.0], [-1.0, 1.0], [0.0, 2.0]])
    stats = conflict_statistics(rows @ rows.T)
    assert stats == pytest.approx(
        {
            "pairs": 3,
            "conflicting_share": 1 / 3,
            "conflict_magnitude_similarity": 6 * math.sqrt(2) / 11,
            "mean_cosine": 0.0,
        },
        abs=1e-12,
    )
    assert math.isnan(conflict_statistics(rows[[0, 2]] @ rows[[0, 2]].T)["conflict_magnitude_similarity"])


def test_recorder_matches_the_trainers_rows_and_update():
    config = tiny_config(["sms_spam", "vader_tweets", "trec6"], steps=3, head_warmup_steps=1, aggregator="upgrad")
    seen, recorder = TaskGradients(), ConflictRecorder(start_step=1)
    trainer = trainer_for(config, [seen, recorder])
    shared = [k for k, (n, _) in enumerate(trainer.trainable_parameters) if n.startswith("encoder.")]
    for step in (1, 2, 3, 4):
        trainer.train_step(step)
        if step == 1:  # head warm-up: the encoder does not train, nothing to compare
            assert recorder.steps == []
            continue
        tasks = list(seen.grads)
        rows = torch.stack(
            [torch.cat([(seen.weights[t] * seen.grads[t][k]).reshape(-1) for k in shared]) for t in tasks]
        ).double()
        record = recorder.steps[-1]
        assert record["step"] == step and record["tasks"] == len(tasks)
        assert {k: record[k] for k in ("conflicting_share", "mean_cosine")} == pytest.approx(
            {k: v for k, v in conflict_statistics(rows @ rows.T).items() if k in ("conflicting_share", "mean_cosine")},
            rel=1e-5,
            abs=1e-7,
        )
        update = torch.cat([seen.update[k].reshape(-1) for k in shared]).double()
        expected = torch.nn.functional.cosine_similarity(rows.sum(0), update, dim=0).item()
        assert record["update_cosine"] == pytest.approx(expected, rel=1e-5)
        assert record["update_cosine"] < 1 - 1e-4  # UPGrad turned the update away from the sum
    assert len(recorder.steps) == 3


def test_affinity_run_writes_conflicts_and_the_report_shows_them(tmp_path):
    config = tiny_config(
        ["sms_spam", "vader_tweets", "trec6"], steps=6, head_warmup_steps=1, eval_every=100, aggregator="pcgrad"
    )
    config = dataclasses.replace(
        config, affinity=dataclasses.replace(config.affinity, rules=(), stream_window=2, conflicts=True, bootstrap=20)
    )
    result = record_affinity(config, tmp_path, progress=False)
    frame = pd.read_parquet(tmp_path / "conflicts.parquet")
    assert list(frame["step"]) == list(range(2, 8))  # every joint step
    pd.testing.assert_frame_equal(frame, result.conflicts)
    assert frame["conflicting_share"].between(0, 1).all() and frame["update_cosine"].le(1 + 1e-6).all()
    assert not (set(result.store.records["estimator"]) & set(frame.columns))  # not mixed into the affinity store
    build_report(tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "conflicts.png" in report and "conflicting_share" in report
    assert (tmp_path / "report" / "conflicts.svg").is_file()


def test_conflict_summary_has_standard_errors_from_blocks_of_steps():
    """Block means of 10 consecutive steps: 30 steps whose blocks average 0.1, 0.2 and 0.3 give the mean 0.2
    and the standard error sd(0.1, 0.2, 0.3) / √3; a third of the run (one block) has none."""
    from taskaffinity.report.conflicts import conflict_summary

    values = [0.1] * 10 + [0.2] * 10 + [0.3] * 10
    frame = pd.DataFrame(
        {
            "step": range(1, 31),
            "conflicting_share": values,
            "conflict_magnitude_similarity": [0.5] * 30,
            "update_cosine": [float("nan")] * 30,
        }
    )
    table = conflict_summary(frame)
    row = table.loc["conflicting_share"]
    assert row["all steps"] == pytest.approx(0.2) and row["all steps se"] == pytest.approx(round(0.1 / 3**0.5, 3))
    assert math.isnan(row["first third se"]) and row["first third"] == pytest.approx(0.1)
    assert table.loc["conflict_magnitude_similarity", "all steps se"] == 0
    assert "update_cosine" not in table.index and list(table.columns)[:2] == ["all steps", "all steps se"]
