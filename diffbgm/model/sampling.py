"""Whole pieces: window-by-window sampling with overlap in-painting, and roll decoding.

A piece longer than one window is generated left to right. Each window after the first
starts `window_steps - overlap_steps` 16th steps after the previous one and in-paints its
first `overlap_steps` steps from what is already there, so phrases continue across window
borders. The same machinery regenerates one segment: pass the old roll as `known_roll` and
a `known_mask` that is 1 everywhere except the steps to redo; windows with nothing to redo
are copied, not sampled.

A window cannot see earlier phrases, so a song's second verse would not sound like its
first. Where the piece says a segment recalls an earlier one (`PieceConditions.recalls`),
the earlier segment's music, bar for bar and transposed to fit the new chords, guides the
noisy part of the denoising (`recall_strength` of the schedule): the repeat keeps its
groove and contour while the late steps fit it to its own chords and controls.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from diffbgm.controls import DYNAMIC_CONTROLS
from diffbgm.metrics import relative_change
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


SILENCE = -1.0  # roll value of "no onset / not sounding" in the model's [-1, 1] space
TRANSPOSE_MIN_AGREEMENT = 0.8  # share of chord tones a transposed recall must match
TRANSPOSE_MARGIN = 0.3  # ... and by how much it must beat the untransposed recall
# A bar is recalled only where its chords and its source bar's agree on this share of tones:
# the same music over other chords would clash, so such bars are composed afresh.
RECALL_MIN_CHORD_AGREEMENT = 0.75
# Density requests this far apart (relative to their mean) ask for a change a listener hears
# (the evaluation's audibility threshold); only then are a boundary's bars matched alone.
EDGE_CONTRAST = 0.25
# A recall loop moved by a bar must line the chords up better by this much (phrase labels
# that are a bar off; see recall_map)
LOOP_SHIFT_MARGIN = 0.1


def recall_map(
    piece: PieceConditions,
    steps_per_bar: int = 16,
    onsets_per_bar: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Where each step's recalled music comes from: (T,) source step or -1, (T,) semitones.

    A segment that recalls another takes the source in a loop of whole bars, from its own
    first step on: step k of the segment takes step k of the source, moved by less than a
    bar so that it keeps its place in the bar (a phrase with a pickup recalls a phrase with a
    pickup beat for beat). Phrase labels are often a bar early or late, so the loop may move
    by a bar either way (staying before the recalling segment) where that lines the chords
    up clearly better. The source is transposed by the shift (-5..6 semitones) that clearly
    lines its chords up better with the recalling segment's (else 0), so a phrase repeated
    a tone higher is recalled a tone higher. Bars whose chords then still differ from their
    source bar's are not recalled (-1).

    With `onsets_per_bar` (N,), each segment's requested density: a segment asked to return
    clearly busier or calmer than its source (EDGE_CONTRAST apart) does not recall its first
    (last) bar where the segment before (after) it asks for a clearly other density too: the
    source's texture there would hide the change the boundary asks for.
    """
    n_steps = piece.n_steps
    source = np.full(n_steps, -1, dtype=np.int64)
    shift = np.zeros(n_steps, dtype=np.int64)
    if piece.recalls is None:
        return source, shift
    steps = np.arange(n_steps)
    for target, origin in enumerate(piece.recalls):
        if origin < 0:
            continue
        target_steps = steps[piece.segment_ids == target]
        origin_steps = steps[piece.segment_ids == origin]
        if target_steps.size == 0 or origin_steps.size == 0:
            continue
        looped = _best_loop(piece.chord_pcs, target_steps, origin_steps, steps_per_bar)
        if looped is None:
            continue  # no whole bar to recall
        from_steps, semitones = looped
        for bar in np.unique(target_steps // steps_per_bar):
            at = target_steps[target_steps // steps_per_bar == bar]
            here = piece.chord_pcs[at]
            there = np.roll(piece.chord_pcs[from_steps[at - target_steps[0]]], semitones, axis=1)
            if _agreement(here, there) >= RECALL_MIN_CHORD_AGREEMENT:
                source[at] = from_steps[at - target_steps[0]]
                shift[at] = semitones
        if onsets_per_bar is not None:
            for edge in _changed_edges(piece, target, origin, onsets_per_bar, steps_per_bar):
                source[edge] = -1
                shift[edge] = 0
    return source, shift


def _changed_edges(
    piece: PieceConditions,
    target: int,
    origin: int,
    onsets_per_bar: np.ndarray,
    steps_per_bar: int,
) -> list[np.ndarray]:
    """The first / last bar of steps of segment `target` that must play its own density: its
    request is EDGE_CONTRAST away from its source's and from its neighbour's across that edge."""
    if not _clearly_apart(onsets_per_bar, origin, target):
        return []
    steps = np.flatnonzero(piece.segment_ids == target)
    first_apart, last_apart = _apart_from_neighbours(onsets_per_bar, target)
    return [
        edge
        for apart, edge in (
            (first_apart, steps[:steps_per_bar]),
            (last_apart, steps[-steps_per_bar:]),
        )
        if apart
    ]


def _clearly_apart(onsets_per_bar: np.ndarray, a: int, b: int) -> bool:
    """Do segments a and b ask for densities at least EDGE_CONTRAST apart?"""
    return relative_change(float(onsets_per_bar[a]), float(onsets_per_bar[b])) >= EDGE_CONTRAST


def _apart_from_neighbours(onsets_per_bar: np.ndarray, segment: int) -> tuple[bool, bool]:
    """Does the segment before / after `segment` (segments are numbered in time order) ask for
    a clearly other density? False where there is none."""
    before = segment > 0 and _clearly_apart(onsets_per_bar, segment - 1, segment)
    after = segment + 1 < len(onsets_per_bar) and _clearly_apart(
        onsets_per_bar, segment + 1, segment
    )
    return before, after


def _best_loop(
    chord_pcs: np.ndarray, target_steps: np.ndarray, origin_steps: np.ndarray, steps_per_bar: int
) -> tuple[np.ndarray, int] | None:
    """(source step per target step, semitones) of the best-fitting loop, or None.

    The loop holds the source's whole bars from the step with the target's place in the bar.
    Candidates move that loop by a bar either way (a source labelled a bar late or early)
    and start the target a bar into it or a bar before its end (a target labelled so);
    the plain loop wins unless another lines the chords up better by LOOP_SHIFT_MARGIN."""
    target_start, origin_start = int(target_steps[0]), int(origin_steps[0])
    nominal = origin_start + (target_start - origin_start) % steps_per_bar
    loop_steps = (int(origin_steps[-1]) + 1 - nominal) // steps_per_bar * steps_per_bar
    if loop_steps <= 0:
        return None
    best: tuple[np.ndarray, int] | None = None
    best_agreement = -1.0
    for moved, rotated in itertools.product((0, -1, 1), (0, -1, 1)):
        loop_start = nominal + moved * steps_per_bar
        if loop_start < 0 or loop_start + loop_steps > target_start:
            continue
        offsets = target_steps - target_start + rotated * steps_per_bar
        from_steps = loop_start + offsets % loop_steps
        semitones = _best_transposition(chord_pcs[target_steps], chord_pcs[from_steps])
        rolled = np.roll(chord_pcs[from_steps], semitones, axis=1)
        agreement = _agreement(chord_pcs[target_steps], rolled)
        margin = 0.0 if best is None else LOOP_SHIFT_MARGIN
        if agreement > best_agreement + margin:
            best, best_agreement = (from_steps, semitones), agreement
    return best


def _agreement(target_pcs: np.ndarray, source_pcs: np.ndarray) -> float:
    """Share of chord tones (T, 12) the two agree on, over the larger of the two; 1 if both empty."""
    size = max(float(target_pcs.sum()), float(source_pcs.sum()))
    return float((target_pcs * source_pcs).sum()) / size if size > 0 else 1.0


def _best_transposition(target_pcs: np.ndarray, source_pcs: np.ndarray) -> int:
    """Semitones (-5..6) moving source chords (T, 12) onto target chords, 0 unless clear.

    Only a clear key change counts: the shifted chords must agree on at least
    TRANSPOSE_MIN_AGREEMENT of their tones and beat the unshifted ones by TRANSPOSE_MARGIN.
    """
    unshifted = _agreement(target_pcs, source_pcs)
    best, best_agreement = 0, unshifted
    for semitones in (*range(1, 7), *range(-1, -6, -1)):
        agreement = _agreement(target_pcs, np.roll(source_pcs, semitones, axis=1))
        if agreement > best_agreement:
            best, best_agreement = semitones, agreement
    if best_agreement >= TRANSPOSE_MIN_AGREEMENT and best_agreement - unshifted >= TRANSPOSE_MARGIN:
        return best
    return 0


def _transposed(music: np.ndarray, semitones: np.ndarray) -> np.ndarray:
    """(2, T, P) roll with step t moved up by semitones[t] (notes pushed off the range drop)."""
    out = np.full_like(music, SILENCE)
    pitches = music.shape[2]
    for amount in np.unique(semitones):
        at = semitones == amount
        if amount >= 0:
            out[:, at, amount:] = music[:, at, : pitches - amount]
        else:
            out[:, at, :amount] = music[:, at, -amount:]
    return out


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
    recall_strength: float = 0.0,
    onsets_per_bar: np.ndarray | None = None,
) -> np.ndarray:
    """Sample a whole piece -> float32 (2, T_total, P) in [-1, 1] (onset, sustain).

    window_steps defaults to config.window_steps (16th steps; a multiple of the UNet's time
    factor); overlap_steps (default one bar) are in-painted from the previous window.
    known_roll (2, T_total, P) with known_mask (1 = keep) keeps part of an existing piece.
    recall_strength in [0, 1]: the share of the noise schedule (from the noisy end) in which
    a recalling segment is guided by the music of the segment it recalls (0 = off, 1 = copy);
    given each segment's requested onsets per bar (N,), a segment asked to return with
    another density leaves the bars at a boundary that asks for a change unguided (recall_map).
    progress(done, total) counts denoising steps over all windows that are sampled.
    """
    if not 0.0 <= recall_strength <= 1.0:
        raise ValueError(f"recall_strength must be in [0, 1], got {recall_strength}")
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
    recalling = piece if recall_strength > 0 else replace(piece, recalls=None)
    source, semitones = recall_map(recalling, onsets_per_bar=onsets_per_bar)
    # Strength 1 guides the final step too (t_prev = -1): the repeat is an exact copy.
    guide_until = round((1.0 - recall_strength) * (diffusion.num_train_steps - 1))
    if recall_strength == 1.0:
        guide_until = -1
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

        guide, guide_mask = _recalled_music(roll, source, semitones, done, start, window_keep)
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
            guide=None if guide is None else torch.from_numpy(guide)[None],
            guide_mask=None if guide_mask is None else torch.from_numpy(guide_mask)[None],
            guide_until=guide_until,
        )
        roll[:, start:end] = x[0, :, : end - start].float().cpu().numpy()
        done[start:end] = True
    return roll


def _recalled_music(
    roll: np.ndarray,
    source: np.ndarray,
    semitones: np.ndarray,
    done: np.ndarray,
    start: int,
    window_keep: np.ndarray,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The guide for one window: (2, W, P) recalled music and its mask, or (None, None).

    Only steps still to be sampled whose source is already final are guided."""
    width = window_keep.shape[1]
    end = min(start + width, source.shape[0])
    src = source[start:end]
    free = ~window_keep[:, : end - start].all(axis=(0, 2))
    guided = free & (src >= 0) & done[np.maximum(src, 0)]
    if not guided.any():
        return None, None
    guide = np.full(window_keep.shape, SILENCE, dtype=np.float32)
    at = np.flatnonzero(guided)
    guide[:, at] = _transposed(roll[:, src[at]], semitones[start:end][at])
    mask = np.zeros(window_keep.shape, dtype=bool)
    mask[:, at] = True
    return guide, mask


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
    groove: float = 0.0,
    edge_bars: int = 0,
) -> DecodedRoll:
    """decode_roll for a sampled piece.

    groove > 0 first nudges each onset value by how common its place in the bar is within
    its segment (see groove_bias), so a segment keeps one accompaniment pattern. density_slack
    > 0 then decodes each segment with the onset threshold that best matches the onsets per
    bar its density control asks for (its POP909 quantile turned into onsets per bar by
    `calibration`, default the shipped one). edge_bars > 0 also matches the edge_bars bars
    on either side of a boundary whose requests differ clearly on their own (see
    density_matched_thresholds): a change is heard in the bars next to the boundary, and a
    segment whose mean follows its request can still play its edge like its neighbour."""
    if groove > 0:
        bias = groove_bias(x[0], piece.segment_ids, onset_threshold, groove)
        x = np.stack([x[0] + bias[:, None], x[1]])
    thresholds: float | np.ndarray = onset_threshold
    if density_slack > 0:
        onsets_per_bar = requested_onsets_per_bar(piece, calibration)
        thresholds = density_matched_thresholds(
            x[0],
            piece.segment_ids,
            onsets_per_bar,
            onset_threshold,
            density_slack,
            edge_bars=edge_bars,
        )
    return decode_roll(x, thresholds, sustain_threshold)


def requested_onsets_per_bar(
    piece: PieceConditions, calibration: Calibration | None = None
) -> np.ndarray:
    """(N,) onsets per bar each segment's density control asks for: its POP909 quantile
    turned into onsets by `calibration` (default the shipped one)."""
    calibration = calibration or Calibration.load()
    density = piece.dynamic[:, DYNAMIC_CONTROLS.index("density")].astype(np.float64)
    return np.asarray(calibration.to_raw("density", density), dtype=np.float64)


def groove_bias(
    onset_channel: np.ndarray,
    segment_ids: np.ndarray,
    threshold: float,
    strength: float,
    steps_per_bar: int = 16,
) -> np.ndarray:
    """(T, P) onset channel -> (T,) value to add to every pitch's onset value at each step.

    Pop accompaniment keeps a rhythm pattern for a phrase; a sampled window wanders. Per
    segment, each place in the bar (16th position) gets the share c of the segment's bars
    that have an onset there (any pitch above `threshold`); the bias is strength * (2c - 1):
    places most bars use are filled in where a bar missed them, places few bars use are
    thinned. Segments shorter than two bars keep their values (bias 0).
    """
    if strength < 0:
        raise ValueError("groove strength must be >= 0")
    bias = np.zeros(onset_channel.shape[0], dtype=np.float64)
    hits = onset_channel.max(axis=1) > threshold  # (T,) any onset at this step
    steps = np.arange(onset_channel.shape[0])
    position = steps % steps_per_bar
    for segment in np.unique(segment_ids):
        at = steps[segment_ids == segment]
        bars = np.unique(at // steps_per_bar)
        if len(bars) < 2:
            continue
        used = np.zeros(steps_per_bar)
        counts = np.zeros(steps_per_bar)
        np.add.at(used, position[at], hits[at])
        np.add.at(counts, position[at], 1)
        share = np.divide(used, counts, out=np.full(steps_per_bar, 0.5), where=counts > 0)
        bias[at] = strength * (2 * share[position[at]] - 1)
    return bias


def density_matched_thresholds(
    onset_channel: np.ndarray,
    segment_ids: np.ndarray,
    onsets_per_bar: np.ndarray,
    base_threshold: float,
    slack: float,
    steps_per_bar: int = 16,
    edge_bars: int = 0,
) -> np.ndarray:
    """(T, P) onset channel, (T,) segment ids, (N,) requested onsets per bar -> (T,) thresholds.

    Each segment gets the threshold that keeps its requested number of onsets (its strongest
    onset values), clipped to base_threshold ± slack: the model still decides which notes
    sound and where, the request only moves the cut within a band, so a segment the model
    made much busier or sparser than asked is brought toward the request, not forced to it.
    slack = 0 is the plain fixed threshold.

    edge_bars > 0: where neighbouring segments ask for densities at least EDGE_CONTRAST
    apart, the edge_bars bars on either side of their boundary get thresholds of their own
    (toward their segment's request), so the change is played at the boundary, not only on
    average. Boundaries where the requests are close keep the model's own phrasing (a fill
    before a new phrase, say).
    """
    if slack < 0:
        raise ValueError("slack must be >= 0")
    thresholds = np.full(segment_ids.shape[0], base_threshold, dtype=np.float64)
    if slack == 0:
        return thresholds
    for segment in np.unique(segment_ids):
        segment_steps = np.flatnonzero(segment_ids == segment)
        apart = _apart_from_neighbours(onsets_per_bar, int(segment))
        for steps in _matched_spans(segment_steps, edge_bars * steps_per_bar, *apart):
            values = np.sort(onset_channel[steps].ravel())[::-1]  # strongest first
            wanted = int(round(float(onsets_per_bar[segment]) * steps.size / steps_per_bar))
            if wanted <= 0:
                cut = base_threshold + slack
            elif wanted >= values.size:
                cut = base_threshold - slack
            else:
                cut = _cut_keeping(values, wanted)
            thresholds[steps] = np.clip(cut, base_threshold - slack, base_threshold + slack)
    return thresholds


def _matched_spans(
    steps: np.ndarray, edge_steps: int, first_apart: bool, last_apart: bool
) -> list[np.ndarray]:
    """A segment's steps -> the spans matched on their own. The first (last) edge_steps are
    a span of their own where the segment before (after) asks for a clearly other density
    (first_apart, last_apart) and the rest of the segment is at least an edge long; the
    remaining steps are one span."""
    head = edge_steps if first_apart and edge_steps > 0 else 0
    tail = edge_steps if last_apart and edge_steps > 0 else 0
    if head + tail == 0 or steps.size < head + tail + edge_steps:
        return [steps]
    spans = [steps[:head], steps[head : steps.size - tail], steps[steps.size - tail :]]
    return [span for span in spans if span.size]


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
