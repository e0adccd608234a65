"""What users' files really contain: NA-like strings, quotes, line separators, JSON layouts, BOMs."""

import csv
import gzip
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from taskaffinity.config import DataConfig, config_from_dict
from taskaffinity.errors import TaskDataError
from taskaffinity.tasks.files import read_table
from taskaffinity.tasks.prepare import prepare_tasks

INPUTS = Path(__file__).resolve().parents[1] / "data" / "inputs"
NA_LIKE = ["NA", "null", "None", "nan", "N/A", "n/a", "NULL", "NaN", "#N/A", "<NA>", "-nan", "nil"]


def prepare(folder, *tasks, **data):
    config = config_from_dict({"tasks": list(tasks)}, where="<test>", base_dir=Path(folder))
    return prepare_tasks(config.tasks, DataConfig(**data), progress=False)


def one(folder, name, **entry):
    return prepare(folder, {"name": "t", "file": name, **entry})["t"]


def same_task(a, b):
    assert a.label_names == b.label_names and a.fingerprint() == b.fingerprint()
    for split in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(a.split(split), b.split(split))


# -- the same rows in every format ----------------------------------------------------------------
def tricky_rows():
    """Texts and labels that type-guessing readers mangle: NA-like strings, numbers, quotes, separators."""
    rows = [{"text": text, "label": "missing_value"} for text in NA_LIKE]
    rows += [{"text": f"please book flight {i}", "label": "None"} for i in range(12)]
    rows += [{"text": f"weather in town {i}", "label": "weather"} for i in range(12)]
    rows += [
        {"text": t, "label": "code"}
        for t in [
            "007",
            "1.50",
            "1e3",
            "0x1F",
            "True",
            '12" screen',
            '"quoted" word',
            "comma, inside",
            "semi;colon",
            "tab-free",
        ]
    ]
    return rows


def write_every_format(folder: Path, rows: list[dict]) -> dict[str, Path]:
    frame = pd.DataFrame(rows)
    paths = {suffix: folder / f"rows{suffix}" for suffix in (".csv", ".tsv", ".jsonl", ".json", ".parquet")}
    frame.to_csv(paths[".csv"], index=False)
    with open(paths[".tsv"], "w", newline="") as f:  # a TSV as GLUE writes it: no quoting
        f.write("text\tlabel\n" + "".join(f"{r['text']}\t{r['label']}\n" for r in rows))
    paths[".jsonl"].write_text("".join(json.dumps(r) + "\n" for r in rows))
    paths[".json"].write_text(json.dumps(rows, indent=2))
    frame.to_parquet(paths[".parquet"])
    return paths


def test_every_format_gives_the_same_task(tmp_path):
    rows = tricky_rows()
    paths = write_every_format(tmp_path, rows)
    tasks = {suffix: one(tmp_path, path.name) for suffix, path in paths.items()}
    reference = tasks[".parquet"]
    assert reference.label_names == ("None", "code", "missing_value", "weather")
    texts = set(pd.concat([reference.train, reference.validation, reference.test])["text"])
    assert texts == {r["text"] for r in rows}  # nothing read as missing, nothing type-converted
    assert reference.stats["rows_read"] == len(rows) and reference.stats["dropped_empty"] == 0
    for _suffix, task in tasks.items():
        same_task(task, reference)


def test_the_shipped_intents_files_agree_and_keep_the_class_named_none():
    tasks = {p.suffix: one(INPUTS, p.name) for p in INPUTS.glob("intents.*")}
    assert set(tasks) == {".csv", ".tsv", ".jsonl", ".parquet"}
    for task in tasks.values():
        same_task(task, tasks[".parquet"])
    assert tasks[".csv"].label_names == ("None", "book_flight", "weather")
    assert sum(len(tasks[".csv"].split(s)) for s in ("train", "validation", "test")) == 45


def test_na_like_texts_are_texts():
    task = one(INPUTS, "answers.csv")
    texts = set(pd.concat([task.train, task.validation, task.test])["text"])
    assert {"NA", "null", "None", "nan", "N/A", "n/a", "NULL"} <= texts
    assert "no_answer" in task.label_names and task.stats["dropped_empty"] == 0


def test_only_an_empty_cell_is_missing(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(
        "text,label\n"
        + "".join(f"text {i},{'pos' if i % 2 else 'neg'}\n" for i in range(20))
        + ",pos\n"
        + '"",neg\n'
        + "   ,neg\n"
    )
    task = one(tmp_path, "a.csv")
    assert task.stats == {**task.stats, "rows_read": 23, "dropped_empty": 3}
    path.write_text("text,label\nfine,pos\nalso fine,\n")
    with pytest.raises(TaskDataError, match=r"task 't': missing label in .*a\.csv, line 3 \(an empty cell or null\)"):
        one(tmp_path, "a.csv")


def test_numeric_labels_are_one_class_whatever_the_format(tmp_path):
    rows = [{"text": f"row {i}", "label": [1, 2][i % 2]} for i in range(40)]
    pd.DataFrame(rows).assign(label=lambda f: f["label"].astype(float)).to_csv(tmp_path / "floats.csv", index=False)
    (tmp_path / "ints.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert "1.0" in (tmp_path / "floats.csv").read_text()
    same_task(one(tmp_path, "floats.csv"), one(tmp_path, "ints.jsonl"))
    assert one(tmp_path, "ints.jsonl").label_names == ("1", "2")


# -- TSV: no quoting ------------------------------------------------------------------------------
def test_tsv_lines_are_rows_and_quotes_are_characters():
    frame = read_table(INPUTS / "reviews_quotes.tsv", "t")
    assert len(frame) == 40 and list(frame.index[:2]) == [2, 3]
    texts = list(frame["text"])
    assert texts[5] == '"Best trip ever, said my friend Tomas' and frame["label"].iloc[5] == "neg"
    assert 'the 12" screen was awful' in texts and '"great" is an understatement for meal 20' in texts
    assert not any("\t" in t or "\n" in t for t in texts)


def test_tsv_row_with_a_wrong_field_count_names_its_line(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_text('text\tlabel\n"an opening quote\tpos\nfine\tneg\nthe movie\twas\tgood\tpos\n')
    with pytest.raises(
        TaskDataError,
        match=r"a\.tsv, line 4: 4 fields, but the header \(line 1\) has 2 "
        r"\(a tab inside a text\?",
    ):
        read_table(path, "t")


def test_csv_quoted_newlines_and_bad_rows_are_located_by_editor_line(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text('text,label\n"two\nlines",pos\nplain,neg\n"stray quote"x,pos\n')
    with pytest.raises(TaskDataError, match=r"a\.csv, line 5: "):
        read_table(path, "t")
    path.write_text('text,label\n"two\nlines",pos\nplain,neg,extra\n')
    with pytest.raises(TaskDataError, match=r"a\.csv, line 4: 3 fields, but the header \(line 1\) has 2"):
        read_table(path, "t")
    path.write_text('text,label\nplain,neg\n"never closed,pos\nmore,neg\n')
    with pytest.raises(TaskDataError, match=r"a\.csv, line 3: a quoted field starting here is never closed"):
        read_table(path, "t")
    path.write_text("text,label,text\na,b,c\n")
    with pytest.raises(TaskDataError, match=r"line 1: column 'text' appears twice in the header"):
        read_table(path, "t")


# -- JSON Lines and JSON --------------------------------------------------------------------------
def test_json_lines_split_only_at_newline():
    frame = read_table(INPUTS / "reviews_separators.jsonl", "t")
    assert len(frame) == 40 and list(frame.index) == list(range(1, 41))
    assert frame["text"].iloc[3] == "first line of the review\u2028second line: the trip was dreadful"
    assert frame["text"].iloc[8] == "the meal was superb\u0085 would come again"
    same_task(one(INPUTS, "reviews_separators.jsonl"), one(INPUTS, "reviews_separators.csv"))


def test_a_bad_json_line_is_reported_at_its_real_line(tmp_path):
    lines = (INPUTS / "reviews_separators.jsonl").read_text(encoding="utf-8").split("\n")
    lines[11] = '{"text": "broken", "label": }'
    (tmp_path / "a.jsonl").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(TaskDataError, match=r"a\.jsonl, line 12: not valid JSON: Expecting value"):
        read_table(tmp_path / "a.jsonl", "t")
    (tmp_path / "b.jsonl").write_text('{"text": "a", "label": "x"}\n\n["text", "label"]\n')
    with pytest.raises(TaskDataError, match=r"b\.jsonl, line 3: expected one JSON object per line, got an array"):
        read_table(tmp_path / "b.jsonl", "t")


@pytest.mark.parametrize("name", ["reviews_indent.json", "reviews_oneline.json", "reviews_separators_lines.json"])
def test_json_arrays_of_records_and_json_lines_named_json_load(name):
    task = one(INPUTS, name)
    assert task.label_names == ("neg", "pos") and task.stats["rows_read"] == 40


def test_json_array_rows_are_located_by_item_and_line():
    frame = read_table(INPUTS / "reviews_indent.json", "t")
    assert list(frame.index[:3]) == ["item 1 (line 2)", "item 2 (line 6)", "item 3 (line 10)"]


@pytest.mark.parametrize(
    "document, layout, fix",
    [
        (None, "a dict of columns", 'orient="records"'),  # reviews_pandas.json
        (
            {"data": [{"text": "a", "label": "x"}]},
            "records wrapped in an object under the key 'data'",
            "Write the array under 'data' as the whole file",
        ),
        ({"columns": ["text", "label"], "index": [0], "data": [["a", "x"]]}, 'orient="split"', 'orient="records"'),
        ({"0": {"text": "a", "label": "x"}, "1": {"text": "b", "label": "y"}}, 'orient="index"', 'orient="records"'),
        ({"text": ["a", "b"], "label": ["x", "y"]}, "an object of column lists", 'orient="records"'),
        ([["a", "x"], ["b", "y"]], "item 1 is an array, not an object", "write one object per row"),
    ],
)
def test_other_json_layouts_are_named_with_what_to_write(tmp_path, document, layout, fix):
    path = INPUTS / "reviews_pandas.json"
    if document is not None:
        path = tmp_path / "a.json"
        path.write_text(json.dumps(document))
    with pytest.raises(TaskDataError) as error:
        read_table(path, "t")
    assert layout in str(error.value) and fix in str(error.value)


def test_invalid_json_names_line_and_column(tmp_path):
    (tmp_path / "a.json").write_text('[\n  {"text": "a", "label": "x"},\n  {"text": "b" "label": "y"}\n]\n')
    with pytest.raises(TaskDataError, match=r"a\.json, line 3: not valid JSON: Expecting ',' delimiter \(column 16\)"):
        read_table(tmp_path / "a.json", "t")


# -- encodings, line ends, compression ------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json"])
def test_bom_and_crlf_change_nothing(tmp_path, suffix):
    rows = tricky_rows()
    clean = write_every_format(tmp_path, rows)[suffix]
    windows = tmp_path / f"windows{suffix}"
    text = clean.read_text(encoding="utf-8").replace("\r\n", "\n").replace("\n", "\r\n")
    windows.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    same_task(one(tmp_path, windows.name), one(tmp_path, clean.name))


def test_compressed_files_and_encoding_errors(tmp_path):
    shutil.copy(INPUTS / "senti.csv", tmp_path / "senti.csv")
    (tmp_path / "senti.csv.gz").write_bytes(gzip.compress((INPUTS / "senti.csv").read_bytes()))
    same_task(one(tmp_path, "senti.csv.gz"), one(tmp_path, "senti.csv"))
    (tmp_path / "u16.csv").write_bytes("text,label\nhello,pos\n".encode("utf-16"))
    with pytest.raises(TaskDataError, match=r"u16\.csv is UTF-16 .* re-encode it as UTF-8"):
        read_table(tmp_path / "u16.csv", "t")


def test_csv_module_dialect_matches_what_pandas_writes(tmp_path):
    """Texts with quotes, commas and newlines survive a pandas round trip through our CSV reader."""
    texts = ['say "hi"', "a, b", "two\nlines", "trailing space ", "\u2028inside"]
    frame = pd.DataFrame({"text": texts, "label": ["x"] * len(texts)})
    frame.to_csv(tmp_path / "a.csv", index=False, quoting=csv.QUOTE_MINIMAL)
    assert list(read_table(tmp_path / "a.csv", "t")["text"]) == texts
