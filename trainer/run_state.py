"""Save and restore everything a run needs to continue exactly: RUN/last/.

Layout of RUN/last/ (no pickled Python objects anywhere):
    state.json              step, train and model configs, optimizer hyper-parameters
    model.safetensors       the trained weights
    ema.safetensors         the exponential moving average of the weights (what gets exported)
    optimizer.safetensors   the optimizer's per-parameter tensors (AdamW moments, step counts)
    aux.safetensors         only when something trains beside the model (the adversarial critic)

Writes are atomic: the folder is written as RUN/last.tmp and renamed over RUN/last, so a run
killed mid-save leaves the previous checkpoint intact (RUN/last.old is picked up if the kill
fell between the two renames).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from diffbgm.errors import CheckpointError

STATE_VERSION = 1
AUX_FILE = "aux.safetensors"


@dataclass(frozen=True)
class RunState:
    """What a checkpoint of a run holds, as plain data (tensors on the CPU)."""

    step: int  # optimizer steps done
    train_config: dict[str, Any]
    model_config: dict[str, Any]
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    optimizer: dict[str, Any]  # torch optimizer state_dict
    extra: dict[str, Any]  # e.g. best validation loss so far
    # tensors of helpers trained beside the model (the adversarial critic and its optimizer)
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


def _cpu_copy(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses views and shared storage; separate contiguous copies avoid both.
    return {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}


def flatten_optimizer_state(
    state_dict: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (keyed 'PARAM.NAME') and JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for param_id, slots in state_dict["state"].items():
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param_id}.{name}"] = value
            else:
                plain.setdefault(str(param_id), {})[name] = value
    return _cpu_copy(tensors), {"param_groups": state_dict["param_groups"], "plain_state": plain}


def unflatten_optimizer_state(
    tensors: dict[str, torch.Tensor], plain: dict[str, Any]
) -> dict[str, Any]:
    """Inverse of flatten_optimizer_state."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        param_id, name = key.split(".", 1)
        state.setdefault(int(param_id), {})[name] = value
    for param_id, slots in plain["plain_state"].items():
        state.setdefault(int(param_id), {}).update(slots)
    return {"state": state, "param_groups": plain["param_groups"]}


def save_run_state(run_dir: Path, state: RunState) -> Path:
    """Write `state` to RUN/last atomically; returns the folder."""
    final = run_dir / "last"
    tmp = run_dir / "last.tmp"
    old = run_dir / "last.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    opt_tensors, opt_plain = flatten_optimizer_state(state.optimizer)
    save_file(_cpu_copy(state.model), str(tmp / "model.safetensors"))
    save_file(_cpu_copy(state.ema), str(tmp / "ema.safetensors"))
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    if state.aux:
        save_file(_cpu_copy(state.aux), str(tmp / AUX_FILE))
    meta = {
        "version": STATE_VERSION,
        "step": state.step,
        "train_config": state.train_config,
        "model_config": state.model_config,
        "optimizer": opt_plain,
        "extra": state.extra,
    }
    (tmp / "state.json").write_text(json.dumps(meta, indent=2))
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def find_run_state(run_dir: Path) -> Path | None:
    """The folder holding the run's latest complete checkpoint, or None if there is none."""
    for name in ("last", "last.old"):
        folder = run_dir / name
        if (folder / "state.json").exists():
            return folder
    return None


def load_run_state(folder: Path) -> RunState:
    """Read a checkpoint written by save_run_state (tensors land on the CPU)."""
    try:
        meta = json.loads((folder / "state.json").read_text())
        model = load_file(str(folder / "model.safetensors"))
        ema = load_file(str(folder / "ema.safetensors"))
        opt_tensors = load_file(str(folder / "optimizer.safetensors"))
        aux = load_file(str(folder / AUX_FILE)) if (folder / AUX_FILE).exists() else {}
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the run checkpoint in {folder}: {exc}") from exc
    if meta.get("version") != STATE_VERSION:
        raise CheckpointError(
            f"{folder / 'state.json'} has version {meta.get('version')}, expected {STATE_VERSION}"
        )
    return RunState(
        step=int(meta["step"]),
        train_config=meta["train_config"],
        model_config=meta["model_config"],
        model=model,
        ema=ema,
        optimizer=unflatten_optimizer_state(opt_tensors, meta["optimizer"]),
        extra=meta.get("extra", {}),
        aux=aux,
    )
