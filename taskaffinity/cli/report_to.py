"""``--report-to``: where ``train``, ``affinity``, ``run`` and ``study run`` also log (docs/tracking.md)."""

from __future__ import annotations

import argparse
import dataclasses

from ..errors import ConfigError
from ..tracking.settings import check_installed, parse_report_to


def add_report_to(parser: argparse.ArgumentParser) -> None:
    """``--report-to none|tensorboard|mlflow|wandb`` (several: space- or comma-separated): overrides
    ``tracking.report_to`` (docs/tracking.md)."""
    parser.add_argument(
        "--report-to",
        nargs="+",
        type=_report_to,
        metavar="BACKEND",
        help="also log the run to tensorboard, mlflow and/or wandb (default: the config's "
        "tracking.report_to, else none)",
    )


def _report_to(value: str) -> tuple[str, ...]:
    try:
        backends = parse_report_to(value, what="--report-to")
        check_installed(backends, what="--report-to")
    except ConfigError as err:  # argparse prints it with the usage line and exits with status 2
        raise argparse.ArgumentTypeError(str(err).removeprefix("--report-to: ")) from None
    return backends


def with_report_to(config, args):
    """``config`` with ``--report-to`` applied (unchanged without the option)."""
    chosen = getattr(args, "report_to", None)
    if chosen is None:
        return config
    if any(not group for group in chosen) and any(chosen):
        raise ConfigError("--report-to: 'none' cannot be combined with a back-end")
    backends = tuple(dict.fromkeys(b for group in chosen for b in group))
    return dataclasses.replace(config, tracking=dataclasses.replace(config.tracking, report_to=backends))
