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

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

import numpy as np
import pyloudnorm
from scipy.signal import lfilter, lfilter_zi

from diffbgm.music.sources import AudioSource, as_source, stretches

BLOCK_S = 0.4  # gating block (BS.1770)
HOPS_PER_BLOCK = 4  # 75 % overlap
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
CHANNEL_GAINS = (1.0, 1.0, 1.0, 1.41, 1.41)  # L, R, C, Ls, Rs
HOPS_PER_CHUNK = 64  # 6.4 s of audio filtered at a time

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def map_in_threads(
    work: Callable[[_Item], _Result], items: Sequence[_Item], workers: int | None = None
) -> list[_Result]:
    """[work(item) for item in items], run in up to `workers` threads (default: the CPU count).

    For NumPy/SciPy work that releases the GIL (filters, FIR interpolation): the results come
    back in the order of `items`, so whatever the caller sums from them is summed in the same
    order as a plain loop would, bit for bit."""
    workers = max(1, min(len(items), workers or os.cpu_count() or 1))
    if workers == 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(work, items))


def hop_bounds(n_samples: int, sample_rate: int) -> np.ndarray:
    """Sample index where each 100 ms hop starts, laid out as pyloudnorm lays out its blocks."""
    seconds = n_samples / sample_rate
    n_blocks = int(np.round((seconds - BLOCK_S) / (BLOCK_S / HOPS_PER_BLOCK))) + 1
    hops = np.arange(n_blocks + HOPS_PER_BLOCK)
    bounds = (BLOCK_S * (hops / HOPS_PER_BLOCK) * sample_rate).astype(np.int64)
    return np.minimum(bounds, n_samples)


def _hop_energies(
    channel: _Scaled, bounds: np.ndarray, filters: list, block: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Sum of squares of the K-weighted `channel` over each hop [bounds[k], bounds[k+1]) and,
    for block > 0, over each run of `block` samples from sample 0 (else an empty array)."""
    states = [lfilter_zi(f.b, f.a) * 0.0 for f in filters]  # pyloudnorm starts from rest
    energies = np.zeros(len(bounds) - 1)
    blocks = np.zeros(-(-int(bounds[-1]) // block) if block else 0)
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
            if block:
                # the chunk starts inside a block: its first part adds to that block's sum
                offset = int(bounds[first])
                cuts = np.arange(-(-offset // block) * block, offset + squares.size, block)
                first_block = offset // block
                edges = np.concatenate([[offset], cuts[cuts > offset]]) - offset
                parts = np.add.reduceat(squares, edges)
                blocks[first_block : first_block + parts.size] += parts
    return energies, blocks


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS of (samples, channels) audio of at least 400 ms.

    -inf for silence, like pyloudnorm.
    """
    if audio.shape[0] < BLOCK_S * sample_rate:
        raise ValueError("audio shorter than one 400 ms gating block")
    return gated_loudness(hop_energies(audio, sample_rate), sample_rate)


# --- the same meter for the level loop, and the peak side, in bounded memory -----------------

CHUNK_SAMPLES = 1 << 18  # ~6 s at 44.1 kHz per chunk of the peak envelope and the limiter


def hop_energies(
    audio: np.ndarray | AudioSource, sample_rate: int, gain: GainCurve | None = None
) -> np.ndarray:
    """(hops,) K-weighted energy of every 100 ms hop of audio * gain, summed over the channels
    with their BS.1770 weights; the blocks of `gated_loudness` are four consecutive hops.

    audio: (samples, channels) in memory or a source read a stretch at a time; gain: an
    optional gain curve applied a stretch at a time, so the scaled audio is never held whole.
    Audio shorter than one block is measured with silence appended (silent blocks are gated
    out)."""
    return hop_and_block_energies(audio, sample_rate, gain)[0]


def hop_and_block_energies(
    audio: np.ndarray | AudioSource,
    sample_rate: int,
    gain: GainCurve | None = None,
    block: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """`hop_energies`, and (block > 0) the same weighted K-weighted energy of every run of
    `block` samples from the start (the level weighs its gain by it), from one read of the
    audio; for block 0 the second array is empty."""
    source = as_source(audio)
    n_samples = max(source.frames, int(BLOCK_S * sample_rate) + 1)
    filters = list(pyloudnorm.Meter(sample_rate)._filters.values())
    bounds = hop_bounds(n_samples, sample_rate)

    def channel_energies(channel: int) -> tuple[np.ndarray, np.ndarray]:
        return _hop_energies(_Scaled(source, channel, gain), bounds, filters, block)

    # the channels are filtered side by side (SciPy's lfilter releases the GIL) and summed in
    # channel order, as one after the other would sum them
    hops = np.zeros(len(bounds) - 1)
    blocks = np.zeros(-(-int(bounds[-1]) // block) if block else 0)
    for channel, (energies, in_blocks) in enumerate(
        map_in_threads(channel_energies, range(source.channels))
    ):
        hops += CHANNEL_GAINS[channel] * energies
        blocks += CHANNEL_GAINS[channel] * in_blocks
    return hops, blocks


class GainCurve(Protocol):
    """A gain that can be read a stretch at a time (diffbgm.music.level.BlockGain)."""

    def samples(self, start: int, stop: int) -> np.ndarray: ...


class _Scaled:
    """One channel of a source times the gain, as float64, on demand (slices only), for
    _hop_energies; zeros past the source's end."""

    def __init__(self, source: AudioSource, channel: int, gain: GainCurve | None) -> None:
        self.source, self.channel, self.gain = source, channel, gain

    def __getitem__(self, part: slice) -> np.ndarray:
        start, stop = int(part.start), int(part.stop)
        values = self.source.read(start, stop)[:, self.channel].astype(np.float64)
        if self.gain is None:
            return values
        inside = max(0, min(stop, self.source.frames) - start)
        values[:inside] *= self.gain.samples(start, start + inside)
        return values


def gated_loudness(hops: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness (LUFS) from `hop_energies`: 400 ms blocks of four hops, the
    absolute (-70 LUFS) and relative (-10 LU) gates of BS.1770-4."""
    if hops.size < HOPS_PER_BLOCK:
        return float("-inf")
    blocks = np.convolve(hops, np.ones(HOPS_PER_BLOCK))[HOPS_PER_BLOCK - 1 : hops.size]
    energy = blocks / (BLOCK_S * sample_rate)
    with np.errstate(divide="ignore"):
        loudness = -0.691 + 10.0 * np.log10(energy)
        kept = energy[loudness >= ABSOLUTE_GATE_LUFS]
        if kept.size == 0:
            return float("-inf")
        relative = -0.691 + 10.0 * np.log10(kept.mean()) + RELATIVE_GATE_LU
        kept = energy[(loudness > relative) & (loudness >= ABSOLUTE_GATE_LUFS)]
        if kept.size == 0:
            return float("-inf")
        return float(-0.691 + 10.0 * np.log10(kept.mean()))


def chunked(
    n_samples: int, reach: int, chunk: int = CHUNK_SAMPLES
) -> list[tuple[int, int, int, int]]:
    """(lo, start, stop, hi) per chunk: compute on [lo, hi) and keep [start, stop); `reach`
    samples of context on each side make a local filter's kept output exact."""
    return [
        (max(0, start - reach), start, stop, min(n_samples, stop + reach))
        for start, stop in stretches(n_samples, chunk)
    ]
