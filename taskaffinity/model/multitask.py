"""MultiTaskModel: one shared transformer encoder, one head per task."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from ..config import ModelConfig
from ..tasks.data import TaskData
from ..tasks.spec import MULTIPLE_CHOICE, REGRESSION
from ..tasks.splits import task_seed
from .heads import build_head


class MultiTaskModel(nn.Module):
    """Shared encoder θ_s plus task heads θ_i.

    Each task's sub-batch is forwarded on its own (``loss(task, batch)``), so
    per-task losses and gradients of the shared parameters are available to
    affinity recorders without unpacking a concatenated batch.
    """

    def __init__(self, encoder: nn.Module, tasks: dict[str, TaskData], cfg: ModelConfig, *, seed: int | None = None):
        """``seed``: each head is initialised from a seed of (``seed``, head name), so a task's head
        starts the same whichever other tasks share the model (paired single vs joint runs);
        None draws heads from the global RNG in task order."""
        super().__init__()
        if getattr(encoder, "pooler", None) is not None:
            # BERT-style poolers are unused by our pooling: drop them, or they would count as
            # shared parameters that never receive a gradient.
            encoder.pooler = None
        self.encoder = encoder
        self.pooling = cfg.pooling
        hidden = encoder.config.hidden_size
        self.heads = nn.ModuleDict()
        self.head_of: dict[str, str] = {}
        for name, task in tasks.items():
            key = name
            if cfg.share_multiple_choice_heads and task.spec.type == MULTIPLE_CHOICE:
                key = f"mc__{task.spec.family}"  # Muppet: one shared scorer per multiple-choice family
            if key not in self.heads:
                stats = task.label_stats() if task.spec.type == REGRESSION else (0.0, 1.0)
                with torch.random.fork_rng(devices=[], enabled=seed is not None):
                    if seed is not None:
                        torch.manual_seed(task_seed(seed, key, "head"))
                    self.heads[key] = build_head(
                        task.spec.type, hidden, task.n_classes, cfg.head_dropout, label_stats=stats
                    )
            self.head_of[name] = key

    def head(self, task: str) -> nn.Module:
        return self.heads[self.head_of[task]]

    def encode(self, inputs: dict[str, torch.Tensor], encoder=None) -> torch.Tensor:
        """Pooled sentence features for inputs of shape (batch, length) or (batch, choices, length).

        ``encoder`` may replace the module's encoder call, as in :meth:`encode_packed`.
        """
        shape = inputs["input_ids"].shape
        flat = {k: v.reshape(-1, shape[-1]) for k, v in inputs.items()}
        pooled = self.pool((encoder or self.encoder)(**flat).last_hidden_state, flat["attention_mask"])
        return pooled.reshape(*shape[:-1], -1)

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Sentence features (batch, hidden) from token features (batch, length, hidden).

        ``cls``: the first real token ([CLS] for BERT-style tokenizers), wherever padding
        sits; ``mean``: the mean over real tokens (attention mask 1) only.
        """
        if self.pooling == "cls":
            first = attention_mask.to(torch.int8).argmax(dim=1)  # argmax returns the first maximum
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def encode_packed(self, inputs_list: list[dict[str, torch.Tensor]], encoder=None) -> list[torch.Tensor]:
        """Encode several tasks' inputs in one encoder pass (padded to a common length).

        Attention masks keep padding out, so each example's features equal those of
        :meth:`encode` up to float rounding (with dropout on, masks are still drawn per
        element, only from a different stream of random numbers). ``encoder`` may replace
        the module's encoder call (e.g. a ``functional_call`` with other parameters).
        """
        shapes = [x["input_ids"].shape for x in inputs_list]
        width = max(shape[-1] for shape in shapes)
        keys = inputs_list[0].keys()
        flat = {
            k: torch.cat(
                [
                    torch.nn.functional.pad(x[k].reshape(-1, x[k].shape[-1]), (0, width - x[k].shape[-1]))
                    for x in inputs_list
                ]
            )
            for k in keys
        }
        hidden = (encoder or self.encoder)(**flat).last_hidden_state
        pooled = self.pool(hidden, flat["attention_mask"])
        sizes = [int(torch.tensor(shape[:-1]).prod()) for shape in shapes]
        return [p.reshape(*shape[:-1], -1) for p, shape in zip(pooled.split(sizes), shapes)]

    def forward(self, task: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(task)(self.encode(inputs))

    def loss(self, task: str, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss of one task's sub-batch, and the raw head output."""
        output = self(task, batch["inputs"])
        return self.head(task).loss(output, batch["labels"]), output

    def shared_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """θ_s: the encoder parameters every task updates (what affinities are computed on)."""
        return ((f"encoder.{n}", p) for n, p in self.encoder.named_parameters() if p.requires_grad)

    def head_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((f"heads.{n}", p) for n, p in self.heads.named_parameters())
