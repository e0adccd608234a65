"""Per-task gradients of the shared encoder from one packed forward and backward pass.

Per-task passes (one forward and backward per task's sub-batch) give every task's
gradient at the FLOPs of one pass over the batch, but as n small passes: on a GPU,
kernel launches and small matrix products then dominate. Examples never interact
inside a transformer encoder, so a layer's weight gradient is a sum over rows,
∇W = Σ_r δ_r x_rᵀ, and the rows of task i give task i's part exactly:

    Linear      ∇W_i = δ_iᵀ x_i          ∇b_i = Σ δ_i
    LayerNorm   ∇γ_i = Σ δ_i ⊙ x̂_i       ∇β_i = Σ δ_i
    Embedding   ∇E_i = δ_i scatter-added into the rows of task i's ids

(x the layer's input, δ the gradient of its output, x̂ the normalised input; the
same identity per-example gradient methods use, here per group of rows). Hooks
capture x and δ of every covered module during one packed pass of the weighted
total loss Σ_i w_i L_i and split the weight-gradient products by task. The covered
parameters are frozen during the pass, so autograd does not also compute the same
products; their ``.grad`` is set to Σ_i of the parts, the full-batch gradient.
Cost: one packed step, plus writing n gradients of the encoder.

Encoders with trainable parameters outside these module types, tied weights or
embedding options that change the gradient are not covered (:func:`covered_modules`
returns None) and the trainer falls back to per-task passes.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn import functional as F

COVERED = (nn.Linear, nn.LayerNorm, nn.Embedding)


def covered_modules(encoder: nn.Module) -> list[nn.Module] | None:
    """The modules that own the encoder's trainable parameters, or None if one is not covered."""
    owners: dict[int, nn.Module] = {}
    modules = []
    for module in encoder.modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if not isinstance(module, COVERED):
            return None
        if isinstance(module, nn.Embedding) and (
            module.max_norm is not None or module.scale_grad_by_freq or module.sparse
        ):
            return None
        if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) != 1:
            return None
        for p in own:
            if id(p) in owners:  # a weight tied between two modules
                return None
            owners[id(p)] = module
        modules.append(module)
    return modules


class PackedTaskGradients:
    """Splits one packed pass's encoder weight gradients into per-task gradients (see module docstring).

    Use: ``with engine.capture(rows_per_task, weights): forward; total_loss.backward()``; then
    ``engine.gradient(param, k)`` is ∇L_k (the unweighted loss of the k-th task) for every
    covered ``param``, and ``param.grad`` holds Σ_k w_k ∇L_k.
    """

    def __init__(self, modules: list[nn.Module]):
        self.modules = modules
        self.params: list[torch.Tensor] = []
        self.parts: dict[int, torch.Tensor] = {}

    @contextlib.contextmanager
    def capture(self, rows: list[int], weights: list[float]):
        self.params = [p for m in self.modules for p in m.parameters(recurse=False) if p.requires_grad]
        self.bounds = torch.tensor([0, *rows]).cumsum(0).tolist()
        self.total_rows = self.bounds[-1]
        device = self.modules[0].weight.device if self.modules else None
        width = max(rows)
        index = torch.full((len(rows), width), -1, dtype=torch.long)  # -1: the zero row appended last
        for k, (start, end) in enumerate(zip(self.bounds[:-1], self.bounds[1:])):
            index[k, : end - start] = torch.arange(start, end)
        self.index = index.to(device)
        # one (tasks × P) buffer, a view per parameter: zeroing, summing and rescaling are one kernel each
        sizes = [p.numel() for p in self.params]
        self.flat = torch.zeros(len(rows), sum(sizes), device=device, dtype=torch.float32)
        self.parts = {
            id(p): part.view(len(rows), *p.shape) for p, part in zip(self.params, self.flat.split(sizes, dim=1))
        }
        handles = []
        for module in self.modules if self.params else ():  # nothing to split while the encoder is frozen
            if isinstance(module, nn.Embedding):
                handles.append(module.register_forward_pre_hook(self._expand_broadcast_ids))
            handles.append(module.register_forward_hook(self._on_forward))
        for p in self.params:
            p.requires_grad_(False)
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()
            for p in self.params:
                p.requires_grad_(True)
        if not self.params:
            return
        for p, part in zip(self.params, self.flat.sum(0).split(sizes)):
            part = part.view_as(p)
            p.grad = part if p.grad is None else p.grad.add_(part)
        self.flat.div_(torch.tensor(weights, device=self.flat.device).unsqueeze(1))  # w_k ∇L_k → ∇L_k

    def gradient(self, param: torch.Tensor, k: int) -> torch.Tensor:
        return self.parts[id(param)][k]

    # -- hooks ---------------------------------------------------------------------------------
    def _expand_broadcast_ids(self, module, args):
        """Position ids come as (1, L) and broadcast over the batch: give every row its own."""
        ids = args[0]
        if ids.dim() >= 2 and ids.shape[0] == 1 and self.total_rows > 1:
            return (ids.expand(self.total_rows, *ids.shape[1:]), *args[1:])
        return None

    def _on_forward(self, module, args, output):
        x = args[0].detach()
        if not output.requires_grad:  # the first layers: make the encoder's activations need gradients
            output = output.detach().requires_grad_(True)
        output.register_hook(lambda delta: self._split(module, x, delta))
        return output

    def _split(self, module, x, delta):
        """Add every task's part of this module's weight gradients, all tasks in one batched product."""
        n_rows, index = self.total_rows, self.index
        if isinstance(module, nn.Embedding):
            part = self.parts.get(id(module.weight))
            if part is not None:  # scatter each task's rows into its own copy of the table
                ids = x.reshape(n_rows, -1)
                delta = delta.reshape(n_rows, -1, delta.shape[-1]).float()
                for k, (start, end) in enumerate(zip(self.bounds[:-1], self.bounds[1:])):
                    part[k].index_add_(0, ids[start:end].reshape(-1), delta[start:end].reshape(-1, delta.shape[-1]))
                if module.padding_idx is not None:  # as autograd: no gradient for the padding row
                    part[:, module.padding_idx] = 0.0
            return None
        # rows of task k gathered into slot k, padded with a zero row: (tasks, rows·tokens, features)
        d = _by_task(delta.reshape(n_rows, -1, delta.shape[-1]), index)
        xs = _by_task(x.reshape(n_rows, -1, x.shape[-1]), index)
        if isinstance(module, nn.Linear):
            self._add(module.weight, torch.bmm(d.transpose(1, 2), xs.to(d.dtype)))
        else:  # LayerNorm
            normed = F.layer_norm(xs.float(), module.normalized_shape, eps=module.eps)
            self._add(module.weight, (d.float() * normed).sum(1))
        self._add(module.bias, d.sum(1))
        return None

    def _add(self, param, value):
        if param is not None and id(param) in self.parts:
            self.parts[id(param)].add_(value)


def _by_task(rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(rows, tokens, features) → (tasks, max rows · tokens, features); index −1 picks a zero row."""
    padded = torch.cat([rows, rows.new_zeros(1, *rows.shape[1:])])
    picked = padded[index]  # (tasks, max rows, tokens, features)
    return picked.reshape(index.shape[0], -1, rows.shape[-1])
