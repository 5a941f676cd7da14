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


def take_turns(analysis: AnalysisLike, longer_than_s: float, config: PlanConfig) -> list[float]:
    """Times (seconds) where a shot longer than `longer_than_s` turns, in time order.

    A turn is a boundary between two of the shot's stretches where the mean over
    `config.turn_window` stretches after it differs from the mean over as many before it by at
    least `config.turn_motion` in motion (mapped as the density control maps it: 0.5 at a
    typical shot's motion) or `config.turn_brightness` in brightness. The strongest turns are
    taken first; none lies within `turn_window` stretches of another or of the shot's ends.
    """
    by_shot: dict[int, list[StretchLike]] = {}
    for stretch in analysis.stretches:
        by_shot.setdefault(stretch.features.shot_index, []).append(stretch)
    turns = []
    for shot in analysis.shots:
        pieces = sorted(by_shot.get(shot.index, []), key=lambda s: s.start_s)
        if shot.duration_s > longer_than_s and pieces:
            turns.extend(_turns_of(pieces, config))
    return sorted(turns)


def _turns_of(pieces: Sequence[StretchLike], config: PlanConfig) -> list[float]:
    """The turns of one shot's stretches (time order), strongest first, as start times."""
    side = config.turn_window
    if len(pieces) < 2 * side:
        return []
    motion = np.asarray([saturate(p.features.motion, config.typical_motion) for p in pieces])
    brightness = np.asarray([p.features.brightness for p in pieces])
    scores = np.zeros(len(pieces))  # scores[k]: the boundary before stretch k
    for k in range(side, len(pieces) - side + 1):
        before, after = slice(k - side, k), slice(k, k + side)
        scores[k] = max(
            abs(motion[after].mean() - motion[before].mean()) / config.turn_motion,
            abs(brightness[after].mean() - brightness[before].mean()) / config.turn_brightness,
        )
    chosen: list[int] = []
    for k in np.argsort(-scores, kind="stable"):
        if scores[k] < 1.0:
            break
        if all(abs(int(k) - other) >= side for other in chosen):
            chosen.append(int(k))
    return [float(pieces[k].start_s) for k in chosen]
