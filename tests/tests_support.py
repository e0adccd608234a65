"""Small helpers shared by tests."""

from taskaffinity.training.callbacks import Callback


class StopAfter(Callback):
    """Interrupts training after a given step, as Ctrl-C would."""

    def __init__(self, step: int):
        self.step = step

    def on_after_optimizer_step(self, trainer, step, losses):
        if step == self.step:
            raise KeyboardInterrupt
