"""Rows tokenised once and padded per step give exactly the tensors of on-the-fly tokenisation."""

import numpy as np
import pytest
import torch
from conftest import tiny_config

from taskaffinity.api import build
from taskaffinity.training.batching import EncodedRows, collate

TASKS = ["trec6", "vader_tweets", "wn_define", "wn_relation"]  # classification, regression, multiple choice, pair


@pytest.fixture(scope="module")
def prepared():
    tasks, _, tokenizer = build(tiny_config(TASKS), progress=False)
    return tasks, tokenizer


@pytest.mark.parametrize("task", TASKS)
def test_encoded_rows_collate_like_collate(prepared, task):
    tasks, tokenizer = prepared
    data = tasks[task]
    encoded = EncodedRows(data.spec.type, data.train, tokenizer, max_length=24)
    for rows in (np.array([5, 1, 17, 3]), np.array([0]), np.arange(len(data.train))[::-7]):
        expected = collate(data.spec.type, data.train.iloc[rows], tokenizer, 24, "cpu")
        got = encoded.collate(rows, "cpu")
        assert list(got["inputs"]) == list(expected["inputs"])
        for key, tensor in expected["inputs"].items():
            assert torch.equal(got["inputs"][key], tensor), key
        assert torch.equal(got["labels"], expected["labels"]) and got["labels"].dtype == expected["labels"].dtype
