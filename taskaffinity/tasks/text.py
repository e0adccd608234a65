"""When two texts count as the same.

Two identities, both starting from Unicode NFKC (compatibility forms fold:
``ｆｕｌｌ`` → ``full``, ``ﬁ`` → ``fi``, a no-break space → a space; composed and
decomposed accents agree):

- **the same example** inside one task (:func:`example_key`: duplicates and
  conflicting labels): NFKC with white space runs made one space. ``"null"`` and
  ``"NULL"``, ``"Apple"`` and ``"apple"`` stay different examples: case can carry
  the label.
- **the same input** across tasks (:func:`text_key`: texts shared by several tasks,
  and the split a shared text goes to): NFKC, case folding (``Straße`` ≡
  ``STRASSE``), every run of non-word characters (punctuation, symbols, white space)
  made one space. ``"Great movie!"`` in one task and ``"great movie"`` in another
  are one input, so neither can sit in one task's train and the other's test. A
  text made only of punctuation or symbols (``"!!!"``, an emoji) keeps its folded
  form, so ``"😀"`` and ``"😢"`` stay different.

Texts themselves are never rewritten: the model sees them as written (only
leading and trailing white space is stripped).
"""

from __future__ import annotations

import re
import unicodedata

import pandas as pd

_NON_WORD = re.compile(r"[\W_]+")
_SPACE = re.compile(r"\s+")


def exact_form(text: str) -> str:
    """One text as an example inside a task: NFKC, white space runs made one space."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def normalise(text: str) -> str:
    """One text as an input shared across tasks (see the module docstring)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _NON_WORD.sub(" ", folded).strip() or folded.strip()


def text_key(frame: pd.DataFrame) -> pd.Series:
    """Identity of each row's input: its text, or its (text, text_pair)."""
    key = frame["text"].astype(str).map(normalise)
    if "text_pair" in frame:
        key = key + "\x1f" + frame["text_pair"].astype(str).map(normalise)
    return key


def example_key(frame: pd.DataFrame) -> pd.Series:
    """Identity of each example inside one task: its text(s), and for multiple choice its choices too."""
    key = frame["text"].astype(str).map(exact_form)
    if "text_pair" in frame:
        key = key + "\x1f" + frame["text_pair"].astype(str).map(exact_form)
    if "choices" in frame:
        key = key + "\x1e" + frame["choices"].map(lambda choices: "\x1f".join(exact_form(str(c)) for c in choices))
    return key
