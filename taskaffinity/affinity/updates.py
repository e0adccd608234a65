"""Lookahead update rules: the parameter change one task's gradient alone would cause.

Two rules (Fifty et al. 2021 use the first):

``sgd``        Δ_i = −η g_i
``optimizer``  Δ_i = the step the real optimizer would take for g_i alone, from its
               current state: for AdamW (Loshchilov & Hutter 2019, as in torch.optim)
               m' = β1 m + (1−β1) g,  v' = β2 v + (1−β2) g²,
               Δ = −η λ θ − (η / (1−β1^t)) · m' / (√v' / √(1−β2^t) + ε),  t = step + 1.
               The optimizer's state is read, never written. Adam, AdamW and SGD (with
               momentum, Nesterov, weight decay) are written out below; every other
               optimizer of ``torch.optim`` that steps without a closure takes its own
               step on copies of the parameter and its state (:func:`_copied_step`).

All functions are pure: tensors in, tensors out.
"""

from __future__ import annotations

import copy

import torch

from ..config import LOOKAHEAD_RULES
from .formulas import flatten, unflatten

RULES = LOOKAHEAD_RULES  # the update rules a lookahead can use (config.LOOKAHEAD_RULES)


def sgd_update(grads: list[torch.Tensor], lr: float) -> list[torch.Tensor]:
    return [-lr * g for g in grads]


def optimizer_update(
    optimizer: torch.optim.Optimizer, params: list[torch.Tensor], grads: list[torch.Tensor]
) -> list[torch.Tensor]:
    """Δθ that ``optimizer.step()`` would apply if ``grads`` were the whole gradient.

    Adam, AdamW and plain/momentum SGD by their formulas; other ``torch.optim`` optimizers
    (:func:`rule_support`) by their own step on copies.
    """
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    updates = []
    for p, g in zip(params, grads):
        group = group_of.get(id(p))
        if group is None:
            raise ValueError("a parameter is not managed by the optimizer")
        updates.append(_update(optimizer, p.detach(), g, optimizer.state.get(p, {}), group))
    return updates


def optimizer_update_rows(
    optimizer: torch.optim.Optimizer, param: torch.Tensor, rows: torch.Tensor, grad_rows: torch.Tensor
) -> torch.Tensor:
    """The rows ``rows`` of the optimizer's Δθ for a matrix parameter whose gradient is ``grad_rows`` there.

    Element-wise optimizers update each row from that row's own state, so slicing
    parameter, state and gradient the same way gives those rows of the full update
    (used for embedding matrices, whose gradients touch only a batch's token rows).
    """
    group = next((g for g in optimizer.param_groups if any(p is param for p in g["params"])), None)
    if group is None:
        raise ValueError("a parameter is not managed by the optimizer")
    if not isinstance(optimizer, (torch.optim.Adam, torch.optim.SGD)):
        raise NotImplementedError(
            f"row-wise updates are only formed for Adam, AdamW and SGD, not {type(optimizer).__name__}"
        )
    state = {
        key: value.index_select(0, rows) if torch.is_tensor(value) and value.shape == param.shape else value
        for key, value in optimizer.state.get(param, {}).items()
    }
    return _update(optimizer, param.detach().index_select(0, rows), grad_rows, state, group)


def _update(optimizer, p, g, state, group) -> torch.Tensor:
    if isinstance(optimizer, (torch.optim.AdamW, torch.optim.Adam)):
        return _adam_update(p, g, state, group, decoupled=_decoupled(optimizer, group))
    if isinstance(optimizer, torch.optim.SGD):
        return _sgd_momentum_update(p, g, state, group)
    reason = rule_support(optimizer)
    if reason:
        raise NotImplementedError(f"the optimizer lookahead rule does not support {type(optimizer).__name__}: {reason}")
    return _copied_step(optimizer, p, g, state, group)


def _decoupled(optimizer, group) -> bool:
    """AdamW's decay, or Adam's with ``decoupled_weight_decay=True`` (the same update)."""
    return isinstance(optimizer, torch.optim.AdamW) or bool(group.get("decoupled_weight_decay", False))


# torch.optim optimizers whose step the optimizer rule cannot take on a copy: LBFGS re-evaluates a
# closure; SparseAdam updates only the rows of a sparse gradient (its step is not of a dense one).
_UNSUPPORTED = {
    "LBFGS": "its step needs a closure that re-evaluates the loss",
    "SparseAdam": "it steps on sparse gradients only",
}


def rule_support(optimizer) -> str | None:
    """Why the optimizer rule cannot form ``optimizer``'s step for one gradient (None: it can)."""
    cls = type(optimizer)
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.SGD)):
        return None
    if not isinstance(optimizer, torch.optim.Optimizer) or not cls.__module__.startswith("torch.optim"):
        return (
            "only torch.optim optimizers are supported (the step of another class may couple parameters "
            "or keep state the rule cannot copy)"
        )
    return _UNSUPPORTED.get(cls.__name__)


def _copied_step(optimizer, p, g, state, group) -> torch.Tensor:
    """Δ = the optimizer's own step for gradient ``g`` on copies of ``p`` and its ``state``.

    A fresh optimizer of the same class and settings over one cloned parameter takes one
    step; the real optimizer, its state and ``p`` are never touched.
    """
    twin = p.detach().clone()
    settings = {k: v for k, v in group.items() if k != "params"}
    shadow = type(optimizer)([{**settings, "params": [twin]}])
    if state:  # else the shadow starts its state as the optimizer would (some, e.g. Adagrad, at construction)
        shadow.state[twin] = {k: v.clone() if torch.is_tensor(v) else copy.deepcopy(v) for k, v in state.items()}
    twin.grad = g.detach().to(twin.dtype).reshape(twin.shape).clone()
    shadow.step()
    return twin.detach().sub_(p)


def _adam_update(p, g, state, group, *, decoupled: bool) -> torch.Tensor:
    beta1, beta2 = group["betas"]
    lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
    if group.get("maximize"):
        g = -g
    if wd and not decoupled:  # Adam's L2 penalty enters the gradient
        g = g + wd * p
    step = float(state["step"]) + 1 if "step" in state else 1.0
    m = state["exp_avg"] * beta1 + (1 - beta1) * g if "exp_avg" in state else (1 - beta1) * g
    v = state["exp_avg_sq"] * beta2 + (1 - beta2) * g * g if "exp_avg_sq" in state else (1 - beta2) * g * g
    if group.get("amsgrad"):
        v = torch.maximum(state["max_exp_avg_sq"], v) if "max_exp_avg_sq" in state else v
    bias1, bias2 = 1 - beta1**step, 1 - beta2**step
    update = -(lr / bias1) * m / (v.sqrt() / bias2**0.5 + eps)
    if wd and decoupled:
        update = update - lr * wd * p
    return update


def _sgd_momentum_update(p, g, state, group) -> torch.Tensor:
    lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
    if group.get("maximize"):
        g = -g
    if wd:
        g = g + wd * p
    if momentum:
        buf = state.get("momentum_buffer")
        buf = g if buf is None else buf * momentum + (1 - group["dampening"]) * g
        g = g + momentum * buf if group["nesterov"] else buf
    return -lr * g


class FlatAdamUpdate:
    """``optimizer_update`` for many gradients of the same flattened parameters, fast.

    Streaming the optimizer rule asks for Δ_i for every task at every step. The
    parts of Adam's update that do not depend on g_i (β1·m, β2·v, the decoupled
    decay λθ) are flattened once per step into preallocated vectors, so each task
    costs a few in-place passes over one vector instead of a dozen allocating ops
    per parameter tensor. Covers AdamW/Adam without amsgrad, maximize or L2 decay,
    with one lr/betas/eps/step for all ``params`` (the trainer's encoder groups):
    :meth:`refresh` returns False otherwise and callers use :func:`optimizer_update`.
    """

    def __init__(self, params: list[torch.Tensor]):
        self.params = params
        size = sum(p.numel() for p in params)
        device = params[0].device
        self.momentum, self.variance, self.decay = (torch.empty(size, device=device) for _ in range(3))
        self.scratch: torch.Tensor | None = None  # a whole-vector denominator, made on first use

    def refresh(self, optimizer) -> bool:
        """Read the optimizer's current state; False if this fast path does not cover it."""
        params = self.params
        if not isinstance(optimizer, (torch.optim.AdamW, torch.optim.Adam)):
            return False
        group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
        groups = [group_of.get(id(p)) for p in params]
        if any(g is None or g.get("amsgrad") or g.get("maximize") for g in groups):
            return False
        if any(g["weight_decay"] and not _decoupled(optimizer, g) for g in groups):
            return False
        states = [optimizer.state.get(p, {}) for p in params]
        steps = {float(s["step"]) if "step" in s else 0.0 for s in states}
        if len({(g["lr"], tuple(g["betas"]), g["eps"]) for g in groups}) != 1 or len(steps) != 1:
            return False
        lr, (beta1, beta2), self.eps = groups[0]["lr"], groups[0]["betas"], groups[0]["eps"]
        t = steps.pop() + 1
        bias1, bias2 = 1 - beta1**t, 1 - beta2**t
        # −Δ = (η/b1)·(β1 m + (1−β1) g) / (√((β2 v + (1−β2) g²)/b2) + ε) + η λ θ
        offset = 0
        for p, group, state in zip(params, groups, states):
            part = slice(offset, offset + p.numel())
            offset += p.numel()
            if state:
                torch.mul(state["exp_avg"].reshape(-1), lr / bias1 * beta1, out=self.momentum[part])
                torch.mul(state["exp_avg_sq"].reshape(-1), beta2 / bias2, out=self.variance[part])
            else:
                self.momentum[part].zero_()
                self.variance[part].zero_()
            torch.mul(p.detach().reshape(-1), lr * group["weight_decay"], out=self.decay[part])
        self.g_scale, self.g2_scale = lr / bias1 * (1 - beta1), (1 - beta2) / bias2
        return True

    def minus_update(
        self, g: torch.Tensor, out: torch.Tensor, *, columns: slice = slice(None), scratch: torch.Tensor | None = None
    ) -> torch.Tensor:
        """−Δ for the flat gradient ``g``, written into ``out`` (same shape).

        ``g`` may also be a block of rows, each one gradient's entries at ``columns`` of the
        flat vector; ``scratch`` (shaped like ``g``) then holds the denominators.
        """
        if scratch is None:
            if self.scratch is None:
                self.scratch = torch.empty_like(self.variance)
            scratch = self.scratch
        den = torch.addcmul(self.variance[columns], g, g, value=self.g2_scale, out=scratch)
        den.sqrt_().add_(self.eps)
        torch.add(self.momentum[columns], g, alpha=self.g_scale, out=out)
        return out.div_(den).add_(self.decay[columns])


def fast_rule(rule: str, params: list[torch.Tensor], optimizer) -> FlatAdamUpdate | None:
    """The flat Adam/AdamW path for ``rule`` (None: the rule is ``sgd`` or the optimizer is another)."""
    fast = FlatAdamUpdate(params) if rule == "optimizer" else None
    return fast if fast is not None and fast.refresh(optimizer) else None


def source_update(
    rule: str,
    g: torch.Tensor,
    params: list[torch.Tensor],
    *,
    lr: float | None,
    optimizer=None,
    fast: FlatAdamUpdate | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Δ_i for source i's flat gradient ``g`` (P) under ``rule``: per parameter, and flat (P).

    ``sgd``: Δ_i = −η g_i; ``optimizer``: the step the optimizer would take for g_i alone
    from its current state (read, never written), through ``fast`` (:func:`fast_rule`)
    when it covers the optimizer. The one home of the lookahead's update, for the
    trainer's probes (``probe``) and any model's (``lookahead``).
    """
    if rule == "sgd":
        delta = sgd_update([g], lr)[0]
    elif fast is not None:  # the flat AdamW step: a few passes over one vector
        delta = fast.minus_update(g, out=torch.empty_like(g)).neg_()
    else:
        update = optimizer_update(optimizer, params, unflatten(g, params))
        return update, flatten(update, params)
    return unflatten(delta, params), delta
