"""Bandit source selection for one target (AutoSeM stage 1, Guo, Pasunuru & Bansal 2019).

The baseline the affinity ranking is compared with: instead of measuring how each
source's gradient moves the target's loss, *train* with each source and watch the
target's validation metric. One shared model (encoder + a head per task) and one
:class:`~taskaffinity.training.loop.JointTrainer` live through all rounds. A round:

1. Thompson sampling (:mod:`.thompson`) picks a source k;
2. ``steps_per_round`` joint steps on the target together with k. Each step holds
   ``batch_size`` examples of the target and ``batch_size`` of k (the primary task
   is always trained, as in AutoSeM's alternation; holding the target's examples
   per step fixed means every source is judged at the same target budget, with no
   dilution by a larger partner);
3. the target's primary metric on its validation split; reward 1 if it improved on
   the previous round's value (AutoSeM's binary reward; a tie is no improvement),
   else 0; every posterior is discounted by γ (``decay``) and k's gets the reward.

The ranking is the posterior mean per source with its credible interval, pulls and
rewards. ``seeds`` > 1 repeats the whole run with fresh heads, batches and draws
(seed, seed + 1, ...); the seeds' posteriors are pooled (their pseudo-counts added)
and ``top1_share`` says how many seeds ranked each source first.

Cost: the run's wall time (``summary["wall_seconds"]``), its training steps and its
target evaluations are recorded, to read beside the affinity run's cost.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..config import RunConfig
from ..model.encoders import load_encoder
from ..model.multitask import MultiTaskModel
from ..storage import write_json, write_parquet, write_text
from ..tasks.data import TaskData
from ..tasks.spec import LOWER_IS_BETTER
from ..training.checkpoint import run_fingerprint
from ..training.evaluate import evaluate
from ..training.loop import JointTrainer
from ..training.sampling import HeterogeneousSampler
from .settings import BanditSettings, bandit_sources
from .thompson import posterior_table, run_thompson


@dataclass
class BanditResult:
    target: str
    metric: str
    ranking: pd.DataFrame  # pooled over seeds: rank, source, posterior_mean, ..., top1_share, seed_sd
    by_seed: pd.DataFrame  # one ranking per seed (column ``seed``)
    rounds: pd.DataFrame  # seed, round, step, source, metric, value, previous, reward, theta, alpha, beta, seconds
    summary: dict = field(default_factory=dict)


def rank_sources_bandit(
    config: RunConfig,
    target: str,
    settings: BanditSettings,
    *,
    tasks: dict[str, TaskData] | None = None,
    progress: bool = True,
    on_seed=None,
) -> BanditResult:
    """Rank ``target``'s sources (the config's other tasks) by Thompson sampling; see the module docstring.

    ``tasks``: prepared data (default: prepared from ``config``); ``on_seed(result)`` is called
    after each finished seed with the result so far (the CLI writes it, so no finished seed is
    lost). Raises ConfigError on a bad target or settings before anything is trained.
    """
    from ..tasks.prepare import prepare_tasks

    settings.check()
    sources = bandit_sources(config, target)
    tasks = tasks if tasks is not None else prepare_tasks(config.tasks, config.data, progress=progress)
    training = dataclasses.replace(config.training, steps=settings.rounds * settings.steps_per_round)
    config = dataclasses.replace(config, training=training)
    torch.manual_seed(config.seed)  # a random-init encoder is drawn as build() draws it
    encoder, tokenizer = load_encoder(config.model)
    # MultiTaskModel drops the unused pooler: so does the copy every later seed restarts from
    weights = {k: v.detach().clone() for k, v in encoder.state_dict().items() if not k.startswith("pooler.")}
    cache: dict = {}
    started = time.perf_counter()
    by_seed, logs, costs = [], [], []
    for i in range(settings.seeds):
        seed = config.seed + i
        if i:
            encoder.load_state_dict(weights)
        run = _SeedRun(
            dataclasses.replace(config, seed=seed), tasks, encoder, tokenizer, target, sources, cache, progress
        )
        ranking, log = run.run(settings)
        by_seed.append(ranking.assign(seed=seed))
        logs.append(log.assign(seed=seed))
        costs.append(run.cost)
        result = _result(
            config,
            target,
            run.metric,
            settings,
            sources,
            by_seed,
            logs,
            costs,
            time.perf_counter() - started,
            run_fingerprint(config, tasks),
        )
        if on_seed is not None:
            on_seed(result)
    return result


class _CachedTrainer(JointTrainer):
    """The joint trainer, with each split tokenised once for all seeds."""

    def __init__(self, *args, cache: dict, **kwargs):
        self._cache = cache
        super().__init__(*args, **kwargs)

    def encode(self, task: str, split: str):
        if (task, split) not in self._cache:
            self._cache[task, split] = super().encode(task, split)
        return self._cache[task, split]


class _SeedRun:
    """One seed: a fresh model and trainer, the head warm-up, then the bandit's rounds."""

    def __init__(
        self, config: RunConfig, tasks, encoder, tokenizer, target: str, sources: list[str], cache: dict, progress: bool
    ):
        self.config, self.target, self.sources, self.progress = config, target, sources, progress
        model = MultiTaskModel(encoder, tasks, config.model, seed=config.seed)  # fresh heads
        for p in model.encoder.parameters():
            p.requires_grad_(True)
        self.trainer = _CachedTrainer(config, tasks, model, tokenizer, progress=False, cache=cache)
        self.metric = tasks[target].spec.primary_metric
        self.step = 0
        self.cost = {"train_seconds": 0.0, "eval_seconds": 0.0, "evaluations": 0, "examples": 0}

    def run(self, settings: BanditSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
        trainer = self.trainer
        trainer.model.train()
        for _ in range(self.config.training.head_warmup_steps):  # every task's head, encoder frozen
            self._train_step()
        self.position = trainer.sampler.position  # per-task cursors, carried from round to round
        self.previous = self._target_metric()
        bar = tqdm(
            total=settings.rounds,
            desc=f"bandit onto {self.target} (seed {self.config.seed})",
            disable=not self.progress,
        )
        rows = []

        def reward(source: str, round_: int) -> tuple[int, float]:
            seconds = time.perf_counter()
            self._train_round(source, settings.steps_per_round)
            value = self._target_metric()
            better = value < self.previous if self.metric in LOWER_IS_BETTER else value > self.previous
            rows.append({"step": self.step, "previous": self.previous, "seconds": time.perf_counter() - seconds})
            self.previous = value
            bar.update(1)
            bar.set_postfix(source=source, **{self.metric: f"{value:.3f}"})
            return int(better), value

        try:
            ranking, log = run_thompson(
                self.sources,
                reward,
                settings.rounds,
                decay=settings.decay,
                seed=self.config.seed,
                credible=settings.credible,
            )
        finally:
            bar.close()
        log = pd.concat([log, pd.DataFrame(rows)], axis=1).assign(metric=self.metric)
        return ranking, log[
            ["round", "step", "source", "metric", "value", "previous", "reward", "theta", "alpha", "beta", "seconds"]
        ]

    def _train_round(self, source: str, steps: int) -> None:
        """``steps`` joint steps on the target and ``source``, ``batch_size`` examples of each per step."""
        trainer, batch = self.trainer, self.config.training.batch_size
        pair = {t: len(trainer.tasks[t].train) for t in (self.target, source)}
        sampler = HeterogeneousSampler(pair, batch_size=2 * batch, method="uniform", seed=self.config.seed)
        sampler.position = {t: list(self.position[t]) for t in pair}  # the same walk through each task's data
        trainer.sampler = sampler
        for _ in range(steps):
            self._train_step()
        self.position.update(sampler.position)

    def _train_step(self) -> None:
        self.step += 1
        started = time.perf_counter()
        self.trainer.train_step(self.step)
        self.cost["train_seconds"] += time.perf_counter() - started
        self.cost["examples"] += sum(self.trainer.step_counts.values())

    def _target_metric(self) -> float:
        trainer, started = self.trainer, time.perf_counter()
        metrics = evaluate(
            trainer.model,
            {self.target: trainer.tasks[self.target]},
            trainer.tokenizer,
            splits=("validation",),
            max_length=self.config.model.max_length,
            batch_size=self.config.training.eval_batch_size,
            device=trainer.device,
            autocast=trainer.autocast,
            encoded=trainer.encoded,
        )
        self.cost["eval_seconds"] += time.perf_counter() - started
        self.cost["evaluations"] += 1
        return float(metrics.loc[metrics["metric"] == self.metric, "value"].iloc[0])


def pooled_ranking(
    by_seed: pd.DataFrame, *, prior: tuple[float, float] = (1.0, 1.0), credible: float = 0.9
) -> pd.DataFrame:
    """One ranking from several seeds' posteriors: pseudo-counts added (α = α₀ + Σ_s (α_s − α₀)),
    pulls and rewards summed; ``top1_share``: share of seeds ranking the source first;
    ``seed_sd``: standard deviation of the seeds' posterior means (NaN for one seed)."""
    grouped = by_seed.groupby("source", sort=True)
    alpha = prior[0] + grouped["alpha"].sum() - prior[0] * grouped.size()
    beta = prior[1] + grouped["beta"].sum() - prior[1] * grouped.size()
    sources = list(alpha.index)
    table = posterior_table(
        sources,
        alpha.to_numpy(),
        beta.to_numpy(),
        grouped["pulls"].sum().to_numpy(),
        grouped["rewards"].sum().to_numpy(),
        credible=credible,
    )
    firsts = by_seed[by_seed["rank"] == 1]["source"].value_counts()
    seeds = by_seed["seed"].nunique()
    table["top1_share"] = table["source"].map(firsts).fillna(0).to_numpy() / seeds
    table["seed_sd"] = table["source"].map(
        grouped["posterior_mean"].std(ddof=1) if seeds > 1 else pd.Series(np.nan, index=sources)
    )
    return table


def _result(config, target, metric, settings, sources, by_seed, logs, costs, seconds, fingerprint) -> BanditResult:
    by_seed_frame = pd.concat(by_seed, ignore_index=True)
    ranking = pooled_ranking(by_seed_frame, credible=settings.credible)
    summary = {
        "method": "bandit (AutoSeM stage 1: Beta-Bernoulli Thompson sampling)",
        "target": target,
        "metric": metric,
        "sources": sources,
        **dataclasses.asdict(settings),
        "model": config.model.name,
        "batch_size_per_task": config.training.batch_size,
        "head_warmup_steps": config.training.head_warmup_steps,
        "seeds_done": [int(s) for s in by_seed_frame["seed"].unique()],
        "run_fingerprint": fingerprint,
        "wall_seconds": round(seconds, 2),
        "train_seconds": round(sum(c["train_seconds"] for c in costs), 2),
        "eval_seconds": round(sum(c["eval_seconds"] for c in costs), 2),
        "evaluations": sum(c["evaluations"] for c in costs),
        "examples": sum(c["examples"] for c in costs),
        "top_source": ranking["source"].iloc[0],
        "top1_agreement": float(ranking["top1_share"].max()),
    }
    return BanditResult(target, metric, ranking, by_seed_frame, pd.concat(logs, ignore_index=True), summary)


def write_bandit(result: BanditResult, out_dir: str | Path) -> None:
    """``ranking.parquet`` and ``ranking.csv`` (pooled), ``ranking_by_seed.parquet``, ``rounds.parquet``
    and ``summary.json`` (settings, cost) into ``out_dir``; each file written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(out / "ranking.parquet", result.ranking)
    write_text(out / "ranking.csv", result.ranking.to_csv(index=False))
    write_parquet(out / "ranking_by_seed.parquet", result.by_seed)
    write_parquet(out / "rounds.parquet", result.rounds)
    write_json(out / "summary.json", result.summary)
