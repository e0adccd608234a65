"""`taskaffinity affinity` end to end on the tiny model: files, streaming maths, resume."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import TINY_MODEL, tiny_config

from taskaffinity.affinity.run import record_affinity
from taskaffinity.affinity.store import AffinityStore
from taskaffinity.affinity.updates import optimizer_update
from taskaffinity.config import config_from_dict
from taskaffinity.training.callbacks import Callback

TASKS = ["trec6", "bbc_topic", "vader_tweets", {"name": "trec6_twin", "duplicate_of": "trec6"}]
# every estimator (both rules, exact lookahead, every shared parameter), checked against explicit products
AFFINITY = {
    "probe_every": 3,
    "probe_batch_size": 8,
    "stream_window": 2,
    "settle_steps": 0,
    "rules": ("sgd", "optimizer"),
    "lookahead": "exact",
    "parameters": "all",
}


def affinity_config(**training):
    config = tiny_config(
        TASKS, **{"steps": 8, "head_warmup_steps": 2, "eval_every": 100, "checkpoint_every": 4, **training}
    )
    import dataclasses

    return dataclasses.replace(config, affinity=dataclasses.replace(config.affinity, **AFFINITY))


class GradientTap(Callback):
    """Keeps the trainer's per-task encoder gradients of each step (for an explicit check)."""

    wants_task_gradients = True

    def __init__(self):
        self.steps = {}

    def on_task_gradients(self, trainer, step, task, loss, grads):
        n = len(list(trainer.model.shared_parameters())) if trainer.phase(step) == "joint" else 0
        flat = torch.cat([g.reshape(-1) for g in grads[:n] if g is not None]) if n else None
        minus_update = None
        if n:  # −Δ_i: the optimizer's whole step for g_i alone, over every shared parameter
            params = [p for _, p in trainer.model.shared_parameters()]
            whole = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads[:n], params)]
            minus_update = -torch.cat([d.reshape(-1) for d in optimizer_update(trainer.optimizer, params, whole)])
        self.steps.setdefault(step, {})[task] = (flat, float(loss), minus_update)


def test_stream_records_are_window_means_of_explicit_products(monkeypatch):
    from taskaffinity.affinity import run as run_module

    tap = GradientTap()
    original = run_module.recorders_for
    monkeypatch.setattr(run_module, "recorders_for", lambda config: (original(config)[0] + [tap], original(config)[1]))
    config = affinity_config()
    result = record_affinity(config, progress=False)
    store = result.store
    # window of 2 steps starting at step 3 (after 2 warm-up steps): records at steps 4, 6, 8, 10
    assert sorted(store.select("stream_gram")["step"].unique()) == [4, 6, 8, 10]
    for end in (4, 6, 8, 10):
        expected = {}
        expected_optimizer = {}
        for step in (end - 1, end):
            grads = tap.steps[step]
            for s, (gs, _, us) in grads.items():
                for t, (gt, loss_t, _) in grads.items():
                    scale = float(gs.double().norm() * gt.double().norm())
                    expected.setdefault((s, t), []).append((float(gs.double() @ gt.double()), scale))
                    scale = float(us.double().norm() * gt.double().norm()) / loss_t
                    expected_optimizer.setdefault((s, t), []).append((float(us.double() @ gt.double()) / loss_t, scale))
        for estimator, wanted in (("stream_gram", expected), ("stream_first_order_optimizer", expected_optimizer)):
            rows = store.select(estimator)
            rows = rows[rows["step"] == end]
            assert len(rows) == 16
            for row in rows.itertuples():
                products, scales = zip(*wanted[(row.source, row.target)])
                # float32 products over ~10^6 parameters: rounding error relative to |a||b|, not to the result
                assert row.value == pytest.approx(np.mean(products), abs=1e-4 * max(scales))
    assert store.metadata["start_step"] == 3 and set(store.metadata["learned_at_start"]) == {
        "trec6",
        "bbc_topic",
        "vader_tweets",
        "trec6_twin",
    }
    probe_steps = sorted(store.select("lookahead_sgd")["step"].unique())
    assert probe_steps == [3, 6, 9]


def test_sketched_stream_approximates_the_exact_stream():
    """CountSketch rows (d = 2^16 buckets for the ~10^5 dense parameters; embeddings stay exact):
    every streamed estimator, the optimizer rule's included, within ~1/√d of the exact one."""
    import dataclasses

    config = affinity_config()
    config = dataclasses.replace(config, affinity=dataclasses.replace(config.affinity, rules=("sgd", "optimizer")))
    exact = record_affinity(config, progress=False).store
    sketched_config = dataclasses.replace(config, affinity=dataclasses.replace(config.affinity, sketch_dim=2**16))
    sketched = record_affinity(sketched_config, progress=False).store
    key = ["step", "source", "target"]
    for estimator in ("stream_gram", "stream_cosine", "stream_first_order_sgd", "stream_first_order_optimizer"):
        a = exact.select(estimator).sort_values(key).reset_index(drop=True)
        b = sketched.select(estimator).sort_values(key).reset_index(drop=True)
        assert len(a) == len(b) == 64 and (a[key] == b[key]).all().all()
        scale = a.groupby("step")["value"].transform(lambda v: v.abs().max())
        error = ((a["value"] - b["value"]).abs() / scale).max()
        assert 0 < error < 0.05, (estimator, error)


def test_interrupted_affinity_run_resumes_to_the_same_records(tmp_path):
    from tests_support import StopAfter

    config = affinity_config()
    whole = record_affinity(config, tmp_path / "whole", progress=False)
    from taskaffinity.affinity import run as run_module

    original = run_module.recorders_for
    with pytest.raises(KeyboardInterrupt):
        run_module.recorders_for = lambda c: (original(c)[0] + [StopAfter(7)], original(c)[1])
        try:
            record_affinity(config, tmp_path / "cut", progress=False)
        finally:
            run_module.recorders_for = original
    resumed = record_affinity(config, tmp_path / "cut", progress=False)
    key = ["estimator", "step", "source", "target"]
    pd.testing.assert_frame_equal(
        whole.store.records.sort_values(key).reset_index(drop=True),
        resumed.store.records.sort_values(key).reset_index(drop=True),
    )


def test_cli_writes_store_matrices_fidelity_and_heatmaps(tmp_path):
    study = {
        "seed": 2,
        "tasks": TASKS,
        "model": TINY_MODEL,
        "data": {"max_train": 80, "max_eval": 20},
        "training": {"steps": 6, "batch_size": 12, "head_warmup_steps": 2, "eval_every": 100, "checkpoint_every": 100},
        "affinity": {**AFFINITY, "rules": ["sgd", "optimizer"], "probe_draws": 2},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "taskaffinity.cli", "affinity", str(path), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    store = AffinityStore.load(out / "affinity.parquet")
    expected = {
        "lookahead_sgd",
        "lookahead_optimizer",
        "first_order_sgd",
        "first_order_optimizer",
        "cosine",
        "gram",
        "stream_gram",
        "stream_cosine",
        "stream_first_order_sgd",
        "stream_first_order_optimizer",
    }
    assert set(store.estimators) == expected
    for estimator in expected:
        matrix = pd.read_csv(out / f"matrix_{estimator}.csv", index_col=0)
        assert list(matrix.index) == list(matrix.columns) == ["trec6", "bbc_topic", "vader_tweets", "trec6_twin"]
        assert (out / f"heatmap_{estimator}.png").stat().st_size > 10_000
        assert {"mean", "se", "low", "high", "significant"} <= set(
            pd.read_csv(out / f"summary_{estimator}.csv").columns
        )
    report = json.loads((out / "fidelity.json").read_text())
    assert {
        "lookahead_sgd vs first_order_sgd",
        "lookahead_optimizer vs first_order_optimizer",
        "lookahead_sgd vs lookahead_optimizer",
    } <= set(report["agreement"])
    assert set(report["reliability"]) == expected
    assert all("ceiling" in v for v in report["agreement"].values())
    assert "within_target" in result.stdout and "agreement lookahead_sgd vs first_order_sgd" in result.stdout
    assert store.metadata["rules"] == ["sgd", "optimizer"] and store.metadata["probe_every"] == 3
    assert "2 held-out draws (probe seeds 2, 3;" in result.stdout and "further held-out draws" in result.stdout
    assert (out / "draws" / "probe_seed_3" / "matrix_lookahead_sgd.csv").is_file()


def test_held_out_draws_share_the_training_and_each_equals_a_run_with_its_probe_seed(tmp_path):
    """affinity.probe_draws: the further draws are what runs with their probe seeds record, in one
    training; the run's own store and its streams do not change."""
    import dataclasses

    from taskaffinity.affinity.run import load_draws

    def with_probes(**options):
        config = affinity_config()
        return dataclasses.replace(
            config, affinity=dataclasses.replace(config.affinity, rules=("sgd",), lookahead="first_order", **options)
        )

    key = ["estimator", "step", "source", "target"]

    def records(store, estimators=None):
        frame = store.records
        if estimators is not None:
            frame = frame[frame["estimator"].isin(estimators)]
        return frame.sort_values(key).reset_index(drop=True)

    three = record_affinity(with_probes(probe_draws=3), tmp_path / "three", progress=False)
    one = record_affinity(with_probes(), progress=False)
    seed = three.store.metadata["seed"]
    assert three.store.metadata["probe_seed"] == seed and three.store.metadata["probe_draws"] == 3
    pd.testing.assert_frame_equal(records(three.store), records(one.store))  # draw 0 and the streams: unchanged
    assert [d.metadata["probe_seed"] for d in three.draws] == [seed + 1, seed + 2]
    probe_estimators = {"gram", "cosine", "first_order_sgd"}
    for draw in three.draws:
        assert set(draw.estimators) == probe_estimators  # streams see training batches: no draws of them
        alone = record_affinity(with_probes(probe_seed=draw.metadata["probe_seed"]), progress=False)
        pd.testing.assert_frame_equal(records(draw), records(alone.store, probe_estimators))
    first, second = (records(d)["value"].to_numpy() for d in three.draws)
    assert not np.allclose(first, records(three.store, probe_estimators)["value"].to_numpy())
    assert not np.allclose(first, second)  # other held-out examples
    on_disk = load_draws(tmp_path / "three")
    assert [d.metadata["probe_seed"] for d in on_disk] == [seed + 1, seed + 2]
    assert (tmp_path / "three" / f"draws/probe_seed_{seed + 1}/matrix_first_order_sgd.csv").is_file()
    summary = json.loads((tmp_path / "three" / "summary.json").read_text())["recording"]
    assert summary["draws_probe_seconds"] > 0
    parts = summary["probe_seconds"] + summary["draws_probe_seconds"] + summary["stream_seconds"]
    assert summary["recording_seconds"] == pytest.approx(parts)  # the run's cost counts every draw
    # fidelity.json: one draw's within-target reliability between draws, as the report reads it
    from taskaffinity.affinity.reliability import draw_reliability
    from taskaffinity.report.assemble import build_report

    between = json.loads((tmp_path / "three" / "fidelity.json").read_text())["draws"]
    assert set(between) == probe_estimators and between["gram"]["probe_seeds"] == [seed, seed + 1, seed + 2]
    expected = draw_reliability([s.matrix("gram") for s in (three.store, *three.draws)])
    assert between["gram"]["within_target_between_draws"] == pytest.approx(expected)
    build_report(tmp_path / "three")
    assert "Over 3 draws of probe examples" in (tmp_path / "three" / "report.md").read_text()
    # recorded again with fewer draws: the draw it no longer has is gone, never read as one of this run's
    from taskaffinity.errors import TaskAffinityError

    two = record_affinity(with_probes(probe_draws=2), tmp_path / "three", resume=False, progress=False)
    assert sorted(p.name for p in (tmp_path / "three" / "draws").iterdir()) == [f"probe_seed_{seed + 1}"]
    assert [d.metadata["run_fingerprint"] for d in load_draws(tmp_path / "three")] == [
        two.store.metadata["run_fingerprint"]
    ]
    import shutil

    shutil.rmtree(tmp_path / "three" / "draws")
    with pytest.raises(TaskAffinityError, match=f"probe seed {seed + 1} of the run"):
        load_draws(tmp_path / "three")


def test_held_out_draws_of_sampled_probes_measure_the_same_pairs():
    """probe_sources / probe_targets: every draw samples the same pairs (the run's seed); only the examples
    differ, so 'between draws' is about examples alone."""
    import dataclasses

    config = affinity_config()
    config = dataclasses.replace(
        config,
        affinity=dataclasses.replace(
            config.affinity, rules=("sgd",), lookahead="first_order", probe_sources=2, probe_targets=3, probe_draws=2
        ),
    )
    result = record_affinity(config, progress=False)
    pairs = [
        set(map(tuple, s.select("first_order_sgd")[["step", "source", "target"]].to_numpy()))
        for s in (result.store, *result.draws)
    ]
    assert pairs[0] == pairs[1]  # the same pairs
    per_probe = pd.Series([step for step, _, _ in pairs[0]]).value_counts()
    assert (per_probe == 2 * 3).all()  # sampled: 2 sources x 3 targets of 4 x 4


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("rules", ["adam"], "affinity.rules: unknown rule 'adam'"),
        ("probe_draws", 0, "affinity.probe_draws must be >= 1"),
        ("probe_seed", -1, "affinity.probe_seed must be >= 0"),
        ("probe_draws", 101, "affinity.probe_draws must be <= 100"),
        ("probe_split", "test", "affinity.probe_split"),
        ("parameters", "top:x", "'top:N' needs an integer"),
        ("start_step", 500, "affinity.start_step 500 is outside"),
        ("settle_steps", -1, "affinity.settle_steps must be >= 0"),
    ],
)
def test_bad_affinity_options(tmp_path, key, value, message):
    study = {"tasks": ["trec6", "bbc_topic"], "model": TINY_MODEL, "training": {"steps": 3}, "affinity": {key: value}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    result = subprocess.run(
        [sys.executable, "-m", "taskaffinity.cli", "affinity", str(path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "warmup, steps, settle, rules, expected",
    [
        (5, 100, 20, ["sgd", "optimizer"], 26),
        (5, 10, 20, ["optimizer"], 11),
        (0, 100, 0, ["optimizer"], 1),
        (5, 100, 20, ["sgd"], 6),
    ],
)
def test_recording_starts_after_warmup_and_settle_steps(warmup, steps, settle, rules, expected):
    from taskaffinity.affinity.run import recorders_for

    config = config_from_dict(
        {
            "tasks": ["trec6", "bbc_topic"],
            "training": {"steps": steps, "head_warmup_steps": warmup},
            "affinity": {"settle_steps": settle, "rules": rules},
        },
        where="<test>",
    )
    callbacks, start = recorders_for(config)
    assert start == expected and all(getattr(cb, "start_step", start) == start for cb in callbacks)


class NaNLoss(Callback):
    """Makes one task's loss NaN at one step, as a diverging task's would be, before the recorders read it."""

    def __init__(self, task, step):
        self.task, self.step = task, step

    def on_before_optimizer_step(self, trainer, step, losses):
        if step == self.step:
            losses[self.task] = float("nan")


def test_a_nan_loss_or_probe_value_is_left_out_by_name_and_counted(monkeypatch, caplog):
    """The text trainer's recorders: a task whose loss is NaN at a step is left out of that step's streamed
    estimators (its windows were NaN), and a task whose probe loss is NaN is left out of that probe;
    both are named and counted in the run's metadata. Nothing non-finite reaches the records."""
    from taskaffinity.affinity import run as run_module
    from taskaffinity.affinity.probe import LookaheadRecorder

    original = run_module.recorders_for
    monkeypatch.setattr(
        run_module,
        "recorders_for",
        lambda config: ([NaNLoss("vader_tweets", 5)] + original(config)[0], original(config)[1]),
    )
    measure = LookaheadRecorder.losses_and_gradients

    def nan_at_step_6(model, batches, params, names):
        losses, flat = measure(model, batches, params, names)
        if nan_at_step_6.calls == 1:  # the second probe (step 6)
            losses[names.index("bbc_topic")] = float("nan")
        nan_at_step_6.calls += 1
        return losses, flat

    nan_at_step_6.calls = 0
    monkeypatch.setattr(LookaheadRecorder, "losses_and_gradients", staticmethod(nan_at_step_6))
    store = record_affinity(affinity_config(), progress=False).store
    assert np.isfinite(store.records["value"]).all()
    assert store.metadata["skipped_steps"] == {"vader_tweets": 1} and store.metadata["probe_skipped"] == {
        "bbc_topic": 1
    }
    at_6 = store.select("lookahead_sgd").query("step == 6")
    assert len(at_6) == 9 and "bbc_topic" not in set(at_6["source"]) | set(at_6["target"])
    window = store.select("stream_gram").query("step == 6")  # steps 5 and 6: vader_tweets only in step 6
    assert len(window) == 16
    assert "task 'vader_tweets' is NaN or infinite at step 5" in caplog.text and "task 'bbc_topic'" in caplog.text
