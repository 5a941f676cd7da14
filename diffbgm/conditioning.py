"""Plan → model conditions: the only bridge between the MusicPlan and the model.

The plan speaks in beats, bars, chord labels and named controls; the model reads arrays per
16th step and per segment, with controls in the order of diffbgm.controls. Keeping the
translation here lets the plan stay free of the model (and of torch), and gives the model
one place that says what a plan means to it.
"""

from __future__ import annotations

import numpy as np

from diffbgm.controls import DEFAULT_PLAYING, DYNAMIC_CONTROLS, SEMANTIC_CONTROLS, global_features
from diffbgm.model.conditions import PieceConditions
from diffbgm.music.chords import parse_chord
from diffbgm.music.roll import RollSpec
from diffbgm.plan import MusicPlan


def piece_conditions(
    plan: MusicPlan, spec: RollSpec | None = None, playing: str = DEFAULT_PLAYING
) -> PieceConditions:
    """The plan as the model's whole-piece conditions (controls in the controls.py order),
    for a piece played `playing` (controls.PLAYINGS) at the plan's tempo, with the figuration
    typical of that tempo (controls.typical_figuration)."""
    steps_per_beat = (spec or RollSpec()).steps_per_beat
    dynamic = [[seg.dynamic[name] for name in DYNAMIC_CONTROLS] for seg in plan.segments]
    semantic = [[seg.semantic[name] for name in SEMANTIC_CONTROLS] for seg in plan.segments]
    return PieceConditions(
        chord_pcs=_chord_pcs_per_step(plan, steps_per_beat),
        segment_ids=plan.step_segment_ids(steps_per_beat=steps_per_beat),
        dynamic=np.asarray(dynamic, dtype=np.float32),
        semantic=np.asarray(semantic, dtype=np.float32),
        global_=np.asarray(
            global_features(plan.key.tonic_pc, plan.key.minor, playing, plan.tempo_bpm),
            dtype=np.float32,
        ),
        recalls=np.asarray([seg.recalls for seg in plan.segments], dtype=np.int64),
    )


def _chord_pcs_per_step(plan: MusicPlan, steps_per_beat: int) -> np.ndarray:
    """(n_steps, 12) float32 {0,1}: pitch classes of the chord at each step (0 where none)."""
    pcs = np.zeros((plan.n_steps(steps_per_beat), 12), dtype=np.float32)
    for chord in plan.chords:
        start = chord.start_beat * steps_per_beat
        pcs[
            start : start + chord.n_beats * steps_per_beat,
            sorted(parse_chord(chord.label).pitch_classes),
        ] = 1.0
    return pcs
