"""Read tasks from files the user brings: CSV, TSV, JSON Lines, JSON, Parquet.

What each format may contain (docs/your_data.md):

- Text formats are UTF-8 (a byte-order mark is skipped; CRLF line ends are fine);
  ``.gz``, ``.bz2`` and ``.xz`` files are decompressed first.
- CSV is RFC 4180 (``"`` quotes fields holding commas, quotes or newlines). TSV has
  no quoting at all, as GLUE-style files are written: every line is one row and a
  ``"`` is an ordinary character. Only an empty cell is missing: ``NA``, ``null``,
  ``None`` or ``nan`` are values like any other.
- JSON Lines: one object per line, lines end at ``\\n`` only (U+2028 or U+0085
  inside a string are text). ``.json``: an array of objects, or JSON Lines.

The returned frame's index locates each row for error messages (see
:func:`taskaffinity.tasks.data.row_location`): its editor line (index name ``line``,
header = line 1) for CSV, TSV and JSON Lines, ``item N (line L)`` for the items of a
JSON array, the 1-based row number (``row``) for Parquet. Cells keep their values as read: strings (``None`` for an
empty CSV/TSV cell) or JSON values; nothing is type-converted here.
"""

from __future__ import annotations

import bisect
import bz2
import csv
import gzip
import io
import json
import lzma
import re
from pathlib import Path

import pandas as pd

from ..errors import TaskDataError

SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
COMPRESSIONS = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress}
_JSON_SPACE = re.compile(r"[ \t\n\r]*")
# Texts may be long (whole articles): lift the csv module's 128 KiB field limit.
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))


def file_format(path: str | Path) -> tuple[str, str | None]:
    """``(".csv", ".gz")``-style format and compression of a file name (compression may be None)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        return (suffixes[-2] if len(suffixes) > 1 else ""), suffixes[-1]
    return (suffixes[-1] if suffixes else ""), None


def read_table(path: str | Path, task: str) -> pd.DataFrame:
    """Read one file into a DataFrame (see the module docstring for what it may contain).

    Raises TaskDataError naming the task, the file and, where it applies, the line:
    missing file, unknown format, bad encoding, unparseable content, a JSON layout
    other than records, a row with the wrong number of fields.
    """
    path = Path(path)
    if not path.is_file():
        raise TaskDataError(f"task '{task}': file not found: {path}")
    suffix, compression = file_format(path)
    if suffix not in SUFFIXES:
        raise TaskDataError(
            f"task '{task}': cannot read {path}: unknown format '{suffix}{compression or ''}' "
            f"(use one of {', '.join(SUFFIXES)}, optionally compressed: {', '.join(COMPRESSIONS)})"
        )
    try:
        raw = path.read_bytes()
        if compression:
            raw = COMPRESSIONS[compression](raw)
        if suffix == ".parquet":
            frame = pd.read_parquet(io.BytesIO(raw))
            frame.index = pd.RangeIndex(1, len(frame) + 1, name="row")
            return frame
    except (OSError, ValueError, EOFError, lzma.LZMAError) as err:  # pyarrow errors subclass these
        raise TaskDataError(f"task '{task}': cannot read {path}: {err}") from None
    text = _decode(raw, path, task)
    where = f"task '{task}': {path}"
    if suffix in (".csv", ".tsv"):
        return _read_delimited(text, where, tab=suffix == ".tsv")
    if suffix == ".jsonl":
        return _read_json_lines(text, where)
    return _read_json_document(text, where)


def _decode(raw: bytes, path: Path, task: str) -> str:
    """Strict UTF-8 (pandas would silently mangle or fail obscurely); a leading BOM is dropped."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise TaskDataError(
            f"task '{task}': {path} is UTF-16 (it starts with a byte-order mark); re-encode it as UTF-8"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise TaskDataError(
            f"task '{task}': {path} is not valid UTF-8 (byte {err.start}, line {line}); re-encode it as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


def _frame(rows: list, lines: list[int], columns: list[str] | None = None) -> pd.DataFrame:
    """Rows as read (object columns: no type guessing), indexed by their editor line."""
    frame = pd.DataFrame(rows, columns=columns, dtype=object)
    frame.index = pd.Index(lines, name="line", dtype="int64")
    return frame


# -- CSV and TSV ---------------------------------------------------------------------------------
def _read_delimited(text: str, where: str, *, tab: bool) -> pd.DataFrame:
    """CSV (RFC 4180 quoting) or TSV (no quoting); empty cells are None, nothing else is missing."""
    options = dict(delimiter="\t", quoting=csv.QUOTE_NONE) if tab else dict(delimiter=",", strict=True)
    # newline="": the csv module sees \r\n, \r and \n as line ends (as editors do) and keeps
    # newlines inside quoted fields; U+2028 and friends stay text.
    reader = csv.reader(io.StringIO(text, newline=""), **options)
    header, header_line, rows, lines = None, 0, [], []
    start = 1
    try:
        for record in reader:
            first, start = start, reader.line_num + 1
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # a blank line
            if header is None:
                header, header_line = record, first
                seen = set()
                for name in header:
                    if name in seen:
                        raise TaskDataError(f"{where}, line {first}: column '{name}' appears twice in the header")
                    seen.add(name)
                continue
            if len(record) != len(header):
                hint = (
                    " (a tab inside a text? TSV has no quoting: write such texts as CSV or JSON Lines)"
                    if tab
                    else ' (quote texts that contain commas: "like, this")'
                )
                raise TaskDataError(
                    f"{where}, line {first}: {len(record)} fields, but the header (line "
                    f"{header_line}) has {len(header)}{hint}"
                )
            rows.append([cell if cell != "" else None for cell in record])
            lines.append(first)
    except csv.Error as err:
        problem = "a quoted field starting here is never closed" if "end of data" in str(err) else str(err)
        raise TaskDataError(f"{where}, line {start}: {problem}") from None
    if header is None:
        raise TaskDataError(f"{where}: the file is empty (a header line naming the columns is needed)")
    return _frame(rows, lines, header)


# -- JSON Lines and JSON -------------------------------------------------------------------------
def _read_json_lines(text: str, where: str) -> pd.DataFrame:
    """One JSON object per line; lines end at \\n only (str.splitlines would also split at U+2028)."""
    rows, lines = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip(" \t\r"):
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise TaskDataError(f"{where}, line {number}: not valid JSON: {err.msg} (column {err.colno})") from None
        if not isinstance(value, dict):
            raise TaskDataError(f"{where}, line {number}: expected one JSON object per line, got {_json_kind(value)}")
        rows.append(value)
        lines.append(number)
    return _frame(rows, lines)


def _read_json_document(text: str, where: str) -> pd.DataFrame:
    """An array of records; JSON Lines saved as ``.json`` (what ``datasets``' ``to_json`` writes) too."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data" and text.lstrip(" \t\r\n").startswith("{"):
            return _read_json_lines(text, where)  # one object per line
        raise TaskDataError(f"{where}, line {err.lineno}: not valid JSON: {err.msg} (column {err.colno})") from None
    if isinstance(document, list):
        bad = next((i for i, item in enumerate(document) if not isinstance(item, dict)), None)
        if bad is not None:
            raise TaskDataError(
                f"{where}: holds an array whose item {bad + 1} is {_json_kind(document[bad])}, not an object; "
                f"write one object per row: {_RECORDS}"
            )
        frame = _frame(document, [0] * len(document))
        frame.index = pd.Index(
            [f"item {i} (line {line})" for i, line in enumerate(_array_item_lines(text), 1)],
            name="location",
            dtype=object,
        )
        return frame
    raise TaskDataError(
        f"{where}: holds {_layout(document)}; taskaffinity reads an array of records "
        f"({_RECORDS}) or JSON Lines (one object per line). {_fix(document)}"
    )


_RECORDS = '[{"text": ..., "label": ...}, ...]'
_PANDAS_FIX = 'From pandas write it with df.to_json(path, orient="records") (or lines=True with a .jsonl name).'


def _json_kind(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _layout(document) -> str:
    """Name a JSON document's layout (pandas ``to_json`` orients have their own names)."""
    if not isinstance(document, dict):
        return f"a single JSON value ({_json_kind(document)})"
    keys = set(document)
    if {"columns", "data"} <= keys and keys <= {"columns", "index", "data"}:
        return 'pandas\' orient="split" layout (columns, index, data)'
    if {"schema", "data"} <= keys:
        return 'pandas\' orient="table" layout (schema, data)'
    values = list(document.values())
    if values and all(isinstance(v, list) for v in values):
        wrapped = [k for k, v in document.items() if v and all(isinstance(x, dict) for x in v)]
        if wrapped:
            return f"records wrapped in an object under the key '{wrapped[0]}'"
        return 'an object of column lists ({"text": [...], "label": [...]})'
    if values and all(isinstance(v, dict) for v in values):
        inner = set().union(*(v.keys() for v in values))
        if all(str(k).lstrip("-").isdigit() for k in inner):
            return 'a dict of columns ({"text": {"0": ..., "1": ...}, ...}: pandas\' default DataFrame.to_json())'
        return 'a dict of rows keyed by an index ({"0": {"text": ..., "label": ...}, ...}: pandas\' orient="index")'
    return "a single JSON object (one row?)"


def _fix(document) -> str:
    if isinstance(document, dict):
        keys = set(document)
        if {"schema", "data"} <= keys or {"columns", "data"} <= keys:
            return _PANDAS_FIX
        values = list(document.values())
        wrapped = [k for k, v in document.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
        if wrapped:
            return f"Write the array under '{wrapped[0]}' as the whole file."
        if values and all(isinstance(v, (dict, list)) for v in values):
            return _PANDAS_FIX
    return f"Write an array of records: {_RECORDS}."


def _array_item_lines(text: str) -> list[int]:
    """Editor line on which each item of a top-level JSON array starts (the text is valid JSON)."""
    newlines = [match.start() for match in re.finditer("\n", text)]
    decoder = json.JSONDecoder()
    pos = _JSON_SPACE.match(text, 0).end() + 1  # past "["
    starts = []
    while True:
        pos = _JSON_SPACE.match(text, pos).end()
        if text[pos] == "]":
            break
        starts.append(bisect.bisect_left(newlines, pos) + 1)
        _, pos = decoder.raw_decode(text, pos)
        pos = _JSON_SPACE.match(text, pos).end()
        if text[pos] == ",":
            pos += 1
    return starts
