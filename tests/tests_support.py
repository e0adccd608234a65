"""Small helpers shared by tests."""

import importlib.util
from pathlib import Path

from taskaffinity.training.callbacks import Callback


def load_script(path: Path):
    """A script that is not a package module (bench/, examples/) imported as a module, by its path."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class StopAfter(Callback):
    """Interrupts training after a given step, as Ctrl-C would."""

    def __init__(self, step: int):
        self.step = step

    def on_after_optimizer_step(self, trainer, step, losses):
        if step == self.step:
            raise KeyboardInterrupt
