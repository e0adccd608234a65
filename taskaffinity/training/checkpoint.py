"""Training checkpoints in safetensors + JSON (never pickle), written atomically, and the run
identity a checkpoint resumes into (:func:`run_fingerprint`).

Layout of ``OUT/checkpoints/``::

    step-000300/model.safetensors       model state (encoder, heads, buffers)
    step-000300/optimizer.safetensors   optimizer tensors (AdamW moments, step counts)
    step-000300/state.json              step, sampler cursors, scheduler, optimizer groups
    latest                              name of the newest complete checkpoint

A checkpoint directory is written under a temporary name and renamed when
complete; ``latest`` is replaced atomically afterwards, so a kill at any point
leaves a loadable checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from ..config import RunConfig
from ..errors import ConfigError
from ..storage import read_json, write_json, write_parquet, write_text
from ..tasks.data import TaskData

log = logging.getLogger(__name__)


def save_checkpoint(root: Path, step: int, model, optimizer, state: dict, *, keep: int = 1) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:06d}"
    tmp = root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    # safetensors refuses shared storage (tied embeddings): clone to be safe.
    save_file(
        {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()},
        str(tmp / "model.safetensors"),
    )
    tensors, groups = _flatten_optimizer(optimizer.state_dict())
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    write_json(tmp / "state.json", {**state, "step": step, "optimizer_param_groups": groups})
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    write_text(root / "latest", name + "\n")
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    pointer = root / "latest"
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    return path if (path / "state.json").is_file() else None


def load_checkpoint(path: Path, model, optimizer, device) -> dict:
    """Restore model and optimizer in place; return the saved trainer state."""
    model.load_state_dict(load_file(str(path / "model.safetensors"), device=str(device)))
    state = read_json(path / "state.json")
    tensors = load_file(str(path / "optimizer.safetensors"), device=str(device))
    optimizer.load_state_dict(_unflatten_optimizer(tensors, state.pop("optimizer_param_groups")))
    return state


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], list]:
    tensors = {}
    for index, slots in state_dict["state"].items():
        for slot, value in slots.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{index}.{slot}"] = tensor.detach().cpu().contiguous()
    return tensors, state_dict["param_groups"]


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list) -> dict:
    state: dict[int, dict] = {}
    for key, tensor in tensors.items():
        index, slot = key.split(".", 1)
        # AdamW keeps `step` as a CPU float tensor unless capturable/fused.
        state.setdefault(int(index), {})[slot] = tensor.cpu() if slot == "step" else tensor
    return {"state": state, "param_groups": groups}


# -- a joint run's identity, logs and checkpoint ---------------------------------------------------
def run_fingerprint(config: RunConfig, tasks: dict[str, TaskData]) -> str:
    """Identity of a run: its configuration and each task's prepared data (``TaskData.fingerprint``).

    A checkpoint resumes only into the same identity: a changed file is refused like a
    changed configuration, never taken for the old one.
    """
    blob = json.dumps({"config": config.fingerprint(), "data": data_fingerprints(tasks)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def data_fingerprints(tasks: dict[str, TaskData]) -> dict[str, str]:
    return {name: task.fingerprint() for name, task in tasks.items()}


def checkpoint_fingerprint(out_dir: str | Path) -> str | None:
    """The run fingerprint of the newest checkpoint in ``out_dir`` (None when there is none)."""
    path = latest_checkpoint(Path(out_dir) / "checkpoints")
    return read_json(path / "state.json").get("fingerprint") if path is not None else None


def write_run(trainer) -> None:
    """A :class:`~.loop.JointTrainer`'s logs, then its checkpoint (each atomic: logs never run ahead of
    a checkpoint that is lost)."""
    write_parquet(trainer.out_dir / "steps.parquet", pd.DataFrame(trainer.step_log))
    write_parquet(trainer.out_dir / "eval.parquet", trainer.eval_log)
    state = {
        "fingerprint": trainer.fingerprint,
        "config_fingerprint": trainer.config.fingerprint(),
        "data_fingerprints": trainer.data_fingerprints,
        "sampler": trainer.sampler.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "callbacks": trainer.callbacks.state_dict(),
        "weighting": trainer.weighting.state_dict(),
    }
    save_checkpoint(trainer.out_dir / "checkpoints", trainer.step, trainer.model, trainer.optimizer, state)


def restore_run(trainer) -> None:
    """Load the newest checkpoint of ``trainer.out_dir`` into the trainer (nothing when there is none).

    Raises ConfigError, before anything is loaded, when it is of another run identity.
    """
    path = latest_checkpoint(trainer.out_dir / "checkpoints")
    if path is None:
        return
    saved = read_json(path / "state.json")
    if saved.get("fingerprint") != trainer.fingerprint:
        changed = [t for t, fp in trainer.data_fingerprints.items() if saved.get("data_fingerprints", {}).get(t) != fp]
        detail = (
            f" (the data of task {', '.join(repr(t) for t in changed)} changed)"
            if changed and saved.get("config_fingerprint") == trainer.config.fingerprint()
            else ""
        )
        raise ConfigError(
            f"{trainer.out_dir} holds a run of a different configuration or data{detail}; use another --out "
            "or --no-resume to start over"
        )
    state = load_checkpoint(path, trainer.model, trainer.optimizer, trainer.device)
    trainer.step = state["step"]
    trainer.sampler.load_state_dict(state["sampler"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.callbacks.load_state_dict(state.get("callbacks", {}))
    trainer.weighting.load_state_dict(state.get("weighting", {}))
    steps = pd.read_parquet(trainer.out_dir / "steps.parquet")
    trainer.step_log = steps[steps["step"] <= trainer.step].to_dict("records")
    evals = pd.read_parquet(trainer.out_dir / "eval.parquet")
    if not evals.empty:  # a checkpoint may precede the first evaluation
        trainer.eval_log = evals[evals["step"] <= trainer.step].reset_index(drop=True)
    log.info("resumed from %s (step %d)", path, trainer.step)
