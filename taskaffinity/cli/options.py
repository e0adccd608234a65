"""argparse with the CLI's error form, and option types that refuse what ``float`` lets through."""

from __future__ import annotations

import argparse
import math


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors (a bad value, a missing option) are one line and exit status 2,
    like every other user error of the CLI, instead of the usage block."""

    def error(self, message: str):
        self.exit(2, f"taskaffinity: error: {message} (see: {self.prog} --help)\n")


def finite_float(text: str) -> float:
    """A float option: ``nan`` and ``inf`` parse as floats but are no usable setting."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got '{text}'")
    return value
