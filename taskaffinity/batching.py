"""Tokenise a task's rows into model inputs (one sub-batch per task).

Training steps draw sub-batches from the same rows again and again, so the trainer
tokenises each task's training split once (:class:`EncodedRows`) and only gathers
and pads per step; :func:`collate` tokenises on the fly (probes, evaluation) and
gives identical tensors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .tasks.spec import MULTIPLE_CHOICE, PAIR_CLASSIFICATION, REGRESSION


def _tokenize(task_type: str, rows: pd.DataFrame, tokenizer, max_length: int, **kwargs):
    texts = rows["text"].tolist()
    kwargs = dict(truncation=True, max_length=max_length, **kwargs)
    if task_type == PAIR_CLASSIFICATION:
        return tokenizer(texts, rows["text_pair"].tolist(), **kwargs)
    if task_type == MULTIPLE_CHOICE:
        n_choices = len(rows["choices"].iloc[0])
        firsts = [t for t in texts for _ in range(n_choices)]
        seconds = [c for choices in rows["choices"] for c in choices]
        return tokenizer(firsts, seconds, **kwargs)
    return tokenizer(texts, **kwargs)


def _labels(task_type: str, rows: pd.DataFrame) -> torch.Tensor:
    dtype = torch.float32 if task_type == REGRESSION else torch.long
    return torch.as_tensor(np.asarray(rows["label"].tolist()), dtype=dtype)


def collate(task_type: str, rows: pd.DataFrame, tokenizer, max_length: int, device: torch.device | str) -> dict:
    """``{"inputs": tokenizer tensors, "labels": tensor}`` for one task's rows.

    Multiple-choice inputs are (batch, choices, length): every (question, choice)
    pair is encoded, as in Muppet's multiple-choice format.
    """
    encoded = _tokenize(task_type, rows, tokenizer, max_length, padding=True, return_tensors="pt")
    if task_type == MULTIPLE_CHOICE:
        n_choices = len(rows["choices"].iloc[0])
        encoded = {k: v.view(len(rows), n_choices, -1) for k, v in encoded.items()}
    return {
        "inputs": {k: v.to(device) for k, v in dict(encoded).items()},
        "labels": _labels(task_type, rows).to(device),
    }


class EncodedRows:
    """A frame's rows tokenised once (unpadded); :meth:`collate` pads a selection like :func:`collate`."""

    def __init__(self, task_type: str, rows: pd.DataFrame, tokenizer, max_length: int):
        self.task_type = task_type
        self.choices = len(rows["choices"].iloc[0]) if task_type == MULTIPLE_CHOICE else 1
        encoded = _tokenize(task_type, rows, tokenizer, max_length)
        self.keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in encoded]
        self.sequences = {k: [np.asarray(s, dtype=np.int64) for s in encoded[k]] for k in self.keys}
        self.pad = {"input_ids": tokenizer.pad_token_id or 0, "token_type_ids": tokenizer.pad_token_type_id,
                    "attention_mask": 0}
        self.labels = _labels(task_type, rows)

    def collate(self, rows: np.ndarray, device: torch.device | str) -> dict:
        rows = np.ascontiguousarray(rows)
        c = self.choices
        picked = (np.repeat(rows * c, c) + np.tile(np.arange(c), len(rows))).tolist()
        width = max(len(self.sequences["input_ids"][i]) for i in picked)
        inputs = {}
        for key in self.keys:
            out = np.full((len(picked), width), self.pad[key], dtype=np.int64)
            for r, i in enumerate(picked):
                seq = self.sequences[key][i]
                out[r, : len(seq)] = seq
            tensor = torch.from_numpy(out)
            inputs[key] = (tensor.view(len(rows), c, width) if self.task_type == MULTIPLE_CHOICE else tensor).to(device)
        return {"inputs": inputs, "labels": self.labels[torch.from_numpy(rows.astype(np.int64))].to(device)}
