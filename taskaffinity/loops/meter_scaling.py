"""Loss scaling in the caller's loop: the factor the losses handed to the meter carry, undone for the estimators.

Losses passed through ``GradScaler.scale`` (×2^16 by default) or divided by a gradient
accumulation count would scale every estimator with them (G_ij by the factor squared; the
optimizer rule not even uniformly, through Adam's ε). The meter therefore takes losses as
the caller backpropagates them and is told their factor c = scale / accumulation:
``.grad`` gets what the scaled backward gives, the estimators see L_i / c and g_i / c.
A loss multiplied by a GradScaler-like constant (a power of two ≥ 2^8) without ``scaler=``
is refused, naming the fix. Task weights belong in ``weights=`` (g_i is always of the
unweighted loss).
"""

from __future__ import annotations

import math

import torch

from ..errors import TaskAffinityError


def constant_multiplier(loss: torch.Tensor) -> float | None:
    """The constant c when ``loss`` was made as ``x * c`` (``GradScaler.scale``'s form), else None."""
    node = loss.grad_fn
    if node is None or type(node).__name__ != "MulBackward0":
        return None
    for name in ("_saved_other", "_saved_self"):
        try:
            value = getattr(node, name, None)
        except RuntimeError:  # freed by an earlier backward
            return None
        if torch.is_tensor(value) and value.numel() == 1 and not value.requires_grad:
            return float(value)
    return None


def _scaler_like(c: float | None) -> bool:
    return c is not None and c >= 256 and math.frexp(c)[0] == 0.5  # a power of two: GradScaler's scales


class LossScale:
    """``scaler``: a ``torch.amp.GradScaler`` whose ``scale(loss)`` the losses are; ``accumulation``: the
    count a the losses are divided by (L_i / a). :meth:`factor` is c = scale / a."""

    def __init__(self, scaler=None, accumulation: int = 1):
        if scaler is not None and not (hasattr(scaler, "get_scale") and hasattr(scaler, "scale")):
            raise TaskAffinityError(
                f"AffinityMeter: scaler must be a torch.amp.GradScaler, got {type(scaler).__name__}"
            )
        if isinstance(accumulation, bool) or not isinstance(accumulation, int) or accumulation < 1:
            raise TaskAffinityError(
                f"AffinityMeter: accumulation must be an integer >= 1 (the count the losses "
                f"are divided by), got {accumulation!r}"
            )
        self.scaler, self.accumulation = scaler, accumulation

    @property
    def scaling(self) -> bool:
        return self.scaler is not None and self.scaler.is_enabled()

    def factor(self) -> float:
        return (self.scaler.get_scale() if self.scaling else 1.0) / self.accumulation

    def check(self, losses: dict, tasks: list[str], where: str) -> None:
        """Refuse losses whose scaling is not the declared one (only GradScaler's form can be seen)."""
        scale = self.scaler.get_scale() if self.scaling else None
        for task in tasks:
            c = constant_multiplier(losses[task])
            if scale is not None and (c is None or not math.isclose(c, scale, rel_tol=1e-6)):
                raise TaskAffinityError(
                    f"{where}: scaler= is given, but the loss of task '{task}' is not "
                    "scaler.scale(loss): pass {task: scaler.scale(loss)} for every task (the "
                    "meter divides the scale out of the estimators), or leave scaler= out"
                )
            if scale is None and _scaler_like(c):
                raise TaskAffinityError(
                    f"{where}: the loss of task '{task}' is multiplied by the constant {c:g} "
                    "(GradScaler.scale?): every estimator would be scaled with it. Give "
                    "AffinityMeter(scaler=scaler) and pass the scaled losses, or pass the "
                    "unscaled losses with the factor in weights="
                )

    def metadata(self) -> dict:
        return {
            "loss_scaler": type(self.scaler).__name__ if self.scaler is not None else None,
            "accumulation": self.accumulation,
        }
