"""Double time: a figured piece composed on a grid of 32nd notes, as if at twice its tempo.

The roll's grid is the 16th of a beat at any tempo, and the network writes POP909's figured
songs (a quarter or more of their onsets on the odd 16ths: slow songs that run in 16th-note
figures) with chords on the beats and 8th notes instead; it learned neither a tempo nor a
figuration input that would tell it otherwise (docs/evaluation.md, "The tempo as an input",
"The figuration as an input"). At 60 BPM a 16th lasts as long as an 8th at 120, and slow pop
is often felt in double time: composing such a piece with every beat written as two (chords
and segments twice as long in steps, the density and harmonic-rhythm requests per bar halved)
lets the network write its 8th-note figures, and putting the result back on the piece's grid
turns them into 16th-note figures. Which pieces: those whose global features ask for at least
a given share of their onsets on the odd 16ths (a real song's own share; a plan's, the share
typical of its tempo).
"""

from __future__ import annotations

import math

import numpy as np

from diffbgm.controls import (
    DYNAMIC_CONTROLS,
    FIGURATION_FEATURE,
    SEMANTIC_CONTROLS,
    TEMPO_CENTRE_BPM,
    TEMPO_FEATURE,
    tempo_feature,
    typical_figuration,
)
from diffbgm.generation.decoding import DecodedRoll
from diffbgm.model.conditions import PieceConditions
from diffbgm.music.calibration import Calibration

FACTOR = 2  # composed steps per step of the piece
# Per-bar requests that count events: a composed bar spans half a bar of the piece.
DYNAMIC_PER_BAR = ("density",)
SEMANTIC_PER_BAR = ("harmonic_rhythm",)


def piece_tempo_bpm(conditions: PieceConditions) -> float | None:
    """The tempo the piece's global features tell (None where they carry no tempo). The
    feature is clipped to 45-180 BPM, so a slower or faster piece reads as that bound."""
    if conditions.global_.shape[0] <= TEMPO_FEATURE:
        return None
    return float(TEMPO_CENTRE_BPM * 2.0 ** float(conditions.global_[TEMPO_FEATURE]))


def piece_figuration(conditions: PieceConditions) -> float | None:
    """The share of onsets on the odd 16ths the piece's global features ask for (a real
    song's own; a plan's, the share typical of its tempo), None where they carry none."""
    if conditions.global_.shape[0] <= FIGURATION_FEATURE:
        return None
    return float(conditions.global_[FIGURATION_FEATURE])


def asks_for_figures(conditions: PieceConditions, from_figuration: float) -> bool:
    """Does the piece ask for at least `from_figuration` of its onsets on the odd 16ths
    (0: never)? The gate of double time and of the figured network; a piece that tells no
    figuration is composed on its own grid, by the checkpoint's own network."""
    figuration = piece_figuration(conditions)
    return from_figuration > 0 and figuration is not None and figuration >= from_figuration


def doubled_conditions(conditions: PieceConditions, calibration: Calibration) -> PieceConditions:
    """The piece's conditions with each step written as FACTOR steps: chords and segments last
    FACTOR times as many steps; the controls that count events per bar ask for 1/FACTOR of
    them (their raw value through `calibration`), the rest are per step or per note and keep
    their value; the tempo (for a network that reads it) is FACTOR times the piece's.
    Segment features that are not POP909's controls (a BGM909 model's video features) are
    kept as they are."""
    dynamic = conditions.dynamic.astype(np.float64, copy=True)  # (N, Dd)
    semantic = conditions.semantic.astype(np.float64, copy=True)  # (N, Ds)
    for controls, names, values in (
        (DYNAMIC_CONTROLS, DYNAMIC_PER_BAR, dynamic),
        (SEMANTIC_CONTROLS, SEMANTIC_PER_BAR, semantic),
    ):
        if values.shape[1] != len(controls):
            continue
        for name in names:
            column = controls.index(name)
            raw = np.asarray(calibration.to_raw(name, values[:, column]), dtype=np.float64)
            values[:, column] = calibration.to_quantile(name, raw / FACTOR)
    global_ = conditions.global_.astype(np.float64, copy=True)
    tempo = piece_tempo_bpm(conditions)
    if tempo is not None:
        global_[TEMPO_FEATURE] = tempo_feature(tempo * FACTOR)
        if global_.shape[0] > FIGURATION_FEATURE:
            global_[FIGURATION_FEATURE] = typical_figuration(tempo * FACTOR)
    return PieceConditions(
        chord_pcs=np.repeat(conditions.chord_pcs, FACTOR, axis=0),
        segment_ids=np.repeat(conditions.segment_ids, FACTOR),
        dynamic=dynamic.astype(conditions.dynamic.dtype),
        semantic=semantic.astype(conditions.semantic.dtype),
        global_=global_.astype(conditions.global_.dtype),
        recalls=conditions.recalls,
    )


def doubled_known(roll: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Music to keep ((2, T, P) roll in [-1, 1], mask (T,), (T, P) or (2, T, P)) on the
    composed grid: every note starts at FACTOR times its step and lasts FACTOR times as long."""
    onset, sustain = roll[0] > 0, roll[1] > 0
    long_onset = np.zeros((onset.shape[0] * FACTOR, onset.shape[1]), dtype=bool)
    long_onset[::FACTOR] = onset
    long_sustain = np.repeat(sustain, FACTOR, axis=0)
    long_roll = np.stack([long_onset, long_sustain]).astype(np.float32) * 2.0 - 1.0
    time_axis = {1: 0, 2: 0, 3: 1}[np.ndim(mask)]
    return long_roll, np.repeat(np.asarray(mask, dtype=np.float32), FACTOR, axis=time_axis)


def halved_notes(notes: DecodedRoll) -> DecodedRoll:
    """Composed notes back on the piece's grid: a note starting at composed step s starts at
    s // FACTOR (a note between two steps of the piece moves to the earlier one, so an
    anticipation stays one) and ends where its end falls, rounded up, at least one step long.
    Two notes of a pitch that now start together are one note, the longer."""
    steps = math.ceil(notes.onset.shape[0] / FACTOR)
    onset = np.zeros((steps, notes.onset.shape[1]), dtype=bool)
    sustain = np.zeros_like(onset)
    for start, end, pitch in notes.notes():
        begin = start // FACTOR
        finish = max(begin + 1, -(-end // FACTOR))
        onset[begin, pitch] = True
        sustain[begin:finish, pitch] = True
    return DecodedRoll(onset=onset, sustain=sustain)


def halved_raw(raw: np.ndarray) -> np.ndarray:
    """(2, FACTOR * T, P) sampled values -> (2, T, P): each step of the piece takes the larger
    value of its composed steps (a note in either is a note in it)."""
    steps = raw.shape[1] // FACTOR * FACTOR
    pairs = raw[:, :steps].reshape(raw.shape[0], -1, FACTOR, raw.shape[2])
    halved = pairs.max(axis=2)
    if steps < raw.shape[1]:
        halved = np.concatenate([halved, raw[:, steps:]], axis=1)
    return halved


def halved_recall(source: np.ndarray, semitones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A composed piece's recall record ((FACTOR * T,) source step or -1, semitones) on the
    piece's grid: step t recalls from where the first of its composed steps that recalls
    does, halved as `halved_notes` halves a note's start."""
    steps = math.ceil(source.shape[0] / FACTOR)
    padded = np.full(steps * FACTOR, -1, dtype=np.int64)
    padded[: source.shape[0]] = source
    moved = np.zeros(steps * FACTOR, dtype=np.int64)
    moved[: semitones.shape[0]] = semitones
    pairs, shifts = padded.reshape(steps, FACTOR), moved.reshape(steps, FACTOR)
    first = np.argmax(pairs >= 0, axis=1)  # (T,) 0 where none recalls (then -1 below)
    rows = np.arange(steps)
    chosen = pairs[rows, first]
    halved = np.where(chosen >= 0, chosen // FACTOR, -1)
    return halved, np.where(halved >= 0, shifts[rows, first], 0)
