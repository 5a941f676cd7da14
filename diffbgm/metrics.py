"""Music-quality metrics on piano rolls (plain numpy, no model or MIDI library needed).

Every roll here lives on a 16th-note grid: axis 0 = time steps (`steps_per_bar` steps per
bar, 16 in 4/4), axis 1 = pitch, index 0 = MIDI pitch `pitch_low`. `onset` marks the step a
note starts; `sustain` marks steps where a note keeps sounding (whether the onset step is also
marked there does not matter: a step *sounds* where onset or sustain is set). Rolls are
binary (bool or 0/1); anything else is refused, so a model's [-1, 1] output must be
thresholded first.

A piece is padded with silence to whole bars. Metrics that cannot be measured on a piece
(no notes, no chords, too short) are NaN, and `aggregate` skips NaNs.

Run `python -m diffbgm.metrics --help` for the table over a folder of MIDI files or POP909.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

# relative_change lives with the controls (the plan uses it too); importers of it from here
# keep working.
from diffbgm.controls import relative_change as relative_change
from diffbgm.music.chords import scale_pitch_classes as scale_pitch_classes

# The per-bar symbolic structureness was reported as "si_short"/"si_mid" before MusDr's own
# SI (diffbgm.musdr_si, "si_musdr_*") was measured; it is a different number (DESIGN.md) and
# is now "si_bar_*". Readers of older JSON map the old names with `current_metric_name`.
LEGACY_METRIC_NAMES = {"si_short": "si_bar_short", "si_mid": "si_bar_mid"}


def current_metric_name(name: str) -> str:
    """The name a metric has now ("si_short" in older reports is "si_bar_short")."""
    return LEGACY_METRIC_NAMES.get(name, name)


def metric_from(values: Mapping[str, object], name: str) -> object:
    """values[name], or the same metric under its older name (reports written before the
    per-bar SI was renamed); KeyError when neither is there."""
    if name in values:
        return values[name]
    for old, new in LEGACY_METRIC_NAMES.items():
        if new == name and old in values:
            return values[old]
    raise KeyError(name)


@dataclass(frozen=True)
class MetricConfig:
    """Grid and window settings shared by all metrics.

    steps_per_bar: 16th steps per bar (16 = 4/4).
    pitch_low: MIDI pitch of pitch index 0.
    pche_group_bars: bars per pitch-class-entropy group (Diff-BGM evaluates 8-bar windows).
    si_short_bars / si_mid_bars: inclusive ranges of segment lengths, in bars, for SI-bar
        (the per-bar symbolic structureness, not MusDr's SI: see diffbgm.musdr_si).
    ssm_smooth_bars: length (bars) of the diagonal smoothing of the self-similarity matrix.
    ssm_keep: share of the highest similarities kept by the threshold (MusDr: 0.25).
    ssm_penalty: value given to the rest (MusDr: -2).
    """

    steps_per_bar: int = 16
    pitch_low: int = 21
    pche_group_bars: int = 8
    si_short_bars: tuple[int, int] = (3, 8)
    si_mid_bars: tuple[int, int] = (8, 15)
    ssm_smooth_bars: int = 3
    ssm_keep: float = 0.25
    ssm_penalty: float = -2.0


@dataclass(frozen=True)
class MetricSummary:
    """Mean and (population) standard deviation of one metric over n pieces."""

    mean: float
    std: float
    n: int


# --------------------------------------------------------------------------- roll helpers


def as_binary(name: str, roll: np.ndarray) -> np.ndarray:
    """Return `roll` as a bool array, refusing values other than 0/1 (ValueError)."""
    arr = np.asarray(roll)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a (steps, pitches) array, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must be binary (0/1); threshold model output before measuring")
    return arr.astype(bool)


def pad_to_bars(roll: np.ndarray, steps_per_bar: int) -> np.ndarray:
    """Pad a (T, P) roll with silent steps so T is a whole number of bars (at least one)."""
    n_bars = max(1, math.ceil(roll.shape[0] / steps_per_bar))
    missing = n_bars * steps_per_bar - roll.shape[0]
    if missing == 0:
        return roll
    return np.concatenate([roll, np.zeros((missing, roll.shape[1]), dtype=roll.dtype)])


def pitch_class_columns(n_pitches: int, pitch_low: int) -> np.ndarray:
    """(P,) pitch class (0 = C) of every pitch index."""
    return (pitch_low + np.arange(n_pitches)) % 12


def fold_to_pitch_classes(roll: np.ndarray, pitch_low: int) -> np.ndarray:
    """(T, P) counts or flags -> (T, 12) sums per pitch class."""
    pcs = pitch_class_columns(roll.shape[1], pitch_low)
    folded = np.zeros((roll.shape[0], 12), dtype=np.float64)
    np.add.at(folded.T, pcs, roll.T.astype(np.float64))
    return folded


def bars_view(roll: np.ndarray, steps_per_bar: int) -> np.ndarray:
    """(T, P) with T a multiple of steps_per_bar -> (bars, steps_per_bar, P)."""
    return roll.reshape(roll.shape[0] // steps_per_bar, steps_per_bar, roll.shape[1])


# --------------------------------------------------------------------------- PCHE


def histogram_entropy(counts: np.ndarray) -> float:
    """Shannon entropy in bits of a histogram: H = -sum_i p_i log2 p_i, p = counts / sum.

    NaN for an empty histogram.
    """
    total = float(np.sum(counts))
    if total <= 0:
        return math.nan
    p = np.asarray(counts, dtype=np.float64) / total
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum() + 0.0)


def pitch_class_entropy(onset: np.ndarray, config: MetricConfig = MetricConfig()) -> float:
    """PCHE: pitch-class histogram entropy in bits, averaged over 8-bar groups.

    The histogram counts note *onsets* per pitch class (every note once, whatever its length,
    as MusDr / Polyffusion count notes). The piece is cut into consecutive, non-overlapping
    groups of `pche_group_bars` bars; a trailing partial group is dropped unless the piece is
    shorter than one group, then the whole piece is one group. Groups without onsets are
    skipped. PCHE = mean over groups g of H_g = -sum_c p_g(c) log2 p_g(c), in [0, log2 12].
    """
    on = pad_to_bars(as_binary("onset", onset), config.steps_per_bar)
    group_steps = config.pche_group_bars * config.steps_per_bar
    n_groups = on.shape[0] // group_steps
    groups = (
        [on]
        if n_groups == 0
        else [on[g * group_steps : (g + 1) * group_steps] for g in range(n_groups)]
    )
    entropies = [
        histogram_entropy(fold_to_pitch_classes(g, config.pitch_low).sum(axis=0)) for g in groups
    ]
    valid = [h for h in entropies if not math.isnan(h)]
    return float(np.mean(valid)) if valid else math.nan


# --------------------------------------------------------------------------- GPS


def groove_patterns(onset: np.ndarray, steps_per_bar: int = 16) -> np.ndarray:
    """(bars, steps_per_bar) bool: per bar, the steps where any pitch has an onset."""
    on = pad_to_bars(as_binary("onset", onset), steps_per_bar)
    return np.asarray(bars_view(on, steps_per_bar).any(axis=2))


def grooving_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """GS(a, b) = 1 - popcount(a XOR b) / len(a) for two binary onset patterns of one bar."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    return 1.0 - float(np.count_nonzero(a ^ b)) / a.shape[0]


def grooving_pattern_similarity(onset: np.ndarray, steps_per_bar: int = 16) -> float:
    """GPS: mean GS(a, b) over all pairs of distinct non-empty bars of the piece, in [0, 1].

    Bars without any onset are left out: two silent bars would count as perfectly alike and a
    silent bar against a busy one says nothing about groove. NaN with fewer than two
    non-empty bars.
    """
    patterns = groove_patterns(onset, steps_per_bar)
    patterns = patterns[patterns.any(axis=1)].astype(np.int64)
    n = patterns.shape[0]
    if n < 2:
        return math.nan
    # Sum over pairs of XOR counts, per step: a step set in k of n bars differs in k(n-k) pairs.
    k = patterns.sum(axis=0)
    total_xor = float((k * (n - k)).sum())
    n_pairs = n * (n - 1) / 2
    return 1.0 - total_xor / (n_pairs * steps_per_bar)


# --------------------------------------------------------------------------- SI-bar (per-bar SI)


def bar_chroma(
    onset: np.ndarray, sustain: np.ndarray, config: MetricConfig = MetricConfig()
) -> np.ndarray:
    """(bars, 12) unit-length chroma per bar: sounding steps per pitch class (zero if silent)."""
    sounding = pad_to_bars(
        as_binary("onset", onset) | as_binary("sustain", sustain), config.steps_per_bar
    )
    per_bar = bars_view(sounding, config.steps_per_bar).sum(axis=1)  # (bars, P)
    chroma = fold_to_pitch_classes(per_bar, config.pitch_low)
    norms = np.linalg.norm(chroma, axis=1, keepdims=True)
    return np.divide(chroma, norms, out=np.zeros_like(chroma), where=norms > 0)


def smooth_diagonals(sim: np.ndarray, length: int) -> np.ndarray:
    """Average each cell with its neighbours along the main-diagonal direction.

    sim: (..., n, n). S'(i, j) = mean over l in a centred window of `length` of
    S(i + l, j + l), the window truncated at the matrix edge. Repeated *sequences* of bars
    then stand out from isolated coincidences.
    """
    if length <= 1:
        return sim
    n = sim.shape[-1]
    sums = np.zeros_like(sim)
    counts = np.zeros((n, n))
    for lag in range(-((length - 1) // 2), length // 2 + 1):
        if abs(lag) >= n:
            continue
        if lag >= 0:
            sums[..., : n - lag, : n - lag] += sim[..., lag:, lag:]
            counts[: n - lag, : n - lag] += 1
        else:
            sums[..., -lag:, -lag:] += sim[..., : n + lag, : n + lag]
            counts[-lag:, -lag:] += 1
    return sums / counts


def self_similarity(chroma: np.ndarray, config: MetricConfig = MetricConfig()) -> np.ndarray:
    """Enhanced, thresholded self-similarity matrix (bars, bars) as MusDr / Müller build it.

    1. S_k(i, j) = <c_i, roll(c_j, k)> (cosine of unit chroma, in [0, 1]) for 12 shifts k,
       each smoothed along diagonals; S = max_k S_k (transposition invariance).
    2. Threshold: the top `ssm_keep` share of values is rescaled to [0, 1]
       ((S - tau) / (max S - tau), tau = that quantile); the rest becomes `ssm_penalty`.
    3. S(i, i) = 1.
    """
    n = chroma.shape[0]
    shifted = np.stack([np.roll(chroma, shift, axis=1) for shift in range(12)])  # (12, n, 12)
    sims = np.einsum("ic,kjc->kij", chroma, shifted)  # (12, n, n)
    best = smooth_diagonals(sims, config.ssm_smooth_bars).max(axis=0)
    tau = float(np.quantile(best, 1.0 - config.ssm_keep))
    top = float(best.max())
    if top > tau:
        out = np.where(best >= tau, (best - tau) / (top - tau), config.ssm_penalty)
    else:
        out = np.full((n, n), config.ssm_penalty)
    np.fill_diagonal(out, 1.0)
    return out


def segment_fitness(ssm: np.ndarray, length: int) -> np.ndarray:
    """Fitness of every segment of `length` bars: (bars - length + 1,) values, one per start.

    Müller's audio-thumbnailing fitness (used by MusDr's SI). For a segment alpha (columns
    of S) an optimal *path family* through S[:, alpha] is found by dynamic programming: paths
    run from the segment's first to its last column (steps (1,1), (1,2), (2,1)), do not
    overlap in time, and may be joined by an "elevator" column of zero cost. With score
    sigma (sum of S along the family), total path cells |P| and coverage gamma (bars
    covered by the paths' row ranges), and N bars in the piece:
        normalised score  sigma_n = (sigma - length) / |P|   (the trivial self-path scores length)
        normalised coverage gamma_n = (gamma - length) / N
        fitness = 2 sigma_n gamma_n / (sigma_n + gamma_n)   (harmonic mean)
    Where either normalised term is <= 0 (only the trivial self-match) the fitness is 0.
    All starts are solved at once; the path length and coverage ride along the DP.
    """
    n = ssm.shape[0]
    # (starts, n, length): the segment's columns of S, for every start
    seg = np.lib.stride_tricks.sliding_window_view(ssm, length, axis=1).transpose(1, 0, 2)
    n_starts = seg.shape[0]
    width = length + 1  # column 0 = elevator, columns 1..length = segment positions
    neg = -np.inf

    def empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.full((n_starts, width), neg),
            np.zeros((n_starts, width)),
            np.zeros((n_starts, width)),
        )

    prev2 = empty()  # row n-2: (score, path cells, coverage)
    score, cells, cover = empty()
    score[:, 0] = 0.0
    score[:, 1] = seg[:, 0, 0]
    cells[:, 1] = 1.0
    cover[:, 1] = 1.0
    prev = (score, cells, cover)
    for row in range(1, n):
        p_score, p_cells, p_cover = prev
        q_score, q_cells, q_cover = prev2
        score, cells, cover = empty()
        # Elevator: stay in it, or leave the previous row's path end (strictly better only).
        from_end = p_score[:, length] > p_score[:, 0]
        score[:, 0] = np.where(from_end, p_score[:, length], p_score[:, 0])
        cells[:, 0] = np.where(from_end, p_cells[:, length], p_cells[:, 0])
        cover[:, 0] = np.where(from_end, p_cover[:, length], p_cover[:, 0])
        # A new path starts at the segment's first column.
        score[:, 1] = score[:, 0] + seg[:, row, 0]
        cells[:, 1] = cells[:, 0] + 1
        cover[:, 1] = cover[:, 0] + 1
        if length > 1:
            # Predecessors of column m >= 2, in tie-break order (first maximum wins):
            # (r-1, m-1), (r-2, m-1), (r-1, m-2). The elevator (column 0) is no predecessor
            # of column 2: paths start at column 1.
            best = p_score[:, 1:-1].copy()
            best_cells = p_cells[:, 1:-1].copy()
            best_cover = p_cover[:, 1:-1] + 1
            two_rows = q_score[:, 1:-1] > best
            best[two_rows] = q_score[:, 1:-1][two_rows]
            best_cells[two_rows] = q_cells[:, 1:-1][two_rows]
            best_cover[two_rows] = q_cover[:, 1:-1][two_rows] + 2
            skip = p_score[:, :-2].copy()
            skip[:, 0] = neg
            two_cols = skip > best
            best[two_cols] = skip[two_cols]
            best_cells[two_cols] = p_cells[:, :-2][two_cols]
            best_cover[two_cols] = p_cover[:, :-2][two_cols] + 1
            score[:, 2:] = best + seg[:, row, 1:]
            cells[:, 2:] = best_cells + 1
            cover[:, 2:] = best_cover
        prev2, prev = prev, (score, cells, cover)
    score, cells, cover = prev
    at_end = score[:, length] >= score[:, 0]
    sigma = np.where(at_end, score[:, length], score[:, 0])
    path_cells = np.where(at_end, cells[:, length], cells[:, 0])
    gamma = np.where(at_end, cover[:, length], cover[:, 0])
    sigma_n = (sigma - length) / np.maximum(path_cells, 1.0)
    gamma_n = (gamma - length) / n
    useful = (sigma_n > 0) & (gamma_n > 0)
    harmonic = 2 * sigma_n * gamma_n / np.where(useful, sigma_n + gamma_n, 1.0)
    return np.where(useful, harmonic, 0.0)


def structureness_indicators(
    onset: np.ndarray,
    sustain: np.ndarray,
    bar_ranges: Sequence[tuple[int, int]],
    config: MetricConfig = MetricConfig(),
) -> list[float]:
    """SI-bar per bar range: the highest fitness of any segment whose length (bars) lies in the
    range (inclusive).

    Self-similarity is built from per-bar chroma (see `self_similarity`); fitness as in
    `segment_fitness`. Each value in [0, 1]; NaN when the piece is shorter than the range's
    smallest length. The matrix and each length's fitness are computed once for all ranges.
    """
    chroma = bar_chroma(onset, sustain, config)
    n_bars = chroma.shape[0]
    ssm = self_similarity(chroma, config)
    best_by_length: dict[int, float] = {}
    values = []
    for low, high in bar_ranges:
        lengths = range(low, min(high, n_bars) + 1)
        for length in lengths:
            if length not in best_by_length:
                best_by_length[length] = float(segment_fitness(ssm, length).max())
        values.append(max((best_by_length[n] for n in lengths), default=math.nan))
    return values


def structureness(
    onset: np.ndarray,
    sustain: np.ndarray,
    bar_range: tuple[int, int],
    config: MetricConfig = MetricConfig(),
) -> float:
    """SI over one range of segment lengths in bars; see `structureness_indicators`."""
    return structureness_indicators(onset, sustain, [bar_range], config)[0]


# --------------------------------------------------------------------------- harmony


def chord_tone_ratio(onset: np.ndarray, chord_pcs: np.ndarray, pitch_low: int = 21) -> float:
    """Share of onsets whose pitch class belongs to the chord sounding at their step.

    chord_pcs: (T, 12) {0,1}, the chord's pitch classes per step (all zero = no chord).
    Onsets at steps without a chord (or past the end of chord_pcs) are not counted.
    ratio = #(onsets with pc in chord) / #(onsets at steps with a chord); NaN if none.
    """
    on = as_binary("onset", onset)
    chords = np.asarray(chord_pcs).astype(bool)
    steps = min(on.shape[0], chords.shape[0])
    on, chords = on[:steps], chords[:steps]
    has_chord = chords.any(axis=1)
    per_pc = fold_to_pitch_classes(on[has_chord], pitch_low)  # (steps with chord, 12)
    total = per_pc.sum()
    if total == 0:
        return math.nan
    return float((per_pc * chords[has_chord]).sum() / total)


def in_key_ratio(onset: np.ndarray, key: tuple[int, bool], pitch_low: int = 21) -> float:
    """Share of onsets whose pitch class lies in the key's diatonic scale.

    key = (tonic pitch class 0-11, minor?); minor uses the natural minor scale.
    ratio = #(onsets in scale) / #(onsets); NaN without onsets.
    """
    counts = fold_to_pitch_classes(as_binary("onset", onset), pitch_low).sum(axis=0)
    total = counts.sum()
    if total == 0:
        return math.nan
    return float(counts[scale_pitch_classes(key[0], key[1])].sum() / total)


# --------------------------------------------------------------------------- texture


def empty_bar_ratio(onset: np.ndarray, sustain: np.ndarray, steps_per_bar: int = 16) -> float:
    """Share of bars in which no note sounds (no onset and no sustain), in [0, 1]."""
    sounding = pad_to_bars(as_binary("onset", onset) | as_binary("sustain", sustain), steps_per_bar)
    bars = bars_view(sounding, steps_per_bar)
    return float((~bars.any(axis=(1, 2))).mean())


def polyphony(onset: np.ndarray, sustain: np.ndarray) -> float:
    """Mean number of sounding pitches per step, over steps where at least one sounds; NaN if none."""
    per_step = (as_binary("onset", onset) | as_binary("sustain", sustain)).sum(axis=1)
    busy = per_step[per_step > 0]
    return float(busy.mean()) if busy.size else math.nan


def onsets_per_bar(onset: np.ndarray, steps_per_bar: int = 16) -> float:
    """Total onsets divided by the number of bars (partial last bar counts as a bar)."""
    on = pad_to_bars(as_binary("onset", onset), steps_per_bar)
    return float(on.sum() / (on.shape[0] // steps_per_bar))


def notes_per_onset_step(onset: np.ndarray) -> float:
    """Notes struck per step that strikes any (the chord size); 0 if none."""
    on = as_binary("onset", onset)
    return float(on.sum() / max(1, on.any(axis=1).sum()))


def odd_16th_share(onset: np.ndarray) -> float:
    """Share of the onsets on the odd 16ths (the roll's step 0 on a beat); 0 if none. Slow
    songs fill these with 16th-note figures, fast ones hardly touch them (docs/evaluation.md,
    "The tempo as an input")."""
    steps = np.nonzero(as_binary("onset", onset))[0]
    return float((steps % 2 == 1).mean()) if steps.size else 0.0


# --------------------------------------------------------------------------- video alignment


def cut_alignment(
    cut_times_s: Sequence[float], boundary_times_s: Sequence[float], tolerance_s: float
) -> float:
    """Share of shot cuts (seconds) lying within tolerance_s (one beat) of a segment boundary.

    NaN without cuts; 0 when there are cuts but no boundaries.
    """
    cuts = np.asarray(cut_times_s, dtype=np.float64)
    bounds = np.asarray(boundary_times_s, dtype=np.float64)
    if cuts.size == 0:
        return math.nan
    if bounds.size == 0:
        return 0.0
    nearest = np.abs(cuts[:, None] - bounds[None, :]).min(axis=1)
    return float((nearest <= tolerance_s + 1e-9).mean())


def spearman(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Spearman rank correlation: Pearson correlation of the ranks (ties get mean ranks).

    NaN with fewer than two pairs or when either side is constant.
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"spearman needs equally long inputs, got {a.shape} and {b.shape}")
    if a.size < 2:
        return math.nan
    ra = rankdata(a) - (a.size + 1) / 2
    rb = rankdata(b) - (b.size + 1) / 2
    denom = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else math.nan


def segment_onset_density(
    onset: np.ndarray, segment_starts: Sequence[int], steps_per_bar: int = 16
) -> np.ndarray:
    """Onsets per bar of each segment; segment i spans steps [starts[i], starts[i+1]).

    segment_starts: increasing step indices, the first usually 0; the last segment runs to
    the end of the roll.
    """
    on = as_binary("onset", onset)
    per_step = on.sum(axis=1)
    edges = [*segment_starts, on.shape[0]]
    density = []
    for begin, end in itertools.pairwise(edges):
        steps = max(end - begin, 1)
        density.append(per_step[begin:end].sum() * steps_per_bar / steps)
    return np.asarray(density, dtype=np.float64)


def density_motion_correlation(
    onset: np.ndarray,
    segment_starts: Sequence[int],
    motion: Sequence[float],
    steps_per_bar: int = 16,
) -> float:
    """Spearman correlation between each segment's onsets per bar and its shot's motion."""
    return spearman(segment_onset_density(onset, segment_starts, steps_per_bar), motion)


def control_correlations(
    requested: Mapping[str, Sequence[float]], realised: Mapping[str, Sequence[float]]
) -> dict[str, float]:
    """Spearman correlation per control between requested and realised per-segment values.

    Only controls present in both mappings are compared.
    """
    return {
        name: spearman(requested[name], realised[name]) for name in requested if name in realised
    }


# --------------------------------------------------------------------------- per piece / set


def piece_metrics(
    onset: np.ndarray,
    sustain: np.ndarray,
    chord_pcs: np.ndarray | None = None,
    key: tuple[int, bool] | None = None,
    config: MetricConfig = MetricConfig(),
) -> dict[str, float]:
    """All music metrics of one piece; chord/key metrics are NaN when chords/key are absent."""
    on = as_binary("onset", onset)
    sus = as_binary("sustain", sustain)
    spb = config.steps_per_bar
    si_short, si_mid = structureness_indicators(
        on, sus, [config.si_short_bars, config.si_mid_bars], config
    )
    return {
        "pche": pitch_class_entropy(on, config),
        "gps": grooving_pattern_similarity(on, spb),
        "si_bar_short": si_short,
        "si_bar_mid": si_mid,
        "chord_tone_ratio": (
            math.nan if chord_pcs is None else chord_tone_ratio(on, chord_pcs, config.pitch_low)
        ),
        "in_key_ratio": math.nan if key is None else in_key_ratio(on, key, config.pitch_low),
        "empty_bar_ratio": empty_bar_ratio(on, sus, spb),
        "polyphony": polyphony(on, sus),
        "onsets_per_bar": onsets_per_bar(on, spb),
        "bars": float(math.ceil(on.shape[0] / spb)),
    }


def aggregate(pieces: Sequence[Mapping[str, float]]) -> dict[str, MetricSummary]:
    """Mean ± std of every metric over pieces, NaNs skipped (n = pieces that had a value)."""
    names: list[str] = []
    for piece in pieces:
        names.extend(name for name in piece if name not in names)
    summary = {}
    for name in names:
        values = np.array([p[name] for p in pieces if name in p and not math.isnan(p[name])])
        if values.size:
            summary[name] = MetricSummary(
                float(values.mean()), float(values.std()), int(values.size)
            )
        else:
            summary[name] = MetricSummary(math.nan, math.nan, 0)
    return summary


def format_table(summary: Mapping[str, MetricSummary], digits: int = 3) -> str:
    """A Markdown table: metric | mean ± std | n."""
    lines = ["| metric | mean ± std | n |", "|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s.mean:.{digits}f} ± {s.std:.{digits}f} | {s.n} |")
    return "\n".join(lines)


if __name__ == "__main__":
    from diffbgm.metrics_cli import main

    raise SystemExit(main())
