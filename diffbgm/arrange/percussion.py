"""The percussion part: a groove on the plan's bar grid that fills into every cut.

Cuts sit on segment starts (the planner put them on bar lines, or beat lines where a bar line
was out of reach), so the part knows them exactly: the `fill_beats` beats before a cut play a
fill instead of the groove, and the cut's own step gets a crash (or a low hit) with the kick.
Pitches are General MIDI percussion keys (channel 10). Rows are a note table
(diffbgm.arrange.notes): start step, end step, key, velocity.
"""

from __future__ import annotations

import numpy as np

from diffbgm.arrange.notes import empty_notes
from diffbgm.arrange.presets import DrumStyle
from diffbgm.plan.records import MusicPlan

BASS_DRUM_LOW = 35
KICK = 36
SIDE_STICK = 37
SNARE = 38
FLOOR_TOM = 41
HI_HAT = 42
LOW_TOM = 45
MID_TOM = 47
HIGH_TOM = 50
CRASH = 49

FILL_TOMS = (HIGH_TOM, HIGH_TOM, MID_TOM, MID_TOM, LOW_TOM, LOW_TOM, FLOOR_TOM, FLOOR_TOM)


def cut_steps(plan: MusicPlan, steps_per_beat: int = 4) -> list[int]:
    """The steps where a new segment (a cut) starts; the piece's start is no cut."""
    return [seg.start_beat * steps_per_beat for seg in plan.segments[1:]]


def _segment_level(plan: MusicPlan, steps_per_beat: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_steps,) loudness (MIDI velocity before the style's scale) and busyness (0-1) of
    every step, from its segment's velocity and density controls."""
    ids = plan.step_segment_ids(steps_per_beat=steps_per_beat)
    velocity = np.array([seg.dynamic["velocity"] for seg in plan.segments])[ids]
    density = np.array([seg.dynamic["density"] for seg in plan.segments])[ids]
    return 55.0 + 40.0 * velocity, density


def _soft_groove(step: int, steps_per_bar: int, busy: float) -> list[tuple[int, float]]:
    """(key, relative loudness) of the groove at a step of a bar: kick on 1 and 3, side
    stick on 2 and 4, closed hi-hat on eighths (sixteenths in a busy segment)."""
    in_bar = step % steps_per_bar
    hits: list[tuple[int, float]] = []
    if in_bar in (0, steps_per_bar // 2):
        hits.append((KICK, 1.0))
    if busy > 0.6 and in_bar == steps_per_bar // 2 + 2:
        hits.append((KICK, 0.7))
    if in_bar in (steps_per_bar // 4, 3 * steps_per_bar // 4):
        hits.append((SIDE_STICK, 0.8))
    if in_bar % 2 == 0:
        hits.append((HI_HAT, 0.6 if in_bar % 4 == 0 else 0.45))
    elif busy > 0.7:
        hits.append((HI_HAT, 0.3))
    return hits


def _fill(position: int, length: int, kit: str) -> list[tuple[int, float]]:
    """(key, relative loudness) at step `position` of a fill `length` steps long, growing
    louder towards the cut."""
    growth = 0.55 + 0.45 * (position + 1) / length
    if kit == "hits":  # a low roll on the floor tom, every step
        return [(FLOOR_TOM, 0.35 + 0.6 * (position + 1) / length)]
    tom = FILL_TOMS[min(position * len(FILL_TOMS) // length, len(FILL_TOMS) - 1)]
    hits = [(tom, growth)]
    if position % 4 == 0:
        hits.append((SNARE, growth * 0.8))
    return hits


def drum_notes(plan: MusicPlan, style: DrumStyle, steps_per_beat: int = 4) -> np.ndarray:
    """The percussion part of the whole plan (a note table, keys as pitches)."""
    n_steps = plan.n_steps(steps_per_beat)
    steps_per_bar = plan.beats_per_bar * steps_per_beat
    loudness, busy = _segment_level(plan, steps_per_beat)
    cuts = cut_steps(plan, steps_per_beat)
    fill_length = style.fill_beats * steps_per_beat
    fill_at = np.full(n_steps, -1)  # position inside a fill, -1 = groove
    for cut in cuts:
        first = max(cut - fill_length, 0)
        fill_at[first:cut] = np.arange(cut - first) + (fill_length - (cut - first))
    cut_set = set(cuts)
    rows: list[tuple[int, int, int, int]] = []
    for step in range(n_steps):
        if fill_at[step] >= 0:
            hits = _fill(int(fill_at[step]), fill_length, style.kit)
        elif style.kit == "soft":
            hits = _soft_groove(step, steps_per_bar, float(busy[step]))
        else:
            hits = []
        if step in cut_set:  # the downbeat after the cut, accented
            if style.kit == "soft":
                hits = [h for h in hits if h[0] != KICK] + [(CRASH, 1.0), (KICK, 1.1)]
            else:
                hits = [(BASS_DRUM_LOW, 1.25), (KICK, 1.0), (CRASH, 0.6)]
        for key, relative in hits:
            velocity = int(np.clip(round(loudness[step] * relative * style.velocity_scale), 1, 127))
            rows.append((step, step + 1, key, velocity))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4) if rows else empty_notes()
