"""TensorBoard: event files written with ``torch.utils.tensorboard.SummaryWriter`` (extra ``tensorboard``).

Scalars are TensorBoard scalars; parameters are a text table and, with the final numbers,
an HParams session (the HParams tab compares runs of one log directory); figures are images.
A resumed run purges the events after its checkpoint's step, so the curves do not double back.
"""

from __future__ import annotations

from pathlib import Path

from .base import Tracker
from .settings import missing_backend


def summary_writer(logdir: str | Path, *, purge_step: int | None = None):
    """A SummaryWriter on ``logdir``; ConfigError naming the extra when TensorBoard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise missing_backend("tensorboard") from None
    return SummaryWriter(log_dir=str(logdir), purge_step=purge_step)


class TensorBoardTracker(Tracker):
    """Logs to a ``SummaryWriter`` (torch's or tensorboardX's). ``owns``: close it at the end."""

    backend = "tensorboard"

    def __init__(self, writer, *, owns: bool = False):
        self.writer, self.owns = writer, owns
        self.params: dict = {}
        self.last_step = 0

    @classmethod
    def open(cls, spec, resume: dict | None = None) -> TensorBoardTracker:
        purge = resume.get("next_step") if resume else None
        return cls(summary_writer(spec.tensorboard_dir, purge_step=purge), owns=True)

    def log_scalars(self, values, step):
        for key, value in values.items():
            self.writer.add_scalar(key, float(value), global_step=step)
        self.last_step = max(self.last_step, step)

    def log_params(self, params):
        self.params.update(params)
        rows = "\n".join(f"| {k} | {_cell(v)} |" for k, v in params.items())
        self.writer.add_text("params", "| parameter | value |\n|---|---|\n" + rows, global_step=0)

    def log_image(self, name, image, step=None):
        self.writer.add_image(name, image, global_step=self.last_step if step is None else step, dataformats="HWC")

    def log_summary(self, values):
        from torch.utils.tensorboard.summary import hparams

        self.log_scalars(values, self.last_step)
        if self.params:  # the HParams tab: this run's parameters beside its final numbers
            for summary in hparams({k: _hparam(v) for k, v in self.params.items()}, dict(values)):
                self.writer.file_writer.add_summary(summary)

    def state(self):
        return {"next_step": self.last_step + 1}

    def close(self, failed=False):
        self.writer.flush()
        if self.owns:
            self.writer.close()


def _hparam(value):
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
