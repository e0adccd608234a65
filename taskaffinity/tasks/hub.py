"""Tasks named on the Hugging Face hub, through the optional `datasets` package."""

from __future__ import annotations

import pandas as pd

from ..errors import TaskDataError

# Split names tried, in order, for our train / validation / test.
SPLIT_ALIASES = {
    "train": ("train",),
    "validation": ("validation", "valid", "dev", "val"),
    "test": ("test",),
}


def load_hub_splits(task: str, path: str, config: str | None = None) -> dict[str, pd.DataFrame]:
    """Download (or read from the local cache) a hub dataset; return its splits as frames.

    Only splits present in the dataset are returned; ``train`` is required.
    """
    try:
        import datasets
    except ImportError:
        raise TaskDataError(
            f"task '{task}': loading hub dataset '{path}' needs the `datasets` package: "
            "pip install 'taskaffinity[hf]'"
        ) from None
    try:
        dataset = datasets.load_dataset(path, config)
    except Exception as err:  # offline, unknown name, gated: all end here
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TaskDataError(
            f"task '{task}': could not load Hugging Face dataset '{path}'"
            f"{f' (config {config!r})' if config else ''}: {reason}. "
            "If the hub is unreachable, export the data to CSV/JSONL/Parquet and use `file:`."
        ) from None
    splits = {}
    for ours, names in SPLIT_ALIASES.items():
        for name in names:
            if name in dataset:
                splits[ours] = dataset[name].to_pandas()
                break
    if "train" not in splits:
        raise TaskDataError(f"task '{task}': hub dataset '{path}' has no train split (has {list(dataset)})")
    return splits
