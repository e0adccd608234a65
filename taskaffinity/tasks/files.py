"""Read tasks from files the user brings: CSV, TSV, JSON Lines, Parquet."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..errors import TaskDataError

SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def read_table(path: str | Path, task: str) -> pd.DataFrame:
    """Read one file into a DataFrame; text must be UTF-8.

    Errors name the task and the file: missing file, unknown format, bad encoding,
    unparseable content.
    """
    path = Path(path)
    if not path.is_file():
        raise TaskDataError(f"task '{task}': file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise TaskDataError(
            f"task '{task}': cannot read {path}: unknown format '{suffix}' (use one of {', '.join(SUFFIXES)})"
        )
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        # Decode strictly ourselves: pandas would silently mangle or fail obscurely.
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise TaskDataError(
            f"task '{task}': {path} is not valid UTF-8 (byte {err.start}, line {line}); re-encode it as UTF-8"
        ) from None
    except (OSError, ValueError) as err:  # pyarrow errors subclass these
        raise TaskDataError(f"task '{task}': cannot read {path}: {err}") from None
    try:
        if suffix in (".csv", ".tsv"):
            from io import StringIO

            return pd.read_csv(StringIO(text), sep="\t" if suffix == ".tsv" else ",", keep_default_na=True)
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        if suffix == ".json" and len(rows) == 1 and isinstance(rows[0], list):
            rows = rows[0]
        return pd.DataFrame(rows)
    except (ValueError, pd.errors.ParserError) as err:
        raise TaskDataError(f"task '{task}': cannot parse {path}: {err}") from None
