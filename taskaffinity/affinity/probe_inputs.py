"""Does a probe's ``losses_fn`` feed the model the same batch at every call? Fingerprints of its inputs.

A probe calls ``losses_fn(model)`` once for the gradients and once per source and rule;
Z_{i→j} = 1 − L_j(after i's update) / L_j(before) compares losses of *one* batch. A
``losses_fn`` that draws its batch anew at each call (``next(iterator)``) makes every Z a
comparison of two batches, dominated by the batch difference. Draws from torch's RNG
inside ``losses_fn`` are the same at every call (the probe rewinds the RNG), so they pass.

What is compared: the tensors that enter the model from outside at each call, i.e. the
arguments of the outermost module calls that do not depend on a trainable parameter
(in the first, gradient call: those without ``requires_grad``; the same argument
positions at later calls, made under ``no_grad``). Each gets a digest (shape, dtype, sum
and a position-weighted sum, in float64). Inputs that never pass through a module of the
model (labels given straight to a loss function) are not seen; the inputs they go with are.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..errors import TaskAffinityError


class ProbeInputs:
    """Watches the data a ``losses_fn`` feeds ``model``: :meth:`watch` wraps it for one probe."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.last: list | None = None  # the digests of the previous probe that completed
        self.pending: list | None = None  # this probe's, until :meth:`commit`
        self.changes = 0  # completed probes whose inputs differed from the previous one's

    def watch(self, losses_fn, on_change):
        """``losses_fn`` that digests its inputs at each call and calls ``on_change(call)`` (1-based: the
        call whose inputs differ from the first call's) when they change within this probe."""
        first: dict = {}

        def watched(model):
            with self._capture() as calls:
                out = losses_fn(model)
            if not first:
                first["positions"] = [
                    (c, k) for c, args in enumerate(calls) for k, t in enumerate(args) if not t.requires_grad
                ]
                first["digests"] = self.pending = _digests(calls, first["positions"])
                first["count"] = 1
            else:
                first["count"] += 1
                if _digests(calls, first["positions"]) != first["digests"]:
                    on_change(first["count"])
            return out

        return watched

    def commit(self) -> None:
        """The watched probe completed: count it as a change of batch if its inputs are not the last one's."""
        if self.last is not None and self.pending != self.last:
            self.changes += 1
        self.last, self.pending = self.pending, None

    @contextlib.contextmanager
    def _capture(self):
        """Yields the list of tensor arguments of each outermost module call made inside."""
        calls: list[list[torch.Tensor]] = []
        depth = [0]

        def before(module, args, kwargs):
            if depth[0] == 0:
                calls.append(_tensors((args, kwargs)))
            depth[0] += 1

        def after(module, args, output):
            depth[0] -= 1

        handles = []
        for module in self.model.modules():
            handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
            handles.append(module.register_forward_hook(after, always_call=True))
        try:
            yield calls
        finally:
            for handle in handles:
                handle.remove()


def refuse_changed_batch(call: int):
    """``ProbeInputs.watch``'s ``on_change`` for ``AffinityMeter.probe``: one clear error."""
    raise TaskAffinityError(
        f"AffinityMeter.probe: losses_fn fed the model other inputs at its call {call} than at its "
        "first (a new batch per call, e.g. next(iterator)?): every Z_i→j would compare the losses "
        "of two batches. Build the probe batch once outside losses_fn (draws from torch's RNG "
        "inside it are replayed), or pass fixed_batch=False if the change is intended"
    )


def _tensors(value) -> list[torch.Tensor]:
    if torch.is_tensor(value):
        return [value]
    if isinstance(value, dict):
        return [t for key in sorted(value, key=str) for t in _tensors(value[key])]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    return []


@torch.no_grad()
def _digests(calls, positions) -> list:
    out = []
    for c, k in positions:
        if c >= len(calls) or k >= len(calls[c]):
            out.append(None)  # the call or argument is missing: counts as a change
            continue
        t = calls[c][k].detach()
        if t.is_complex() or t.layout != torch.strided:
            t = torch.view_as_real(t) if t.is_complex() else t.to_dense()
        flat = torch.nan_to_num(t.reshape(-1).double(), nan=0.5, posinf=0.25, neginf=-0.25)  # NaN == NaN here
        weights = torch.arange(flat.numel(), device=flat.device, dtype=torch.float64).remainder_(9973).add_(1)
        out.append((tuple(t.shape), str(t.dtype), *torch.stack([flat.sum(), flat @ weights]).tolist()))
    return out
