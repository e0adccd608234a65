"""Tokenise a task's rows into model inputs (one sub-batch per task).

One convention for every path (training steps, evaluation, affinity probes; single
texts, pairs, multiple choice): rows are tokenised without padding and padded here,
on the right, with the tokenizer's pad id and attention mask 0, whatever the
tokenizer's own ``padding_side``. With right padding the real tokens keep positions
0..n-1 in any batch, so an example's features do not depend on its neighbours
(left padding would shift absolute positions; causal models see no padding at all).

Training steps draw sub-batches from the same rows again and again, so the trainer
tokenises each split once (:class:`EncodedRows`) and only gathers and pads per
step; :func:`collate` tokenises on the fly (probes) and gives identical tensors.
"""

from __future__ import annotations

import weakref

import numpy as np
import pandas as pd
import torch

from ..errors import TaskDataError
from ..tasks.spec import MULTIPLE_CHOICE, PAIR_CLASSIFICATION, REGRESSION

KEYS = ("input_ids", "token_type_ids", "attention_mask")


def _tokenize(task_type: str, rows: pd.DataFrame, tokenizer, max_length: int) -> dict[str, list[list[int]]]:
    texts = rows["text"].tolist()
    if task_type == PAIR_CLASSIFICATION:
        return _tokenize_pairs(tokenizer, texts, rows["text_pair"].tolist(), max_length)
    if task_type == MULTIPLE_CHOICE:
        n_choices = len(rows["choices"].iloc[0])
        firsts = [t for t in texts for _ in range(n_choices)]
        seconds = [c for choices in rows["choices"] for c in choices]
        return _tokenize_pairs(tokenizer, firsts, seconds, max_length)
    return dict(tokenizer(texts, truncation=True, max_length=max_length))


# -- text pairs -----------------------------------------------------------------------------------
_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def pair_layout(tokenizer) -> tuple[list[int], int, list[int]] | None:
    """``(prefix, separator, suffix)`` ids for a tokenizer that joins a text pair with nothing
    between the two texts (GPT-2's byte-level BPE: "the movie" + "was great" would read as
    one text); None for tokenizers that mark the boundary themselves ([SEP], </s></s>)."""
    if tokenizer not in _LAYOUTS:
        first = tokenizer("first", add_special_tokens=False)["input_ids"]
        second = tokenizer("second", add_special_tokens=False)["input_ids"]
        pair = tokenizer("first", "second")["input_ids"]
        joined, layout = first + second, None
        for k in range(len(pair) - len(joined) + 1):
            if pair[k : k + len(joined)] == joined:
                separator = next(
                    (
                        getattr(tokenizer, t)
                        for t in ("sep_token_id", "eos_token_id", "pad_token_id")
                        if getattr(tokenizer, t, None) is not None
                    ),
                    None,
                )
                layout = (pair[:k], separator, pair[k + len(joined) :]) if separator is not None else None
                break
        _LAYOUTS[tokenizer] = layout
    return _LAYOUTS[tokenizer]


def _tokenize_pairs(tokenizer, firsts: list[str], seconds: list[str], max_length: int) -> dict:
    layout = pair_layout(tokenizer)
    if layout is None:
        return dict(tokenizer(firsts, seconds, truncation=True, max_length=max_length))
    prefix, separator, suffix = layout
    a = tokenizer(firsts, add_special_tokens=False)["input_ids"]
    b = tokenizer(seconds, add_special_tokens=False)["input_ids"]
    budget = max(max_length - len(prefix) - len(suffix) - 1, 2)
    ids, types = [], []
    for x, y in zip(a, b):
        # longest first, as the tokenizers' own truncation="longest_first"
        n_x, n_y = len(x), len(y)
        while n_x + n_y > budget:
            if n_x >= n_y:
                n_x -= 1
            else:
                n_y -= 1
        first = prefix + x[:n_x] + [separator]
        ids.append(first + y[:n_y] + suffix)
        types.append([0] * len(first) + [1] * (n_y + len(suffix)))
    out = {"input_ids": ids, "attention_mask": [[1] * len(s) for s in ids]}
    if "token_type_ids" in tokenizer.model_input_names:
        out["token_type_ids"] = types
    return out


def pad_id(tokenizer) -> int:
    """The id padding is filled with (masked out everywhere, so any id would do)."""
    for name in ("pad_token_id", "eos_token_id"):
        if getattr(tokenizer, name, None) is not None:
            return getattr(tokenizer, name)
    return 0


def _labels(task_type: str, rows: pd.DataFrame) -> torch.Tensor:
    dtype = torch.float32 if task_type == REGRESSION else torch.long
    return torch.as_tensor(np.asarray(rows["label"].tolist()), dtype=dtype)


def collate(task_type: str, rows: pd.DataFrame, tokenizer, max_length: int, device: torch.device | str) -> dict:
    """``{"inputs": tensors (batch, length), "labels": tensor}`` for one task's rows.

    Multiple-choice inputs are (batch, choices, length): every (question, choice)
    pair is encoded, as in Muppet's multiple-choice format.
    """
    return EncodedRows(task_type, rows, tokenizer, max_length).collate(np.arange(len(rows)), device)


class EncodedRows:
    """A frame's rows tokenised once (unpadded); :meth:`collate` pads a selection on the right.

    ``what`` names the rows in errors (``task 'x', validation split``): a text the
    tokenizer turns into no tokens at all cannot be encoded.
    """

    def __init__(self, task_type: str, rows: pd.DataFrame, tokenizer, max_length: int, *, what: str = "rows"):
        self.task_type = task_type
        self.choices = len(rows["choices"].iloc[0]) if task_type == MULTIPLE_CHOICE else 1
        encoded = _tokenize(task_type, rows, tokenizer, max_length) if len(rows) else {"input_ids": []}
        self.keys = [k for k in KEYS if k in encoded]
        self.sequences = {k: [np.asarray(s, dtype=np.int64) for s in encoded[k]] for k in self.keys}
        empty = [i for i, s in enumerate(self.sequences["input_ids"]) if len(s) == 0]
        if empty:
            row = rows.iloc[empty[0] // self.choices]
            raise TaskDataError(
                f"{what}: the text {row['text']!r} gives no tokens with this tokenizer "
                "(remove it, or use a tokenizer that adds special tokens)"
            )
        self.pad = {
            "input_ids": pad_id(tokenizer),
            "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0),
            "attention_mask": 0,
        }
        self.labels = _labels(task_type, rows)

    def __len__(self) -> int:
        return len(self.labels)

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
