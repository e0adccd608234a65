"""The catalog as a table: every built-in task with its split sizes after preparation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import MissingSourceError
from .catalog import CATALOG, available, get_entry
from .data_config import DataConfig
from .prepare import prepare_tasks
from .registry import task_spec_from_entry
from .table import task_table


def catalog_table(data: DataConfig | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Prepared sizes of every installed catalog task, and install hints of the missing ones.

    De-duplication runs over the whole catalog, as in a study that uses every task.
    A task whose source is missing is reported and the others are still listed.
    """
    data = data if data is not None else DataConfig()
    missing = {n: get_entry(n).install_hint for n in CATALOG if not available(n)}
    while True:
        specs = [task_spec_from_entry(n, where="catalog", base_dir=Path(".")) for n in CATALOG if n not in missing]
        try:
            tasks = prepare_tasks(specs, data, progress=False)
            break
        except MissingSourceError as err:  # reported installed, but files are absent
            missing[err.task] = err.install_hint
    table = task_table(tasks).drop(columns="data_fingerprint")
    table["licence"] = [get_entry(n).licence for n in table["name"]]
    table["description"] = [get_entry(n).description for n in table["name"]]
    return table, missing
