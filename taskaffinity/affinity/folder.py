"""An affinity folder owned through a manifest: a save replaces exactly the files it wrote before.

Saving into a folder a run used before would otherwise leave that run's matrices,
summaries and heatmaps beside the new ones (a 4-task matrix next to a 3-task store).
``OUT/manifest.json`` lists the files the last save wrote. A new save

1. refuses, before writing anything, when the folder holds files of an affinity folder
   (``affinity.parquet``, ``fidelity.json``, ``matrix_*.csv``, ``summary_*.csv``,
   ``heatmap_*.png``) that no manifest lists: another run's, or a copy;
2. claims old and new files in the manifest (a crash leaves nothing unlisted), removes
   the old ones, writes the new ones, and lists only those.

Files of other names (a README, checkpoints) are left alone.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

from ..errors import TaskAffinityError
from ..storage import write_json

MANIFEST = "manifest.json"
PATTERNS = ("affinity.parquet", "fidelity.json", "matrix_*.csv", "summary_*.csv", "heatmap_*.png")


def affinity_file(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in PATTERNS)


def owned_files(folder: Path, where: str) -> set[str]:
    """The files the folder's manifest lists (empty without one); refuses an unreadable manifest."""
    path = folder / MANIFEST
    if not path.exists():
        return set()
    try:
        files = json.loads(path.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        raise TaskAffinityError(
            f"{where}: {path} is not a manifest written by taskaffinity (no 'files' list); "
            "save into another folder, or remove it"
        ) from None
    # only plain names of affinity files: a manifest never makes a save delete anything else
    return {str(f) for f in files if affinity_file(str(f)) and Path(str(f)).name == str(f)}


def prepare(folder: str | Path, files: list[str], *, where: str) -> Path:
    """Check ``folder`` for the save of ``files``, claim them and remove the previous save's (step 2 above)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise TaskAffinityError(f"{where}: {folder} exists and is not a folder")
    owned = owned_files(folder, where) if folder.is_dir() else set()
    foreign = (
        sorted(p.name for p in folder.iterdir() if affinity_file(p.name) and p.name not in owned)
        if folder.is_dir()
        else []
    )
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise TaskAffinityError(
            f"{where}: {folder} already holds {foreign[0]}{more}, not written by an earlier save "
            f"into it ({MANIFEST} does not list them): the new files would lie beside another "
            "run's. Save into a new or empty folder, or remove those files"
        )
    write_json(folder / MANIFEST, {"files": sorted(owned | set(files)), "complete": False})
    for name in owned:
        (folder / name).unlink(missing_ok=True)
    return folder


def finish(folder: Path, files: list[str]) -> None:
    """List exactly ``files``: the save is complete."""
    write_json(folder / MANIFEST, {"files": sorted(files), "complete": True})
