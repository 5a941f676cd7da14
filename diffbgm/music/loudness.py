"""Integrated loudness (ITU-R BS.1770-4) in bounded memory.

pyloudnorm's `Meter.integrated_loudness` copies the whole signal and filters it in float64:
for ten minutes of 44.1 kHz stereo (200 MB as float32) it peaks 600 MB above its input
(measured: docs/pipeline.md), which made the audio stage the largest memory user of a long
video. This meter uses pyloudnorm's own K-weighting filters and its block layout, but filters
a few seconds at a time (the filter state carried across chunks) and keeps only one sum of
squares per 100 ms hop, so its memory does not grow with the length of the audio. Its result
equals pyloudnorm's (tests/test_render.py compares them).
"""

from __future__ import annotations

import numpy as np
import pyloudnorm
from scipy.signal import lfilter, lfilter_zi

BLOCK_S = 0.4  # gating block (BS.1770)
HOPS_PER_BLOCK = 4  # 75 % overlap
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
CHANNEL_GAINS = (1.0, 1.0, 1.0, 1.41, 1.41)  # L, R, C, Ls, Rs
HOPS_PER_CHUNK = 64  # 6.4 s of audio filtered at a time


def _hop_bounds(n_samples: int, sample_rate: int) -> np.ndarray:
    """Sample index where each 100 ms hop starts, laid out as pyloudnorm lays out its blocks."""
    seconds = n_samples / sample_rate
    n_blocks = int(np.round((seconds - BLOCK_S) / (BLOCK_S / HOPS_PER_BLOCK))) + 1
    hops = np.arange(n_blocks + HOPS_PER_BLOCK)
    bounds = (BLOCK_S * (hops / HOPS_PER_BLOCK) * sample_rate).astype(np.int64)
    return np.minimum(bounds, n_samples)


def _hop_energies(channel: np.ndarray, bounds: np.ndarray, filters: list) -> np.ndarray:
    """Sum of squares of the K-weighted `channel` over each hop [bounds[k], bounds[k+1])."""
    states = [lfilter_zi(f.b, f.a) * 0.0 for f in filters]  # pyloudnorm starts from rest
    energies = np.zeros(len(bounds) - 1)
    for first in range(0, len(bounds) - 1, HOPS_PER_CHUNK):
        last = min(first + HOPS_PER_CHUNK, len(bounds) - 1)
        chunk = np.asarray(channel[bounds[first] : bounds[last]], dtype=np.float64)
        for index, stage in enumerate(filters):
            chunk, states[index] = lfilter(stage.b, stage.a, chunk, zi=states[index])
        starts = bounds[first:last] - bounds[first]
        squares = np.square(chunk)
        if squares.size:
            sums = np.add.reduceat(squares, np.minimum(starts, squares.size - 1))
            sums[starts >= squares.size] = 0.0
            # reduceat gives x[i] alone for an empty hop (equal neighbouring bounds)
            sums[np.diff(np.append(starts, squares.size)) == 0] = 0.0
            energies[first:last] = sums
    return energies


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS of (samples, channels) audio of at least 400 ms.

    -inf for silence, like pyloudnorm.
    """
    if audio.ndim == 1:
        audio = audio[:, None]
    n_samples, n_channels = audio.shape
    if n_samples < BLOCK_S * sample_rate:
        raise ValueError("audio shorter than one 400 ms gating block")
    meter = pyloudnorm.Meter(sample_rate)
    filters = list(meter._filters.values())  # the K-weighting stages pyloudnorm applies
    bounds = _hop_bounds(n_samples, sample_rate)
    block_samples = BLOCK_S * sample_rate
    # (channels, blocks): mean square of each 400 ms block = four consecutive hops
    mean_squares = np.stack(
        [
            np.convolve(_hop_energies(audio[:, ch], bounds, filters), np.ones(HOPS_PER_BLOCK))[
                HOPS_PER_BLOCK - 1 : len(bounds) - 1
            ]
            / block_samples
            for ch in range(n_channels)
        ]
    )
    gains = np.asarray(CHANNEL_GAINS[:n_channels])[:, None]
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(np.sum(gains * mean_squares, axis=0))
        above_absolute = block_lufs >= ABSOLUTE_GATE_LUFS
        if not above_absolute.any():
            return float("-inf")
        relative = (
            -0.691
            + 10.0 * np.log10(np.sum(gains[:, 0] * mean_squares[:, above_absolute].mean(axis=1)))
            + RELATIVE_GATE_LU
        )
        gated = (block_lufs > relative) & above_absolute
        if not gated.any():
            return float("-inf")
        return float(
            -0.691 + 10.0 * np.log10(np.sum(gains[:, 0] * mean_squares[:, gated].mean(axis=1)))
        )
