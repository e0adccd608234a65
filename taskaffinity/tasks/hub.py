"""Tasks named on the Hugging Face hub, through the optional `datasets` package."""

from __future__ import annotations

import logging

import pandas as pd

from ..errors import TaskDataError

log = logging.getLogger(__name__)

# Split names tried, in order, for our train / validation / test.
SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "valid", "dev", "val"), "test": ("test",)}


def load_hub_splits(
    task: str, path: str, config: str | None = None, *, label_field: str = "label"
) -> dict[str, pd.DataFrame]:
    """Download (or read from the local cache) a hub dataset; return its labelled splits as frames.

    ``train`` is required. A ``ClassLabel`` column becomes its class names (``negative``,
    not ``0``). A split without labels (every label -1 or null, as GLUE's test splits)
    is left out, with a log line; the splits left out are then carved from train.
    """
    try:
        import datasets
    except ImportError:
        raise TaskDataError(
            f"task '{task}': loading hub dataset '{path}' needs the `datasets` package: pip install 'taskaffinity[hf]'"
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
        name = next((n for n in names if n in dataset), None)
        if name is None:
            continue
        frame = _labelled_frame(dataset[name], label_field)
        if frame is None:
            log.info("task '%s': split '%s' of hub dataset '%s' has no labels: not used", task, name, path)
            continue
        splits[ours] = frame
    if "train" not in splits:
        raise TaskDataError(f"task '{task}': hub dataset '{path}' has no labelled train split (has {list(dataset)})")
    return splits


def _labelled_frame(split, label_field: str) -> pd.DataFrame | None:
    """The split as a frame with class names for ClassLabel ids; None if no row has a label."""
    frame = split.to_pandas()
    if label_field not in frame.columns:
        return frame  # the column check names what is missing
    feature = split.features.get(label_field)
    labels = frame[label_field]
    if hasattr(feature, "int2str") and hasattr(feature, "names"):  # datasets.ClassLabel
        # -1 marks an unlabelled row (GLUE test splits); it is no class
        labels = labels.map(lambda v: None if v is None or pd.isna(v) or int(v) < 0 else feature.names[int(v)])
        frame = frame.assign(**{label_field: labels.astype(object)})
    if frame[label_field].isna().all():
        return None
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="row")
    return frame
