"""``taskaffinity sources --method bandit``: rank a target's sources by Thompson sampling (AutoSeM
stage 1) and, given an affinity file, set the affinity ranking beside it with both costs.

Every input (options, config, target, the affinity file, the task data, the model) is checked
before ``--out`` is written; after that each finished seed is written at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from ..errors import ConfigError
from ..selection.settings import CLI_NAMES, BanditSettings, bandit_sources


def cmd_bandit_sources(args, load_store) -> int:
    """``load_store(path, estimator)`` -> (store, estimator, matrix): how ``sources`` reads an affinity file."""
    from ..config import load_config

    if not args.config:
        raise ConfigError(
            "--method bandit needs --config: a run or study YAML listing the target and its candidate sources"
        )
    settings = BanditSettings(
        rounds=args.rounds, steps_per_round=args.steps_per_round, decay=args.decay, seeds=args.seeds
    ).check(CLI_NAMES)
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ConfigError(f"--out {args.out} exists and is not a folder")
    config = load_config(args.config)
    sources = bandit_sources(config, args.target, CLI_NAMES)
    if not 1 <= args.group_size <= len(sources):
        raise ConfigError(
            f"--group-size must be between 1 and {len(sources)} (the sources of {args.target}), got {args.group_size}"
        )
    affinity = _affinity_column(args, sources, load_store) if args.affinity else None

    from ..selection.bandit import rank_sources_bandit, write_bandit
    from ..tasks.prepare import prepare_tasks

    tasks = prepare_tasks(config.tasks, config.data, progress=not args.quiet)  # bad data fails before --out
    if affinity:
        check_same_data(args.affinity, affinity[3], tasks)
    result = rank_sources_bandit(
        config,
        args.target,
        settings,
        tasks=tasks,
        progress=not args.quiet,
        on_seed=(lambda r: write_bandit(r, args.out)) if args.out else None,
    )
    comparison = compare_rankings(result.ranking, affinity[0], affinity[1]) if affinity else None
    if args.out:
        from ..storage import write_json, write_text

        write_json(Path(args.out) / "group.json", group_document(result.ranking, args.target, args.group_size))
        if comparison is not None:
            write_text(Path(args.out) / "comparison.csv", comparison.to_csv(index=False))
        else:  # a comparison left by an earlier run into this folder is not this run's
            (Path(args.out) / "comparison.csv").unlink(missing_ok=True)
    table = result.ranking.head(args.top) if args.top else result.ranking
    if args.json:
        document = {**result.summary, "sources": json.loads(table.to_json(orient="records"))}
        if comparison is not None:
            document["comparison"] = json.loads(comparison.to_json(orient="records"))
            document["affinity"] = affinity[2]
        print(json.dumps(document, indent=2))
        return 0
    print_bandit(result.summary, table, settings)
    if comparison is not None:
        print_comparison(comparison, affinity[2], result.summary)
    if args.out:
        print(
            f"wrote {args.out}/ (ranking.parquet, ranking.csv, ranking_by_seed.parquet, rounds.parquet, "
            f"summary.json, group.json{', comparison.csv' if comparison is not None else ''})"
        )
    return 0


def _affinity_column(args, sources: list[str], load_store) -> tuple[pd.Series, str, dict, dict]:
    """The affinity file's values onto the target (index: source), its estimator, its cost and its metadata."""
    store, estimator, matrix = load_store(args.affinity, args.estimator)
    if args.target not in matrix.columns:
        raise ConfigError(
            f"{args.affinity}: no affinities onto target task '{args.target}' "
            f"(tasks: {', '.join(map(str, matrix.columns))})"
        )
    column = matrix[args.target].drop(args.target, errors="ignore")
    missing = [s for s in sources if s not in column.index]
    if len(sources) - len(missing) < 2:
        raise ConfigError(
            f"{args.affinity}: records fewer than two of the config's sources of {args.target} "
            f"({', '.join(sources)}); the rankings cannot be compared"
        )
    meta = store.metadata
    cost = {
        "estimator": estimator,
        "file": str(args.affinity),
        "training_seconds": meta.get("training_seconds"),
        "recording_seconds": meta.get("stream_seconds" if estimator.startswith("stream_") else "probe_seconds"),
    }
    return column, estimator, cost, meta


def check_same_data(path, metadata: dict, tasks: dict) -> None:
    """Refuse an affinity file whose tasks were recorded on other data than the bandit trains on.

    Compares each task's data fingerprint (``TaskData.fingerprint``: the prepared rows, after
    ``data:`` limits) with the one the affinity run stored; a file without fingerprints (older
    runs, ``AffinityMeter``) is compared with a note that it could not be checked.
    """
    recorded = metadata.get("data_fingerprints")
    if not recorded:
        print(
            f"taskaffinity: note: {path} records no data fingerprints (an older run, or AffinityMeter): the "
            "rankings are compared without checking that they are of the same data",
            file=sys.stderr,
        )
        return
    for name, task in tasks.items():
        mine = task.fingerprint()
        if name in recorded and recorded[name] != mine:
            raise ConfigError(
                f"{path}: task '{name}' was recorded on other data than --config prepares (data "
                f"fingerprint {recorded[name]}, here {mine}): the rankings would be of different "
                "data; compare with an affinity run of this config's data"
            )


def group_document(ranking: pd.DataFrame, target: str, size: int) -> dict:
    """The ``size`` best sources as one group to pre-finetune on for ``target``, in the shape of a
    grouping document, so a study takes it as ``study.groups: FOLDER/group.json``."""
    return {
        "method": "bandit",
        "target": target,
        "groups": [{"tasks": list(ranking["source"].head(size)), "serves": [target]}],
    }


def compare_rankings(ranking: pd.DataFrame, affinity: pd.Series, estimator: str) -> pd.DataFrame:
    """Bandit and affinity ranks of the sources both rank (1 = best), side by side."""
    frame = ranking[["source", "rank", "posterior_mean", "ci_low", "ci_high"]].rename(columns={"rank": "bandit_rank"})
    frame = frame[frame["source"].isin(affinity.index)].copy()
    frame["affinity"] = frame["source"].map(affinity).astype(float)
    frame["affinity_rank"] = frame["affinity"].rank(ascending=False, method="min").astype(int)
    frame["bandit_rank"] = frame["posterior_mean"].rank(ascending=False, method="min").astype(int)
    frame.insert(0, "estimator", estimator)
    return frame.reset_index(drop=True)


def print_bandit(summary: dict, table: pd.DataFrame, settings: BanditSettings) -> None:
    columns = ["rank", "source", "posterior_mean", "ci_low", "ci_high", "pulls", "rewards", "reward_rate"]
    if settings.seeds > 1:
        columns += ["top1_share", "seed_sd"]
    print(
        f"sources ranked by bandit (Thompson sampling, {settings.rounds} rounds x {settings.steps_per_round} steps, "
        f"decay {settings.decay}, {settings.seeds} seed{'s' if settings.seeds > 1 else ''}) onto "
        f"{summary['target']} ({summary['metric']} on validation):"
    )
    print(table[columns].to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    if len(table) > 1:
        first, second = table.iloc[0], table.iloc[1]
        separated = first["ci_low"] > second["ci_high"]
        overlap = "overlap (UNSEPARATED: the top source is not a finding at this budget)"
        print(
            f"{int(settings.credible * 100)}% credible intervals of {first['source']} and {second['source']} "
            f"{'do not overlap' if separated else overlap}"
            + (
                f"; {first['source']} ranks first in {first['top1_share']:.0%} of the seeds"
                if settings.seeds > 1
                else ""
            )
        )
    print(
        f"cost: {summary['wall_seconds']:.1f} s wall ({summary['train_seconds']:.1f} s training, "
        f"{summary['eval_seconds']:.1f} s in {summary['evaluations']} target evaluations, "
        f"{summary['examples']} training examples)"
    )


def print_comparison(comparison: pd.DataFrame, cost: dict, summary: dict) -> None:
    from scipy.stats import spearmanr

    print(f"bandit vs {cost['estimator']} affinity ranking ({cost['file']}):")
    print(comparison.drop(columns="estimator").to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    rho = spearmanr(comparison["posterior_mean"], comparison["affinity"]).statistic if len(comparison) > 2 else None
    bandit_top = set(comparison.loc[comparison["bandit_rank"] == 1, "source"])
    affinity_top = set(comparison.loc[comparison["affinity_rank"] == 1, "source"])
    if len(bandit_top) > 1 or len(affinity_top) > 1:  # a tie has no top source to agree on
        tied = ", ".join(sorted(bandit_top if len(bandit_top) > 1 else affinity_top))
        verdict = f"no single top source ({'bandit' if len(bandit_top) > 1 else 'affinity'} tie: {tied})"
    else:
        verdict = f"top source {'agrees' if bandit_top == affinity_top else 'differs'}"
    print(verdict + (f"; Spearman rho {rho:.2f} over {len(comparison)} sources" if rho is not None else ""))
    spent = [
        f"{name} {cost[key]:.1f} s"
        for name, key in (("training", "training_seconds"), ("recording", "recording_seconds"))
        if cost.get(key) is not None
    ]
    print(
        f"cost: bandit {summary['wall_seconds']:.1f} s wall for one target; affinity run "
        f"{', '.join(spent) or 'not recorded'} for every target at once"
    )
