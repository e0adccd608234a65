"""A 2-process torchrun (CPU, gloo) affinity run equals the 1-process run with the same global batch.

Tolerance: per estimator, the largest difference is below 1e-4 of the largest |value|
(float summation order differs between one process and a reduction over two; the exact
lookahead 1 − L'/L loses a few digits to cancellation, measured ≈1e-5 relative).
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch.distributed as dist
import yaml
from safetensors.torch import load_file

from taskaffinity.cli import main

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo is needed"
)

CONFIG = {
    "seed": 0,
    "tasks": ["trec6", "sms_spam", "vader_tweets", "bbc_topic"],
    "model": {
        "init": "random",
        "max_length": 24,
        "head_dropout": 0.0,
        # no dropout: one process and two see different shards, so they would draw different masks
        "overrides": {
            "num_hidden_layers": 1,
            "hidden_size": 32,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
        },
    },
    "data": {"max_train": 120, "max_eval": 30},
    # batch 7 over 4 tasks: odd sub-batches split unevenly, and 1-example tasks leave a process without rows
    "training": {
        "steps": 6,
        "head_warmup_steps": 2,
        "batch_size": 7,
        "eval_every": 4,
        "checkpoint_every": 100,
        "device": "cpu",
        "warmup_ratio": 0.0,
    },
    "affinity": {
        "rules": ["sgd", "optimizer"],
        "lookahead": "exact",
        "parameters": "all",
        "probe_every": 2,
        "probe_batch_size": 8,
        "stream_window": 2,
        "settle_steps": 0,
        "bootstrap": 50,
    },
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    assert main(["affinity", str(config), "--out", str(root / "one"), "--quiet"]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "taskaffinity",
            "affinity",
            str(config),
            "--out",
            str(root / "two"),
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    return root / "one", root / "two", launched


def test_two_processes_record_the_same_affinities_as_one(runs):
    one, two, _ = runs
    a, b = pd.read_parquet(one / "affinity.parquet"), pd.read_parquet(two / "affinity.parquet")
    keys = ["step", "estimator", "source", "target"]
    merged = a.merge(b, on=keys, suffixes=("_one", "_two"), how="outer", indicator=True)
    assert (merged["_merge"] == "both").all(), "both runs record the same steps, estimators and pairs"
    assert {"lookahead_sgd", "lookahead_optimizer", "stream_gram", "stream_first_order_optimizer"} <= set(a.estimator)
    for estimator, rows in merged.groupby("estimator"):
        scale = rows["value_one"].abs().max()
        diff = (rows["value_one"] - rows["value_two"]).abs().max()
        assert diff <= 1e-4 * scale, f"{estimator}: max difference {diff:.3g} at scale {scale:.3g}"


def test_two_processes_train_the_same_model(runs):
    one, two, _ = runs
    steps_one, steps_two = pd.read_parquet(one / "steps.parquet"), pd.read_parquet(two / "steps.parquet")
    assert (steps_one["examples"] == 1).any(), "the run must cover a task with rows on one process only"
    np.testing.assert_array_equal(steps_one["examples"], steps_two["examples"])
    np.testing.assert_allclose(steps_one["loss"], steps_two["loss"], rtol=1e-5, atol=1e-6)
    eval_one, eval_two = pd.read_parquet(one / "eval.parquet"), pd.read_parquet(two / "eval.parquet")
    np.testing.assert_allclose(eval_one["value"], eval_two["value"], rtol=1e-4, atol=1e-6)
    weights_one = load_file(glob.glob(str(one / "checkpoints" / "*" / "model.safetensors"))[0])
    weights_two = load_file(glob.glob(str(two / "checkpoints" / "*" / "model.safetensors"))[0])
    for name, tensor in weights_one.items():
        np.testing.assert_allclose(tensor.numpy(), weights_two[name].numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


def test_only_the_main_process_writes_and_prints(runs):
    _, two, launched = runs
    assert launched.stdout.count("wrote ") == 1
    assert {"affinity.parquet", "fidelity.json", "summary.json"} <= {p.name for p in two.iterdir()}


def test_two_processes_aggregate_the_reduced_rows_like_one(tmp_path):
    """With an aggregator and GradNorm, the per-task rows are summed over processes before UPGrad
    and the layer norms: the 2-process run trains the model and the weights of the 1-process run."""
    config = {**CONFIG, "training": {**CONFIG["training"], "aggregator": "upgrad", "weighting": "gradnorm"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--out", str(tmp_path / "one"), "--quiet"]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "taskaffinity",
            "train",
            str(path),
            "--out",
            str(tmp_path / "two"),
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    one, two = (pd.read_parquet(tmp_path / run / "steps.parquet") for run in ("one", "two"))
    assert one["weight"].nunique() > len(CONFIG["tasks"])  # GradNorm moved the weights
    np.testing.assert_allclose(one["weight"], two["weight"], rtol=1e-4)
    weights = [
        load_file(glob.glob(str(tmp_path / run / "checkpoints" / "*" / "model.safetensors"))[0])
        for run in ("one", "two")
    ]
    for name, tensor in weights[0].items():
        np.testing.assert_allclose(tensor.numpy(), weights[1][name].numpy(), rtol=1e-4, atol=1e-6, err_msg=name)
