"""Playing like a person: sustain pedal with the harmony, small seeded timing and velocity
changes, and each part's mixer settings.

Everything here works in seconds from the grid origin (before the shift into video time) and
never changes which notes are played: the score (humanise=False) keeps the grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pretty_midi

from diffbgm.arrange.presets import PartStyle

SUSTAIN, VOLUME, REVERB, CHORUS = 64, 7, 91, 93


@dataclass(frozen=True)
class Humanise:
    """Timing: a note moves by a normal draw of `timing_sd_s` seconds, at most `max_shift_s`,
    and never out of the beat it starts in. Velocity: a normal draw of `velocity_sd`, at
    most `max_velocity` either way. The same seed gives the same performance."""

    timing_sd_s: float = 0.006
    max_shift_s: float = 0.015
    velocity_sd: float = 4.0
    max_velocity: int = 8


@dataclass(frozen=True)
class Pedal:
    """Legato pedalling: down `down_after_s` after each change of harmony, up `lift_before_s`
    before the next (at most a fifth of the time between them either way)."""

    down_after_s: float = 0.05
    lift_before_s: float = 0.03


def humanise_notes(
    notes: list[pretty_midi.Note], beat_s: float, rng: np.random.Generator, how: Humanise
) -> list[pretty_midi.Note]:
    """New notes, each moved a few ms and made a little louder or softer.

    A note keeps its beat: its start stays in [beat line, next beat line), so a note on the
    beat can only come late. Its length is kept (shortened to stay at least 10 ms)."""
    if not notes:
        return []
    starts = np.array([n.start for n in notes])
    ends = np.array([n.end for n in notes])
    shift = np.clip(rng.normal(0.0, how.timing_sd_s, len(notes)), -how.max_shift_s, how.max_shift_s)
    louder = np.clip(
        np.round(rng.normal(0.0, how.velocity_sd, len(notes))), -how.max_velocity, how.max_velocity
    )
    # The beat a note starts in, by the grid (tolerant of float error on the beat line).
    beat = np.floor(starts / beat_s + 1e-6)
    earliest = beat * beat_s
    latest = (beat + 1) * beat_s - 1e-3
    new_starts = np.clip(starts + shift, np.maximum(earliest, starts - how.max_shift_s), latest)
    new_ends = np.maximum(ends + (new_starts - starts), new_starts + 0.01)
    return [
        pretty_midi.Note(
            velocity=int(np.clip(note.velocity + dv, 1, 127)),
            pitch=note.pitch,
            start=float(start),
            end=float(end),
        )
        for note, start, end, dv in zip(notes, new_starts, new_ends, louder, strict=True)
    ]


def fade_out_changes(
    volume: int, end_s: float, fade_s: float, steps: int = 8
) -> list[pretty_midi.ControlChange]:
    """CC7 (volume) events that take a part from `volume` to silence over the `fade_s`
    seconds before `end_s`, in `steps` steps (the last at end_s)."""
    times = np.linspace(max(end_s - fade_s, 0.0), end_s, steps + 1)[1:]
    levels = np.round(volume * (1.0 - np.arange(1, steps + 1) / steps)).astype(int)
    return [
        pretty_midi.ControlChange(VOLUME, int(level), float(time))
        for time, level in zip(times, levels, strict=True)
    ]


def pedal_changes(
    change_times_s: list[float], end_s: float, pedal: Pedal
) -> list[tuple[float, int]]:
    """(time, value) CC64 events: down after every change time, up just before the next one
    (and at `end_s`)."""
    events: list[tuple[float, int]] = []
    bounds = sorted(t for t in change_times_s if t < end_s) + [end_s]
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        gap = stop - start
        if gap <= 0:
            continue
        down = start + min(pedal.down_after_s, gap / 5)
        up = stop - min(pedal.lift_before_s, gap / 5)
        events += [(down, 127), (up, 0)]
    return events


def mixer_changes(style: PartStyle) -> list[pretty_midi.ControlChange]:
    """Volume, reverb send and chorus send at the start of the part."""
    return [
        pretty_midi.ControlChange(VOLUME, style.volume, 0.0),
        pretty_midi.ControlChange(REVERB, style.reverb, 0.0),
        pretty_midi.ControlChange(CHORUS, style.chorus, 0.0),
    ]
