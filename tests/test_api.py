"""The API on top: the library's results plus the report's pictures."""

import types

import numpy as np
import pandas as pd
from conftest import tiny_config

from taskaffinity import api
from taskaffinity.affinity.store import AffinityStore

TASKS = ["trec6", "sms_spam", "vader_tweets"]


def test_run_study_adds_heatmaps_of_its_affinity_run(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    rows = [
        {"step": step, "estimator": estimator, "source": s, "target": t, "value": rng.normal()}
        for step in (10, 20, 30)
        for estimator in ("stream_cosine", "lookahead_sgd")
        for s in TASKS
        for t in TASKS
    ]
    store = AffinityStore(pd.DataFrame(rows), {"tasks": TASKS})
    store.save(tmp_path / "affinity" / "affinity.parquet")
    monkeypatch.setattr(api, "_run_study", lambda study, out, progress=True: "the runner's result")
    study = types.SimpleNamespace(config=tiny_config(TASKS))
    assert api.run_study(study, tmp_path) == "the runner's result"
    for estimator in store.estimators:
        assert (tmp_path / "affinity" / f"heatmap_{estimator}.png").stat().st_size > 10_000


def test_the_earlier_names_still_work():
    from taskaffinity.config import RunConfig, StudyConfig

    assert api.train_study is api.train_joint_model and StudyConfig is RunConfig
