"""Known-answer tests of every estimator on real catalog data with the packaged MiniLM-L6.

After a head warm-up (encoder frozen, every task above its baseline):
- a duplicated task (same data, its own head, independently sampled batches) must be
  its twin's top partner, as source and as target;
- a task with shuffled labels (Rotten Tomatoes subjectivity, inputs shared with no
  other task) must be nobody's top partner, as source or target, and its mean
  |affinity| with the real tasks must be far below the twin pair's.

Every probe estimator (held-out probes, the default) must find both answers. A streamed
estimator, fed the training step's sub-batches (8 examples per task here), must find
them or rate itself "mostly noise" by the run's own split-half reliability: a wrong
answer may be noisy, never trusted.

Every real task has a real partner (BBC topic and its twin; TREC-6 and TREC-50, the
same kind of questions under coarse and fine labels, on disjoint texts after
de-duplication). "Nobody's top partner" is only decidable for a target that has one:
a target whose affinity with every source is zero picks its arg-max among noise. Measured
with an earlier set (vader_tweets in place of trec50, default probes), where neither
vader_tweets nor trec6 had a pair significantly different from zero: at seed 0 the
shuffled task was vader_tweets' arg-max under 4 of 10 estimators (gram 0.102 ± 0.121 vs
trec6 0.100 ± 0.281) and trec6's under 2 streamed ones, and at seed 1 again vader_tweets'
under first_order_optimizer, where the optimizer rule's source-independent part
(momentum, decay) dominates such a column and the source with the smallest gradient
gets the largest step.

Each check runs twice: with the default settings (first-order SGD rule from the top encoder
layer on held-out probes: 3 probe and 3 streamed estimators) and with every estimator recorded
(both rules, exact lookahead, all shared parameters: 6 + 4). With the optimizer rule, recording
starts at the default step, ``affinity.settle_steps`` joint steps after the warm-up. Recording from the first
joint step instead (seed 0, fast settings), the shuffled
task's optimizer-rule stream reached 0.0289 into bbc_topic (trec6's: 0.0226) and 0.0075 into
trec6 (trec50's: 0.0066), so trec6 took it as its top partner; after 20 joint steps: 0.0035
into trec6 against trec50's 0.0056 (``run.default_start_step`` says why).

The default test run uses one seed and smaller probes (32 examples, 24 tokens, 10 probes).
The slow variants use 3 seeds each: the default recorders at the default probe (128 held-out
examples per task from pools of 256), and every estimator recorded with 64-example probes (the
validation pools hold 100 examples: two disjoint halves of 50).
"""

import functools

import numpy as np
import pandas as pd
import pytest

from taskaffinity.affinity.reliability import estimator_reliability
from taskaffinity.affinity.run import record_affinity
from taskaffinity.config import AffinityConfig, config_from_dict
from taskaffinity.stats import verdict

TWIN, ORIGINAL, NOISE = "bbc_twin", "bbc_topic", "rt_shuffled"
TASKS = [
    "bbc_topic",
    "trec6",
    "trec50",
    {"name": TWIN, "duplicate_of": ORIGINAL},
    {"catalog": "rt_subjectivity", "name": NOISE, "shuffle_labels": True},
]


SETTLE = AffinityConfig().settle_steps  # the default: recording starts that many joint steps in


# Every estimator the library records: both update rules, exact lookahead, all shared parameters
EVERY_ESTIMATOR = {"rules": ["sgd", "optimizer"], "lookahead": "exact", "parameters": "all"}


def known_answer_run(
    *,
    seed: int,
    probe_batch_size: int,
    max_length: int,
    probes: int,
    warmup: int = 60,
    max_eval: int = 100,
    affinity: dict | None = None,
):
    config = config_from_dict(
        {
            "seed": seed,
            "tasks": TASKS,
            "model": {"max_length": max_length},
            # trec6 and trec50 on disjoint texts, as calibrated (the default keeps shared questions in both)
            "data": {"max_train": 600, "max_eval": max_eval, "shared_inputs": "one_task"},
            "training": {
                "steps": SETTLE + 2 * probes,
                "batch_size": 40,
                "head_warmup_steps": warmup,
                "head_lr": 3e-3,
                "lr": 5e-5,
                "eval_every": 1000,
                "checkpoint_every": 1000,
            },
            "affinity": {
                "probe_every": 2,
                "probe_batch_size": probe_batch_size,
                "stream_window": 2,
                **(affinity or {}),
            },
        },
        where="<known-answer test>",
    )
    return record_affinity(config, progress=False).store


def check(store) -> dict[str, dict]:
    """Per estimator: the test's verdicts and the numbers behind them."""
    results = {}
    real = [t for t in store.tasks if t != NOISE]
    for estimator in store.estimators:
        matrix = store.matrix(estimator)
        off = pd.DataFrame(
            np.where(np.eye(len(matrix), dtype=bool), np.nan, matrix.to_numpy()),
            index=matrix.index,
            columns=matrix.columns,
        )
        noise_picked_by = [t for t in real if off[t].idxmax() == NOISE or off.loc[t].idxmax() == NOISE]
        noise = np.mean(np.abs(np.r_[off.loc[NOISE, real].to_numpy(), off.loc[real, NOISE].to_numpy()]))
        twin = np.mean(np.abs([off.loc[ORIGINAL, TWIN], off.loc[TWIN, ORIGINAL]]))
        results[estimator] = {
            "twin_top_both_ways": bool(
                off[TWIN].idxmax() == ORIGINAL
                and off[ORIGINAL].idxmax() == TWIN
                and off.loc[TWIN].idxmax() == ORIGINAL
                and off.loc[ORIGINAL].idxmax() == TWIN
            ),
            "noise_picked_by": noise_picked_by,
            "noise_to_twin_ratio": float(noise / twin),
        }
    return results


PROBE_ESTIMATORS = (
    "gram",
    "cosine",
    "first_order_sgd",
    "lookahead_sgd",
    "first_order_optimizer",
    "lookahead_optimizer",
)
DEFAULT_PROBE_ESTIMATORS = ("gram", "cosine", "first_order_sgd")  # the default probe: SGD rule, first order


def assert_known_answers(store, *, must_pass=PROBE_ESTIMATORS, count=10, judged=None):
    """Every estimator in ``must_pass`` finds the known answers; any other estimator of ``judged``
    (default: all) either finds them too or is rated "mostly noise" by the run's own reliability
    (never wrong and trusted)."""
    learned = store.metadata["learned_at_start"]
    assert all(learned[t]["learned"] for t in ("bbc_topic", "trec6", "trec50", TWIN)), learned
    results = check(store)
    assert len(results) == count and set(must_pass) <= set(results), sorted(results)
    failures = {
        e: r
        for e, r in results.items()
        if (judged is None or e in judged)
        and (not r["twin_top_both_ways"] or r["noise_picked_by"] or r["noise_to_twin_ratio"] > 0.3)
    }
    assert not {e: r for e, r in failures.items() if e in must_pass}, failures
    trusted = {}
    for estimator in failures:
        within = estimator_reliability(store, estimator)["within_target_reliability"]
        if verdict(within) != "mostly noise":
            trusted[estimator] = (within, failures[estimator])
    assert not trusted, trusted


def test_twin_and_shuffled_controls_fast():
    """The default affinity settings (first-order SGD rule from the top encoder layer's gradients on
    held-out probes, streams from the same layer): 3 probe estimators + 3 streamed, each finds both
    answers or rates itself mostly noise; the probe estimators must find them."""
    assert_known_answers(
        known_answer_run(seed=0, probe_batch_size=32, max_length=24, probes=10),
        must_pass=DEFAULT_PROBE_ESTIMATORS,
        count=6,
    )


@pytest.mark.slow
def test_twin_and_shuffled_controls_every_estimator_fast():
    """Measured at seed 0 (batch 40 = 8 per task, 10 stream windows of 2 steps), every estimator
    recorded (both rules, exact lookahead, all shared parameters): every probe estimator passes;
    stream_gram misses the twin and rates itself mostly noise (within-target reliability 0.22; the
    probe estimators 0.54-0.68)."""
    assert_known_answers(
        known_answer_run(seed=0, probe_batch_size=32, max_length=24, probes=10, affinity=EVERY_ESTIMATOR)
    )


DEFAULT_PROBE = AffinityConfig().probe_batch_size  # held-out examples per task and probe


@functools.cache
def default_probe_run(seed: int):
    """The default recorders at the default probe: 128 held-out examples per task and probe, from a
    pool of 256 (two disjoint halves of 128), 15 probes; one run per seed, shared by the tests below."""
    return known_answer_run(
        seed=seed, probe_batch_size=DEFAULT_PROBE, max_eval=2 * DEFAULT_PROBE, max_length=32, probes=15
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_probe_finds_the_known_answers(seed):
    """The default probe's three estimators (the grouping estimator first_order_sgd among them) find
    the twin both ways and never pick the shuffled task, at seeds 0, 1 and 2 (measured: 2.5-2.9 min a
    seed on 2 idle cores). With probes of 50 examples (pools of 100) seed 2 failed: trec50 as a source
    helped the shuffled task most (first_order_sgd, 1e-6 against trec6's 0)."""
    assert_known_answers(
        default_probe_run(seed), must_pass=DEFAULT_PROBE_ESTIMATORS, judged=DEFAULT_PROBE_ESTIMATORS, count=6
    )


STREAMS_AT_SEED_2 = (
    "measured at seed 2: the shuffled-label task is trec6's top source under all three streams "
    "(stream_gram: in 76 % of 1,000 bootstrap resamples of its windows), and the streams rate themselves "
    "moderate (within-target reliability 0.59-0.72): the training-split gradients of the shuffled task align "
    "with trec6's consistently, a bias that no split of the windows exposes"
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "seed", [0, 1, pytest.param(2, marks=pytest.mark.xfail(strict=True, reason=STREAMS_AT_SEED_2))]
)
def test_default_streams_never_wrong_and_trusted(seed):
    """The streamed estimators the default also records (training sub-batches, 8 examples per task and
    step) find the answers or rate themselves mostly noise. Seed 1 was a strict xfail while probes drew
    from the training split (stream_gram twin pair -0.38 against diagonals of 48-67); seed 2 is one now
    (``STREAMS_AT_SEED_2``)."""
    streams = ("stream_gram", "stream_cosine", "stream_first_order_sgd")
    assert_known_answers(default_probe_run(seed), must_pass=(), judged=streams, count=6)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_twin_and_shuffled_controls_every_estimator(seed):
    """Every estimator the library records, at the slow settings."""
    assert_known_answers(
        known_answer_run(seed=seed, probe_batch_size=64, max_length=32, probes=15, affinity=EVERY_ESTIMATOR)
    )
