"""Command line: a thin front over :mod:`taskaffinity.api`, studies and reports.

User errors print one line naming the culprit and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys

from ..errors import TaskAffinityError
from ..training.distributed import current as current_process
from ..training.distributed import shutdown
from .options import Parser
from .report_to import add_report_to, with_report_to


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # our own notes (texts shared between tasks, a pad token chosen, a resumed run) are part of the run log
    logging.getLogger("taskaffinity").setLevel(logging.INFO)
    try:
        return args.handler(args) or 0
    except TaskAffinityError as err:
        print(f"taskaffinity: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("taskaffinity: interrupted; finished work is saved, re-run the same command to resume", file=sys.stderr)
        return 130
    finally:
        shutdown()  # under torchrun: leave the process group cleanly


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="taskaffinity", description="Which tasks should be trained together?")
    commands = parser.add_subparsers(dest="command", required=True)

    tasks = commands.add_parser("tasks", help="the built-in catalog of real tasks")
    tasks_commands = tasks.add_subparsers(dest="tasks_command", required=True)
    listing = tasks_commands.add_parser("list", help="list catalog tasks with their split sizes")
    listing.add_argument("--json", action="store_true", help="print a JSON list of objects")
    listing.set_defaults(handler=cmd_tasks_list)

    train = commands.add_parser("train", help="joint multi-task training of a study config")
    _add_run_options(train)
    train.set_defaults(handler=cmd_train)

    affinity = commands.add_parser("affinity", help="joint run that records inter-task affinities")
    _add_run_options(affinity)
    affinity.set_defaults(handler=cmd_affinity)

    from .grouping import add_commands as add_grouping_commands

    add_grouping_commands(commands)
    from .study import add_commands as add_study_commands

    add_study_commands(commands)

    report = commands.add_parser("report", help="write report.html and report.md for a run or study folder")
    report.add_argument("folder", help="output folder of `run`, `study run` or `affinity`")
    report.set_defaults(handler=cmd_report)

    pipeline = commands.add_parser("run", help="the whole pipeline: affinity -> groups -> study -> report")
    pipeline.add_argument("config", help="study YAML with a 'study:' section")
    pipeline.add_argument("--out", required=True, help="output folder (re-use it to resume)")
    pipeline.add_argument("--quiet", action="store_true", help="no progress bars")
    add_report_to(pipeline)
    pipeline.set_defaults(handler=cmd_run)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="study YAML")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--no-resume", action="store_true", help="ignore checkpoints in --out and start over")
    parser.add_argument("--device", help="override training.device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--steps", type=int, help="override training.steps")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--verbose", action="store_true", help="log more")
    add_report_to(parser)


def cmd_tasks_list(args) -> int:
    from ..tasks.listing import catalog_table

    logging.getLogger("taskaffinity.tasks").setLevel(logging.WARNING)  # the table has the shared-text counts
    table, missing = catalog_table()
    if args.json:
        print(json.dumps(table.to_dict("records"), indent=2))
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(table.drop(columns=["description"]).to_string(index=False))
    for name, hint in missing.items():
        print(f"taskaffinity: task '{name}' unavailable: {hint}", file=sys.stderr)
    return 0


def load_run_config(args):
    """The study config with command-line overrides applied."""
    from ..config import load_config
    from ..errors import ConfigError

    config = load_config(args.config)
    overrides = {}
    if args.device:
        overrides["device"] = args.device
    if args.steps is not None:
        if args.steps < 1:
            raise ConfigError(f"--steps must be >= 1, got {args.steps}")
        overrides["steps"] = args.steps
    if overrides:
        config = dataclasses.replace(config, training=dataclasses.replace(config.training, **overrides))
    return with_report_to(config, args)


def cmd_train(args) -> int:
    from ..api import train_joint_model

    result = train_joint_model(load_run_config(args), args.out, resume=not args.no_resume, progress=not args.quiet)
    if not current_process().main:  # under torchrun, rank 0 reports
        return 0
    primary = result.metrics[result.metrics["primary"]]
    print(primary[["task", "metric", "value", "baseline"]].to_string(index=False, float_format="%.3f"))
    print(f"wrote {result.out_dir}/ (eval.parquet, steps.parquet, summary.json, checkpoints/)")
    return 0


def cmd_affinity(args) -> int:
    from ..api import record_affinity

    result = record_affinity(load_run_config(args), args.out, resume=not args.no_resume, progress=not args.quiet)
    if not current_process().main:  # under torchrun, rank 0 reports
        return 0
    from ..affinity.estimators import report_order

    meta = result.store.metadata
    tasks = meta.get("tasks", [])
    for estimator in report_order(result.store.estimators)[:1] if len(tasks) <= 12 else ():  # else see the CSVs
        print(f"{estimator} (rows: source, columns: target)")
        print(result.store.matrix(estimator).to_string(float_format=lambda v: f"{v:.2e}"))
    print_trust(result.fidelity)
    if meta.get("overhead"):
        print(
            f"recording cost: {meta['overhead']:.2f}x the same steps without recorders (probes "
            f"{meta.get('probe_seconds') or 0:.1f} s, "
            + (
                f"further held-out draws {meta['draws_probe_seconds']:.1f} s, "
                if meta.get("draws_probe_seconds")
                else ""
            )
            + f"streams {meta.get('stream_seconds') or 0:.1f} s of "
            f"{meta['training_seconds']:.1f} s of training steps)"
        )
    draws = result.fidelity.get("draws") or {}
    if draws:
        seeds = next(iter(draws.values()))["probe_seeds"]
        between = {e: _number(v["within_target_between_draws"]) for e, v in draws.items()}
        missing = " (n/a: fewer than 3 sources per target)" if "n/a" in between.values() else ""
        print(
            f"{len(seeds)} held-out draws (probe seeds {', '.join(map(str, seeds))}; the further ones in "
            f"{result.out_dir}/draws/): within-target Spearman between draws "
            + ", ".join(f"{e} {v}" for e, v in between.items())
            + missing
        )
    print(f"wrote {result.out_dir}/ (affinity.parquet, matrix_*.csv, summary_*.csv, fidelity.json, heatmap_*.png)")
    return 0


def _number(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.2f}"


def print_trust(report: dict) -> None:
    """How far to trust each matrix (reliability, significant pairs) and how estimators agree."""
    from ..affinity.reliability import reliability_table, stream_caveat

    table = reliability_table(report)
    if not table.empty:
        print(
            "reliability of each run-averaged matrix (split-half, Spearman-Brown; within_target: how each "
            "target ranks its sources; significant_share: pairs whose interval excludes 0):"
        )
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        caveat = stream_caveat(table["estimator"])
        if caveat:
            print(caveat)
    for pair, values in report.get("agreement", {}).items():
        run = values["run_average"]
        limit = f" (ceiling {values['ceiling']:.2f})" if "ceiling" in values else ""
        print(
            f"agreement {pair}: Pearson {run['pearson']:.3f}, Spearman {run['spearman']:.3f}{limit}, "
            f"sign agreement {run['sign_agreement']:.2f}"
        )


def cmd_report(args) -> int:
    from pathlib import Path

    from ..errors import ConfigError
    from ..report.assemble import build_report

    if not Path(args.folder).is_dir():
        raise ConfigError(f"report: {args.folder} is not a folder")
    print(f"wrote {build_report(args.folder)} and report.md")
    return 0


def cmd_run(args) -> int:
    from ..report.assemble import build_report
    from .study import cmd_run as run_study_command

    status = run_study_command(args)
    print(f"wrote {build_report(args.out)} and report.md")
    return status


if __name__ == "__main__":
    sys.exit(main())
