"""Piano rolls on a 16th-note grid, and their conversion from and to MIDI.

A roll has T steps (16th notes unless the spec says otherwise) by P pitches. Two boolean
channels describe the notes: `onset` (a note starts at this step) and `sustain` (the pitch
sounds at this step, onset steps included); `velocity` holds the MIDI velocity at onsets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from diffbgm.errors import MidiError

if TYPE_CHECKING:  # imported where MIDI is read or written: training needs no MIDI library
    import pretty_midi

DEFAULT_VELOCITY = 80


@dataclass(frozen=True)
class RollSpec:
    """The grid: steps per beat, beats per bar (4/4) and the pitch range (MIDI numbers)."""

    steps_per_beat: int = 4
    beats_per_bar: int = 4
    pitch_low: int = 21  # A0, the lowest piano key
    n_pitches: int = 88

    @property
    def steps_per_bar(self) -> int:
        return self.steps_per_beat * self.beats_per_bar

    @property
    def pitch_high(self) -> int:
        """Highest MIDI pitch inside the roll (inclusive)."""
        return self.pitch_low + self.n_pitches - 1


@dataclass
class PianoRoll:
    """Notes on a grid. Arrays are (T, P); `dropped_notes` counts notes that did not fit."""

    onset: np.ndarray  # (T, P) bool
    sustain: np.ndarray  # (T, P) bool, onset steps included
    velocity: np.ndarray  # (T, P) uint8, non-zero at onsets only
    dropped_notes: int = 0

    @property
    def n_steps(self) -> int:
        return int(self.onset.shape[0])

    @property
    def n_pitches(self) -> int:
        return int(self.onset.shape[1])


def step_times_from_beats(beat_times_s: np.ndarray, steps_per_beat: int) -> np.ndarray:
    """(n_beats,) beat times in seconds -> (n_beats * steps_per_beat,) step times in seconds.

    Steps divide each beat linearly; the last beat is given the length of the one before it.
    """
    beats = np.asarray(beat_times_s, dtype=np.float64)
    if beats.ndim != 1 or beats.shape[0] < 2:
        raise MidiError(f"need at least two beat times to build a step grid, got {beats.shape}")
    if np.any(np.diff(beats) <= 0):
        raise MidiError("beat times must increase strictly")
    ends = np.append(beats[1:], beats[-1] + (beats[-1] - beats[-2]))
    frac = np.arange(steps_per_beat) / steps_per_beat  # (S,)
    return (beats[:, None] + (ends - beats)[:, None] * frac[None, :]).reshape(-1)


def load_midi(midi: pretty_midi.PrettyMIDI | str | Path) -> pretty_midi.PrettyMIDI:
    """Read a MIDI file, turning every failure into a MidiError that names the file."""
    import pretty_midi

    if isinstance(midi, pretty_midi.PrettyMIDI):
        return midi
    path = Path(midi)
    if not path.is_file():
        raise MidiError(f"MIDI file not found: {path}")
    try:
        return pretty_midi.PrettyMIDI(str(path))
    except Exception as exc:  # mido/pretty_midi raise many unrelated types on corrupt files
        raise MidiError(f"cannot read MIDI file {path}: {exc}") from exc


def nearest_step(times_s: np.ndarray, step_times_s: np.ndarray) -> np.ndarray:
    """Index of the grid step nearest to each time (may be 0 or T-1 for times off the grid)."""
    right = np.clip(np.searchsorted(step_times_s, times_s), 1, len(step_times_s) - 1)
    left = right - 1
    closer_left = (times_s - step_times_s[left]) <= (step_times_s[right] - times_s)
    return np.where(closer_left, left, right)


def _note_arrays(midi: pretty_midi.PrettyMIDI) -> np.ndarray:
    """(N, 4) float: start_s, end_s, pitch, velocity of all non-drum notes."""
    rows = [
        (note.start, note.end, note.pitch, note.velocity)
        for instrument in midi.instruments
        if not instrument.is_drum
        for note in instrument.notes
    ]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def midi_to_roll(
    midi: pretty_midi.PrettyMIDI | str | Path,
    step_times_s: np.ndarray,
    spec: RollSpec,
    name: str = "",
) -> PianoRoll:
    """Quantise all non-drum notes of a MIDI file onto a step grid (times in seconds).

    Onsets and offsets go to the nearest step; every note lasts at least one step. Notes
    outside the pitch range, or starting more than half a step before the first step or
    after the grid ends, are dropped and counted in `dropped_notes`.
    """
    label = name or (str(midi) if isinstance(midi, (str, Path)) else "MIDI")
    notes = _note_arrays(load_midi(midi))
    if notes.shape[0] == 0:
        raise MidiError(f"{label} has no notes")
    return notes_to_roll(notes, step_times_s, spec)


def playable_notes(
    starts: np.ndarray, pitch: np.ndarray, ends: np.ndarray, velocity: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Quantised notes (steps) as a piano plays them: one key cannot sound twice.

    Notes of one pitch starting on the same step merge into one (longest end, loudest
    velocity); a key struck again ends the note it was holding. POP909 doubles many notes
    across its tracks, so without this the roll could not tell its notes apart.
    """
    order = np.lexsort((-ends, starts, pitch))  # by pitch, then start, longest first
    starts, pitch, ends, velocity = starts[order], pitch[order], ends[order], velocity[order]
    first_of_group = np.ones(len(starts), dtype=bool)
    first_of_group[1:] = (pitch[1:] != pitch[:-1]) | (starts[1:] != starts[:-1])
    group_starts = np.flatnonzero(first_of_group)
    loudest = np.maximum.reduceat(velocity, group_starts) if len(starts) else velocity
    starts, pitch, ends = starts[group_starts], pitch[group_starts], ends[group_starts]
    velocity = loudest
    same_pitch_next = np.append(pitch[1:] == pitch[:-1], False)
    next_start = np.append(starts[1:], np.iinfo(np.int64).max)
    ends = np.where(same_pitch_next, np.minimum(ends, next_start), ends)
    return starts, pitch, ends, velocity


def notes_to_roll(notes: np.ndarray, step_times_s: np.ndarray, spec: RollSpec) -> PianoRoll:
    """(N, 4) start_s, end_s, pitch, velocity -> PianoRoll on the grid `step_times_s`."""
    steps = np.asarray(step_times_s, dtype=np.float64)
    n_steps = steps.shape[0]
    half_first = (steps[1] - steps[0]) / 2
    half_last = (steps[-1] - steps[-2]) / 2
    pitch = notes[:, 2].astype(np.int64)
    keep = (
        (pitch >= spec.pitch_low)
        & (pitch <= spec.pitch_high)
        & (notes[:, 0] >= steps[0] - half_first)
        & (notes[:, 0] < steps[-1] + half_last)
    )
    dropped = int((~keep).sum())
    notes, pitch = notes[keep], pitch[keep] - spec.pitch_low
    starts = nearest_step(notes[:, 0], steps)
    # An offset past the grid's end means "until the end": allow the index T.
    grid_with_end = np.append(steps, steps[-1] + 2 * half_last)
    ends = np.minimum(np.maximum(nearest_step(notes[:, 1], grid_with_end), starts + 1), n_steps)
    starts, pitch, ends, vels = playable_notes(starts, pitch, ends, notes[:, 3])

    onset = np.zeros((n_steps, spec.n_pitches), dtype=bool)
    velocity = np.zeros((n_steps, spec.n_pitches), dtype=np.uint8)
    # Sustain via a difference array: +1 at start, -1 at end, cumulative sum > 0 = sounding.
    diff = np.zeros((n_steps + 1, spec.n_pitches), dtype=np.int32)
    np.add.at(diff, (starts, pitch), 1)
    np.add.at(diff, (ends, pitch), -1)
    sustain = np.cumsum(diff[:-1], axis=0) > 0
    onset[starts, pitch] = True
    velocity[starts, pitch] = np.clip(vels, 1, 127).astype(np.uint8)
    return PianoRoll(onset=onset, sustain=sustain, velocity=velocity, dropped_notes=dropped)


def roll_to_notes(roll: PianoRoll) -> np.ndarray:
    """(N, 3) int: onset_step, pitch index, end_step (exclusive) of every note in the roll.

    A note starts at an onset and lasts while the pitch sustains, until the next onset of the
    same pitch; an onset without sustain still lasts one step.
    """
    rows: list[tuple[int, int, int]] = []
    n_steps = roll.n_steps
    for p in np.flatnonzero(roll.onset.any(axis=0)):
        onset_steps = np.flatnonzero(roll.onset[:, p])
        sounding = roll.sustain[:, p]
        # The first non-sounding step at or after each position (T when it sounds to the end).
        silent_steps = np.append(np.flatnonzero(~sounding), n_steps)
        for i, s in enumerate(onset_steps):
            next_onset = onset_steps[i + 1] if i + 1 < len(onset_steps) else n_steps
            first_silent = silent_steps[np.searchsorted(silent_steps, s + 1)]
            end = max(s + 1, min(first_silent, next_onset))
            rows.append((int(s), int(p), int(end)))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def _notes_instrument(
    roll: PianoRoll,
    spec: RollSpec,
    step_to_time: np.ndarray,
    program: int,
    velocity: int | None,
) -> pretty_midi.Instrument:
    import pretty_midi

    instrument = pretty_midi.Instrument(program=program, name="piano")
    for start, p, end in roll_to_notes(roll):
        stored = int(roll.velocity[start, p])
        vel = velocity if velocity is not None else (stored or DEFAULT_VELOCITY)
        instrument.notes.append(
            pretty_midi.Note(
                velocity=int(vel),
                pitch=int(p) + spec.pitch_low,
                start=float(step_to_time[start]),
                end=float(step_to_time[end]),
            )
        )
    return instrument


def roll_to_midi(
    roll: PianoRoll,
    tempo_bpm: float,
    spec: RollSpec,
    program: int = 0,
    velocity: int | None = None,
) -> pretty_midi.PrettyMIDI:
    """Roll -> MIDI at a constant tempo (beats per minute), written as the file's tempo.

    `velocity` overrides every note's velocity; otherwise the roll's onset velocity is used
    (DEFAULT_VELOCITY where the roll holds none).
    """
    if tempo_bpm <= 0:
        raise MidiError(f"tempo must be positive, got {tempo_bpm} BPM")
    step_s = 60.0 / tempo_bpm / spec.steps_per_beat
    step_to_time = np.arange(roll.n_steps + 1) * step_s
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(initial_tempo=float(tempo_bpm))
    midi.instruments.append(_notes_instrument(roll, spec, step_to_time, program, velocity))
    return midi


def roll_to_midi_timed(
    roll: PianoRoll,
    step_times_s: np.ndarray,
    spec: RollSpec,
    program: int = 0,
    velocity: int | None = None,
) -> pretty_midi.PrettyMIDI:
    """Roll -> MIDI on a non-constant grid: step i starts at step_times_s[i] (seconds).

    The file's tempo event is the median tempo of the grid; note times follow the grid.
    """
    times = np.asarray(step_times_s, dtype=np.float64)
    if times.shape[0] != roll.n_steps or roll.n_steps < 2:
        raise MidiError(f"need one time per step: {times.shape[0]} times for {roll.n_steps} steps")
    step_s = float(np.median(np.diff(times)))
    step_to_time = np.append(times, times[-1] + (times[-1] - times[-2]))
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(initial_tempo=60.0 / (step_s * spec.steps_per_beat))
    midi.instruments.append(_notes_instrument(roll, spec, step_to_time, program, velocity))
    return midi
