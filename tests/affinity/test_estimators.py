"""The estimator registry names exactly what the recorders write, in every code path."""

import torch

from taskaffinity.affinity.estimators import ESTIMATORS, FEATURE, REPORT_ORDER, STREAMED, describe, report_order
from taskaffinity.affinity.lookahead import lookahead
from taskaffinity.affinity.windows import feature_estimates, step_estimates
from taskaffinity.config import LOOKAHEAD_RULES


def test_streamed_and_feature_names_are_registered():
    gram = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    assert tuple(step_estimates(gram, torch.ones(2), 0.1, products=-gram)) == STREAMED
    assert tuple(feature_estimates(gram)) == FEATURE
    assert {ESTIMATORS[n].recorder for n in STREAMED} == {"stream"}


def test_probe_names_are_registered():
    torch.manual_seed(0)
    trunk, heads = torch.nn.Linear(3, 4), {t: torch.nn.Linear(4, 1) for t in "ab"}
    x = torch.randn(8, 3)

    def losses(model):
        z = model(x)
        return {t: heads[t](z).pow(2).mean() for t in "ab"}

    _, arrays = lookahead(trunk, list(trunk.named_parameters()), losses, ["a", "b"], lr=0.1, rules=("sgd",))
    probe_names = {n for n, e in ESTIMATORS.items() if e.recorder == "probe"}
    assert set(arrays) <= probe_names
    assert probe_names == {"gram", "cosine"} | {
        f"{kind}_{rule}" for kind in ("lookahead", "first_order") for rule in LOOKAHEAD_RULES
    }


def test_report_order_puts_the_preferred_estimators_first_then_the_rest_by_name():
    names = ["gram", "stream_cosine", "cosine", "lookahead_sgd", "zeta"]
    assert report_order(names) == ["lookahead_sgd", "gram", "cosine", "stream_cosine", "zeta"]
    assert set(REPORT_ORDER) <= set(ESTIMATORS)
    assert describe("stream_cosine").startswith("stream_cosine: cosine") and describe("zeta") == "zeta"
