"""The level of a mix: a loudness target under a true-peak ceiling, in memory that does not
grow with the length of the audio.

The audio is read a stretch at a time from an AudioSource (in memory or on disk) in a few
passes: one measures the K-weighted energy of every 100 ms hop (diffbgm.music.loudness) and
the true-peak envelope, one value per block of LEVEL_BLOCK samples (the largest magnitude of
the 4x interpolated signal in the block). The gain is decided on the blocks: a value per block,
linearly interpolated between block centres when applied. A block's peak bounds every sample
in it, so a limiter that keeps each block's (3-block dilated) peak under the ceiling keeps
every sample under it. Ten minutes of 44.1 kHz audio are 827 k blocks: 3.3 MB a float32 array,
where one value per sample took 106 MB.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d
from scipy.signal import firwin, upfirdn

from diffbgm.errors import RenderError
from diffbgm.music.loudness import (
    CHUNK_SAMPLES,
    chunked,
    gated_loudness,
    hop_and_block_energies,
    hop_bounds,
    hop_energies,
    map_in_threads,
)
from diffbgm.music.sources import AudioSource, as_source

LEVEL_BLOCK = 32  # samples per peak and gain value (0.7 ms at 44.1 kHz)


@dataclass(frozen=True)
class LevelConfig:
    """How the level is set: integrated loudness target and true-peak ceiling.

    The defaults are the usual streaming target (-14 LUFS integrated, true peak at most
    -1 dBTP). True peak is the peak of the signal oversampled `oversample` times (ITU-R
    BS.1770-4 uses 4x): the peaks between samples that a DAC or a lossy encoder makes.
    lookahead_s: the limiter's look-ahead; tail_s: how much longer than the MIDI the audio may
    be (release tails, reverb); passes: how many times at most the scaled audio is measured,
    each after a search for the gain on a cheap estimate (`level_gain`).
    """

    target_lufs: float = -14.0
    true_peak_dbtp: float = -1.0
    oversample: int = 4
    lookahead_s: float = 0.005
    tail_s: float = 12.0
    passes: int = 4

    def __post_init__(self) -> None:
        if not -40.0 <= self.target_lufs <= -5.0:
            raise RenderError(f"loudness target {self.target_lufs} LUFS is outside -40..-5")
        if not -12.0 <= self.true_peak_dbtp <= 0.0:
            raise RenderError(f"true-peak ceiling {self.true_peak_dbtp} dBTP is outside -12..0")
        if self.passes < 1:
            raise RenderError(f"the level needs at least one pass, got {self.passes}")
        if self.oversample < 1:
            raise RenderError(f"oversampling must be 1 or more, got {self.oversample}")

    @property
    def ceiling(self) -> float:
        """The true-peak ceiling in full scale (-1 dBTP = 0.891)."""
        return float(10 ** (self.true_peak_dbtp / 20))


# --- true peak ---------------------------------------------------------------------------------

# BS.1770-4 Annex 2 measures true peak with a 48-tap, 4-phase interpolator: 12 taps a phase.
INTERPOLATION_TAPS_PER_PHASE = 12


@functools.lru_cache(maxsize=8)
def interpolation_filter(oversample: int) -> np.ndarray:
    """Low-pass FIR that interpolates a signal `oversample` times (windowed sinc, unit gain
    at DC after the zero-stuffing), float32. Cached: the level measures many short stretches;
    callers must not write to it."""
    taps = firwin(
        INTERPOLATION_TAPS_PER_PHASE * oversample, 1.0 / oversample, window=("kaiser", 6.0)
    )
    return (taps * oversample).astype(np.float32)


def _envelope_of(audio: np.ndarray, taps: np.ndarray | None, oversample: int) -> np.ndarray:
    """(samples,) largest magnitude over the channels at each sample and at the interpolated
    points up to the next sample."""
    magnitude = np.zeros(audio.shape[0], dtype=np.float32)
    delay = (INTERPOLATION_TAPS_PER_PHASE * oversample - 1) // 2  # the filter's group delay
    for channel in range(audio.shape[1]):  # one contiguous channel at a time: 4x faster
        samples = np.ascontiguousarray(audio[:, channel], dtype=np.float32)
        np.maximum(magnitude, np.abs(samples), out=magnitude)
        if taps is None:
            continue
        upsampled = np.abs(upfirdn(taps, samples, oversample)).astype(np.float32)[delay:]
        for phase in range(oversample):  # the points from this sample up to the next one
            points = upsampled[phase::oversample][: audio.shape[0]]
            np.maximum(magnitude[: points.shape[0]], points, out=magnitude[: points.shape[0]])
    return magnitude


def block_peaks(source: AudioSource, oversample: int = 4, block: int = LEVEL_BLOCK) -> np.ndarray:
    """(ceil(frames / block),) float32: the largest magnitude, over the channels, of the
    signal and (oversample > 1) of its interpolation, in each block of `block` samples.

    Read and interpolated a few seconds at a time with the interpolator's length of context
    on each side, so the result is that of the whole signal; contiguous runs of chunks go to
    threads (SciPy's upfirdn releases the GIL)."""
    n_blocks = -(-source.frames // block)
    peaks = np.zeros(n_blocks, dtype=np.float32)
    if n_blocks == 0:
        return peaks
    taps = interpolation_filter(oversample) if oversample > 1 else None
    reach = 0 if taps is None else taps.shape[0]
    size = CHUNK_SAMPLES - CHUNK_SAMPLES % block  # chunks start on block boundaries
    chunks = chunked(source.frames, reach, size)
    workers = max(1, min(len(chunks), os.cpu_count() or 1))

    def run(group: list[tuple[int, int, int, int]]) -> None:
        for lo, start, stop, hi in group:
            magnitude = _envelope_of(source.read(lo, hi), taps, oversample)[start - lo : stop - lo]
            padded = np.zeros(-(-magnitude.shape[0] // block) * block, dtype=np.float32)
            padded[: magnitude.shape[0]] = magnitude
            peaks[start // block : start // block + padded.shape[0] // block] = padded.reshape(
                -1, block
            ).max(axis=1)

    # each chunk writes only its own blocks, so the result does not depend on the split
    per_worker = -(-len(chunks) // workers)
    groups = [chunks[i : i + per_worker] for i in range(0, len(chunks), per_worker)]
    map_in_threads(run, groups, workers)
    return peaks


def true_peak(audio: np.ndarray | AudioSource, oversample: int = 4) -> float:
    """True peak of (samples, channels) audio in full scale (0 for empty audio)."""
    source = as_source(audio)
    peaks = block_peaks(source, oversample)
    return float(peaks.max()) if peaks.size else 0.0


# --- the gain ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockGain:
    """A gain curve: one float32 value per block of `block` samples, at the block's centre,
    linearly interpolated in between (held flat before the first centre and after the last)."""

    values: np.ndarray
    block: int
    frames: int

    def samples(self, start: int, stop: int) -> np.ndarray:
        """(stop - start,) float32 gain at samples start .. stop - 1."""
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        first, last = start // self.block, (stop - 1) // self.block + 1
        # the values of blocks first-1 .. last, the edges repeated (flat beyond the centres)
        ends = self.values[np.clip(np.arange(first - 1, last + 1), 0, self.values.size - 1)]
        # between two neighbouring centres lie `block` samples (the block is even), starting
        # half a block before block `first`: one row of the ramp each
        weight = (np.arange(self.block, dtype=np.float32) + 0.5) / self.block
        curve = ends[:-1, None] + (ends[1:] - ends[:-1])[:, None] * weight[None, :]
        base = first * self.block - self.block // 2
        return curve.ravel()[start - base : stop - base]

    def __post_init__(self) -> None:
        if self.block % 2:
            raise ValueError(f"the block must be even, got {self.block}")

    def scaled(self, factor: float) -> BlockGain:
        return BlockGain(self.values * np.float32(factor), self.block, self.frames)


def apply_limiter(
    gain: np.ndarray, envelope: np.ndarray, rate: float, ceiling: float, lookahead_s: float
) -> None:
    """Multiply `gain` in place so that envelope * gain <= ceiling everywhere, with a look-ahead
    of `lookahead_s` (rate: values per second of `gain` and `envelope`).

    The gain each value needs (ceiling / its peak, at most 1) is spread by a sliding minimum
    over the look-ahead window and then averaged over the same window; every averaged value is
    a minimum over a window containing the point, so the smoothed gain never exceeds what any
    point needs, and it ramps instead of jumping. Chunked with a window of context on each
    side; a chunk's result is written back only after the next chunk has read its context, so
    every chunk sees the gain as it was (the result equals computing on the whole signal)."""
    if envelope.size == 0:
        return
    window = max(1, int(round(lookahead_s * rate)) | 1)  # odd: centred windows
    pending: tuple[int, int, np.ndarray] | None = None
    for lo, start, stop, hi in chunked(envelope.shape[0], window):
        peaks = envelope[lo:hi] * gain[lo:hi]
        if pending is not None:
            gain[pending[0] : pending[1]] *= pending[2]
            pending = None
        if float(peaks.max()) <= ceiling:
            continue
        needed = np.minimum(
            np.float32(1.0), np.float32(ceiling) / np.maximum(peaks, np.float32(1e-12))
        )
        smooth = uniform_filter1d(
            minimum_filter1d(needed, window, mode="nearest"), window, mode="nearest"
        )
        # the minimum guards float rounding at window edges
        pending = (start, stop, np.minimum(smooth, needed)[start - lo : stop - lo])
    if pending is not None:
        gain[pending[0] : pending[1]] *= pending[2]


def hop_mean_square(
    gain: BlockGain, n_hops: int, sample_rate: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """(hops,) mean of gain**2 over the block centres in each 100 ms hop: how much the gain
    scales each hop's energy (the level loop's estimate; exact for a gain constant over the
    hop). weights: each block's energy (`hop_and_block_energies`), so that the gain where the
    energy is counts for it; a limiter cuts the loud attacks, and an unweighted mean took
    their cut for the whole hop's. A hop with no block centre keeps 1."""
    n_samples = max(gain.frames, int(0.4 * sample_rate) + 1)
    bounds = hop_bounds(n_samples, sample_rate)[: n_hops + 1]
    centres = (np.arange(gain.values.shape[0]) + 0.5) * gain.block - 0.5
    edges = np.searchsorted(centres, bounds)

    def per_hop(values: np.ndarray) -> np.ndarray:
        sums = np.concatenate([[0.0], np.cumsum(values)])
        return sums[edges[1:]] - sums[edges[:-1]]

    squares = np.square(gain.values, dtype=np.float64)
    counts = np.diff(edges)
    out = np.ones(n_hops)
    filled = counts > 0
    out[: counts.shape[0]][filled] = per_hop(squares)[filled] / counts[filled]
    if weights is not None:  # hops without energy keep the plain mean (theirs scales nothing)
        energy = np.zeros_like(squares)
        energy[: min(weights.size, energy.size)] = weights[: energy.size]
        weighed = per_hop(energy)
        heard = weighed > 0
        out[: weighed.shape[0]][heard] = per_hop(squares * energy)[heard] / weighed[heard]
    return out


def measure_lufs(
    audio: np.ndarray | AudioSource, sample_rate: int, gain: BlockGain | None = None
) -> float:
    """Integrated loudness (LUFS, ITU-R BS.1770, equal to pyloudnorm's) of audio scaled by the
    optional gain, in bounded memory (diffbgm.music.loudness).

    Gating needs at least one 400 ms block, so very short audio is measured with silence
    appended (silent blocks are gated out, so this does not change the value).
    """
    source = as_source(audio)
    return gated_loudness(hop_energies(source, sample_rate, gain), sample_rate)


# Headroom under the true-peak ceiling for what the limiter's smooth gain does between
# samples and for 16-bit rounding (without it the written file measured -0.9999 dBTP).
CEILING_MARGIN_DB = 0.05


@dataclass(frozen=True)
class Level:
    """What level_gain decided: the gain curve, and the loudness (LUFS) and true peak (full
    scale) of the audio scaled by it."""

    gain: BlockGain
    lufs: float
    true_peak: float
    parts_peak: float = 0.0  # the parts' sample peak once scaled by gain, at most (0: none)


def level_gain(
    audio: np.ndarray | AudioSource,
    sample_rate: int,
    level: LevelConfig,
    parts: Sequence[AudioSource] = (),
) -> Level:
    """The gain that brings audio to level.target_lufs under the true-peak ceiling, and (parts:
    the stems that sum to it) each part scaled by the same gain under the ceiling at every
    sample: parts can cancel in a mix, so a stem may peak above the mix, and a limiter that
    watches only the mix would leave the stems to be lowered afterwards, the mix with them,
    below its target.

    A gain in dB, then the limiter; limiting lowers the loudness, and by more the harder it
    limits, so the gain is searched for by the secant method on "loudness after limiting" (a
    plain "add what is missing" step converged slowly on music with sharp attacks: -15.6 LUFS
    after four rounds for a -14 target). One gain curve, so that applied alike to every stem
    of a mix the stems still sum to the mix. The block peaks and the K-weighted energy of every
    hop are measured once, side by side (the slow parts; SciPy's filters release the GIL); a
    round's loudness is estimated from each hop's energy times its mean squared gain, which is
    cheap; the scaled audio is then measured exactly (streamed, the gain applied a stretch at a
    time), and where the estimate was off (the limiter dips inside a hop) the search runs again
    for the estimate that corrects it, at most `level.passes` exact measurements in all. The
    loudness and true peak returned are those of the scaled audio (the true peak re-measured
    around its loudest stretches). Memory: a few arrays of one value per block, whatever the
    length; the audio itself is only read.
    """
    source = as_source(audio)
    ceiling = level.ceiling * 10 ** (-CEILING_MARGIN_DB / 20)
    with ThreadPoolExecutor(max_workers=1) as side:
        measured = side.submit(hop_and_block_energies, source, sample_rate, None, LEVEL_BLOCK)
        peaks = block_peaks(source, level.oversample)
        hops, block_energies = measured.result()
    # a sample's gain is interpolated from its block's and a neighbour's: each block must be
    # under the ceiling with its neighbours' peaks too
    loudest_part = np.zeros_like(peaks)
    for part in parts:  # sample peaks: a stem's file must not clip, and must sum to the mix
        part_peaks = block_peaks(part, oversample=1)[: peaks.size]
        np.maximum(loudest_part[: part_peaks.size], part_peaks, out=loudest_part[: part_peaks.size])
    watched = np.maximum(peaks, loudest_part) if parts else peaks
    envelope = maximum_filter1d(watched, 3, mode="nearest") if peaks.size else peaks
    block_rate = sample_rate / LEVEL_BLOCK

    def limited(gain_db: float) -> BlockGain:
        values = np.full(peaks.shape[0], 10 ** (gain_db / 20), dtype=np.float32)
        apply_limiter(values, envelope, block_rate, ceiling, level.lookahead_s)
        return BlockGain(values, LEVEL_BLOCK, source.frames)

    def estimate(curve: BlockGain) -> float:
        scale = hop_mean_square(curve, hops.size, sample_rate, block_energies)
        return gated_loudness(hops * scale, sample_rate)

    unscaled = gated_loudness(hops, sample_rate)
    curve, lufs = limited(0.0), unscaled
    if np.isfinite(unscaled):  # silence has no level to bring anywhere
        # the closest measured so far is kept, since gating can make the loudness jump as
        # the gain crosses a threshold
        gain_db, curve = _search_gain(
            limited, estimate, level.target_lufs, level.target_lufs - unscaled
        )
        lufs = measure_lufs(source, sample_rate, curve)
        best_curve, best_lufs = curve, lufs
        for _ in range(level.passes - 1):
            if abs(best_lufs - level.target_lufs) < LOUDNESS_TOLERANCE_LU:
                break
            bias = lufs - estimate(curve)  # where the estimate misses (gain inside a hop)
            gain_db, curve = _search_gain(limited, estimate, level.target_lufs - bias, gain_db)
            lufs = measure_lufs(source, sample_rate, curve)
            if abs(lufs - level.target_lufs) < abs(best_lufs - level.target_lufs):
                best_curve, best_lufs = curve, lufs
        curve, lufs = best_curve, best_lufs
    peak = scaled_true_peak(source, curve, peaks, level.oversample)
    parts_peak = _scaled_block_peak(loudest_part, curve)
    if max(peak, parts_peak) > ceiling:
        # a last safety scale: the ceiling is a promise, the loudness a target
        scale = ceiling / max(peak, parts_peak)
        curve = curve.scaled(scale)
        lufs += 20 * np.log10(scale)
        peak, parts_peak = peak * scale, parts_peak * scale
    return Level(curve, float(lufs), peak, parts_peak)


FLOAT32_SLACK = 2.0**-20  # relative: a few float32 ulps


def _scaled_block_peak(block_peak: np.ndarray, gain: BlockGain) -> float:
    """An upper bound of |sample| x gain, from each block's sample peak: a sample's gain lies
    between its block's value and a neighbour's (BlockGain interpolates between centres)."""
    if not block_peak.size or not block_peak.any():
        return 0.0
    reach = maximum_filter1d(gain.values[: block_peak.size], 3, mode="nearest")
    # the peaks and gains are float32: rounded, the product may fall a few ulps short
    return float(np.max(block_peak[: reach.size] * reach)) * (1 + FLOAT32_SLACK)


LOUDNESS_TOLERANCE_LU = 0.1  # how far from the target the measured loudness may end
SEARCH_ROUNDS = 12  # limiter runs per search: each costs milliseconds a minute of audio
SEARCH_TOLERANCE_LU = 0.01


def _search_gain(
    limited: Callable[[float], BlockGain],
    estimate: Callable[[BlockGain], float],
    target: float,
    gain_db: float,
) -> tuple[float, BlockGain]:
    """The gain (dB, before the limiter) whose limited curve's estimated loudness is nearest
    `target`, from a first guess. Secant steps on loudness against gain: the slope is 1 where
    nothing is limited and falls toward 0 the harder the limiter works (clamped to 0.05..1,
    so a step is never smaller than the plain one). Once the target is bracketed, a step that
    leaves the bracket is replaced by its midpoint: loudness is not always monotonic in the
    gain (the relative gate can take in or drop the quiet passages), so the nearest point
    seen is returned."""
    below, above = -np.inf, np.inf  # gains known to give loudness under / over the target
    curve = limited(gain_db)
    loudness = estimate(curve)
    nearest = (abs(target - loudness), gain_db, curve)
    previous: tuple[float, float] | None = None
    for _ in range(SEARCH_ROUNDS):
        miss = target - loudness
        if abs(miss) < SEARCH_TOLERANCE_LU or not np.isfinite(loudness):
            break
        if miss > 0:
            below = max(below, gain_db)
        else:
            above = min(above, gain_db)
        slope = 1.0
        if previous is not None and gain_db != previous[0]:
            slope = float(np.clip((loudness - previous[1]) / (gain_db - previous[0]), 0.05, 1.0))
        previous = (gain_db, loudness)
        step = gain_db + miss / slope
        if np.isfinite(below) and np.isfinite(above) and not below < step < above:
            step = (below + above) / 2
        gain_db = step
        curve = limited(gain_db)
        loudness = estimate(curve)
        if abs(target - loudness) < nearest[0]:
            nearest = (abs(target - loudness), gain_db, curve)
    return nearest[1], nearest[2]


# Blocks whose estimated peak is this far under the largest estimate cannot hold the true peak
# of the scaled audio: the gain changes by far less than this across a block and its
# neighbours (limiter ramps last 5 ms).
ESTIMATE_SLACK_DB = 1.0
RECHECK_CONTEXT = 64  # samples on each side of a re-measured stretch (the filter's reach)


def scaled_true_peak(
    source: AudioSource, gain: BlockGain, peaks: np.ndarray, oversample: int
) -> float:
    """True peak of the audio scaled by `gain`, measured exactly around the blocks whose
    estimate comes within ESTIMATE_SLACK_DB of the largest one (`peaks`: block_peaks of the
    unscaled audio). A block's samples take gains between its neighbours' values, which bound
    its estimate from above and below; interpolating only the stretches around the loud blocks
    is several times faster than interpolating all of the audio again."""
    if peaks.size == 0:
        return 0.0
    upper = peaks * maximum_filter1d(gain.values, 3, mode="nearest")
    lower = peaks * minimum_filter1d(gain.values, 3, mode="nearest")
    loud = np.flatnonzero(upper >= lower.max() * 10 ** (-ESTIMATE_SLACK_DB / 20))
    # loud blocks closer than two contexts are measured as one stretch
    breaks = np.flatnonzero(np.diff(loud) > 2 * RECHECK_CONTEXT // gain.block + 1)
    run_starts = np.concatenate([[loud[0]], loud[breaks + 1]]) * gain.block
    run_stops = (np.concatenate([loud[breaks], [loud[-1]]]) + 1) * gain.block
    taps = interpolation_filter(oversample) if oversample > 1 else None
    peak = 0.0
    # one read of the audio per chunk that holds loud runs; each run is measured with its
    # context, cut where the chunk's context ends
    for lo, start, stop, hi in chunked(source.frames, RECHECK_CONTEXT):
        inside = np.flatnonzero((run_starts < stop) & (run_stops > start))
        if inside.size == 0:
            continue
        scaled = source.read(lo, hi) * gain.samples(lo, hi)[:, None]
        for run in inside:
            keep_from = max(int(run_starts[run]), start)
            keep_to = min(int(run_stops[run]), stop)
            first, last = max(lo, keep_from - RECHECK_CONTEXT), min(hi, keep_to + RECHECK_CONTEXT)
            envelope = _envelope_of(scaled[first - lo : last - lo], taps, oversample)
            # only the run's own samples in this chunk: the context is there so that they
            # are interpolated right, and its cut ends ring (up to 1 dB on a low tone)
            peak = max(peak, float(envelope[keep_from - first : keep_to - first].max()))
    return peak
