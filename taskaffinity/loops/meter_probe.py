"""``AffinityMeter.probe``: TAG's lookahead on a held-out probe batch, recorded into the meter.

The meter's options are checked against the requested rules first (an optimizer for the optimizer
rule, full-precision θ_s for the exact lookahead); the probe batch is fingerprinted so that a
``losses_fn`` feeding other inputs at a later call is refused (``affinity.probe_inputs``); tasks
with a non-finite loss or gradient are left out by name and counted (``meter_losses.finite_probe``).
The estimators are :func:`taskaffinity.affinity.lookahead.lookahead`'s.
"""

from __future__ import annotations

import time

import pandas as pd

from ..affinity.lookahead import lookahead as probe_estimators
from ..affinity.probe_inputs import refuse_changed_batch
from ..affinity.updates import RULES
from ..errors import TaskAffinityError
from .meter_losses import finite_probe
from .meter_setup import check_probe


def run_probe(
    meter, losses_fn, *, rules=None, step: int | None = None, fixed_batch: bool = True, lookahead: str = "first_order"
) -> dict[str, pd.DataFrame]:
    """The body of :meth:`AffinityMeter.probe <taskaffinity.loops.meter.AffinityMeter.probe>` (see there)."""
    if lookahead not in ("first_order", "exact"):
        raise TaskAffinityError(f"AffinityMeter.probe: lookahead must be first_order or exact, got '{lookahead}'")
    rules = tuple(rules) if rules is not None else (RULES if meter.optimizer is not None else ("sgd",))
    bad = [r for r in rules if r not in RULES]
    if bad:
        raise TaskAffinityError(f"AffinityMeter.probe: unknown rule '{bad[0]}' (use {', '.join(RULES)})")
    if "optimizer" in rules and meter.optimizer is None:
        raise TaskAffinityError("AffinityMeter.probe: the optimizer rule needs AffinityMeter(optimizer=...)")
    check_probe(meter.shared, meter._frozen, meter.optimizer, rules, exact=lookahead == "exact")
    if fixed_batch:
        losses_fn = meter._probe_inputs.watch(losses_fn, on_change=refuse_changed_batch)
    started = time.perf_counter()
    probed, arrays = probe_estimators(
        meter.model,
        meter.shared,
        losses_fn,
        meter.tasks,
        rules=rules,
        lr=meter.lr,
        optimizer=meter.optimizer,
        vmap=meter.vmap,
        exact=lookahead == "exact",
    )
    probed, arrays = finite_probe(probed, arrays, meter.probe_skipped)
    if fixed_batch:
        meter._probe_inputs.commit()
    at = meter.step if step is None else step
    meter._add_records(
        [
            {"step": at, "estimator": e, "source": s, "target": t, "value": float(m[i, j])}
            for e, m in arrays.items()
            for i, s in enumerate(probed)
            for j, t in enumerate(probed)
        ]
    )
    meter.seconds += time.perf_counter() - started
    return {
        e: pd.DataFrame(m, index=pd.Index(probed, name="source"), columns=pd.Index(probed, name="target"))
        for e, m in arrays.items()
    }
