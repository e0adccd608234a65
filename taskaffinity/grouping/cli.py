"""The ``group`` and ``sources`` subcommands; ``add_commands(subparsers)`` registers them.

Handlers take the parsed ``args`` and return an exit status; user errors are
raised as :class:`~taskaffinity.errors.TaskAffinityError` (the main CLI prints
them and exits 2).
"""

from __future__ import annotations

import json

from ._base import GroupingError

METHOD_NAMES = ("tag", "hierarchical", "spectral", "louvain")


def add_commands(subparsers) -> None:
    """Register ``group`` and ``sources`` on an argparse subparsers object."""
    group = subparsers.add_parser("group", help="group tasks to train together from an affinity file")
    group.add_argument("affinity", help="affinity.parquet written by an affinity run")
    group.add_argument("--estimator", help="affinity estimator (default: the only one recorded)")
    group.add_argument("--method", default="tag", help="tag (default), hierarchical, spectral or louvain")
    group.add_argument("--k", type=int, required=True, help="number of groups (at most)")
    group.add_argument("--solver", default="auto", help="tag only: auto (default), exact or heuristic")
    group.add_argument("--singleton-score", type=float, default=0.0,
                       help="tag score of a task alone (default 0: no transfer)")
    group.add_argument("--seed", type=int, default=0, help="seed of randomised methods")
    group.add_argument("--json", action="store_true", help="print the JSON result document")
    group.add_argument("--out", help="also write the document to FILE (.json, .yaml or .yml)")
    group.set_defaults(handler=cmd_group)

    sources = subparsers.add_parser("sources", help="rank source tasks by their affinity onto a target")
    sources.add_argument("affinity", help="affinity.parquet written by an affinity run")
    sources.add_argument("--target", required=True, help="target task")
    sources.add_argument("--top", type=int, help="show the N best sources")
    sources.add_argument("--estimator", help="affinity estimator (default: the only one recorded)")
    sources.add_argument("--json", action="store_true", help="print a JSON list of objects")
    sources.set_defaults(handler=cmd_sources)


def _load(path: str, estimator: str | None):
    from ..affinity.store import AffinityStore

    store = AffinityStore.load(path)
    if estimator is None:
        names = store.estimators
        if len(names) != 1:
            raise GroupingError(f"{path} records {len(names)} estimators ({', '.join(names) or 'none'}); "
                                "choose one with --estimator")
        estimator = names[0]
    return store, estimator, store.matrix(estimator)  # unknown estimator: the store raises


def _settings(args) -> dict:
    settings = {"k": args.k, "singleton_score": args.singleton_score}
    if args.method == "tag":
        settings.update(solver=args.solver, seed=args.seed)
    elif args.method in ("spectral", "louvain"):
        settings["seed"] = args.seed
    return settings


def cmd_group(args) -> int:
    from . import make_grouping
    from .output import grouping_document, write_document

    if args.method not in METHOD_NAMES:
        raise GroupingError(f"unknown grouping method '{args.method}' (choose from {', '.join(METHOD_NAMES)})")
    if args.method != "tag" and args.solver != "auto":
        raise GroupingError("--solver applies to --method tag only")
    _, estimator, matrix = _load(args.affinity, args.estimator)
    grouping = make_grouping(args.method, **_settings(args)).fit(matrix)
    document = grouping_document(grouping, estimator=estimator)
    if args.out:
        write_document(args.out, document)
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    print(f"{args.method} grouping of {len(grouping.tasks_)} tasks, estimator {estimator}, k = {args.k}: "
          f"objective {grouping.objective_:.4g}")
    width = max(len("tasks"), *(len(", ".join(g)) for g in grouping.groups_))
    print(f"{'group':>5}  {'score':>9}  {'tasks':<{width}}  serves")
    for i, (g, s, v) in enumerate(zip(grouping.groups_, grouping.scores_, grouping.serves_)):
        print(f"{i:>5}  {s:>9.4g}  {', '.join(g):<{width}}  {', '.join(v)}")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def cmd_sources(args) -> int:
    from .sources import rank_sources

    store, estimator, matrix = _load(args.affinity, args.estimator)
    if args.target not in list(matrix.columns):
        raise GroupingError(f"unknown target task '{args.target}' (tasks: {', '.join(map(str, matrix.columns))})")
    steps = store.select(estimator)["step"].nunique()
    table = rank_sources(matrix, args.target, top=args.top, store=store if steps > 1 else None,
                         estimator=estimator)
    if args.json:
        records = json.loads(table.to_json(orient="records"))
        print(json.dumps({"target": args.target, "estimator": estimator, "sources": records}, indent=2))
    else:
        print(f"sources ranked by {estimator} affinity onto {args.target}:")
        print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    return 0
