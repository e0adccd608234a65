"""Affinity estimators from per-task gradients and losses (pure tensor functions).

Notation: g_i = ∇_θs L_i, G_ij = g_i · g_j, L_j the target's loss, η the step size.
First-order lookahead (Taylor expansion of TAG's Z_{i→j}):

    L_j(θ + Δ_i) ≈ L_j(θ) + Δ_i · g_j   ⇒   Z_{i→j} = 1 − L_j(θ + Δ_i) / L_j(θ) ≈ −Δ_i · g_j / L_j

With the SGD rule Δ_i = −η g_i this is η G_ij / L_j; with the optimizer rule
Δ_i = −η u_i it is η (u_i · g_j) / L_j. Matrices are indexed [source i, target j].
"""

from __future__ import annotations

import torch


def flatten(
    tensors: list[torch.Tensor | None], like: list[torch.Tensor], out: torch.Tensor | None = None
) -> torch.Tensor:
    """Concatenate tensors into one float32 vector (missing gradients count as zeros); one kernel.

    Sparse gradients (``nn.Embedding(sparse=True)``) are made dense first.
    """
    size = sum(t.numel() for t in like)
    out = torch.empty(size, dtype=torch.float32, device=like[0].device) if out is None else out
    pieces = [
        ref.new_zeros(ref.numel(), dtype=torch.float32)
        if t is None
        else (t.to_dense() if t.layout != torch.strided else t).reshape(-1)
        for t, ref in zip(tensors, like)
    ]
    if any(p.dtype != torch.float32 for p in pieces):
        pieces = [p.float() for p in pieces]
    return torch.cat(pieces, out=out)


def unflatten(vector: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    """Views of a flat vector shaped like ``like`` (the inverse of :func:`flatten`)."""
    out, offset = [], 0
    for ref in like:
        out.append(vector[offset : offset + ref.numel()].view_as(ref))
        offset += ref.numel()
    return out


def row_products(a: torch.Tensor, b: torch.Tensor, *, chunk: int = 65536) -> torch.Tensor:
    """``a @ b.T`` for few long rows (n × P). On CPU, summed over column blocks that stay
    in cache: 2-3× faster than one GEMM over P ≈ 10^7 columns for n ≈ 8 (measured)."""
    if a.device.type != "cpu" or a.shape[1] <= chunk:
        return a @ b.T
    out = torch.zeros(a.shape[0], b.shape[0], dtype=a.dtype)
    for block_a, block_b in zip(a.split(chunk, dim=1), b.split(chunk, dim=1)):
        out.addmm_(block_a, block_b.T)
    return out


def cosine_from_gram(gram: torch.Tensor) -> torch.Tensor:
    norms = gram.diagonal().clamp(min=0).sqrt()
    return gram / (norms[:, None] * norms[None, :]).clamp(min=1e-30)


def first_order_from_products(products: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
    """−Δ_i · g_j / L_j from the matrix P_ij = −Δ_i · g_j (rows sources, columns targets)."""
    return products / losses[None, :]


def lookahead_ratio(losses_after: torch.Tensor, losses_before: torch.Tensor) -> torch.Tensor:
    """Exact TAG affinity Z_{i→j} = 1 − L_j(θ after i's update) / L_j(θ); rows i, columns j."""
    return 1.0 - losses_after / losses_before[None, :]
