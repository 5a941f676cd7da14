"""Parts the model did not write, built from the plan's chords: a sustained pad and a bass line.

Both follow the chords the music was generated on (the plan's), so they agree with the notes;
their loudness follows the notes the roll plays under each chord.
"""

from __future__ import annotations

import numpy as np

from diffbgm.arrange.notes import START, VELOCITY, ChordSpan, chord_spans, empty_notes
from diffbgm.plan.records import MusicPlan

QUIET_VELOCITY = 64  # under a chord where the roll plays nothing


def _span_velocity(span: ChordSpan, notes: np.ndarray, scale: float) -> int:
    """The median velocity of the notes starting under the chord, scaled."""
    inside = notes[(notes[:, START] >= span.start) & (notes[:, START] < span.end)]
    base = float(np.median(inside[:, VELOCITY])) if len(inside) else QUIET_VELOCITY
    return int(np.clip(round(base * scale), 1, 127))


def _voicings(pitch_classes: list[int], low: int, high: int) -> list[list[int]]:
    """Closed-position voicings of the pitch classes (each inversion, every octave) that fit
    inside [low, high]."""
    found = []
    for rotation in range(len(pitch_classes)):
        order = pitch_classes[rotation:] + pitch_classes[:rotation]
        first = low + (order[0] - low) % 12
        while True:
            voicing = [first]
            for pc in order[1:]:
                voicing.append(voicing[-1] + 1 + (pc - voicing[-1] - 1) % 12)
            if voicing[-1] > high:
                break
            found.append(voicing)
            first += 12
    return found


def pad_notes(
    plan: MusicPlan,
    low: int,
    high: int,
    played: np.ndarray,
    velocity_scale: float = 0.7,
    steps_per_beat: int = 4,
) -> np.ndarray:
    """One sustained voicing per chord, each chosen to move as little as possible from the one
    before (the first sits nearest the middle of the range). played: the roll's notes, for
    the loudness."""
    rows: list[tuple[int, int, int, int]] = []
    previous: list[int] | None = None
    for span in chord_spans(plan, steps_per_beat):
        root = span.chord.root_pc if span.chord.root_pc is not None else 0
        classes = sorted(span.chord.pitch_classes, key=lambda pc: (pc - root) % 12)
        options = _voicings(classes[:4], low, high)  # four voices at most: a pad, not a cluster
        if not options:
            continue
        if previous is None:
            middle = (low + high) / 2
            voicing = min(options, key=lambda v: abs(float(np.mean(v)) - middle))
        else:
            prev = previous
            voicing = min(options, key=lambda v: sum(min(abs(p - q) for q in prev) for p in v))
        velocity = _span_velocity(span, played, velocity_scale)
        rows += [(span.start, span.end, pitch, velocity) for pitch in voicing]
        previous = voicing
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4) if rows else empty_notes()


def bass_notes(
    plan: MusicPlan,
    low: int,
    high: int,
    played: np.ndarray,
    velocity_scale: float = 0.8,
    strike_beats: int = 0,
    steps_per_beat: int = 4,
) -> np.ndarray:
    """The bass note (slash bass, else the root) of every chord at its lowest place in
    [low, high]; held for the chord, or struck again every `strike_beats` beats."""
    rows: list[tuple[int, int, int, int]] = []
    for span in chord_spans(plan, steps_per_beat):
        bass_pc = span.chord.bass_pc if span.chord.bass_pc is not None else span.chord.root_pc
        if bass_pc is None:
            continue
        pitch = low + (bass_pc - low) % 12
        velocity = _span_velocity(span, played, velocity_scale)
        step = strike_beats * steps_per_beat if strike_beats > 0 else span.end - span.start
        for start in range(span.start, span.end, step):
            rows.append((start, min(start + step, span.end), pitch, velocity))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4) if rows else empty_notes()
