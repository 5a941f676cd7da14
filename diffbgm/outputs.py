"""The files of one composed variant: score (MIDI), audio (WAV), video (MP4), picture (PNG).

Everything here turns decided music into files; nothing decides music. The Composer calls
these in its stages and times them; the web app only reads the files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffbgm.arrange import DEFAULT_ARRANGEMENT, arrange
from diffbgm.music.calibration import Calibration
from diffbgm.music.roll import PianoRoll, RollSpec
from diffbgm.plan import MusicPlan
from diffbgm.video.types import VideoAnalysis


def velocities_from_controls(
    onset: np.ndarray,
    step_segment: np.ndarray,
    segment_velocity: np.ndarray,
    calibration: Calibration,
) -> np.ndarray:
    """(T, P) uint8 MIDI velocity per onset: the app's velocity rule.

    step_segment: (T,) segment index of every step; segment_velocity: (N,) each segment's
    velocity control (a POP909 quantile). The rule lives here once so that the app's files
    and the evaluation's realism test (trainer/evaluate.py) hear the same velocities.
    """
    per_segment = np.asarray(calibration.to_raw("velocity", np.asarray(segment_velocity, float)))
    step_velocity = np.clip(per_segment[np.asarray(step_segment)[: onset.shape[0]]], 30, 120)
    # Accents on the beat, softer off-beat notes: the roll has no velocity channel.
    steps = np.arange(onset.shape[0])
    accent = np.where(steps % 4 == 0, 8.0, np.where(steps % 2 == 0, 0.0, -8.0))
    vel = np.clip(step_velocity + accent, 1, 127).astype(np.uint8)
    return np.where(onset, vel[:, None], 0).astype(np.uint8)


def velocities(onset: np.ndarray, plan: MusicPlan, calibration: Calibration) -> np.ndarray:
    """(T, P) uint8 MIDI velocity per onset from each segment's velocity control."""
    segment_velocity = np.array([seg.dynamic["velocity"] for seg in plan.segments], float)
    return velocities_from_controls(
        onset, plan.step_segment_ids(onset.shape[0]), segment_velocity, calibration
    )


def write_midi(
    onset: np.ndarray,
    sustain: np.ndarray,
    plan: MusicPlan,
    spec: RollSpec,
    calibration: Calibration,
    path: Path,
    arrangement: str = DEFAULT_ARRANGEMENT,
    seed: int = 0,
    humanise: bool = True,
) -> Path:
    """The arranged score in video time (diffbgm.arrange): one named track per part, shifted
    by the plan's offset and cut at the video's end; `seed` makes the humanisation
    reproducible."""
    roll = PianoRoll(onset, sustain, velocities(onset, plan, calibration))
    midi = arrange(roll, plan, spec, arrangement, seed=seed, humanise=humanise)
    midi.write(str(path))
    return path


def write_wav(midi_path: Path, duration_s: float, path: Path) -> Path:
    """FluidSynth rendering of the score, cut or padded to the video's length."""
    from diffbgm.music.render import render_wav, trim_or_pad

    render_wav(midi_path, path)
    trim_or_pad(path, duration_s)
    return path


def write_pianoroll(
    onset: np.ndarray,
    sustain: np.ndarray,
    plan: MusicPlan,
    analysis: VideoAnalysis,
    pitch_low: int,
    seed: int,
    path: Path,
) -> Path:
    """A picture of the roll against the video's shot cuts and the plan's segments."""
    from diffbgm.plot import plot_pianoroll

    times = plan.step_times_s()[: onset.shape[0]]
    title = f"{plan.key_name} · {plan.tempo_bpm:.1f} BPM · seed {seed}"
    return plot_pianoroll(
        onset,
        sustain,
        times,
        pitch_low,
        path,
        segment_bounds_s=plan.segment_bounds_s(),
        cut_times_s=analysis.cut_times_s,
        title=title,
    )
