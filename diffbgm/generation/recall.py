"""Phrase recall: a returning scene or repeated phrase follows the music it repeats.

A window cannot see earlier phrases, so a song's second verse would not sound like its first.
Where the piece says a segment recalls an earlier one (`PieceConditions.recalls`), the earlier
segment's music, bar for bar and transposed to fit the new chords, guides the noisy part of
the denoising: the repeat keeps its groove and contour while the late steps fit it to its own
chords and controls. `recall_map` says where each step's music comes from; `RecallGuide` is
the object the windowed sampler asks for each window's guide.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from diffbgm.generation.requests import apart_from_neighbours, clearly_apart
from diffbgm.model.conditions import PieceConditions

STEPS_PER_BAR = 16
SILENCE = -1.0  # roll value of "no onset / not sounding" in the model's [-1, 1] space
TRANSPOSE_MIN_AGREEMENT = 0.8  # share of chord tones a transposed recall must match
TRANSPOSE_MARGIN = 0.3  # ... and by how much it must beat the untransposed recall
# A bar is recalled only where its chords and its source bar's agree on this share of tones:
# the same music over other chords would clash, so such bars are composed afresh.
RECALL_MIN_CHORD_AGREEMENT = 0.75
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


def inner_recall_steps(
    piece: PieceConditions,
    source: np.ndarray,
    lag_bars: int,
    steps_per_bar: int = STEPS_PER_BAR,
    near_bars: int = 0,
    written_by: np.ndarray | None = None,
) -> np.ndarray:
    """(T,) the step each step follows inside its own segment, or -1, bar by bar: a bar
    lag_bars or more into its segment, none of whose steps another phrase's recall covers
    (`source`, from `recall_map`: -1 = not recalled), whose chords agree with the earlier
    bar's on RECALL_MIN_CHORD_AGREEMENT of their tones, follows the bar lag_bars before it.

    near_bars > 0: a bar that cannot follow the bar lag_bars before it (too early in its
    segment, or their chords disagree) follows the bar near_bars before it where that bar
    qualifies the same way. Either source must be final when the bar is sampled: written by
    an earlier window (`written_by`, (T,) the window that samples each step; None: every
    earlier step counts as final).

    Real phrases repeat their own bars loosely: inside POP909's phrases a bar shares a quarter
    of its (pitch, step) onsets with the bar four before it, the network's a tenth, and a
    sixth with the bar two before it (docs/evaluation.md, "Inner recall")."""
    steps = np.arange(piece.n_steps)
    follows = np.full(piece.n_steps, -1, dtype=np.int64)
    lags = [lag for lag in (lag_bars, near_bars) if lag > 0]
    for segment in np.unique(piece.segment_ids):
        at = steps[piece.segment_ids == segment]
        start, last = int(at[0]), int(at[-1])
        for bar_start in range(start + min(lags) * steps_per_bar, last + 1, steps_per_bar):
            bar = np.arange(bar_start, min(bar_start + steps_per_bar, last + 1))
            if (source[bar] >= 0).any():
                continue
            for lag_bars_here in lags:
                earlier = bar - lag_bars_here * steps_per_bar
                if earlier[0] < start:
                    continue
                if written_by is not None and written_by[earlier].max() >= written_by[bar].min():
                    continue  # not final yet when this bar is sampled
                if (
                    _agreement(piece.chord_pcs[bar], piece.chord_pcs[earlier])
                    >= RECALL_MIN_CHORD_AGREEMENT
                ):
                    follows[bar] = earlier
                    break
    return follows


def _changed_edges(
    piece: PieceConditions,
    target: int,
    origin: int,
    onsets_per_bar: np.ndarray,
    steps_per_bar: int,
) -> list[np.ndarray]:
    """The first / last bar of steps of segment `target` that must play its own density: its
    request is EDGE_CONTRAST away from its source's and from its neighbour's across that edge."""
    if not clearly_apart(onsets_per_bar, origin, target):
        return []
    steps = np.flatnonzero(piece.segment_ids == target)
    first_apart, last_apart = apart_from_neighbours(onsets_per_bar, target)
    return [
        edge
        for apart, edge in (
            (first_apart, steps[:steps_per_bar]),
            (last_apart, steps[-steps_per_bar:]),
        )
        if apart
    ]


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


def transposed_steps(music: np.ndarray, semitones: np.ndarray) -> np.ndarray:
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


def recall_input(music: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The network's view of recalled music (`Conditions.recalled`): (..., 2, W, P) music in
    [-1, 1] and (..., W) bool, the steps that recall -> (..., 3, W, P) float32: onset and
    sustain (values above 0) where a step recalls, and 1 at those steps in the third channel."""
    steps = where.astype(np.float32)[..., None, :, None]  # (..., 1, W, 1)
    notes = (music > 0).astype(np.float32) * steps  # (..., 2, W, P)
    return np.concatenate([notes, np.broadcast_to(steps, notes[..., :1, :, :].shape)], axis=-3)


@dataclass(frozen=True)
class RecallGuide:
    """Where recalled music comes from, and until which diffusion step it guides.

    strength in [0, 1] is the share of the noise schedule (from the noisy end) in which a
    recalling segment is guided by its source's music: 0 = off, 1 = an exact copy (the final
    step is guided too). Inner recall: a bar inside a phrase guided by the bar `inner_bars`
    before it, with a strength of its own (a looser repeat than a returning phrase's)."""

    source: np.ndarray  # (T,) source step of each step, -1 = not recalled
    semitones: np.ndarray  # (T,) transposition of the recalled music
    until_t: int  # paint while the diffusion step t >= until_t (num_train_steps: never)
    # steps that follow a bar of their own phrase (inner recall) and their until_t
    inner: np.ndarray | None = None
    inner_until_t: int = 0

    @classmethod
    def build(
        cls,
        piece: PieceConditions,
        strength: float,
        num_train_steps: int,
        onsets_per_bar: np.ndarray | None = None,
        keep_map: bool = False,
        inner_strength: float = 0.0,
        inner_bars: int = 4,
        inner_near_bars: int = 0,
        written_by: np.ndarray | None = None,
    ) -> RecallGuide:
        """The guide for a piece; with `onsets_per_bar` (each segment's requested density), a
        returning phrase asked for another density leaves a changing edge unguided.

        keep_map: map the recalls even at strength 0 (which then paints at no step), for a
        network that takes the recalled music as an input (`ModelConfig.recall_input`).
        inner_strength > 0: the bars of a phrase that no other phrase's recall covers follow
        the bar `inner_bars` before them where their chords agree, or the bar
        `inner_near_bars` before them where the first cannot be followed (`written_by`: the
        window that writes each step; `inner_recall_steps`)."""
        for name, value in (("recall strength", strength), ("inner recall", inner_strength)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if strength > 0 or keep_map:
            source, semitones = recall_map(piece, onsets_per_bar=onsets_per_bar)
        else:
            source = np.full(piece.n_steps, -1, dtype=np.int64)
            semitones = np.zeros(piece.n_steps, dtype=np.int64)
        until_t = _until(strength, num_train_steps)
        if inner_strength <= 0:
            return cls(source, semitones, until_t)
        follows = inner_recall_steps(
            piece, source, inner_bars, near_bars=inner_near_bars, written_by=written_by
        )
        inner = follows >= 0
        source = np.where(inner, follows, source)
        semitones = np.where(inner, 0, semitones)
        return cls(source, semitones, until_t, inner, _until(inner_strength, num_train_steps))

    def until_steps(self, start: int, width: int) -> np.ndarray:
        """(width,) the until_t of each step of the window at `start`."""
        until = np.full(width, self.until_t, dtype=np.int64)
        if self.inner is not None:
            part = self.inner[start : start + width]
            until[: part.size][part] = self.inner_until_t
        return until

    def for_window(
        self, roll: np.ndarray, done: np.ndarray, start: int, window_keep: np.ndarray
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The guide of the window at `start`: (2, W, P) recalled music and its mask, or
        (None, None). Only steps still to be sampled whose source is already final are guided."""
        return _recalled_music(roll, self.source, self.semitones, done, start, window_keep)


def _until(strength: float, num_train_steps: int) -> int:
    if strength == 0.0:
        return num_train_steps  # no timestep reaches it: nothing is painted
    return -1 if strength == 1.0 else round((1.0 - strength) * (num_train_steps - 1))


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
    guide[:, at] = transposed_steps(roll[:, src[at]], semitones[start:end][at])
    mask = np.zeros(window_keep.shape, dtype=bool)
    mask[:, at] = True
    return guide, mask
