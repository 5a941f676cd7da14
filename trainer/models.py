"""Loading a model for sampling/evaluation from a run folder or a checkpoint folder."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from diffbgm.checkpoint import LoadedModel, load_checkpoint
from diffbgm.errors import CheckpointError
from diffbgm.model.config import ModelConfig, SelectorMode
from trainer.run_state import find_run_state, load_run_state


def run_state_folder(path: Path) -> Path | None:
    """The checkpoint folder of a run: RUN/last (or RUN/last.old), or PATH itself if it is one."""
    if (path / "state.json").is_file():
        return path
    return find_run_state(path)


def load_run_weights(folder: Path, weights: str = "ema") -> LoadedModel:
    """A Denoiser in eval mode with a run checkpoint's EMA ('ema') or raw ('model') weights."""
    from diffbgm.model.unet import Denoiser

    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    state = load_run_state(folder)
    config = ModelConfig.from_dict(state.model_config)
    model = Denoiser(config)
    try:
        model.load_state_dict(state.ema if weights == "ema" else state.model)
    except RuntimeError as exc:
        raise CheckpointError(f"{folder}: weights do not match the saved config: {exc}") from exc
    extra = {
        "train_step": state.step,
        "weights": weights,
        "train_config": state.train_config,
        **state.extra,
    }
    return LoadedModel(model=model.eval(), config=config, extra=extra, path=folder)


def load_for_inference(path_or_id: str, device: str | torch.device = "cpu") -> LoadedModel:
    """A run folder (EMA weights), a run's last/ folder, a checkpoint folder or a Hub id."""
    local = Path(path_or_id)
    folder = run_state_folder(local) if local.is_dir() else None
    loaded = load_run_weights(folder) if folder is not None else load_checkpoint(path_or_id)
    loaded.model.to(device)
    return loaded


def with_inference_switches(
    loaded: LoadedModel, sac: bool, selector: SelectorMode | None
) -> LoadedModel:
    """The same weights with SAC and/or the feature selector switched at inference (ablation).

    The denoiser reads these switches from its config at every forward, so changing the
    config changes the attention masks without touching the weights.
    """
    config = replace(loaded.config, sac=sac, selector=selector or loaded.config.selector)
    loaded.model.config = config
    return replace(loaded, config=config)
