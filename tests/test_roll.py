"""Piano roll <-> MIDI: grids, quantisation, round trips on real POP909 songs, bad input."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from diffbgm.errors import MidiError
from diffbgm.music.roll import (
    PianoRoll,
    RollSpec,
    midi_to_roll,
    nearest_step,
    roll_to_midi,
    roll_to_midi_timed,
    roll_to_notes,
    step_times_from_beats,
)

SPEC = RollSpec()
ROUND_TRIP_SONGS = [f"{i:03d}" for i in range(1, 860, 36)]  # 24 songs across the set


def test_spec_properties() -> None:
    assert SPEC.steps_per_bar == 16
    assert SPEC.pitch_high == 108


def test_step_times_interpolate_and_extrapolate_last_beat() -> None:
    steps = step_times_from_beats(np.array([0.0, 1.0, 3.0]), 4)
    np.testing.assert_allclose(steps, [0, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5])


def test_step_times_reject_bad_beats() -> None:
    with pytest.raises(MidiError):
        step_times_from_beats(np.array([0.0]), 4)
    with pytest.raises(MidiError):
        step_times_from_beats(np.array([0.0, 1.0, 0.5]), 4)


def make_midi(
    notes: list[tuple[float, float, int, int]], tempo: float = 120.0
) -> pretty_midi.PrettyMIDI:
    midi = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    piano = pretty_midi.Instrument(program=0)
    for start, end, pitch, velocity in notes:
        piano.notes.append(pretty_midi.Note(velocity=velocity, pitch=pitch, start=start, end=end))
    midi.instruments.append(piano)
    return midi


def test_quantisation_nearest_step_min_length_and_range() -> None:
    grid = np.arange(16) * 0.125  # 120 BPM 16ths
    midi = make_midi(
        [
            (0.06, 0.49, 60, 90),  # 0.06 -> step 0 (nearer than 1), 0.49 -> step 4
            (0.5, 0.52, 64, 70),  # shorter than a step: still one step
            (0.25, 1.0, 10, 80),  # below A0: dropped
            (1.0, 1.5, 67, 100),
        ]
    )
    roll = midi_to_roll(midi, grid, SPEC)
    assert roll.dropped_notes == 1
    p = lambda midi_pitch: midi_pitch - SPEC.pitch_low  # noqa: E731
    assert roll.onset[0, p(60)] and roll.sustain[0:4, p(60)].all() and not roll.sustain[4, p(60)]
    assert roll.velocity[0, p(60)] == 90
    assert roll.sustain[:, p(64)].sum() == 1 and roll.onset[4, p(64)]
    assert roll.onset.sum() == 3
    notes = {tuple(n) for n in roll_to_notes(roll).tolist()}
    assert notes == {(0, p(60), 4), (4, p(64), 5), (8, p(67), 12)}


def test_restruck_key_ends_the_held_note() -> None:
    grid = np.arange(16) * 0.125
    # Two tracks hold the same pitch: the second strike ends the first note.
    midi = make_midi([(0.0, 1.0, 60, 80), (0.5, 0.75, 60, 80), (0.0, 0.5, 60, 90)])
    roll = midi_to_roll(midi, grid, SPEC)
    notes = {tuple(n) for n in roll_to_notes(roll).tolist()}
    assert notes == {(0, 60 - 21, 4), (4, 60 - 21, 6)}
    assert roll.velocity[0, 60 - 21] == 90  # doubled notes keep the loudest velocity


def test_roll_to_midi_writes_the_real_tempo() -> None:
    onset = np.zeros((32, SPEC.n_pitches), dtype=bool)
    sustain = np.zeros_like(onset)
    onset[4, 39] = True
    sustain[4:12, 39] = True
    roll = PianoRoll(onset, sustain, np.zeros(onset.shape, dtype=np.uint8))
    midi = roll_to_midi(roll, 90.0, SPEC)
    _, tempi = midi.get_tempo_changes()
    assert tempi[0] == pytest.approx(90.0, rel=1e-4)
    note = midi.instruments[0].notes[0]
    step_s = 60 / 90 / 4
    assert note.start == pytest.approx(4 * step_s, abs=1e-3)
    assert note.end == pytest.approx(12 * step_s, abs=1e-3)
    assert note.pitch == 60 and note.velocity == 80


def test_roll_to_midi_timed_follows_the_grid() -> None:
    grid = np.cumsum(np.full(8, 0.1)) + 1.0
    onset = np.zeros((8, SPEC.n_pitches), dtype=bool)
    onset[2, 40] = True
    roll = PianoRoll(onset, onset.copy(), np.full(onset.shape, 50, dtype=np.uint8))
    note = roll_to_midi_timed(roll, grid, SPEC).instruments[0].notes[0]
    assert note.start == pytest.approx(grid[2], abs=1e-3)
    assert note.end == pytest.approx(grid[3], abs=1e-3)


def test_bad_midi_files_raise_midi_error(tmp_path: Path) -> None:
    grid = np.arange(16) * 0.125
    with pytest.raises(MidiError, match="not found"):
        midi_to_roll(tmp_path / "missing.mid", grid, SPEC)
    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00garbage")
    with pytest.raises(MidiError, match="corrupt.mid"):
        midi_to_roll(corrupt, grid, SPEC)
    empty = tmp_path / "empty.mid"
    pretty_midi.PrettyMIDI().write(str(empty))
    with pytest.raises(MidiError, match="no notes"):
        midi_to_roll(empty, grid, SPEC)


def playable_reference(midi: pretty_midi.PrettyMIDI, grid: np.ndarray) -> set[tuple[int, int, int]]:
    """The song's notes quantised to the grid, as a piano can play them, written plainly.

    Per pitch: notes on the same step merge (longest end); a new strike ends the held note.
    """
    half = (grid[1] - grid[0]) / 2
    grid_with_end = np.append(grid, grid[-1] + (grid[-1] - grid[-2]))
    longest: dict[int, dict[int, int]] = defaultdict(dict)
    for instrument in midi.instruments:
        for note in instrument.notes:
            if not SPEC.pitch_low <= note.pitch <= SPEC.pitch_high or note.start < grid[0] - half:
                continue
            start = int(np.argmin(np.abs(grid - note.start)))
            end = int(np.argmin(np.abs(grid_with_end - note.end)))
            end = min(max(end, start + 1), len(grid))
            by_start = longest[note.pitch - SPEC.pitch_low]
            by_start[start] = max(by_start.get(start, 0), end)
    notes = set()
    for pitch, by_start in longest.items():
        starts = sorted(by_start)
        for i, start in enumerate(starts):
            end = by_start[start] if i + 1 == len(starts) else min(by_start[start], starts[i + 1])
            notes.add((start, pitch, end))
    return notes


def test_nearest_step_ties_go_left() -> None:
    assert nearest_step(np.array([0.0625, 0.07]), np.arange(4) * 0.125).tolist() == [0, 1]


def test_pop909_round_trip_keeps_quantised_notes(pop909_dir: Path) -> None:
    scores = []
    for song_id in ROUND_TRIP_SONGS:
        beats = np.loadtxt(pop909_dir / song_id / "beat_midi.txt")[:, 0]
        grid = step_times_from_beats(beats, SPEC.steps_per_beat)
        original = pretty_midi.PrettyMIDI(str(pop909_dir / song_id / f"{song_id}.mid"))
        reference = playable_reference(original, grid)
        roll = midi_to_roll(original, grid, SPEC)
        written = roll_to_midi(roll, 100.0, SPEC)  # a different, constant tempo
        constant_grid = np.arange(roll.n_steps) * (60 / 100 / SPEC.steps_per_beat)
        back = {
            tuple(n) for n in roll_to_notes(midi_to_roll(written, constant_grid, SPEC)).tolist()
        }
        hits = len(reference & back)
        scores.append(2 * hits / (len(reference) + len(back)))
    assert len(scores) >= 20
    assert min(scores) >= 0.99, dict(zip(ROUND_TRIP_SONGS, scores, strict=True))
