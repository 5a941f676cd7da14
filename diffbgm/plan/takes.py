"""Where a long take turns: the moments inside one shot where what it shows changes most.

The planner splits a shot longer than its longest segment into phrases. Without a cut to
follow, the phrases would start on a fixed grid of 4 bars, wherever the picture changes; a
take that starts to move at 13 s would get its busier music at 16 s. These are the times the
take's phrases start at instead: where its motion or brightness, each averaged over a few
seconds on either side, changes by more than a threshold (docs/plan.md, "Within one take").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from diffbgm.plan.config import PlanConfig
from diffbgm.plan.controls import saturate
from diffbgm.plan.inputs import AnalysisLike, StretchLike


def take_turns(analysis: AnalysisLike, bar_s: float, config: PlanConfig) -> list[float]:
    """Times (seconds) where a shot longer than `config.max_segment_bars` bars of `bar_s`
    seconds turns, in time order.

    A turn is a boundary between two of the shot's stretches where the mean over
    `config.turn_window` stretches after it differs from the mean over as many before it by at
    least `config.turn_motion` in motion (mapped as the density control maps it: 0.5 at a
    typical shot's motion) or `config.turn_brightness` in brightness. The strongest turns are
    taken first; none lies within `config.turn_min_bars` bars of another, nor within
    `turn_window` stretches of the shot's ends.
    """
    by_shot: dict[int, list[StretchLike]] = {}
    for stretch in analysis.stretches:
        by_shot.setdefault(stretch.features.shot_index, []).append(stretch)
    turns = []
    for shot in analysis.shots:
        pieces = sorted(by_shot.get(shot.index, []), key=lambda s: s.start_s)
        if shot.duration_s > config.max_segment_bars * bar_s and pieces:
            turns.extend(_turns_of(pieces, config.turn_min_bars * bar_s, config))
    return sorted(turns)


def _turns_of(pieces: Sequence[StretchLike], min_gap_s: float, config: PlanConfig) -> list[float]:
    """The turns of one shot's stretches (time order), strongest first, as start times.

    Boundaries nearer the shot's ends than `turn_window` stretches are scored too, on as many
    stretches as there are on their short side: such a change (a fade from black in the first
    seconds) is no turn itself, but it keeps the turns `min_gap_s` away, so that its echo in
    the wider averages a few seconds later is not taken for one.
    """
    side = config.turn_window
    if len(pieces) < 2 * side:
        return []
    motion = np.asarray([saturate(p.features.motion, config.typical_motion) for p in pieces])
    brightness = np.asarray([p.features.brightness for p in pieces])
    scores = np.zeros(len(pieces))  # scores[k]: the boundary before stretch k
    for k in range(1, len(pieces)):
        width = min(side, k, len(pieces) - k)
        before, after = slice(k - width, k), slice(k, k + width)
        scores[k] = max(
            abs(motion[after].mean() - motion[before].mean()) / config.turn_motion,
            abs(brightness[after].mean() - brightness[before].mean()) / config.turn_brightness,
        )
    taken: list[float] = []  # every change kept, the ones too near the ends included
    turns = []
    for k in np.argsort(-scores, kind="stable"):
        if scores[k] < 1.0:
            break
        time_s = float(pieces[int(k)].start_s)
        if all(abs(time_s - other) >= min_gap_s for other in taken):
            taken.append(time_s)
            if side <= k <= len(pieces) - side:
                turns.append(time_s)
    return turns
