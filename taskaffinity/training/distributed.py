"""Multi-process joint runs under ``torchrun``: who this process is, and the few reductions a run needs.

``torchrun --nproc_per_node N -m taskaffinity.cli affinity CONFIG --out DIR`` (or the
``taskaffinity`` script) starts N copies of the same command. Each copy draws the
same global heterogeneous batch (the sampler depends only on seed and step) and
keeps its shard of every task's sub-batch, rows ``rank::world``. What is reduced
across processes, and why it gives the single-process numbers:

- the training gradient: every rank backpropagates (b_i^r / B) · L_i^r / s_i, so the
  sum over ranks is the single-process (b_i / B) · L_i / s_i (one flat all-reduce);
- per-task losses: Σ_r (b_i^r / b_i) L_i^r = L_i (an n-vector);
- streamed per-task gradients: Σ_r (b_i^r / b_i) g_i^r = g_i, reduced as the n×P
  rows (n×d with a sketch: CountSketch is linear) before the n×n products, because
  G_ij = g_i·g_j has cross-rank terms that per-rank Gram matrices would miss;
- exact lookahead probes: every rank computes the probe gradients (the probe batch
  is identical everywhere) and the lookahead passes of its share of the sources;
  only the n×n results are summed.

Checkpoints, stores and reports are written by rank 0; progress bars show on rank 0.
The backend is NCCL on CUDA and gloo on CPU. Without ``torchrun`` (no WORLD_SIZE in
the environment) everything here is a no-op and no process group is created.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import ConfigError


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """True on the process that writes files and shows progress."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, rows):
        """This process's share of a task's sub-batch rows."""
        return rows[self.rank :: self.world] if self.active else rows

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-reduce (sum) in place across processes; returns the tensor."""
        if self.active:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def sum_tensors_(self, tensors: list[torch.Tensor], *, bucket: int = 1 << 25) -> None:
        """Sum many tensors across processes through flat buckets (few, large messages)."""
        if not self.active or not tensors:
            return
        groups: list[list[torch.Tensor]] = [[]]
        size = 0
        for tensor in tensors:
            if groups[-1] and size + tensor.numel() > bucket:
                groups.append([])
                size = 0
            groups[-1].append(tensor)
            size += tensor.numel()
        for group in groups:
            flat = self.sum_(torch.cat([t.reshape(-1) for t in group]))
            for t, part in zip(group, flat.split([t.numel() for t in group])):
                t.copy_(part.view_as(t))

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def setup() -> Distributed:
    """The current process's place in a ``torchrun`` job; joins the process group once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return Distributed(
        rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0"))
    )


def current() -> Distributed:
    """Like :func:`setup` but never starts a process group (for code that only needs to know the rank,
    e.g. the command line deciding who prints)."""
    if dist.is_available() and dist.is_initialized():
        return Distributed(
            rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0"))
        )
    return Distributed()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA if present, else CPU. Under torchrun, a bare ``cuda`` means this process's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"training.device is '{name}' but no CUDA device is available")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device
