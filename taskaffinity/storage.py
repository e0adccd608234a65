"""Atomic file writes: a crash or interrupt leaves either the old file or the new one."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import pandas as pd


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data, *, strict: bool = False) -> None:
    """``strict``: NaN and ±inf become ``null`` (JSON has no such numbers; Python's bare ``NaN`` tokens
    break every other reader)."""

    def write(tmp):
        body = json.dumps(
            json_safe(data) if strict else data, indent=2, sort_keys=True, default=str, allow_nan=not strict
        )
        Path(tmp).write_text(body + "\n")

    _atomic(Path(path), write)


def json_safe(value):
    """``value`` with every non-finite float (NumPy's included) replaced by None, containers copied."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if (
        isinstance(value, float)
        or type(value).__module__ == "numpy"
        and hasattr(value, "dtype")
        and value.dtype.kind == "f"
    ):
        return float(value) if math.isfinite(value) else None
    return value


def write_text(path: str | Path, text: str) -> None:
    _atomic(Path(path), lambda tmp: Path(tmp).write_text(text))


def write_parquet(path: str | Path, frame: pd.DataFrame, metadata: dict[bytes, bytes] | None = None) -> None:
    """Write a frame as Parquet; ``metadata`` is merged into the file's schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    _atomic(Path(path), lambda tmp: pq.write_table(table, tmp))


def write_figure(path: str | Path, figure, **savefig) -> None:
    """Save a matplotlib figure (format from the suffix) atomically."""
    path = Path(path)
    _atomic(path, lambda tmp: figure.savefig(tmp, format=path.suffix.lstrip("."), **savefig))


def write_safetensors(path: str | Path, tensors: dict) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    _atomic(Path(path), lambda tmp: save_file(tensors, tmp))


def read_json(path: str | Path, *, nulls_as_nan: bool = False):
    """``nulls_as_nan``: read a strict file's nulls back as NaN (every null of it was a number)."""
    data = json.loads(Path(path).read_text())
    return _nan_for_null(data) if nulls_as_nan else data


def _nan_for_null(value):
    if isinstance(value, dict):
        return {k: _nan_for_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_for_null(v) for v in value]
    return float("nan") if value is None else value
