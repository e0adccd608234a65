"""Tokenise a task's rows into model inputs (one sub-batch per task)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .tasks.spec import MULTIPLE_CHOICE, PAIR_CLASSIFICATION, REGRESSION


def collate(task_type: str, rows: pd.DataFrame, tokenizer, max_length: int, device: torch.device | str) -> dict:
    """``{"inputs": tokenizer tensors, "labels": tensor}`` for one task's rows.

    Multiple-choice inputs are (batch, choices, length): every (question, choice)
    pair is encoded, as in Muppet's multiple-choice format.
    """
    texts = rows["text"].tolist()
    kwargs = dict(truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    if task_type == PAIR_CLASSIFICATION:
        encoded = tokenizer(texts, rows["text_pair"].tolist(), **kwargs)
    elif task_type == MULTIPLE_CHOICE:
        n_choices = len(rows["choices"].iloc[0])
        firsts = [t for t in texts for _ in range(n_choices)]
        seconds = [c for choices in rows["choices"] for c in choices]
        encoded = tokenizer(firsts, seconds, **kwargs)
        encoded = {k: v.view(len(texts), n_choices, -1) for k, v in encoded.items()}
    else:
        encoded = tokenizer(texts, **kwargs)
    dtype = torch.float32 if task_type == REGRESSION else torch.long
    labels = torch.as_tensor(np.asarray(rows["label"].tolist()), dtype=dtype)
    return {
        "inputs": {k: v.to(device) for k, v in dict(encoded).items()},
        "labels": labels.to(device),
    }
