"""Long pieces: window-by-window sampling with overlap in-painting.

A piece longer than one window is generated left to right. Each window after the first starts
`window_steps - overlap_steps` 16th steps after the previous one and in-paints its first
`overlap_steps` steps from what is already there, so phrases continue across window borders.
The same machinery regenerates one segment: pass the old roll as `known_roll` and a
`known_mask` that is 1 everywhere except the steps to redo; windows with nothing to redo are
copied, not sampled. A `RecallGuide` steers returning phrases toward the music they repeat.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from diffbgm.generation.recall import RecallGuide
from diffbgm.model.conditions import PieceConditions, stack_windows
from diffbgm.model.config import ModelConfig
from diffbgm.model.diffusion import Diffusion


def window_starts(n_steps: int, window_steps: int, overlap_steps: int) -> list[int]:
    """Start steps of the windows that cover [0, n_steps) with the given overlap."""
    if not 0 <= overlap_steps < window_steps:
        raise ValueError(f"overlap_steps must be in [0, {window_steps}), got {overlap_steps}")
    hop = window_steps - overlap_steps
    starts = [0]
    while starts[-1] + window_steps < n_steps:
        starts.append(starts[-1] + hop)
    return starts


def piece_mask(mask: np.ndarray | None, shape: tuple[int, int, int]) -> np.ndarray:
    """known_mask as given ((T,), (T, P) or (2, T, P), 1 = keep) -> bool (2, T, P)."""
    if mask is None:
        return np.zeros(shape, dtype=bool)
    mask = np.asarray(mask).astype(bool)
    if mask.ndim == 1:
        mask = mask[None, :, None]
    elif mask.ndim == 2:
        mask = mask[None]
    try:
        return np.broadcast_to(mask, shape).copy()
    except ValueError as exc:
        raise ValueError(f"known_mask of shape {mask.shape} does not fit a roll {shape}") from exc


def sample_piece(
    model: nn.Module,
    diffusion: Diffusion,
    piece: PieceConditions,
    config: ModelConfig,
    generator: torch.Generator | None,
    window_steps: int | None = None,
    overlap_steps: int = 16,
    steps: int = 50,
    guidance: float = 3.0,
    known_roll: np.ndarray | None = None,
    known_mask: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
    sampler: str = "ddim",
    guide: RecallGuide | None = None,
    guidance_until: int = 0,
) -> np.ndarray:
    """Sample a whole piece -> float32 (2, T_total, P) in [-1, 1] (onset, sustain).

    window_steps defaults to config.window_steps (16th steps; a multiple of the UNet's time
    factor); overlap_steps (default one bar) are in-painted from the previous window.
    known_roll (2, T_total, P) with known_mask (1 = keep) keeps part of an existing piece.
    guide: where returning phrases take their music from (None: no recall).
    guidance_until: guidance applies at timesteps >= this one only (0: at every step).
    progress(done, total) counts denoising steps over all windows that are sampled.
    """
    window = window_steps or config.window_steps
    total = piece.n_steps
    shape = (2, total, config.n_pitches)
    keep = piece_mask(known_mask, shape)
    roll = np.zeros(shape, dtype=np.float32)
    if known_roll is not None:
        if known_roll.shape != shape:
            raise ValueError(f"known_roll has shape {known_roll.shape}, expected {shape}")
        roll[keep] = known_roll[keep]
    done = np.zeros(total, dtype=bool)  # steps whose content is final
    starts = window_starts(total, window, overlap_steps)
    todo = [s for s in starts if not keep[:, s : s + window].all()]
    n_denoise = len(todo) * steps
    for start in starts:
        end = min(start + window, total)
        window_keep = np.zeros((2, window, config.n_pitches), dtype=bool)
        window_keep[:, : end - start] = keep[:, start:end] | done[None, start:end, None]
        if window_keep[:, : end - start].all():
            done[start:end] = True
            continue
        known = np.zeros_like(window_keep, dtype=np.float32)
        known[:, : end - start] = roll[:, start:end]
        cond = stack_windows(
            [piece.window(start, window, config.max_segments)], config.pitch_low, config.n_pitches
        )
        offset = todo.index(start) * steps

        def report(i: int, _n: int, offset: int = offset) -> None:
            if progress is not None:
                progress(offset + i, n_denoise)

        guided, guided_mask = (None, None)
        if guide is not None:
            guided, guided_mask = guide.for_window(roll, done, start, window_keep)
        x = diffusion.sample(
            model,
            cond,
            generator,
            steps=steps,
            guidance=guidance,
            known=torch.from_numpy(known)[None],
            known_mask=torch.from_numpy(window_keep)[None],
            progress=report,
            sampler=sampler,
            guide=None if guided is None else torch.from_numpy(guided)[None],
            guide_mask=None if guided_mask is None else torch.from_numpy(guided_mask)[None],
            guide_until=guide.until_t if guide is not None else 0,
            guidance_until=guidance_until,
        )
        roll[:, start:end] = x[0, :, : end - start].float().cpu().numpy()
        done[start:end] = True
    return roll
