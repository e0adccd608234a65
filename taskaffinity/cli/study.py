"""The ``study run`` and ``study status`` subcommands; ``add_commands(subparsers)`` registers them."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError
from .report_to import add_report_to, with_report_to


def add_commands(subparsers) -> None:
    study = subparsers.add_parser("study", help="subset pre-finetuning studies (combinations, scaling, ...)")
    commands = study.add_subparsers(dest="study_command", required=True)
    run = commands.add_parser("run", help="run (or resume) every experiment of a study YAML")
    run.add_argument("config", help="study YAML with a 'study:' section")
    run.add_argument("--out", required=True, help="output folder (re-use it to resume)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    add_report_to(run)
    run.set_defaults(handler=cmd_run)
    status = commands.add_parser("status", help="done / pending / failed per experiment of a study folder")
    status.add_argument("folder", help="output folder of `study run`")
    status.add_argument("--json", action="store_true", help="print a JSON list of objects")
    status.set_defaults(handler=cmd_status)


def cmd_run(args) -> int:
    import dataclasses

    from ..api import run_study
    from ..study.settings import load_study

    study = load_study(args.config)
    study = dataclasses.replace(study, config=with_report_to(study.config, args))
    result = run_study(study, args.out, progress=not args.quiet)
    _print_status(result.status)
    table = result.tables.get("transfer")
    if table is None:
        table = result.tables.get("summary", result.tables.get("arms"))
    if table is not None:
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {result.out_dir}/ (results.parquet, tables/, summary.json, plan.parquet)")
    return 1 if (result.status["status"] == "failed").any() else 0


def cmd_status(args) -> int:
    from ..study.status import study_status

    if not (Path(args.folder) / "jobs.parquet").is_file():
        raise ConfigError(f"{args.folder} is not a study folder (no jobs.parquet): run `taskaffinity study run` first")
    status = study_status(args.folder)
    if args.json:
        print(json.dumps(status.to_dict("records"), indent=2))
    else:
        _print_status(status)
        failed = status[status["status"] == "failed"]
        for row in failed.itertuples():
            print(f"failed {row.experiment_id} ({row.job_type} {row.tasks}): {row.error}")
    return 0


def _print_status(status) -> None:
    counts = status["status"].value_counts()
    print(", ".join(f"{counts.get(s, 0)} {s}" for s in ("done", "pending", "failed")) + f" of {len(status)} jobs")
