"""A picture of the score against the shot timeline: piano roll, segment colours, cut lines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

SEGMENT_COLOURS = ("#dbe9f6", "#fde2c8", "#d9f0d3", "#eadcf2", "#fbe3e8", "#f6f2c8")
SUSTAIN_RGBA = (0.290, 0.435, 0.647, 1.0)  # #4a6fa5
ONSET_RGBA = (0.106, 0.184, 0.294, 1.0)  # #1b2f4b
CUT_COLOUR = "#d62728"


def roll_image(onset: np.ndarray, sustain: np.ndarray) -> np.ndarray:
    """(T, P) bool onset and sustain -> (P, T, 4) float32 RGBA, pitch rows from low to high:
    sounding steps in blue, struck steps darker, silence transparent (the segment colours
    show through)."""
    image = np.zeros((*sustain.T.shape, 4), dtype=np.float32)
    image[sustain.T] = SUSTAIN_RGBA
    image[onset.T] = ONSET_RGBA
    return image


def plot_pianoroll(
    onset: np.ndarray,
    sustain: np.ndarray,
    step_times_s: np.ndarray,
    pitch_low: int,
    out_path: Path,
    segment_bounds_s: Sequence[tuple[float, float]] = (),
    cut_times_s: Sequence[float] = (),
    title: str = "",
    video_duration_s: float | None = None,
) -> Path:
    """Save a PNG of the roll (time in seconds on x, MIDI pitch on y).

    onset, sustain: (T, P) bool. step_times_s: (T,) start time of each 16th step (a regular
    grid). Segments are shaded in alternating colours; shot cuts are drawn as red lines. The
    time axis runs from the video's start to the later of the roll's and the video's end
    (`video_duration_s`), so music over part of a video shows where it lies.

    The roll is one image, not a marker per note-step: a ten-minute roll has tens of
    thousands of them. A plain `Figure` (no pyplot) keeps this safe to call from a worker
    thread, and fixed margins replace `tight_layout`, which draws the figure twice.
    """
    from matplotlib.figure import Figure

    n_steps, n_pitches = sustain.shape
    step_s = float(np.median(np.diff(step_times_s))) if n_steps > 1 else 0.125
    start_s = float(step_times_s[0]) if n_steps else 0.0
    fig = Figure(figsize=(12, 4), dpi=100)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.12, top=0.92)
    ax = fig.add_subplot()
    for i, (start, end) in enumerate(segment_bounds_s):
        ax.axvspan(start, end, color=SEGMENT_COLOURS[i % len(SEGMENT_COLOURS)], zorder=0)
        ax.text(start, pitch_low + n_pitches - 2, f"S{i + 1}", fontsize=7, va="top", zorder=3)
    if n_steps:
        ax.imshow(
            roll_image(onset, sustain),
            origin="lower",
            aspect="auto",
            interpolation="nearest",
            extent=(start_s, start_s + n_steps * step_s, pitch_low, pitch_low + n_pitches),
            zorder=1,
        )
    for cut in cut_times_s:
        ax.axvline(cut, color=CUT_COLOUR, linewidth=1.2, zorder=4)
    end_s = start_s + n_steps * step_s if n_steps else 1.0
    ax.set_xlim(0, max(end_s, video_duration_s or 0.0))
    ax.set_ylim(pitch_low, pitch_low + n_pitches)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(title, fontsize=9)
    fig.savefig(out_path)
    return out_path
