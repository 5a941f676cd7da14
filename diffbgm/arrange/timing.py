"""score.mid's bar lines on the music's bars: the tempo map and time signatures of the file.

The score is written in video time, so that it lines up with the video when dropped at 0 in
an editor; but the music's first downbeat rarely falls at 0 (the grid is placed so that the
shot cuts land on bar lines, and music over part of the video starts later). With one tempo
from 0, a DAW would draw its bar lines off the music's by that lead-in. The lead-in becomes
a measure of its own instead: whole silent 4/4 bars where it holds some, and before them one
short measure of k sixteenths (k/16), its tempo stretched a little so that it ends exactly
where the music's bars begin. Every note keeps its time in seconds.
"""

from __future__ import annotations

import math

import pretty_midi

from diffbgm.plan.records import MusicPlan

SIXTEENTHS_PER_BAR = 16
MIN_LEAD_IN_S = 1e-3  # a first downbeat this close to 0 needs no lead-in


def first_downbeat_s(plan: MusicPlan) -> float:
    """The first of the plan's downbeats at or after the video's start (seconds)."""
    return plan.offset_s if plan.offset_s >= 0.0 else plan.offset_s + plan.bar_s


def bar_aligned_timing(midi: pretty_midi.PrettyMIDI, plan: MusicPlan) -> None:
    """Set `midi`'s tempo changes and time signatures, in place, so that its bar lines fall on
    the plan's from the first downbeat on (see the module's note). Call it before the notes
    are written: pretty_midi turns their seconds into ticks with this map."""
    quarter_ticks = midi.resolution
    music_scale = 60.0 / (plan.tempo_bpm * quarter_ticks)  # seconds per tick
    lead_in = first_downbeat_s(plan)
    whole_bars = math.floor(lead_in / plan.bar_s + 1e-9)
    rest = lead_in - whole_bars * plan.bar_s
    sixteenth = plan.bar_s / SIXTEENTHS_PER_BAR
    k = round(rest / sixteenth)
    if k == 0 and whole_bars >= 1 and rest >= MIN_LEAD_IN_S:
        # a sliver under half a sixteenth joins the silent bar after it, which runs a little
        # slower: a measure of its own would need a tempo many times the music's (7500 BPM for
        # 2 ms), which DAWs cap and FluidSynth applies late (the piece played up to 7 ms early
        # here with FluidR3, up to 84 ms in a review's renders)
        whole_bars, rest, k = whole_bars - 1, rest + plan.bar_s, SIXTEENTHS_PER_BAR
    four_four = pretty_midi.TimeSignature(4, 4, 0.0)
    if k == 0:
        # whole bars or none (or a sliver before the first bar: the lines then miss the
        # music's by less than a 32nd note): the music's own tempo from 0
        midi._tick_scales = [(0, music_scale)]  # noqa: SLF001 - pretty_midi has no tempo API
        midi.time_signature_changes = [four_four]
    else:
        # k/16 played at most twice and at least half as fast as the music: k >= 1 sixteenths
        # for at least half a sixteenth's time, k = 16 for up to a bar and a half's
        short_ticks = k * quarter_ticks // 4
        midi._tick_scales = [(0, rest / short_ticks), (short_ticks, music_scale)]  # noqa: SLF001
        first = (4, 4) if k == SIXTEENTHS_PER_BAR else (k, SIXTEENTHS_PER_BAR)
        midi.time_signature_changes = [
            pretty_midi.TimeSignature(*first, 0.0),
            pretty_midi.TimeSignature(4, 4, rest),
        ]
    midi._update_tick_to_time(0)  # noqa: SLF001 - rebuilds the tick -> time table
