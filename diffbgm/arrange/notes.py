"""The note table every arrangement module passes around, and the plan's chords on the grid.

A note table is an (N, 4) int64 array: start step, end step (exclusive), MIDI pitch, velocity,
with steps counted on the plan's 16th grid from its origin (the first downbeat, which may lie
before the video starts). Seconds come only at the end (diffbgm.arrange.score).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diffbgm.music.chords import Chord, parse_chord
from diffbgm.music.roll import DEFAULT_VELOCITY, PianoRoll
from diffbgm.plan.records import MusicPlan

START, END, PITCH, VELOCITY = range(4)


def empty_notes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.int64)


def notes_from_rows(rows: np.ndarray, roll: PianoRoll, pitch_low: int) -> np.ndarray:
    """Rows of roll_to_notes (onset step, pitch index, end step) -> a note table, with the
    roll's onset velocity (DEFAULT_VELOCITY where it holds none, as roll_to_midi plays it)."""
    if len(rows) == 0:
        return empty_notes()
    stored = roll.velocity[rows[:, 0], rows[:, 1]].astype(np.int64)
    velocity = np.where(stored > 0, stored, DEFAULT_VELOCITY)
    return np.stack([rows[:, 0], rows[:, 2], rows[:, 1] + pitch_low, velocity], axis=1)


def into_range(notes: np.ndarray, low: int, high: int) -> np.ndarray:
    """Notes outside [low, high] moved by whole octaves into it; a note that then doubles
    another of the same pitch and start is dropped (one key cannot be struck twice)."""
    if len(notes) == 0:
        return notes
    moved = notes.copy()
    pitch = moved[:, PITCH]
    pitch = np.where(pitch < low, pitch + 12 * ((low - pitch + 11) // 12), pitch)
    pitch = np.where(pitch > high, pitch - 12 * ((pitch - high + 11) // 12), pitch)
    moved[:, PITCH] = pitch
    _, first = np.unique(moved[:, [START, PITCH]], axis=0, return_index=True)
    return moved[np.sort(first)]


def one_voice(notes: np.ndarray) -> np.ndarray:
    """Each note ends where the next later-starting note begins (a line, one note at a time)."""
    if len(notes) < 2:
        return notes
    line = notes[np.argsort(notes[:, START], kind="stable")].copy()
    later_starts = np.unique(line[:, START])
    following = np.searchsorted(later_starts, line[:, START], side="right")
    has_next = following < len(later_starts)
    next_start = later_starts[np.minimum(following, len(later_starts) - 1)]
    line[:, END] = np.where(has_next, np.minimum(line[:, END], next_start), line[:, END])
    return line


def scale_velocity(notes: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1.0 or len(notes) == 0:
        return notes
    scaled = notes.copy()
    scaled[:, VELOCITY] = np.clip(np.round(notes[:, VELOCITY] * factor), 1, 127)
    return scaled


@dataclass(frozen=True)
class ChordSpan:
    """A chord of the plan on the step grid: [start, end) steps."""

    start: int
    end: int
    chord: Chord


def chord_spans(plan: MusicPlan, steps_per_beat: int = 4) -> list[ChordSpan]:
    """The plan's chords (no-chord spans left out) in step units, in time order."""
    spans = []
    for planned in plan.chords:
        chord = parse_chord(planned.label)
        if chord.is_none:
            continue
        start = planned.start_beat * steps_per_beat
        spans.append(ChordSpan(start, start + planned.n_beats * steps_per_beat, chord))
    return spans


def harmony_changes(plan: MusicPlan, steps_per_beat: int = 4) -> list[int]:
    """Steps where the harmony changes: each chord start, each segment start (a cut) and,
    where the plan has no chord, each bar line. Sorted, unique, inside the grid."""
    changes = {span.start for span in chord_spans(plan, steps_per_beat)}
    changes |= {seg.start_beat * steps_per_beat for seg in plan.segments}
    covered = np.zeros(plan.n_steps(steps_per_beat), dtype=bool)
    for span in chord_spans(plan, steps_per_beat):
        covered[span.start : span.end] = True
    bar_steps = plan.beats_per_bar * steps_per_beat
    changes |= {s for s in range(0, len(covered), bar_steps) if not covered[s]}
    return sorted(s for s in changes if 0 <= s < len(covered))
