"""Whole pieces: window-by-window sampling with overlap in-painting, and roll decoding.

A piece longer than one window is generated left to right. Each window after the first
starts `window_steps - overlap_steps` 16th steps after the previous one and in-paints its
first `overlap_steps` steps from what is already there, so phrases continue across window
borders. The same machinery regenerates one segment: pass the old roll as `known_roll` and
a `known_mask` that is 1 everywhere except the steps to redo; windows with nothing to redo
are copied, not sampled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from diffbgm.controls import DYNAMIC_CONTROLS
from diffbgm.model.conditions import PieceConditions, stack_windows
from diffbgm.model.config import ModelConfig
from diffbgm.model.diffusion import Diffusion
from diffbgm.music.calibration import Calibration


def window_starts(n_steps: int, window_steps: int, overlap_steps: int) -> list[int]:
    """Start steps of the windows that cover [0, n_steps) with the given overlap."""
    if not 0 <= overlap_steps < window_steps:
        raise ValueError(f"overlap_steps must be in [0, {window_steps}), got {overlap_steps}")
    hop = window_steps - overlap_steps
    starts = [0]
    while starts[-1] + window_steps < n_steps:
        starts.append(starts[-1] + hop)
    return starts


def _piece_mask(mask: np.ndarray | None, shape: tuple[int, int, int]) -> np.ndarray:
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
) -> np.ndarray:
    """Sample a whole piece -> float32 (2, T_total, P) in [-1, 1] (onset, sustain).

    window_steps defaults to config.window_steps (16th steps; a multiple of the UNet's time
    factor); overlap_steps (default one bar) are in-painted from the previous window.
    known_roll (2, T_total, P) with known_mask (1 = keep) keeps part of an existing piece.
    progress(done, total) counts denoising steps over all windows that are sampled.
    """
    window = window_steps or config.window_steps
    total = piece.n_steps
    shape = (2, total, config.n_pitches)
    keep = _piece_mask(known_mask, shape)
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
        )
        roll[:, start:end] = x[0, :, : end - start].float().cpu().numpy()
        done[start:end] = True
    return roll


class DecodedRoll(NamedTuple):
    """Binary roll: onset[t, p] starts a note at step t; sustain[t, p] is on for every step a
    note sounds, its onset step included. Steps are 16th notes, pitch p is MIDI pitch_low + p.
    A named tuple, so `onset, sustain = decode_roll(x)` works too."""

    onset: np.ndarray  # (T, P) bool
    sustain: np.ndarray  # (T, P) bool

    def notes(self) -> list[tuple[int, int, int]]:
        """(start_step, end_step exclusive, pitch_index) of every note, sorted by start."""
        found = []
        steps = self.onset.shape[0]
        for start, pitch in zip(*np.nonzero(self.onset), strict=True):
            end = start + 1
            while end < steps and self.sustain[end, pitch] and not self.onset[end, pitch]:
                end += 1
            found.append((int(start), int(end), int(pitch)))
        return sorted(found)


def decode_roll(
    x: np.ndarray,
    onset_threshold: float | np.ndarray = 0.0,
    sustain_threshold: float = 0.0,
) -> DecodedRoll:
    """(2, T, P) roll in [-1, 1] -> DecodedRoll.

    An onset above `onset_threshold` (a number, or one per step: (T,)) starts a note; it
    lasts while the sustain channel stays above `sustain_threshold` and no new onset of that
    pitch comes. Sustain that does not follow an onset is dropped: a note's sustain must
    start at its onset.
    """
    if x.ndim != 3 or x.shape[0] != 2:
        raise ValueError(f"expected a (2, T, P) roll, got shape {x.shape}")
    threshold = np.asarray(onset_threshold, dtype=np.float64)
    if threshold.ndim == 1:
        if threshold.shape[0] != x.shape[1]:
            raise ValueError(f"{threshold.shape[0]} onset thresholds for {x.shape[1]} steps")
        threshold = threshold[:, None]  # (T, 1): one per step, shared by every pitch
    onset = x[0] > threshold
    raw_sustain = x[1] > sustain_threshold
    sustain = np.zeros_like(onset)
    sounding = np.zeros(onset.shape[1], dtype=bool)
    for step in range(onset.shape[0]):
        sounding = onset[step] | (sounding & raw_sustain[step])
        sustain[step] = sounding
    return DecodedRoll(onset=onset, sustain=sustain)


def decode_piece(
    x: np.ndarray,
    piece: PieceConditions,
    onset_threshold: float,
    sustain_threshold: float,
    density_slack: float = 0.0,
    calibration: Calibration | None = None,
) -> DecodedRoll:
    """decode_roll for a sampled piece; density_slack > 0 decodes each segment with the
    onset threshold that best matches the onsets per bar its density control asks for (its
    POP909 quantile turned into onsets per bar by `calibration`, default the shipped one)."""
    thresholds: float | np.ndarray = onset_threshold
    if density_slack > 0:
        calibration = calibration or Calibration.load()
        density = piece.dynamic[:, DYNAMIC_CONTROLS.index("density")].astype(np.float64)
        onsets_per_bar = np.asarray(calibration.to_raw("density", density))
        thresholds = density_matched_thresholds(
            x[0], piece.segment_ids, onsets_per_bar, onset_threshold, density_slack
        )
    return decode_roll(x, thresholds, sustain_threshold)


def density_matched_thresholds(
    onset_channel: np.ndarray,
    segment_ids: np.ndarray,
    onsets_per_bar: np.ndarray,
    base_threshold: float,
    slack: float,
    steps_per_bar: int = 16,
) -> np.ndarray:
    """(T, P) onset channel, (T,) segment ids, (N,) requested onsets per bar -> (T,) thresholds.

    Each segment gets the threshold that keeps its requested number of onsets (its strongest
    onset values), clipped to base_threshold ± slack: the model still decides which notes
    sound and where, the request only moves the cut within a band, so a segment the model
    made much busier or sparser than asked is brought toward the request, not forced to it.
    slack = 0 is the plain fixed threshold.
    """
    if slack < 0:
        raise ValueError("slack must be >= 0")
    thresholds = np.full(segment_ids.shape[0], base_threshold, dtype=np.float64)
    if slack == 0:
        return thresholds
    for segment in np.unique(segment_ids):
        steps = segment_ids == segment
        values = np.sort(onset_channel[steps].ravel())[::-1]  # strongest first
        wanted = int(round(float(onsets_per_bar[segment]) * steps.sum() / steps_per_bar))
        if wanted <= 0:
            cut = base_threshold + slack
        elif wanted >= values.size:
            cut = base_threshold - slack
        else:
            cut = _cut_keeping(values, wanted)
        thresholds[steps] = np.clip(cut, base_threshold - slack, base_threshold + slack)
    return thresholds


def _cut_keeping(values: np.ndarray, wanted: int) -> float:
    """A threshold t such that the count of `values` (sorted, strongest first) above t is as
    close to `wanted` as ties allow. Sampled rolls are clipped to [-1, 1], so many onsets tie
    at exactly 1.0: a tie group is kept or dropped whole, whichever count is nearer."""
    value = values[wanted - 1]
    above = int(np.count_nonzero(values > value))  # dropping the whole tie group
    at_least = int(np.count_nonzero(values >= value))  # keeping it
    if wanted - above < at_least - wanted:
        return float(value)  # x > value drops the tie
    lower = values[values < value]
    return float(value + lower[0]) / 2 if lower.size else float(value) - 1.0
