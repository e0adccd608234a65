"""Group gains on MTG-Net's MIMIC-III collection: pair averages vs surrogates, on held-out subsets.

MTG-Net (Song et al. 2022, NeurIPS; github.com/ShawnKS/MTG-Net) trained 3,185 subsets of 27
MIMIC-III tasks (every task alone, all 351 pairs, 2,806 larger random subsets, all 27 together)
and recorded each member's gain over its single-task model (``gain_collection/collected_gain/
mimic27``: ``mimic_x.csv`` subsets x tasks 0/1, ``mimic_y_test.csv`` / ``mimic_y_valid.csv``
members' gains on the test / validation split, space-separated). The repository has no licence
file, so its data stay outside this project: pass the folder.

Per draw, ``--train`` subsets of size >= ``--min-size`` are sampled; the surrogates are fitted on
them and every other subset of that size is held out. Predictors of a member's held-out gain:

* ``mean_of_pairs``: TAG's group score with perfect pair knowledge, the mean of the member's
  *measured* pair gains from its mates (cost: all 351 pair runs);
* ``linear`` / ``kernel`` on the sampled subsets (cost: ``--train`` runs), and fitted on the 351
  pair runs alone (the same runs the mean of pairs uses).

Reported within target (how each task ranks the held-out subsets that contain it): the mean over
targets of the Spearman correlation, and the relative error (MSE / variance of the measured gains
per target), each averaged over the draws per target, then over targets with a 95 % percentile
bootstrap CI over targets; ``draw_sd`` is the spread of the target mean over draws (which subsets
were sampled). One training run per subset: no seed-split noise ceiling exists for these files.

    python bench/surrogate_mimic.py PATH/TO/mimic27 [--train 100 200 400] [--draws 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from taskaffinity.grouping import member_scores
from taskaffinity.grouping.gain_accuracy import prediction_accuracy
from taskaffinity.grouping.surrogate import KernelSurrogate, LinearSurrogate
from taskaffinity.stats import bootstrap_mean_ci, within_target_spearman


def load(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    M = np.loadtxt(folder / "mimic_x.csv")
    G = np.loadtxt(folder / f"mimic_y_{split}.csv")
    if M.shape != G.shape or not np.isin(M, (0, 1)).all():
        raise SystemExit(
            f"{folder}: mimic_x.csv and mimic_y_{split}.csv do not hold 0/1 subsets and gains of one shape"
        )
    return M.astype(bool), np.where(M.astype(bool), G, np.nan)


def pair_matrix(M: np.ndarray, G: np.ndarray) -> np.ndarray:
    """``P[s, t]``: measured gain of t trained with s alone (affinity convention: row = source)."""
    n = M.shape[1]
    P = np.full((n, n), np.nan)
    for r in np.flatnonzero(M.sum(axis=1) == 2):
        a, b = np.flatnonzero(M[r])
        P[a, b], P[b, a] = G[r, b], G[r, a]
    np.fill_diagonal(P, 0.0)
    if np.isnan(P).any():
        raise SystemExit("the folder does not hold every pair: the mean of measured pairs needs them all")
    return P


def per_target(predicted, G, M, tasks, min_size) -> pd.DataFrame:
    acc = prediction_accuracy(predicted, G, M, tasks, min_size=min_size, n_boot=0)
    return acc["per_target"].set_index("target")[["spearman", "relative_error", "mae"]]


def summarise(frames: list[pd.DataFrame], seed: int) -> dict:
    by_target = pd.concat(frames, keys=range(len(frames)), names=["draw"]).groupby(level="target").mean()
    draw_means = [f["spearman"].mean() for f in frames]
    out = {
        "within_target": float(by_target["spearman"].mean()),
        "ci": bootstrap_mean_ci(by_target["spearman"].dropna(), rng=seed),
        "draw_sd": float(np.std(draw_means, ddof=1)) if len(frames) > 1 else float("nan"),
        "relative_error": float(by_target["relative_error"].mean()),
        "relative_error_ci": bootstrap_mean_ci(by_target["relative_error"].dropna(), rng=seed),
        "mae": float(by_target["mae"].mean()),
        "targets": int(by_target["spearman"].notna().sum()),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="gain_collection/collected_gain/mimic27 of ShawnKS/MTG-Net")
    parser.add_argument("--train", type=int, nargs="+", default=[100, 200, 400], help="subsets to fit on")
    parser.add_argument("--draws", type=int, default=5, help="random draws of the training subsets")
    parser.add_argument("--min-size", type=int, default=3, help="subsets of at least this many tasks")
    parser.add_argument("--split", choices=("test", "valid"), default="test", help="which split's gains")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    M, G = load(args.folder, args.split)
    tasks = [f"task{i:02d}" for i in range(M.shape[1])]
    P = pair_matrix(M, G)
    sizes = M.sum(axis=1)
    pairs = np.flatnonzero(sizes == 2)
    candidates = np.flatnonzero(sizes >= args.min_size)
    rng = np.random.default_rng(args.seed)
    results: dict[tuple[str, str], list[pd.DataFrame]] = {}
    seconds: dict[tuple[str, str], float] = {}
    # cost of the training data: joint runs, and task-runs (each run trains its |S| tasks)
    cost = {
        ("mean_of_pairs", "351 pairs"): (len(pairs), 2 * len(pairs)),
        ("linear", "351 pairs"): (len(pairs), 2 * len(pairs)),
        ("kernel", "351 pairs"): (len(pairs), 2 * len(pairs)),
    }
    fitted_on_pairs = {
        name: cls(tasks=tasks).fit(M[pairs].astype(int), G[pairs])
        for name, cls in (("linear", LinearSurrogate), ("kernel", KernelSurrogate))
    }
    for draw in range(args.draws):
        for n_train in args.train:
            train = rng.choice(candidates, n_train, replace=False)
            test = np.setdiff1d(candidates, train)
            Mt, Gt = M[test], G[test]
            key = ("mean_of_pairs", "351 pairs")
            results.setdefault(key, []).append(per_target(member_scores(P, Mt), Gt, Mt, tasks, args.min_size))
            for name, model in fitted_on_pairs.items():
                results.setdefault((name, "351 pairs"), []).append(
                    per_target(model.predict_members(Mt), Gt, Mt, tasks, args.min_size)
                )
            for name, cls in (("linear", LinearSurrogate), ("kernel", KernelSurrogate)):
                start = time.perf_counter()
                model = cls(tasks=tasks, seed=args.seed + draw) if name == "kernel" else cls(tasks=tasks)
                model.fit(M[train].astype(int), G[train])
                key = (name, f"{n_train} subsets")
                seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - start
                cost[key] = (n_train, int(sizes[train].sum()))  # the last draw's (all draws alike in expectation)
                results.setdefault(key, []).append(per_target(model.predict_members(Mt), Gt, Mt, tasks, args.min_size))
    rows = []
    for (predictor, fitted_on), frames in results.items():
        runs, task_runs = cost[(predictor, fitted_on)]
        rows.append(
            {
                "predictor": predictor,
                "fitted_on": fitted_on,
                "runs": runs,
                "task_runs": task_runs,
                "draws": len(frames),
                **summarise(frames, args.seed),
                "fit_seconds": seconds.get((predictor, fitted_on), 0.0) / len(frames),
            }
        )
    table = pd.DataFrame(rows)
    _, valid_G = load(args.folder, "valid" if args.split == "test" else "test")
    split_frame = pd.DataFrame(
        {
            "target": np.asarray(tasks)[np.nonzero(M & (sizes >= args.min_size)[:, None])[1]],
            "a": G[M & (sizes >= args.min_size)[:, None]],
            "b": valid_G[M & (sizes >= args.min_size)[:, None]],
        }
    )
    split_agreement = within_target_spearman(split_frame, "a", "b", n_boot=0)["mean"]
    info = {
        "subsets": int(len(M)),
        "tasks": len(tasks),
        "candidates": int(len(candidates)),
        "split": args.split,
        "min_size": args.min_size,
        "draws": args.draws,
        "mean_candidate_size": float(sizes[candidates].mean()),
        "valid_vs_test_within_target": split_agreement,
    }
    if args.json:
        print(json.dumps({"info": info, "rows": table.to_dict("records")}, indent=2))
        return
    print(json.dumps(info))
    shown = table.assign(
        ci=[f"[{a:.3f}, {b:.3f}]" for a, b in table["ci"]],
        relative_error_ci=[f"[{a:.2f}, {b:.2f}]" for a, b in table["relative_error_ci"]],
    )
    print(shown.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
