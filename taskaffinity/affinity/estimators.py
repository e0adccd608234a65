"""Every affinity estimator the toolkit records: its name, what it measures, its unit and sign.

One table, read by the recorders (which names they write), the store and the CLI (which names
exist), the report (in which order to show them) and the docs. Matrices are indexed
[source i, target j]; notation of :mod:`.formulas`: g_i = ∇_θs L_i, Δ_i the update for g_i
alone (SGD: −η g_i; optimizer: −η u_i, the optimizer's step from its current state), L_j the
target's loss. Sign: **positive means i helps j** (i's update lowers j's loss, or their
gradients point the same way) for every estimator.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Estimator:
    name: str
    meaning: str  # the formula, in the notation above
    unit: str
    recorder: str  # "probe" (probe batches, LookaheadRecorder / AffinityMeter.probe), "stream" (every
    # training step's sub-batches, StreamRecorder / AffinityMeter.backward) or "feature" (AffinityMeter only)


_RELATIVE = "relative change of L_j (dimensionless)"
ESTIMATORS: dict[str, Estimator] = {
    e.name: e
    for e in (
        Estimator(
            "lookahead_sgd",
            "Z_{i→j} = 1 − L_j(θ_s − η g_i) / L_j(θ_s), heads frozen (TAG, Fifty et al. 2021)",
            _RELATIVE,
            "probe",
        ),
        Estimator(
            "lookahead_optimizer",
            "1 − L_j(θ_s + Δ_i) / L_j(θ_s), Δ_i the optimizer's step for g_i alone",
            _RELATIVE,
            "probe",
        ),
        Estimator("first_order_sgd", "η g_i·g_j / L_j: first-order form of lookahead_sgd", _RELATIVE, "probe"),
        Estimator(
            "first_order_optimizer", "−Δ_i·g_j / L_j: first-order form of lookahead_optimizer", _RELATIVE, "probe"
        ),
        Estimator("gram", "g_i·g_j", "loss² per parameter²", "probe"),
        Estimator("cosine", "g_i·g_j / (‖g_i‖ ‖g_j‖)", "none, in [−1, 1]", "probe"),
        Estimator(
            "stream_gram", "g_i·g_j of each training step, averaged over a window", "loss² per parameter²", "stream"
        ),
        Estimator(
            "stream_cosine",
            "cosine of each training step's g_i, g_j, averaged over a window",
            "none, in [−1, 1]",
            "stream",
        ),
        Estimator(
            "stream_first_order_sgd",
            "η g_i·g_j / L_j of each training step, averaged over a window",
            _RELATIVE,
            "stream",
        ),
        Estimator(
            "stream_first_order_optimizer",
            "−Δ_i·g_j / L_j of each training step, averaged over a window",
            _RELATIVE,
            "stream",
        ),
        Estimator(
            "feature_gram",
            "c_i·c_j, c_i = ∂L_i/∂z the gradient at the shared representation z",
            "loss² per feature²",
            "feature",
        ),
        Estimator("feature_cosine", "cosine of c_i, c_j", "none, in [−1, 1]", "feature"),
    )
}

STREAMED = tuple(name for name, e in ESTIMATORS.items() if e.recorder == "stream")
FEATURE = tuple(name for name, e in ESTIMATORS.items() if e.recorder == "feature")

#: Which estimators a report shows first (the most reliable and the TAG reference), then the rest by name.
# Validated first (reports/validation: within-target agreement with measured gains), streams last
REPORT_ORDER = (
    "first_order_sgd",
    "lookahead_sgd",
    "first_order_optimizer",
    "gram",
    "cosine",
    "lookahead_optimizer",
    "stream_first_order_sgd",
    "stream_cosine",
    "stream_gram",
    "stream_first_order_optimizer",
)


def report_order(names) -> list[str]:
    """``names`` in :data:`REPORT_ORDER`, then the others alphabetically."""
    return sorted(names, key=lambda e: (e not in REPORT_ORDER, REPORT_ORDER.index(e) if e in REPORT_ORDER else 0, e))


def describe(name: str) -> str:
    """``name: meaning [unit]``; unknown names are returned as they are (stores may hold others)."""
    e = ESTIMATORS.get(name)
    return f"{name}: {e.meaning} [{e.unit}]" if e else name
