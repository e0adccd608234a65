"""Lookahead update rules: the parameter change one task's gradient alone would cause.

Two rules (Fifty et al. 2021 use the first):

``sgd``        Δ_i = −η g_i
``optimizer``  Δ_i = the step the real optimizer would take for g_i alone, from its
               current state: for AdamW (Loshchilov & Hutter 2019, as in torch.optim)
               m' = β1 m + (1−β1) g,  v' = β2 v + (1−β2) g²,
               Δ = −η λ θ − (η / (1−β1^t)) · m' / (√v' / √(1−β2^t) + ε),  t = step + 1.
               The optimizer's state is read, never written.

All functions are pure: tensors in, tensors out.
"""

from __future__ import annotations

import torch

RULES = ("sgd", "optimizer")


def sgd_update(grads: list[torch.Tensor], lr: float) -> list[torch.Tensor]:
    return [-lr * g for g in grads]


def optimizer_update(optimizer: torch.optim.Optimizer, params: list[torch.Tensor],
                     grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """Δθ that ``optimizer.step()`` would apply if ``grads`` were the whole gradient.

    Supports Adam and AdamW (the trainer's optimizer) and plain/momentum SGD.
    """
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    updates = []
    for p, g in zip(params, grads):
        group = group_of.get(id(p))
        if group is None:
            raise ValueError("a parameter is not managed by the optimizer")
        state = optimizer.state.get(p, {})
        if isinstance(optimizer, (torch.optim.AdamW, torch.optim.Adam)):
            updates.append(_adam_update(p.detach(), g, state, group, decoupled=isinstance(optimizer, torch.optim.AdamW)))
        elif isinstance(optimizer, torch.optim.SGD):
            updates.append(_sgd_momentum_update(p.detach(), g, state, group))
        else:
            raise NotImplementedError(f"the optimizer lookahead rule does not support {type(optimizer).__name__}")
    return updates


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
