"""`python -m trainer export RUN OUT`: a run's EMA weights -> a loadable checkpoint folder."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from diffbgm.checkpoint import CARD_NAME, read_config, save_checkpoint
from diffbgm.controls import N_GLOBAL_FEATURES, N_KEY_FEATURES
from diffbgm.errors import CheckpointError
from diffbgm.generation.config import GenerationConfig
from diffbgm.model.config import ModelConfig
from diffbgm.model.unet import count_parameters
from trainer.models import load_run_weights, run_state_folder
from trainer.runlog import read_log

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def _last_value(rows: list[dict[str, float]], column: str) -> float | None:
    values = [row[column] for row in rows if not math.isnan(row.get(column, math.nan))]
    return values[-1] if values else None


def training_summary(run_dir: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """What the model card reports about the training run (from state.json and log.csv)."""
    train_config = extra.get("train_config", {})
    summary: dict[str, Any] = {
        "train_step": extra.get("train_step"),
        "preset": train_config.get("preset"),
        "data": "BGM909 video features" if train_config.get("bgm909") else "POP909 (proxies)",
        "batch_per_rank": train_config.get("batch"),
        "world_size": extra.get("world_size", 1),
        "lr": train_config.get("lr"),
        "ema_decay": train_config.get("ema_decay"),
        "best_val_loss_ema": extra.get("best_val"),
    }
    if train_config.get("distill_from"):
        summary["distilled_from"] = train_config["distill_from"]
        summary["distill_scales"] = [
            train_config["distill_min_scale"],
            train_config["distill_max_scale"],
        ]
        share = train_config.get("distill_sustain_share", 1.0)
        if share != 1.0:
            summary["distill_sustain_share"] = share
        if train_config.get("distill_steps"):
            summary["distill_steps"] = train_config["distill_steps"]
            summary["distill_substeps"] = train_config["distill_substeps"]
    init_from = train_config.get("init_from")
    if init_from:
        summary["warm_start_from"] = init_from
        try:
            _, parent = read_config(Path(init_from))
        except CheckpointError:
            parent = {}  # moved or deleted since: the run's own steps are all we know
        parent_steps = parent.get("train_step_total", parent.get("train_step"))
        if parent_steps is not None and summary["train_step"] is not None:
            summary["train_step_total"] = int(parent_steps) + int(summary["train_step"])
        if train_config.get("conditional_student"):
            # the guidance embedding was learned by the parent's distillation and is kept
            inherited = ("distilled_from", "distill_scales", "distill_sustain_share")
            summary.update({key: parent[key] for key in inherited if key in parent})
            summary["conditional_finetune_data"] = train_config.get("data")
    log_path = run_dir / "log.csv"
    if log_path.exists():
        rows = read_log(log_path)
        summary["last_train_loss"] = _last_value(rows, "loss")
        summary["last_val_loss_ema"] = _last_value(rows, "val_loss_ema")
    return summary


def _global_reads(config: ModelConfig) -> str:
    """What the global features are, by their number."""
    reads = {
        N_KEY_FEATURES: "the key",
        N_KEY_FEATURES + 1: "the key and the way of playing",
        N_KEY_FEATURES + 2: "the key, the way of playing and the tempo",
        N_GLOBAL_FEATURES: "the key, the way of playing, the tempo and the figuration",
    }
    return reads.get(config.global_dim, "per the data")


def _guidance_line(config: ModelConfig, summary: dict[str, Any]) -> str:
    if config.guidance_embedding:
        teacher = summary.get("distilled_from", "a teacher")
        line = f"distilled from {teacher}: one network pass per step"
        if "distill_scales" in summary:  # a parent that does not say has no range to copy
            low, high = summary["distill_scales"]
            line += f" at scales {low} to {high}"
        if "distill_sustain_share" in summary:
            share = summary["distill_sustain_share"]
            line += (
                " (the sustain channel unguided: the conditional pass)"
                if share == 0
                else f" (the sustain channel guided at 1 + {share} (w - 1))"
            )
        if summary.get("distill_steps"):
            line += (
                f"; step-distilled: DDIM in exactly {summary['distill_steps']} steps, each "
                f"learned from {summary['distill_substeps']} DPM-Solver++ steps of the teacher"
            )
        if "conditional_finetune_data" in summary:
            line += (
                "; then its conditional output (scale 1) fine-tuned with the plain denoising "
                f"loss on {summary['conditional_finetune_data']}"
            )
        return line
    return "classifier-free (a conditional and an unconditional pass per guided step)"


def full_model_card(
    config: ModelConfig, parameters: int, dtype: str, summary: dict[str, Any]
) -> str:
    """The model card of an exported run: what it is, how it was trained, how to load it."""
    recall = "yes (a returning phrase hears the music it repeats)" if config.recall_input else "no"
    rows = "\n".join(
        f"| {key} | {json.dumps(value)} |" for key, value in summary.items() if value is not None
    )
    return f"""---
library_name: diffbgm
tags: [music-generation, diffusion, piano-roll, video-background-music]
license: mit
---
# Diff-BGM piano-roll denoiser ({summary.get("preset")})

A UNet over (16th-note steps x pitch) with segment-aware cross-attention (SAC) and a feature
selector, after *Diff-BGM: A Diffusion Model for Video Background Music Generation* (Li et al.,
CVPR 2024). These are the exponential-moving-average weights of a `python -m trainer` run.

- parameters: {parameters:,} (stored as {dtype}, loaded as float32)
- window: {config.window_steps} sixteenth steps x {config.n_pitches} pitches from MIDI {config.pitch_low}
- conditions: chord-tone channel; per segment dynamic ({config.dynamic_dim}) and semantic
  ({config.semantic_dim}) features; global ({config.global_dim}: {_global_reads(config)}); up to
  {config.max_segments} segments per window
- SAC: {config.sac}; selector: {config.selector} (threshold {config.selector_threshold} of
  {config.diffusion.num_train_steps} steps); condition dropout {config.p_uncond}
- diffusion: {config.diffusion.beta_schedule} betas, {config.diffusion.prediction}-prediction
- guidance: {_guidance_line(config, summary)}
- recalled music as an input: {recall}

## Training

| field | value |
|---|---|
{rows}

Training data: POP909 (MIT, Music X Lab) with phrase annotations (MIT, Shuqi Dai); with
BGM909 features when the run says so.

## Use

```python
from diffbgm.checkpoint import load_checkpoint
loaded = load_checkpoint("path/to/this/folder")
```
"""


def export_run(
    run_dir: Path,
    out_dir: Path,
    weights: str = "ema",
    dtype: str = "bf16",
    generation: dict[str, Any] | None = None,
) -> Path:
    """Write OUT/config.json, OUT/model.safetensors and OUT/README.md from RUN's checkpoint.

    `generation` (sampler, steps, guidance, onset_threshold, ...: GenerationConfig's knobs) is
    checked and stored whole in config.json as the settings every caller samples with.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    folder = run_state_folder(run_dir)
    if folder is None:
        raise CheckpointError(f"{run_dir} holds no run checkpoint (expected {run_dir}/last/)")
    loaded = load_run_weights(folder, weights)
    summary = training_summary(run_dir, loaded.extra)
    summary["weights"] = weights
    extra = {key: value for key, value in summary.items() if value is not None}
    if generation:
        extra["generation"] = GenerationConfig.from_dict(generation).to_dict()
    save_checkpoint(out_dir, loaded.model, loaded.config, extra=extra, dtype=DTYPES[dtype])
    card = full_model_card(
        loaded.config,
        count_parameters(loaded.model),
        "bfloat16" if dtype == "bf16" else "float32",
        summary,
    )
    (out_dir / CARD_NAME).write_text(card)
    return out_dir
