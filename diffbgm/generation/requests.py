"""What the segments ask of the music in notes, shared by the recall guide and the decode steps.

The density control is a POP909 quantile; the calibration turns it into onsets per bar, the
unit the decoding matches and the boundary rules compare.
"""

from __future__ import annotations

import numpy as np

from diffbgm.controls import DYNAMIC_CONTROLS, relative_change
from diffbgm.model.conditions import PieceConditions
from diffbgm.music.calibration import Calibration

# Density requests this far apart (relative to their mean) ask for a change a listener hears
# (the evaluation's audibility threshold); only then are a boundary's bars treated apart.
EDGE_CONTRAST = 0.25


def requested_onsets_per_bar(piece: PieceConditions, calibration: Calibration) -> np.ndarray:
    """(N,) onsets per bar each segment's density control asks for (its POP909 quantile
    turned into onsets by `calibration`)."""
    density = piece.dynamic[:, DYNAMIC_CONTROLS.index("density")].astype(np.float64)
    return np.asarray(calibration.to_raw("density", density), dtype=np.float64)


def clearly_apart(onsets_per_bar: np.ndarray, a: int, b: int) -> bool:
    """Do segments a and b ask for densities at least EDGE_CONTRAST apart?"""
    return relative_change(float(onsets_per_bar[a]), float(onsets_per_bar[b])) >= EDGE_CONTRAST


def apart_from_neighbours(onsets_per_bar: np.ndarray, segment: int) -> tuple[bool, bool]:
    """Does the segment before / after `segment` (segments are numbered in time order) ask for
    a clearly other density? False where there is none."""
    before = segment > 0 and clearly_apart(onsets_per_bar, segment - 1, segment)
    after = segment + 1 < len(onsets_per_bar) and clearly_apart(
        onsets_per_bar, segment + 1, segment
    )
    return before, after
