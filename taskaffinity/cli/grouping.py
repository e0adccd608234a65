"""The ``group`` and ``sources`` subcommands; ``add_commands(subparsers)`` registers them.

Handlers take the parsed ``args`` and return an exit status; user errors are
raised as :class:`~taskaffinity.errors.TaskAffinityError` (the main CLI prints
them and exits 2).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..affinity.estimators import ESTIMATORS, STREAMED
from ..errors import ConfigError
from ..grouping import METHODS, GroupingError
from ..selection.settings import BanditSettings
from ..study.choose import store_grouping
from .options import finite_float

METHOD_NAMES = tuple(METHODS)
ESTIMATOR_HELP = f"affinity estimator: {', '.join(ESTIMATORS)} (default: the only one recorded)"


def add_commands(subparsers) -> None:
    """Register ``group`` and ``sources`` on an argparse subparsers object."""
    group = subparsers.add_parser("group", help="group tasks to train together from an affinity file")
    group.add_argument("affinity", help="affinity.parquet written by an affinity run")
    group.add_argument("--estimator", help=ESTIMATOR_HELP)
    group.add_argument("--method", default="tag", help="tag (default), hierarchical, spectral or louvain")
    group.add_argument("--k", type=int, required=True, help="number of groups (at most)")
    group.add_argument("--solver", default="auto", help="tag only: auto (default), exact or heuristic")
    group.add_argument(
        "--singleton-score", type=finite_float, default=0.0, help="tag score of a task alone (default 0: no transfer)"
    )
    group.add_argument(
        "--leave-alone",
        action="store_true",
        help="training alone is a free option: k bounds the groups of two or more tasks, and a "
        "task joins a group only where the group scores it above training alone",
    )
    group.add_argument("--seed", type=int, default=0, help="seed of randomised methods")
    group.add_argument(
        "--bootstrap",
        type=int,
        default=100,
        help="resamples of the probes/windows for the grouping's stability (default 100; 0: none)",
    )
    group.add_argument("--json", action="store_true", help="print the JSON result document")
    group.add_argument("--out", help="also write the document to FILE (.json, .yaml or .yml)")
    group.set_defaults(handler=cmd_group)

    sources = subparsers.add_parser(
        "sources", help="rank source tasks for a target: by affinity (default) or by a bandit that trains (AutoSeM)"
    )
    sources.add_argument(
        "affinity",
        nargs="?",
        help="affinity.parquet written by an affinity run (with --method bandit: optional, "
        "to compare the two rankings)",
    )
    sources.add_argument("--target", help="target task (required)")
    sources.add_argument(
        "--method",
        default="affinity",
        help="affinity (default): the affinity run's ranking; bandit: Thompson sampling over "
        "sources, rewarded by the target's validation gains (AutoSeM stage 1)",
    )
    sources.add_argument("--top", type=int, help="show the N best sources")
    sources.add_argument("--estimator", help=ESTIMATOR_HELP)
    sources.add_argument(
        "--bootstrap",
        type=int,
        default=200,
        help="resamples of the probes/windows for the ranks' stability (default 200; 0: none)",
    )
    sources.add_argument("--json", action="store_true", help="print a JSON list of objects")
    bandit = sources.add_argument_group("--method bandit")
    bandit.add_argument(
        "--config",
        help="run or study YAML: the target and its candidate sources (its other "
        "tasks), model, data and training recipe",
    )
    bandit.add_argument(
        "--rounds", type=int, default=BanditSettings.rounds, help=f"bandit rounds (default {BanditSettings.rounds})"
    )
    bandit.add_argument(
        "--steps-per-round",
        type=int,
        default=BanditSettings.steps_per_round,
        help=f"joint steps on target + chosen source per round (default {BanditSettings.steps_per_round})",
    )
    bandit.add_argument(
        "--decay",
        type=finite_float,
        default=BanditSettings.decay,
        help=f"discount γ of the non-stationary posterior update (default {BanditSettings.decay})",
    )
    bandit.add_argument(
        "--seeds",
        type=int,
        default=BanditSettings.seeds,
        help="independent bandit runs (seed, seed + 1, ...), pooled; their agreement on the top "
        "source is reported (default 1)",
    )
    bandit.add_argument(
        "--group-size",
        type=int,
        default=2,
        help="--out also writes group.json: the N best sources as one group for study.groups (default 2)",
    )
    bandit.add_argument(
        "--out",
        help="write ranking.parquet/.csv, ranking_by_seed.parquet, rounds.parquet, "
        "summary.json, group.json (and comparison.csv) to this folder",
    )
    bandit.add_argument("--quiet", action="store_true", help="no progress bars")
    sources.set_defaults(handler=cmd_sources)


def _load(path: str, estimator: str | None):
    from ..affinity.reliability import stream_caveat
    from ..affinity.store import AffinityStore

    store = AffinityStore.load(path)
    if estimator is None:
        names = store.estimators
        if len(names) != 1:
            raise GroupingError(
                f"{path} records {len(names)} estimators ({', '.join(names) or 'none'}); choose one with --estimator"
            )
        estimator = names[0]
    matrix = store.matrix(estimator)  # unknown estimator: the store raises
    caveat = stream_caveat([estimator])
    if caveat:  # on stderr: --json output stays parseable
        print(f"note: {caveat}", file=sys.stderr)
    return store, estimator, matrix


def _draws(path: str, store, estimator: str) -> list:
    """The run's further held-out draws, where it recorded them beside ``path`` (``affinity.probe_draws``):
    none for a streamed estimator, for a draw's own store, or for a store copied away from its run
    folder; a draw missing, foreign or damaged there (``affinity.run.load_draws``) is a note on stderr
    naming its file, not an error (grouping reads the store)."""
    from ..affinity.run import load_draws
    from ..errors import TaskAffinityError

    meta = store.metadata
    path = Path(path).resolve()
    if (
        (meta.get("probe_draws") or 1) <= 1
        or estimator in STREAMED
        or "draw_of" in meta
        or path.name != "affinity.parquet"
    ):
        return []
    try:
        return load_draws(path.parent)
    except TaskAffinityError as error:
        print(f"note: held-out draws not compared: {error}", file=sys.stderr)
        return []


def _check_bootstrap(n: int) -> None:
    if n < 0:
        raise GroupingError(f"--bootstrap must be >= 0, got {n}")


def cmd_group(args) -> int:
    from ..grouping.output import trust_lines, write_document

    if args.method not in METHOD_NAMES:
        raise GroupingError(f"unknown grouping method '{args.method}' (choose from {', '.join(METHOD_NAMES)})")
    if args.method != "tag" and args.solver != "auto":
        raise GroupingError("--solver applies to --method tag only")
    _check_bootstrap(args.bootstrap)
    if args.out and not str(args.out).lower().endswith((".json", ".yaml", ".yml")):
        raise GroupingError(f"output file must end in .json, .yaml or .yml, got '{args.out}'")
    store, estimator, _ = _load(args.affinity, args.estimator)
    document = store_grouping(
        store,
        estimator,
        args.method,
        n_boot=args.bootstrap,
        seed=args.seed,
        progress=not args.json,
        draws=_draws(args.affinity, store, estimator),
        k=args.k,
        singleton_score=args.singleton_score,
        solver=args.solver,
        leave_alone=args.leave_alone,
    )
    if args.out:
        write_document(args.out, document)
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    groups = document["groups"]
    print(
        f"{args.method} grouping of {len(document['assignment'])} tasks, estimator {estimator}, k = {args.k}: "
        f"objective {document['objective']:.4g}"
    )
    width = max([len("tasks"), *(len(", ".join(g["tasks"])) for g in groups)])
    print(f"{'group':>5}  {'score':>9}  {'tasks':<{width}}  serves")
    for i, g in enumerate(groups):
        print(f"{i:>5}  {g['score']:>9.4g}  {', '.join(g['tasks']):<{width}}  {', '.join(g['serves'])}")
    if not groups:
        print("no group: every task is better trained alone")
    for line in trust_lines(document):
        print(line)
    if args.out:
        print(f"wrote {args.out}")
    return 0


SOURCE_METHODS = ("affinity", "bandit")
BANDIT_ONLY = ("config", "out")


def cmd_sources(args) -> int:
    from ..grouping.sources import rank_sources

    if args.method not in SOURCE_METHODS:
        raise ConfigError(
            f"--method: unknown source ranking method '{args.method}' (choose from {', '.join(SOURCE_METHODS)})"
        )
    if not args.target:
        raise ConfigError("--target is required: the task whose sources are ranked")
    if args.top is not None and args.top < 1:
        raise ConfigError(f"--top must be >= 1, got {args.top}")
    if args.method == "bandit":
        from .bandit import cmd_bandit_sources

        return cmd_bandit_sources(args, _load)
    given = [f"--{name}" for name in BANDIT_ONLY if getattr(args, name)]
    if given:
        raise ConfigError(f"{given[0]} applies to --method bandit only")
    if not args.affinity:
        raise ConfigError("sources --method affinity needs AFFINITY.parquet (written by `taskaffinity affinity`)")
    _check_bootstrap(args.bootstrap)
    store, estimator, matrix = _load(args.affinity, args.estimator)
    if args.target not in list(matrix.columns):
        raise GroupingError(f"unknown target task '{args.target}' (tasks: {', '.join(map(str, matrix.columns))})")
    steps = store.select(estimator)["step"].nunique()
    resamples = store.bootstrap_matrices(estimator, n_boot=args.bootstrap) if steps > 1 and args.bootstrap else None
    table = rank_sources(
        matrix, args.target, top=args.top, store=store if steps > 1 else None, estimator=estimator, resamples=resamples
    )
    if args.json:
        records = json.loads(table.to_json(orient="records"))
        print(json.dumps({"target": args.target, "estimator": estimator, "sources": records}, indent=2))
    else:
        print(f"sources ranked by {estimator} affinity onto {args.target}:")
        print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
        if resamples is not None:
            top = table.iloc[0]
            print(
                f"rank stability over {args.bootstrap} bootstrap resamples of the probes/windows: "
                f"{top['source']} ranks first in {top['top1_share']:.0%} of them"
                f"{'' if top['top1_share'] >= 0.5 else ' (UNSTABLE: the top source is not a finding at this budget)'}"
            )
    return 0
