"""One section of a report: its text, figures (saved file stems) and tables, or why it is missing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..storage import write_figure


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (file stem, caption)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # (caption, table)
    missing: str | None = None


def save_figure(fig, folder: Path, stem: str) -> str:
    """Save ``fig`` as ``folder/stem.png`` and ``.svg`` and close it; returns ``stem`` (the section's figure key)."""
    import matplotlib.pyplot as plt

    write_figure(folder / f"{stem}.png", fig, dpi=150, bbox_inches="tight")
    write_figure(folder / f"{stem}.svg", fig, bbox_inches="tight")
    plt.close(fig)
    return stem
