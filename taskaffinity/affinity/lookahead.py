"""Exact TAG lookahead for any model, from a callable that returns per-task losses.

For source i, target j and update rule Δ_i (Fifty et al. 2021, Eq. 2):

    Z_{i→j} = 1 − L_j(θ_s + Δ_i, θ_j) / L_j(θ_s, θ_j)

with θ_s the shared parameters, heads and all other parameters as they are,
Δ_i = −η g_i (``sgd``) or the step the optimizer would take for g_i alone from its
current state (``optimizer``; ``updates``). The moved parameters are new tensors
passed through ``torch.func.functional_call``: the model is never deep-copied or
written. The probe runs in eval mode (no dropout, no batch-norm statistic updates)
and restores the mode, the parameters, buffers, optimizer state and the RNG state
bit-exactly; every call of ``losses_fn`` starts from the same RNG state, so a
``losses_fn`` that draws anything at random draws the same thing for every source.

The same probe gives, at no extra forward passes, the Gram matrix ``gram`` (g_i·g_j),
``cosine`` and the first-order forms ``first_order_<rule>`` = −Δ_i·g_j / L_j.
Cost: one forward and the per-task backward passes for g_i, then per rule one
forward of ``losses_fn`` per source.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from ..errors import TaskAffinityError
from .formulas import cosine_from_gram, first_order_from_products, flatten, lookahead_ratio
from .updates import fast_rule, source_update


class _LossesOf(nn.Module):
    """``losses_fn(model)`` as the forward of a module whose only child is ``model``, so that
    ``functional_call`` can substitute any of the model's parameters by name."""

    def __init__(self, model: nn.Module, losses_fn):
        super().__init__()
        self.model, self.losses_fn = model, losses_fn

    def forward(self):
        return self.losses_fn(self.model)


@contextlib.contextmanager
def frozen_state(model: nn.Module):
    """Eval mode and a fixed RNG inside; mode and RNG state as before afterwards (even on error).

    Yields a function that puts the RNG back to its state at entry."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None

    def rewind():
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)

    was_training = model.training
    model.eval()
    try:
        yield rewind
    finally:
        model.train(was_training)
        rewind()


def task_losses(out, tasks: list[str], where: str = "losses_fn") -> list[str]:
    """The tasks of a per-task losses mapping, in ``tasks`` order; errors name the bad entry."""
    if not isinstance(out, dict) or not out:
        raise TaskAffinityError(f"{where} must return a non-empty dict task -> scalar loss, got {type(out).__name__}")
    unknown = [t for t in out if t not in tasks]
    if unknown:
        raise TaskAffinityError(f"{where}: unknown task '{unknown[0]}' (the meter's tasks: {', '.join(tasks)})")
    for task, loss in out.items():
        if not torch.is_tensor(loss) or loss.numel() != 1:
            raise TaskAffinityError(f"{where}: the loss of task '{task}' must be a scalar tensor")
    return [t for t in tasks if t in out]


def lookahead(
    model: nn.Module,
    shared: list[tuple[str, torch.Tensor]],
    losses_fn,
    tasks: list[str],
    *,
    rules=("sgd",),
    lr: float | None = None,
    optimizer=None,
    vmap: bool = False,
    exact: bool = True,
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Exact lookahead and gradient estimators at the current parameters (module docstring).

    ``shared``: (name in ``model``, parameter) pairs of θ_s; ``losses_fn(model)`` returns
    {task: scalar loss} on a fixed probe batch; ``vmap``: gradients by one batched
    vector-Jacobian product (losses of one shared graph), else one backward per task.
    ``exact=False``: the first-order forms only (``first_order_<rule>``, ``gram``, ``cosine``),
    without the R·k lookahead forward passes (the SGD rule then costs one gradient pass).
    Returns the probed tasks (in ``tasks`` order) and float64 arrays k × k per estimator,
    [source i, target j].
    """
    names = [n for n, _ in shared]
    params = [p for _, p in shared]
    with frozen_state(model) as rewind:
        out = losses_fn(model)
        probed = task_losses(out, tasks)
        losses = torch.stack([out[t].reshape(()) for t in probed]).float()
        flat = shared_gradients([out[t].reshape(()) for t in probed], params, vmap=vmap)
        losses = losses.detach()
        del out
        gram = flat @ flat.T
        arrays = {"gram": gram, "cosine": cosine_from_gram(gram)}
        call = _LossesOf(model, losses_fn)
        for rule in rules:
            fast = fast_rule(rule, params, optimizer)
            after = torch.zeros(len(probed), len(probed), device=flat.device)
            products = torch.zeros_like(after)  # Δ_i · g_j
            for a in range(len(probed) if exact or rule != "sgd" else 0):
                update, delta = source_update(rule, flat[a], params, lr=lr, optimizer=optimizer, fast=fast)
                if rule != "sgd":
                    products[a] = delta @ flat.T
                if not exact:
                    continue
                moved = {f"model.{n}": p.detach() + d for n, p, d in zip(names, params, update)}
                rewind()  # the same random draws (if any) for every source
                with torch.no_grad():
                    moved_out = functional_call(call, moved, ())
                after[a] = torch.stack([moved_out[t].reshape(()).float() for t in probed])
            if rule == "sgd":  # Δ_i · g_j = −η G_ij
                products = -lr * gram
            arrays[f"first_order_{rule}"] = first_order_from_products(-products, losses)
            if exact:
                arrays[f"lookahead_{rule}"] = lookahead_ratio(after, losses)
    return probed, {k: v.detach().double().cpu().numpy() for k, v in arrays.items()}


def shared_gradients(
    losses: list[torch.Tensor], params: list[torch.Tensor], *, vmap: bool = False, retain_graph: bool = False
) -> torch.Tensor:
    """k × P float32 matrix of the flattened gradients of each loss w.r.t. ``params``.

    ``vmap``: one batched vector-Jacobian product (``is_grads_batched``) through the
    common graph, else one backward per loss (graph kept until the last).
    """
    k = len(losses)
    flat = torch.empty(k, sum(p.numel() for p in params), device=params[0].device)
    if vmap:
        grads = batched_gradients(torch.stack(losses), params, retain_graph=retain_graph)
        offset = 0
        for p, g in zip(params, grads):
            part = flat[:, offset : offset + p.numel()]
            part.zero_() if g is None else part.copy_(g.reshape(k, -1))
            offset += p.numel()
        return flat
    for i, loss in enumerate(losses):
        grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=retain_graph or i < k - 1)
        flatten(list(grads), params, out=flat[i])
    return flat


def batched_gradients(
    losses: torch.Tensor, params: list[torch.Tensor], *, retain_graph: bool = False
) -> list[torch.Tensor | None]:
    """∂losses_i/∂param for every i at once: per parameter a (k, *param.shape) tensor (None if unused).

    One backward of k cotangents (the rows of the identity) batched with vmap
    (``torch.autograd.grad(..., is_grads_batched=True)``): the k vector-Jacobian products
    share the graph's traversal and run as k-times wider kernels.
    """
    eye = torch.eye(len(losses), device=losses.device, dtype=losses.dtype)
    return list(
        torch.autograd.grad(
            losses, params, grad_outputs=eye, is_grads_batched=True, retain_graph=retain_graph, allow_unused=True
        )
    )
