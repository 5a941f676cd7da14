"""SI (structureness indicator) exactly as MusDr computes it: from audio.

Wu & Yang (2020), "The Jazz Transformer on the Front Line", and their code
(github.com/slSeanWU/MusDr, MIT licence: `run_python_scapeplot.py`,
`mueller_audio_tools/ssm_features.py`, `mueller_audio_tools/scapeplot.py`,
`musdr/eval_metrics.py::compute_structure_indicator`). Written apart from theirs, step by
step the same computation, so that the numbers are theirs (the per-bar symbolic variant in
diffbgm.metrics is a different number and is not called SI):

1. Audio: mono, 22 050 Hz (here: the MIDI rendered by FluidSynth at that rate).
2. Chroma: librosa's `chroma_stft(tuning=0, norm=2, n_fft=4410, hop_length=2205)` -> 10 Hz
   (power STFT, periodic Hann window, centred frames with reflect padding as the librosa of
   2020 did; librosa's Gaussian chroma filter bank, octave weighting centred on octave 5,
   width 2 octaves, C first; frames normalised to unit length, silent frames left zero).
3. Smoothed with a 21-frame box (zero outside), every 5th frame kept -> 2 Hz; frames
   normalised to unit length (below 0.001: the flat vector 1/sqrt(12)).
4. SSM: for each of the 12 cyclic chroma shifts, S(i, j) = <shift(x_i), x_j>, smoothed
   along the diagonal over 16 frames forwards and backwards for 7 relative tempi
   (0.5 ... 2, log-spaced; the maximum), the maximum over shifts; then the top 25 % of
   values rescaled to [0, 1], the rest set to -2; S(n, n) = 1.
5. Fitness scape plot (Müller's audio thumbnailing): for every segment, the optimal path
   family's accumulated score, its backtracked path length and coverage; fitness = harmonic
   mean of normalised score and normalised coverage.
6. SI(low, high seconds) = the maximum of the plot over segment lengths
   int(2 low) ... int(2 high) frames (rows int(2 low) - 1 up to, not including, int(2 high)
   of the length-by-start plot, whose unused cells are 0); 0 when the piece is shorter.
   short = SI(3, 8), mid = SI(8, 15), long = SI(15, 128) (MusDr's defaults).

Plain numpy/scipy; the rendering needs the FluidSynth binary (diffbgm.music.render).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.ndimage import uniform_filter1d

SAMPLE_RATE = 22050
N_FFT = 4410
HOP = 2205  # 10 Hz chroma
SMOOTH_FRAMES = 21
DOWNSAMPLE = 5  # -> 2 Hz
FEATURE_RATE = SAMPLE_RATE / HOP / DOWNSAMPLE  # 2.0 frames per second
SSM_SMOOTH = 16
TEMPO_REL = np.exp(np.linspace(np.log(0.5), np.log(2.0), 7))
KEEP_SHARE = 0.25
PENALTY = -2.0
# MusDr's run_all_metrics: --timescale_bounds 3 8 15 (seconds); long runs to the default 128 s
RANGES_S: dict[str, tuple[float, float]] = {
    "short": (3.0, 8.0),
    "mid": (8.0, 15.0),
    "long": (15.0, 128.0),
}
_EPS = 1e-16


# --------------------------------------------------------------------------- chroma


def chroma_filter_bank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
    """(12, n_fft // 2 + 1) librosa's chroma filter bank (tuning 0, centre octave 5, width 2,
    L2-normalised columns, C first): a Gaussian bump per pitch class around every FFT bin's
    pitch, its width the bin's spacing in semitones."""
    n_chroma = 12
    freqs = np.linspace(0, sr, n_fft, endpoint=False)[1:]
    a0 = 440.0 / 16  # A0, tuning 0
    bins = n_chroma * np.log2(freqs / a0)  # pitch of each bin in semitones above A0
    bins = np.concatenate([[bins[0] - 1.5 * n_chroma], bins])
    widths = np.concatenate([np.maximum(np.diff(bins), 1.0), [1.0]])
    dist = bins[None, :] - np.arange(n_chroma)[:, None]
    half = round(n_chroma / 2)
    dist = np.remainder(dist + half + 10 * n_chroma, n_chroma) - half
    weights = np.exp(-0.5 * (2 * dist / widths[None, :]) ** 2)
    weights /= np.linalg.norm(weights, axis=0, keepdims=True)
    weights *= np.exp(-0.5 * ((bins / n_chroma - 5.0) / 2.0) ** 2)[None, :]
    weights = np.roll(weights, -3, axis=0)  # A-based -> C-based
    return weights[:, : n_fft // 2 + 1]


def power_spectrogram(y: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """(n_fft // 2 + 1, frames) |STFT|^2, periodic Hann window, centred frames (reflect pad)."""
    signal = np.asarray(y, dtype=np.float64)
    padded = np.pad(signal, n_fft // 2, mode="reflect")
    n_frames = 1 + (padded.size - n_fft) // hop
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n_frames]
    return np.abs(np.fft.rfft(frames * window, axis=1)).T ** 2


def chroma_10hz(y: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """(12, frames) unit-length chroma at sr / HOP Hz (librosa chroma_stft's settings)."""
    if sr != SAMPLE_RATE:
        raise ValueError(f"MusDr's chroma is computed at {SAMPLE_RATE} Hz, got {sr}")
    raw = chroma_filter_bank() @ power_spectrogram(y)
    norms = np.linalg.norm(raw, axis=0, keepdims=True)
    tiny = np.finfo(np.float32).tiny
    return raw / np.where(norms < tiny, 1.0, norms)


def smooth_downsample(chroma: np.ndarray) -> np.ndarray:
    """10 Hz chroma -> 2 Hz features: 21-frame box smoothing, every 5th frame, unit length
    (frames with norm <= 0.001 become the flat unit vector)."""
    smooth = uniform_filter1d(chroma, SMOOTH_FRAMES, axis=1, mode="constant", cval=0.0)
    x = smooth[:, ::DOWNSAMPLE]
    norms = np.linalg.norm(x, axis=0)
    flat = np.full(x.shape[0], 1 / np.sqrt(x.shape[0]))
    out = np.where(norms > 0.001, x / np.where(norms > 0.001, norms, 1.0), flat[:, None])
    return out


# --------------------------------------------------------------------------- SSM


def _diagonal_sum(s: np.ndarray, length: int, forward: bool) -> np.ndarray:
    """sum over lags 0..length-1 of s shifted along the main diagonal, zeros outside:
    forward: s[i + l, j + l]; backward: s[i - l, j - l]."""
    rows, cols = s.shape
    out = np.zeros_like(s)
    for lag in range(min(length, max(rows, cols))):
        if lag >= rows or lag >= cols:
            break
        if forward:
            out[: rows - lag, : cols - lag] += s[lag:, lag:]
        else:
            out[lag:, lag:] += s[: rows - lag, : cols - lag]
    return out


def smooth_multi_tempo(s: np.ndarray, length: int = SSM_SMOOTH, forward: bool = True) -> np.ndarray:
    """Müller's multi-tempo path smoothing: the columns resampled for each relative tempo,
    averaged along the diagonal over `length` frames, resampled back, maximum over tempi."""
    n = s.shape[0]
    best = np.zeros_like(s)
    for tempo in TEMPO_REL:
        m = int(np.ceil(n / tempo))
        there = np.maximum(np.round(np.arange(1, m + 1) / m * n) - 1, 0).astype(np.int64)
        smoothed = _diagonal_sum(s[:, there], length, forward) / length
        back = np.maximum(np.round(np.arange(1, n + 1) / n * m) - 1, 0).astype(np.int64)
        best = np.maximum(best, smoothed[:, back])
    return best


def threshold_relative(
    s: np.ndarray, keep: float = KEEP_SHARE, penalty: float = PENALTY
) -> np.ndarray:
    """Keep the top `keep` share of values, rescaled to [0, 1]; the rest (and exact zeros)
    become `penalty` (MusDr / FMP `threshold_matrix`, strategy 'relative', scale)."""
    out = s.astype(np.float64).copy()
    below = int(np.round(out.size * (1 - keep)))
    if below < out.size:
        cut = np.sort(out, axis=None)[below]
        out[out < cut] = 0.0
    else:
        out[:] = 0.0
    zero = out == 0
    positive = out[out > 0]
    low = float(positive.min()) if positive.size else 0.0
    high = float(out.max())
    if high > low:
        out = (out - low) / (high - low)
        out[zero] = penalty
    return out


def self_similarity(features: np.ndarray) -> np.ndarray:
    """(N, N) MusDr's SSM of (12, N) 2 Hz features: transposition- and tempo-invariant,
    smoothed both ways, thresholded, diagonal 1."""
    best = None
    for shift in range(12):
        shifted = np.roll(features, shift, axis=0)
        s = shifted.T @ features
        s = np.maximum(smooth_multi_tempo(s, forward=True), smooth_multi_tempo(s, forward=False))
        best = s if best is None else np.maximum(best, s)
    assert best is not None
    out = threshold_relative(best)
    np.fill_diagonal(out, 1.0)
    return out


# --------------------------------------------------------------------------- scape plot


def segment_fitness(ssm: np.ndarray, length: int) -> np.ndarray:
    """(N - length + 1,) fitness of every segment of `length` frames, as MusDr's
    `compute_fitness_scape_plot` gets it.

    The accumulated score D follows Müller's DP (elevator column 0; column m >= 2 from
    (n-1, m-1), (n-1, m-2) or (n-2, m-1)); the path family is the one MusDr's backtracking
    reads off D (its own predecessor rules at the edges, first maximum wins). Instead of
    backtracking every segment, each cell carries what the backtracking from it would count
    (path cells, coverage of closed paths, first row of the open path), all starts at once.
    """
    n = ssm.shape[0]
    seg = np.lib.stride_tricks.sliding_window_view(ssm, length, axis=1).transpose(1, 0, 2)
    k = seg.shape[0]
    width = length + 1
    neg = -np.inf

    def blank() -> dict[str, np.ndarray]:
        return {
            "d": np.full((k, width), neg),
            "pts": np.zeros((k, width)),
            "first": np.zeros((k, width)),
            "cov": np.zeros((k, width)),
        }

    row = blank()
    row["d"][:, 0] = 0.0
    row["d"][:, 1] = seg[:, 0, 0]
    row["pts"][:, 1:] = 1.0  # row 0: reached by a regular step, then a horizontal walk
    prev2, prev = blank(), row
    for r in range(1, n):
        cur = blank()
        d1, d2 = prev["d"], prev2["d"]
        # elevator: stay, or jump to the end of a path in the row above (strictly better)
        jump = d1[:, -1] > d1[:, 0]
        cur["d"][:, 0] = np.maximum(d1[:, 0], d1[:, -1])
        cur["pts"][:, 0] = np.where(jump, prev["pts"][:, -1], prev["pts"][:, 0])
        closed = prev["cov"][:, -1] + (r - 1) - prev["first"][:, -1] + 1
        cur["cov"][:, 0] = np.where(jump, closed, prev["cov"][:, 0])
        # column 1: a path starts here
        cur["d"][:, 1] = cur["d"][:, 0] + seg[:, r, 0]
        cur["pts"][:, 1] = cur["pts"][:, 0] + 1
        cur["first"][:, 1] = r
        cur["cov"][:, 1] = cur["cov"][:, 0]
        if length > 1:
            v1 = d1[:, 1:-1]  # (r-1, m-1), m = 2..length
            v2 = d2[:, 1:-1]  # (r-2, m-1); at r = 1 the row "above that" is all -inf
            v3 = d1[:, :-2]  # (r-1, m-2); includes the elevator for m = 2
            cur["d"][:, 2:] = seg[:, r, 1:] + np.maximum(np.maximum(v1, v3), v2)
            # the backtracking's choice: (r-1, m-1), then (r-2, m-1) if r > 2, then
            # (r-1, m-2) if m > 2; strictly greater replaces (first maximum wins)
            b2 = v2 if r > 2 else np.full_like(v2, neg)
            b3 = v3.copy()
            b3[:, 0] = neg
            choice = np.zeros(v1.shape, dtype=np.int8)
            best = v1.copy()
            take2 = b2 > best
            choice[take2], best[take2] = 1, b2[take2]
            take3 = b3 > best
            choice[take3] = 2
            for key in ("pts", "first", "cov"):
                c1, c2, c3 = prev[key][:, 1:-1], prev2[key][:, 1:-1], prev[key][:, :-2]
                picked = np.where(choice == 0, c1, np.where(choice == 1, c2, c3))
                cur[key][:, 2:] = picked + (1 if key == "pts" else 0)
        prev2, prev = prev, cur
    last = prev
    d_end, d_elev = last["d"][:, -1], last["d"][:, 0]
    in_elevator = d_end < d_elev
    score = np.maximum(d_elev, d_end)
    pts = np.where(in_elevator, last["pts"][:, 0], last["pts"][:, -1])
    cov_open = last["cov"][:, -1] + (n - 1) - last["first"][:, -1] + 1
    coverage = np.where(in_elevator, last["cov"][:, 0], cov_open)
    score_n = (score - length) / (pts + _EPS)
    coverage_n = (coverage - length) / (n + _EPS)
    return 2 * score_n * coverage_n / (score_n + coverage_n + _EPS)


def scape_plot(ssm: np.ndarray, lengths: Sequence[int] | None = None) -> np.ndarray:
    """(N, N) fitness plot, row = length - 1, column = start (MusDr's layout before its
    centring roll); only `lengths` are computed (default all), other cells stay 0."""
    n = ssm.shape[0]
    plot = np.zeros((n, n))
    for length in lengths if lengths is not None else range(1, n + 1):
        if 1 <= length <= n:
            plot[length - 1, : n - length + 1] = segment_fitness(ssm, length)
    return plot


def frame_rows(low_s: float, high_s: float, rate: float = FEATURE_RATE) -> tuple[int, int]:
    """MusDr's rows of the plot for SI(low_s, high_s): [int(low*rate) - 1, int(high*rate))."""
    return int(low_s * rate) - 1, int(high_s * rate)


def indicator_from_plot(plot: np.ndarray, low_s: float, high_s: float) -> float:
    """SI(low_s, high_s) from a (full or partial) fitness plot; 0 when the piece is shorter."""
    low, high = frame_rows(low_s, high_s)
    if low >= plot.shape[0]:
        return 0.0
    return float(np.max(plot[low:high]))


def structureness_from_ssm(
    ssm: np.ndarray, ranges_s: dict[str, tuple[float, float]] | None = None
) -> dict[str, float]:
    """SI per named range (seconds) of a MusDr SSM; only the rows needed are computed."""
    ranges = RANGES_S if ranges_s is None else ranges_s
    n = ssm.shape[0]
    needed: set[int] = set()
    for low_s, high_s in ranges.values():
        low, high = frame_rows(low_s, high_s)
        needed.update(range(low + 1, min(high, n) + 1))
    plot = scape_plot(ssm, sorted(needed))
    return {name: indicator_from_plot(plot, *bounds) for name, bounds in ranges.items()}


def structureness_from_audio(y: np.ndarray, sr: int = SAMPLE_RATE) -> dict[str, float]:
    """{'short', 'mid', 'long'} SI of a mono signal at 22 050 Hz."""
    features = smooth_downsample(chroma_10hz(y, sr))
    if features.shape[1] < 2:
        return {name: math.nan for name in RANGES_S}
    return structureness_from_ssm(self_similarity(features))


def structureness_from_midi(midi: object, soundfont: Path | None = None) -> dict[str, float]:
    """SI of a PrettyMIDI object or MIDI file, rendered by FluidSynth at 22 050 Hz (mono).

    Raises diffbgm.errors.RenderError when it cannot be rendered."""
    import soundfile

    from diffbgm.music.render import render_wav

    with tempfile.TemporaryDirectory(prefix="diffbgm-si-") as tmp:
        wav = Path(tmp) / "piece.wav"
        render_wav(midi, wav, soundfont=soundfont, sample_rate=SAMPLE_RATE)  # type: ignore[arg-type]
        audio, rate = soundfile.read(str(wav), dtype="float64", always_2d=True)
    return structureness_from_audio(audio.mean(axis=1), int(rate))
