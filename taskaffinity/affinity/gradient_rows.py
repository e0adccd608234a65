"""One step's per-task gradients of the shared parameters as rows of a k × P buffer, and their products.

Rows are written as gradients arrive (one task at a time after per-task backward
passes, or all at once from a batched vector-Jacobian product), flattened to
float32 into a preallocated buffer (or a CountSketch of it). :meth:`products` then
returns the Gram matrix G_ij = g_i·g_j and, with the optimizer rule,
P_ij = −Δ_i·g_j, in one pass over cache-sized column blocks (``stream.block_products``):
for AdamW/Adam the direction Δ_i is formed per block from the optimizer's state
(``updates.FlatAdamUpdate``) and never stored; other optimizers (SGD with momentum)
and sketches go through a second k × P buffer of directions (``updates.optimizer_update``).
Memory: k·P·4 bytes (twice that on the second path).
"""

from __future__ import annotations

import torch

from .formulas import flatten, row_products, unflatten
from .stream import CountSketch, block_products
from .updates import FlatAdamUpdate, optimizer_update


class GradientRows:
    """k × P rows of per-task gradients of ``params`` for one step (see module docstring)."""

    def __init__(self, params: list[torch.Tensor], rows: int, *, optimizer_rule: bool = False,
                 sketch_dim: int | None = None, seed: int = 0):
        self.params, self.optimizer_rule = list(params), optimizer_rule
        self.size = sum(p.numel() for p in self.params)
        self.offsets = torch.tensor([0, *[p.numel() for p in self.params]]).cumsum(0).tolist()
        device = self.params[0].device
        self.sketch = CountSketch(self.size, sketch_dim, seed=seed, device=device) if sketch_dim else None
        self.g = torch.zeros(rows, sketch_dim or self.size, device=device)
        self.minus_update: torch.Tensor | None = None
        self._flat = torch.empty(self.size, device=device) if self.sketch else None
        self._fast = FlatAdamUpdate(self.params) if optimizer_rule else None
        self.fast = None  # the refreshed fast path of this step, if it covers the optimizer
        self.optimizer = None

    def begin(self, optimizer=None) -> None:
        """Start a step: read the optimizer's state (optimizer rule only; never written)."""
        self.optimizer = optimizer
        if self.optimizer_rule:
            self.fast = self._fast if self._fast.refresh(optimizer) else None

    @property
    def fused(self) -> bool:
        """Whether −Δ_i·g_j comes out of the blocked pass (else from stored directions)."""
        return self.fast is not None and self.sketch is None

    def write(self, row: int, grads: list[torch.Tensor | None]) -> None:
        """Row ``row`` := the flattened gradients (one per parameter; None counts as zero)."""
        if self.sketch is None:
            flat = flatten(grads, self.params, out=self.g[row])
        else:
            flat = flatten(grads, self.params, out=self._flat)
            self.g[row] = self.sketch(flat)
        if self.optimizer_rule and not self.fused:
            self._write_direction(row, flat)

    def write_batched(self, rows: list[int], grads: list[torch.Tensor | None]) -> None:
        """Rows ``rows`` := batched gradients, each of shape (len(rows), *param.shape)."""
        if self.sketch is not None or (self.optimizer_rule and not self.fused):
            for k, row in enumerate(rows):
                self.write(row, [None if g is None else g[k] for g in grads])
            return
        contiguous = rows == list(range(rows[0], rows[0] + len(rows)))
        target = self.g[rows[0]: rows[0] + len(rows)] if contiguous else torch.empty(
            len(rows), self.size, device=self.g.device)
        for g, start, end in zip(grads, self.offsets[:-1], self.offsets[1:]):
            if g is None:
                target[:, start:end].zero_()
            else:
                target[:, start:end].copy_(g.reshape(len(rows), -1))
        if not contiguous:
            self.g[rows] = target

    def _write_direction(self, row: int, flat: torch.Tensor) -> None:
        if self.minus_update is None:
            self.minus_update = torch.zeros_like(self.g)
        if self.fast is not None:
            direction = self.fast.minus_update(flat, out=torch.empty_like(flat))
        else:
            direction = flatten([d.neg_() for d in optimizer_update(self.optimizer, self.params,
                                                                    unflatten(flat, self.params))], self.params)
        self.minus_update[row] = self.sketch(direction) if self.sketch is not None else direction

    def products(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(G, P) over the rows ``rows``, in that order; P is None without the optimizer rule."""
        gram, products = block_products(self.g, rows, self.fast if self.fused else None)
        if self.optimizer_rule and not self.fused:
            idx = torch.tensor(rows, device=self.g.device)
            g, d = self.g.index_select(0, idx), self.minus_update.index_select(0, idx)
            products = row_products(d, g)
        return gram, products
