"""Training checkpoints in safetensors + JSON (never pickle), written atomically.

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

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .storage import read_json, write_json, write_text


def save_checkpoint(root: Path, step: int, model, optimizer, state: dict, *, keep: int = 1) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:06d}"
    tmp = root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    # safetensors refuses shared storage (tied embeddings): clone to be safe.
    save_file({k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()},
              str(tmp / "model.safetensors"))
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
