"""Earlier import paths of the modules that moved into ``training/``, ``model/`` and ``loops/``.

``taskaffinity.meter``, ``taskaffinity.lightning`` and ``taskaffinity.hf_trainer`` are the any-loop
fronts' short names (``taskaffinity.loops.*`` is their home and what the docs show); they import
without a warning. Every other earlier path (``taskaffinity.train``,
``taskaffinity.callbacks``, ...) still imports the same module object, with a DeprecationWarning
that names its home (type checkers, which do not run the finder, see only the homes). A
meta-path finder does this instead of one stub file per old name, so the
top of the package lists only the pipeline's stages.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

SHORT = {"meter": "loops.meter", "lightning": "loops.lightning", "hf_trainer": "loops.hf_trainer"}
MOVED = {
    "train": "training.loop",
    "joint": "training.joint",
    "sampling": "training.sampling",
    "weighting": "training.weighting",
    "aggregation": "training.aggregation",
    "batching": "training.batching",
    "checkpoint": "training.checkpoint",
    "task_gradients": "training.task_gradients",
    "distributed": "training.distributed",
    "callbacks": "training.callbacks",
    "evaluate": "training.evaluate",
    "heads": "model.heads",
    "encoders": "model.encoders",
    "fronts": "loops.fronts",
    "meter_gradients": "loops.meter_gradients",
    "meter_losses": "loops.meter_losses",
    "meter_scaling": "loops.meter_scaling",
    "meter_setup": "loops.meter_setup",
}
PACKAGE = __name__.rsplit(".", 1)[0]


def _home(fullname: str) -> tuple[str, bool] | None:
    """(the module's home, whether the old name is deprecated), or None for any other name."""
    if not fullname.startswith(PACKAGE + "."):
        return None
    name = fullname[len(PACKAGE) + 1 :]
    if name in SHORT:
        return f"{PACKAGE}.{SHORT[name]}", False
    if name in MOVED:
        return f"{PACKAGE}.{MOVED[name]}", True
    return None


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        return importlib.machinery.ModuleSpec(fullname, self) if _home(fullname) else None

    def create_module(self, spec):
        return None  # a blank module, replaced by the real one in exec_module

    def exec_module(self, module) -> None:
        home, deprecated = _home(module.__name__)
        if deprecated:
            # stacklevel 2: the importing line (warnings skips the import machinery's own frames)
            warnings.warn(
                f"{module.__name__} moved to {home}; the old path will be removed in taskaffinity 0.3",
                DeprecationWarning,
                stacklevel=2,
            )
        # the import system returns what sys.modules holds after exec_module: the real module
        sys.modules[module.__name__] = importlib.import_module(home)


def install() -> None:
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
