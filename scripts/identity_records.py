"""Records of two reference runs, to show a refactor changes no number.

    python scripts/identity_records.py record OUT        # ~5 min on 2 CPU cores
    python scripts/identity_records.py compare OUT_A OUT_B

``record`` writes OUT/known (the joint trainer with every default recorder: the known-answer
affinity run of tests/affinity/test_known_answers.py at a shorter length, with evaluations) and
OUT/digits (``AffinityMeter`` in a plain PyTorch loop: examples/digits_affinity.py). ``compare``
checks every Parquet file exactly (columns of seconds and times aside) and every CSV byte for byte;
it exits 1 naming the first file that differs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def record(out: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "affinity"))
    from test_known_answers import SETTLE, TASKS

    from taskaffinity.affinity.run import record_affinity
    from taskaffinity.config import config_from_dict

    config = config_from_dict(
        {
            "seed": 0,
            "tasks": TASKS,
            "model": {"max_length": 24},
            "data": {"max_train": 600, "max_eval": 100, "shared_inputs": "one_task"},
            "training": {
                "steps": SETTLE + 12,
                "batch_size": 40,
                "head_warmup_steps": 30,
                "head_lr": 3e-3,
                "lr": 5e-5,
                "eval_every": 10,
                "checkpoint_every": 1000,
            },
            "affinity": {"probe_every": 2, "probe_batch_size": 32, "stream_window": 2},
        },
        where="<identity records>",
    )
    record_affinity(config, out / "known", progress=False)
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "digits_affinity.py"), "--out", str(out / "digits")], check=True
    )


def compare(a: Path, b: Path) -> int:
    files = sorted(a.rglob("*.parquet")) + sorted(a.rglob("*.csv"))
    for f in files:
        other = b / f.relative_to(a)
        if not other.is_file():
            print(f"{other}: missing")
            return 1
        if f.suffix == ".csv":
            if f.read_bytes() != other.read_bytes():
                print(f"{f.relative_to(a)}: differs")
                return 1
            continue
        x, y = pd.read_parquet(f), pd.read_parquet(other)
        timing = [c for c in x.columns if "second" in c or "time" in c]
        try:
            pd.testing.assert_frame_equal(
                x.drop(columns=timing), y.drop(columns=timing, errors="ignore"), check_exact=True
            )
        except AssertionError as err:
            print(f"{f.relative_to(a)}: differs\n{err}")
            return 1
    print(f"identical: {len(files)} files")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "record":
        record(Path(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)
