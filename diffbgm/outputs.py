"""The files of one composed variant: score (MIDI), audio (WAV), video (MP4), picture (PNG).

Everything here turns decided music into files; nothing decides music. The Composer calls
these in its stages and times them; the web app only reads the files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from diffbgm.music.calibration import Calibration
from diffbgm.music.roll import PianoRoll, RollSpec, roll_to_midi
from diffbgm.plan import MusicPlan
from diffbgm.video.types import VideoAnalysis

if TYPE_CHECKING:
    from diffbgm.velocity import VelocityModel

MIN_NOTE_S = 0.02  # notes cut shorter than this at the video's edges are dropped


VelocityMethod = Literal["learned", "rule"]
VELOCITY_METHODS: tuple[str, ...] = ("learned", "rule")


def rule_velocities(
    onset: np.ndarray,
    step_segment: np.ndarray,
    segment_velocity: np.ndarray,
    calibration: Calibration,
) -> np.ndarray:
    """(T, P) uint8: the old fixed rule, kept for comparison (`trainer evaluate --velocity
    rule`): each segment's control through the calibration, +8 on the beat, -8 off it.
    A classifier tells it from a performance 99 % of the time (docs/evaluation.md)."""
    per_segment = np.asarray(calibration.to_raw("velocity", np.asarray(segment_velocity, float)))
    step_velocity = np.clip(per_segment[np.asarray(step_segment)[: onset.shape[0]]], 30, 120)
    steps = np.arange(onset.shape[0])
    accent = np.where(steps % 4 == 0, 8.0, np.where(steps % 2 == 0, 0.0, -8.0))
    vel = np.clip(step_velocity + accent, 1, 127).astype(np.uint8)
    return np.where(onset, vel[:, None], 0).astype(np.uint8)


def notes_seed(onset: np.ndarray) -> int:
    """A seed taken from the notes themselves: the same notes (the same compose seed) get
    the same velocities, without the seed travelling through the file writers."""
    digest = hashlib.sha256(np.packbits(np.asarray(onset, dtype=bool)).tobytes()).digest()
    return int.from_bytes(digest[:8], "little")


def velocities_from_controls(
    onset: np.ndarray,
    sustain: np.ndarray,
    step_segment: np.ndarray,
    segment_velocity: np.ndarray,
    calibration: Calibration,
    seed: int | None = None,
    method: VelocityMethod = "learned",
    pitch_low: int = 21,
    model: VelocityModel | None = None,
) -> np.ndarray:
    """(T, P) uint8 MIDI velocity per onset (0 elsewhere).

    step_segment: (T,) segment index of every step; segment_velocity: (N,) each segment's
    velocity control (a POP909 quantile). `learned` (default): the velocity model
    (diffbgm/velocity.py, shipped in diffbgm/assets/velocity) reads every note in its
    context and draws its velocity around the segment's loudness, reproducibly per `seed`
    (None: a seed taken from the notes); `rule`: the old fixed rule. One function for the
    app's files and the evaluation's realism test (trainer/evaluate.py), so both hear the
    same velocities. `model`: an already loaded velocity model (default: the shipped one).
    """
    if method == "rule":
        return rule_velocities(onset, step_segment, segment_velocity, calibration)
    if method != "learned":
        raise ValueError(f"velocity method must be one of {VELOCITY_METHODS}, got {method!r}")
    from diffbgm.velocity import load_velocity_model

    n_steps = onset.shape[0]
    per_segment = np.asarray(calibration.to_raw("velocity", np.asarray(segment_velocity, float)))
    segments = np.asarray(step_segment)[:n_steps]
    return (model or load_velocity_model()).velocities(
        onset,
        sustain,
        per_segment[segments],
        segments,
        notes_seed(onset) if seed is None else seed,
        pitch_low,
    )


def velocities(
    onset: np.ndarray,
    sustain: np.ndarray,
    plan: MusicPlan,
    calibration: Calibration,
    seed: int | None = None,
    pitch_low: int = 21,
) -> np.ndarray:
    """(T, P) uint8 MIDI velocity per onset from each segment's velocity control (learned)."""
    segment_velocity = np.array([seg.dynamic["velocity"] for seg in plan.segments], float)
    return velocities_from_controls(
        onset,
        sustain,
        plan.step_segment_ids(onset.shape[0]),
        segment_velocity,
        calibration,
        seed,
        pitch_low=pitch_low,
    )


def write_midi(
    onset: np.ndarray,
    sustain: np.ndarray,
    plan: MusicPlan,
    spec: RollSpec,
    calibration: Calibration,
    path: Path,
) -> Path:
    """Score in video time: notes shifted by the plan's offset, cut at the video's end."""
    roll = PianoRoll(
        onset, sustain, velocities(onset, sustain, plan, calibration, pitch_low=spec.pitch_low)
    )
    midi = roll_to_midi(roll, plan.tempo_bpm, spec)
    for inst in midi.instruments:
        kept = []
        for note in inst.notes:
            # a note struck in the pickup before the video starts rings on into it
            note.start = max(note.start + plan.offset_s, 0.0)
            note.end = min(note.end + plan.offset_s, plan.duration_s)
            if note.end - note.start > MIN_NOTE_S:
                kept.append(note)
        inst.notes = kept
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
