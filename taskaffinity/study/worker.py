"""A study worker: runs many small jobs in one process without paying their start-up each time.

Loading the base model, reading the pool, tokenising the training rows and the
evaluation splits, and writing checkpoints cost a fine-tuning job of a few dozen
steps about as much as its training (docs/studies.md, "Per-job cost"). A
:class:`JobWorker` keeps what does not change between jobs:

- the base encoder's weights (a CPU copy) and one encoder module that every job
  reloads in place (pre-finetuned or base weights), with the tokenizer;
- the prepared pool's task data, per data folder;
- tokenised training rows per (task, data fraction, tokenizer, max_length) and
  evaluation batches per (task, split, tokenizer, max_length, batch size);

and runs each job as the fresh path (:func:`taskaffinity.study.jobs.run_job_fresh`)
does, so results are identical: the same seeds drawn in the same order, the same
weights, the same batches. It evaluates once at the end (validation and, for
measured jobs, test: one pass over each split) and checkpoints by wall time
(``checkpoint_seconds``) instead of every ``checkpoint_every`` steps, never after
the last step (the result is written right after it). A resumed job continues
from its checkpoint, or starts over when it wrote none: either way it ends with the
same result, since training is deterministic given the seed.

A job that raises leaves the worker usable: the reused module is dropped and
rebuilt by the next job; the cached data are read-only.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections import OrderedDict
from pathlib import Path

import torch

from ..model.multitask import MultiTaskModel
from ..storage import read_json, write_parquet, write_safetensors
from ..tracking.callback import TrackingCallback
from ..training.loop import JointTrainer
from .layout import is_done, job_folder, set_aside_stale_run
from .plan import FinetuneJob, TrainJob
from .pool import load_pool, subsample_train


def _key(value) -> str:
    return json.dumps(
        dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value, sort_keys=True, default=str
    )


@dataclasses.dataclass
class _Base:
    """A base model loaded once: its module (reloaded by every job), tokenizer and weights."""

    encoder: torch.nn.Module
    tokenizer: object
    weights: dict[str, torch.Tensor]  # CPU copy, pooler dropped (as MultiTaskModel drops it)
    seed: int
    seed_free: bool  # loading drew no random numbers: weights and the RNG stream do not depend on the seed
    rng_after: torch.Tensor  # CPU RNG state right after loading with ``seed``


class JobWorker:
    """Runs study jobs one after another, reusing models and data between them (module docstring).

    ``checkpoint_seconds``: a running job writes a resumable checkpoint when this much
    wall time has passed since its start or its last checkpoint (0: after every step).
    ``max_rows``: tokenised row sets kept (least recently used are dropped).
    """

    def __init__(self, *, checkpoint_seconds: float = 60.0, max_rows: int = 256):
        self.checkpoint_seconds = checkpoint_seconds
        self.max_rows = max_rows
        self._bases: dict[str, _Base] = {}
        self._pools: dict[tuple, dict] = {}
        self._rows: OrderedDict = OrderedDict()
        self._subsamples: dict[tuple, object] = {}

    # -- caches ------------------------------------------------------------------------------
    def base(self, model_cfg, seed: int) -> _Base:
        """The base model of ``model_cfg``, with the global RNG left where loading it with ``seed`` leaves it."""
        from ..model.encoders import load_encoder

        key = _key(model_cfg)
        base = self._bases.get(key)
        torch.manual_seed(seed)
        if base is not None and (base.seed_free or base.seed == seed):
            if not base.seed_free:
                torch.set_rng_state(base.rng_after)
            return base
        before = torch.get_rng_state()
        encoder, tokenizer = load_encoder(model_cfg)
        after = torch.get_rng_state()
        weights = {k: v.detach().clone() for k, v in encoder.state_dict().items() if not k.startswith("pooler.")}
        base = _Base(encoder, tokenizer, weights, seed, bool(torch.equal(before, after)), after)
        self._bases = {key: base}  # one base model at a time: studies use one
        return base

    def pool(self, config, root: Path, fingerprint: str) -> dict:
        """``load_pool`` for ``config.tasks``, each task read once per pool folder and fingerprint."""
        folder = Path(root) / "data"
        out = {}
        for spec in config.tasks:
            key = (str(folder.resolve()), fingerprint, _key(spec))
            if key not in self._pools:
                one = dataclasses.replace(config, tasks=(spec,))
                self._pools[key] = load_pool(one, folder)[spec.name]
            out[spec.name] = self._pools[key]
        return out

    def _lru(self, cache: OrderedDict, key, make):
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        value = cache[key] = make()
        while len(cache) > self.max_rows:
            cache.popitem(last=False)
        return value

    def encoded_rows(self, data_key: tuple, task, split: str, tokenizer_key: str, tokenizer, max_length: int):
        """A task's split tokenised with ``tokenizer``, cached across jobs (``data_key``'s fraction: train only)."""
        from ..training.batching import EncodedRows

        key = (data_key if split == "train" else data_key[:2], task.name, split, tokenizer_key, max_length)
        return self._lru(
            self._rows,
            key,
            lambda: EncodedRows(
                task.spec.type, task.split(split), tokenizer, max_length, what=f"task '{task.name}', {split} split"
            ),
        )

    def drop_model(self) -> None:
        """Forget the reused modules (after a failed job: their state is not trusted)."""
        self._bases.clear()

    # -- one job -----------------------------------------------------------------------------
    def run(self, job: TrainJob | FinetuneJob, root: str | Path, device: str | None = None, *, tracking=None) -> None:
        """Train and measure one job (as ``run_job_fresh`` does); a finished job is left alone.
        ``tracking``: the job's :class:`~taskaffinity.tracking.run.TrackingRun` (left open)."""
        if is_done(root, job.id):
            return
        try:
            self._run(job, Path(root), device, job_folder(root, job.id), tracking)
        except BaseException:
            self.drop_model()
            raise
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _run(self, job, root: Path, device, folder: Path, tracking=None) -> None:
        config = job.config
        if device:
            config = dataclasses.replace(config, training=dataclasses.replace(config.training, device=device))
        fingerprint = read_json(root / "data" / "index.json").get("fingerprint")  # the pool as prepared
        tasks = self.pool(config, root, fingerprint)
        fraction, init = 1.0, None
        if isinstance(job, FinetuneJob):
            fraction = job.fraction
            if fraction < 1.0:
                tasks = {
                    name: self._subsample(
                        (str(root.resolve()), fingerprint, name, fraction, config.data.split_seed), task
                    )
                    for name, task in tasks.items()
                }
            if job.pretrain is not None:
                init = folder.parent / job.pretrain / "encoder.safetensors"
                if not init.is_file():
                    raise FileNotFoundError(f"pre-finetuning job {job.pretrain} has no saved encoder ({init})")
        started = time.perf_counter()
        base = self.base(config.model, config.seed)  # seeds the RNG as the fresh path's build() does
        model = MultiTaskModel(
            base.encoder, tasks, config.model, seed=config.seed
        )  # fresh heads, as build() draws them
        if init is not None:
            from safetensors.torch import load_file

            model.encoder.load_state_dict(load_file(str(init)))
        else:
            model.encoder.load_state_dict(base.weights)
        for p in model.encoder.parameters():
            p.requires_grad_(True)
            p.grad = None
        measure = isinstance(job, FinetuneJob) or job.measure
        data_key = (str(root.resolve()), fingerprint, fraction)
        logged = [TrackingCallback(tracking, log_every=config.tracking.log_every)] if tracking is not None else []
        trainer = StudyTrainer(
            config,
            tasks,
            model,
            base.tokenizer,
            out_dir=folder / "run",
            progress=False,
            worker=self,
            data_key=data_key,
            splits=("validation", "test") if measure else ("validation",),
            checkpoint_seconds=self.checkpoint_seconds,
            callbacks=logged,
        )
        metrics = trainer.train().drop(columns=["step", "phase"])
        if isinstance(job, TrainJob) and job.save_encoder:
            write_safetensors(folder / "encoder.safetensors", model.encoder.state_dict())
        rows = metrics.rename(columns={"task": "target"}).assign(
            experiment_id=job.id,
            seed=config.seed,
            fraction=fraction,
            wall_seconds=time.perf_counter() - started,
            device=str(trainer.device),
        )
        write_parquet(folder / "result.parquet", rows)
        shutil.rmtree(folder / "run", ignore_errors=True)  # done: checkpoints and partial logs are not needed

    def _subsample(self, key: tuple, task):
        """The job's fixed share of a task's training rows (``key`` ends with fraction, split seed)."""
        if key not in self._subsamples:
            self._subsamples[key] = subsample_train(task, key[3], key[4])
        return self._subsamples[key]


class StudyTrainer(JointTrainer):
    """The joint trainer as a study job runs it: cached rows and batches, one final evaluation of
    ``splits``, checkpoints by wall time and none after the last step."""

    def __init__(
        self, *args, worker: JobWorker, data_key: tuple, splits: tuple[str, ...], checkpoint_seconds: float, **kwargs
    ):
        self.worker, self.data_key, self.eval_splits = worker, data_key, tuple(splits)
        self.checkpoint_seconds = checkpoint_seconds
        self._last_save = time.perf_counter()
        super().__init__(*args, **kwargs)

    def encode(self, task: str, split: str):
        return self.worker.encoded_rows(
            self.data_key,
            self.tasks[task],
            split,
            _key(self.config.model),
            self.tokenizer,
            self.config.model.max_length,
        )

    def resume(self) -> None:
        if self.out_dir is not None and not self._resumed:
            set_aside_stale_run(self.out_dir, self.fingerprint)
        super().resume()
        # evaluations restored with a checkpoint (perhaps the fresh path's, of validation only, at the
        # last step) are not this job's final one: train() evaluates ``splits`` at the end when none is left
        self.eval_log = self.eval_log.iloc[0:0]

    def should_evaluate(self, step: int, last: bool) -> bool:
        return last  # only the final scores enter the results; evaluating changes nothing else

    def should_checkpoint(self, step: int, last: bool) -> bool:
        return not last and time.perf_counter() - self._last_save >= self.checkpoint_seconds

    def save(self) -> None:
        super().save()
        self._last_save = time.perf_counter()


_WORKER: JobWorker | None = None


def worker(checkpoint_seconds: float = 60.0) -> JobWorker:
    """This process's worker (created on first use)."""
    global _WORKER
    if _WORKER is None or _WORKER.checkpoint_seconds != checkpoint_seconds:
        _WORKER = JobWorker(checkpoint_seconds=checkpoint_seconds)
    return _WORKER


def release_worker() -> None:
    """Free this process's worker and everything it holds (the end of a study run)."""
    global _WORKER
    _WORKER = None
