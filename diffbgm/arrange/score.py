"""`arrange`: a generated roll and its plan -> a multi-part MIDI score in video time.

The contract other code relies on: every instrument is named after its stem (`melody`,
`accompaniment`, `pad`, `bass`, `drums`) with its General MIDI program (or is_drum) set;
`humanise=False` keeps every note on the grid (the sheet music reads that); the notes' times
are the video's (shifted by `plan.offset_s`, cut to the music's span `plan.music_span_s`).
"""

from __future__ import annotations

import numpy as np
import pretty_midi

from diffbgm.arrange.derived import bass_notes, pad_notes
from diffbgm.arrange.notes import (
    END,
    PITCH,
    START,
    VELOCITY,
    harmony_changes,
    into_range,
    notes_from_rows,
    one_voice,
    scale_velocity,
)
from diffbgm.arrange.parts import SplitConfig, split_parts
from diffbgm.arrange.percussion import drum_notes
from diffbgm.arrange.performance import (
    SUSTAIN,
    VOLUME,
    Humanise,
    Pedal,
    fade_out_changes,
    humanise_notes,
    mixer_changes,
    pedal_changes,
)
from diffbgm.arrange.presets import DEFAULT_ARRANGEMENT, PartName, PartStyle, get_preset
from diffbgm.arrange.timing import bar_aligned_timing
from diffbgm.music.roll import PianoRoll, RollSpec
from diffbgm.plan.records import MusicPlan

MIN_NOTE_S = 0.02  # notes cut shorter than this at the video's edges are dropped
END_FADE_S = 1.0  # the fade-out of music whose chosen end cuts its last bar


def _notes_in_seconds(table: np.ndarray, step_s: float) -> list[pretty_midi.Note]:
    return [
        pretty_midi.Note(
            velocity=int(row[VELOCITY]),
            pitch=int(row[PITCH]),
            start=float(row[START] * step_s),
            end=float(row[END] * step_s),
        )
        for row in table
    ]


def to_video_time(instrument: pretty_midi.Instrument, plan: MusicPlan) -> None:
    """Shift by the plan's offset and cut to the music's span of the video, in place: notes
    shorter than MIN_NOTE_S after the cut are dropped; a control change before the music
    starts takes effect at its start, one after its end is dropped (a held pedal is lifted at
    the end)."""
    first, last = plan.music_span_s
    kept = []
    for note in instrument.notes:
        # a note struck in the pickup before the music starts rings on into it
        note.start = max(note.start + plan.offset_s, first)
        note.end = min(note.end + plan.offset_s, last)
        if note.end - note.start > MIN_NOTE_S:
            kept.append(note)
    instrument.notes = kept
    latest_before_start: dict[int, pretty_midi.ControlChange] = {}
    changes = []
    for change in sorted(instrument.control_changes, key=lambda c: c.time):
        time = change.time + plan.offset_s
        if time > last:
            continue
        if time <= first:
            latest_before_start[change.number] = change
            continue
        changes.append(pretty_midi.ControlChange(change.number, change.value, time))
    starting = [
        pretty_midi.ControlChange(c.number, c.value, first) for c in latest_before_start.values()
    ]
    changes = starting + changes
    pedal = [c for c in changes if c.number == SUSTAIN]
    if pedal and pedal[-1].value >= 64:
        changes.append(pretty_midi.ControlChange(SUSTAIN, 0, last))
    instrument.control_changes = changes


def _pitched_stems(
    roll: PianoRoll, plan: MusicPlan, spec: RollSpec, styles: dict[PartName, PartStyle]
) -> dict[PartName, np.ndarray]:
    """Note tables of the preset's pitched parts, in its order."""
    parts = split_parts(roll, spec.pitch_low, SplitConfig())
    played = notes_from_rows(
        np.concatenate([parts.melody, parts.accompaniment]), roll, spec.pitch_low
    )
    tables: dict[PartName, np.ndarray] = {}
    for name, style in styles.items():
        if name == "melody":
            table = notes_from_rows(parts.melody, roll, spec.pitch_low)
        elif name == "accompaniment":
            table = notes_from_rows(parts.accompaniment, roll, spec.pitch_low)
        elif name == "pad":
            table = pad_notes(plan, style.low, style.high, played, 0.7, spec.steps_per_beat)
        else:  # bass
            table = bass_notes(
                plan, style.low, style.high, played, 0.8, style.strike_beats, spec.steps_per_beat
            )
        table = into_range(table, style.low, style.high)
        tables[name] = scale_velocity(
            one_voice(table) if style.one_voice else table, style.velocity_scale
        )
    return tables


def arrange(
    roll: PianoRoll,
    plan: MusicPlan,
    spec: RollSpec,
    preset: str = DEFAULT_ARRANGEMENT,
    seed: int = 0,
    humanise: bool = True,
) -> pretty_midi.PrettyMIDI:
    """The roll arranged for `preset`, in video time; see the module docstring."""
    chosen = get_preset(preset)
    step_s = 60.0 / plan.tempo_bpm / spec.steps_per_beat
    beat_s = 60.0 / plan.tempo_bpm
    styles = dict(chosen.parts)
    tables = _pitched_stems(roll, plan, spec, styles)
    change_times = [s * step_s for s in harmony_changes(plan, spec.steps_per_beat)]
    piece_end_s = max(roll.n_steps, plan.n_steps(spec.steps_per_beat)) * step_s
    midi = pretty_midi.PrettyMIDI(initial_tempo=float(plan.tempo_bpm))
    bar_aligned_timing(midi, plan)  # the file's bar lines on the music's
    for index, (name, table) in enumerate(tables.items()):
        style = styles[name]
        instrument = pretty_midi.Instrument(program=style.program, name=name)
        instrument.notes = _notes_in_seconds(table, step_s)
        if humanise:
            rng = np.random.default_rng([seed, index])
            instrument.notes = humanise_notes(instrument.notes, beat_s, rng, Humanise())
        instrument.control_changes = mixer_changes(style)
        if style.pedal:
            instrument.control_changes += [
                pretty_midi.ControlChange(SUSTAIN, value, time)
                for time, value in pedal_changes(change_times, piece_end_s, Pedal())
            ]
        midi.instruments.append(instrument)
    if chosen.drums is not None:
        drums = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
        drums.notes = _notes_in_seconds(drum_notes(plan, chosen.drums, spec.steps_per_beat), step_s)
        if humanise:
            rng = np.random.default_rng([seed, len(tables)])
            drums.notes = humanise_notes(drums.notes, beat_s, rng, Humanise())
        drums.control_changes = mixer_changes(
            PartStyle(0, volume=chosen.drums.volume, reverb=chosen.drums.reverb)
        )
        midi.instruments.append(drums)
    for instrument in midi.instruments:
        to_video_time(instrument, plan)
        fade_a_cut_ending(instrument, plan)
    midi.instruments = [inst for inst in midi.instruments if inst.notes]
    return midi


def fade_a_cut_ending(instrument: pretty_midi.Instrument, plan: MusicPlan) -> None:
    """Where the user's chosen end cuts the music's last bar short (its bar line did not come
    near enough), fade the part out over the last END_FADE_S before it, in place, rather than
    stop mid-phrase. (The video's own end gets the render's fade: diffbgm.music.render.)"""
    _, last = plan.music_span_s
    grid_end = plan.offset_s + plan.n_bars * plan.bar_s
    if last >= plan.duration_s - 1e-6 or grid_end <= last + 1e-6:
        return
    volumes = [c.value for c in instrument.control_changes if c.number == VOLUME and c.time < last]
    start_volume = volumes[-1] if volumes else 100  # the General MIDI default
    instrument.control_changes += fade_out_changes(start_volume, last, END_FADE_S)
    instrument.control_changes.sort(key=lambda c: c.time)
