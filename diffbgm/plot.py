"""A picture of the score against the shot timeline: piano roll, segment colours, cut lines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def plot_pianoroll(
    onset: np.ndarray,
    sustain: np.ndarray,
    step_times_s: np.ndarray,
    pitch_low: int,
    out_path: Path,
    segment_bounds_s: Sequence[tuple[float, float]] = (),
    cut_times_s: Sequence[float] = (),
    title: str = "",
) -> Path:
    """Save a PNG of the roll (time in seconds on x, MIDI pitch on y).

    onset, sustain: (T, P) bool. step_times_s: (T,) start time of each 16th step.
    Segments are shaded in alternating colours; shot cuts are drawn as red lines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_steps, n_pitches = sustain.shape
    step_s = float(np.median(np.diff(step_times_s))) if n_steps > 1 else 0.125
    fig, ax = plt.subplots(figsize=(12, 4), dpi=100)
    palette = ["#dbe9f6", "#fde2c8", "#d9f0d3", "#eadcf2", "#fbe3e8", "#f6f2c8"]
    for i, (start, end) in enumerate(segment_bounds_s):
        ax.axvspan(start, end, color=palette[i % len(palette)], zorder=0)
        ax.text(start, pitch_low + n_pitches - 2, f"S{i + 1}", fontsize=7, va="top", zorder=3)
    steps, pitches = np.nonzero(sustain)
    ax.scatter(
        step_times_s[steps] + step_s / 2,
        pitches + pitch_low,
        marker="s",
        s=2,
        c="#4a6fa5",
        linewidths=0,
        zorder=1,
    )
    steps, pitches = np.nonzero(onset)
    ax.scatter(step_times_s[steps], pitches + pitch_low, marker="|", s=8, c="#1b2f4b", zorder=2)
    for cut in cut_times_s:
        ax.axvline(cut, color="#d62728", linewidth=1.2, zorder=4)
    end_s = float(step_times_s[-1] + step_s) if n_steps else 1.0
    ax.set_xlim(0, end_s)
    ax.set_ylim(pitch_low, pitch_low + n_pitches)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return out_path
