"""Melody and accompaniment from one merged piano roll.

The model writes all of POP909's tracks (MELODY, BRIDGE, PIANO) as one roll, so the melody is
found afterwards. Two measured ways (docs/arrangement.md, benchmarks/melody_split.py):

- `skyline`: the highest note starting at each step, if nothing higher still sounds.
- `voice` (default): every note gets a melody score — a small model of note features fitted
  on POP909 songs 001-800 (`diffbgm/assets/melody_split.json`, trainer/melody_split.py) — and a dynamic programme picks
  the one-note-at-a-time line with the best total score minus a cost for every leap, so the
  melody is monophonic and moves like a voice.

Notes are rows of `roll_to_notes`: onset step, pitch index, end step (exclusive).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from diffbgm.errors import DiffBGMError
from diffbgm.music.roll import PianoRoll, roll_to_notes

SplitMethod = Literal["skyline", "voice"]
SPLIT_METHODS: tuple[SplitMethod, ...] = ("skyline", "voice")
WEIGHTS_PATH = Path(__file__).resolve().parents[1] / "assets" / "melody_split.json"
LOCAL_STEPS = 16  # a bar each side: the neighbourhood the features compare a note with

FEATURE_NAMES: tuple[str, ...] = (
    "pitch",  # (MIDI - 60) / 12
    "pitch_sq",  # squared distance from the singing centre (MIDI 67), in octaves
    "top_of_onset",  # highest of the notes starting on its step
    "rank_from_top",  # how many notes starting with it lie above it
    "n_same_onset",  # notes starting on its step
    "below_sounding",  # semitones below the highest pitch sounding at its onset, /12
    "n_above_sounding",  # pitches sounding above it at its onset
    "below_local_top",  # semitones below the highest pitch within a bar either side, /12
    "vs_local_skyline",  # semitones vs the median top-of-onset pitch within a bar either side
    "log_duration",  # log2 of its length in steps
    "on_beat",  # starts on a beat
    "local_onsets",  # onsets per step within a bar either side (texture density)
    "gap_below",  # semitones down to the next lower pitch sounding at its onset, /12 (max 2)
    "gap_above",  # semitones up to the next higher pitch sounding at its onset, /12 (max 2)
    "alone",  # the only note starting on its step
    "top_step",  # semitones from the top note of the previous onset step, /12 (absolute)
    "repeat_beat",  # the same pitch also starts a beat earlier or later (a figure, not a tune)
    "repeat_half_bar",  # ... half a bar earlier or later
    "repeat_bar",  # ... a bar earlier or later
)


@dataclass(frozen=True)
class SplitConfig:
    """How the melody is chosen. leap_cost: score lost per semitone of leap between
    consecutive melody notes (beyond `free_leap` semitones); restart_cost: what a new phrase
    after a gap of more than `max_gap_steps` costs instead; min_pitch: MIDI pitch below which
    a note is never melody; score_offset: added to every note's log-odds before the line is
    chosen (above 0 the line takes more notes: recall for precision)."""

    method: SplitMethod = "voice"
    leap_cost: float = 0.3
    free_leap: int = 4
    max_gap_steps: int = 32
    restart_cost: float = 2.0
    min_pitch: int = 48
    score_offset: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in SPLIT_METHODS:
            raise DiffBGMError(
                f"unknown melody split {self.method!r}; choose {', '.join(SPLIT_METHODS)}"
            )


@dataclass(frozen=True)
class SplitWeights:
    """The note model: standardisation per FEATURE_NAMES, then dense layers (ReLU between
    them; one layer = logistic regression) ending in one log-odds per note."""

    mean: np.ndarray
    scale: np.ndarray
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]  # (weight (in, out), bias (out,))

    def logits(self, features: np.ndarray) -> np.ndarray:
        values = (features - self.mean) / self.scale
        for n, (weight, bias) in enumerate(self.layers):
            values = values @ weight + bias
            if n < len(self.layers) - 1:
                values = np.maximum(values, 0.0)
        return values[:, 0]

    def to_dict(self) -> dict[str, object]:
        return {
            "features": list(FEATURE_NAMES),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "layers": [{"weight": w.tolist(), "bias": b.tolist()} for w, b in self.layers],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SplitWeights:
        if list(data.get("features", [])) != list(FEATURE_NAMES):
            raise DiffBGMError("melody split weights were fitted on other features: refit them")
        layers = tuple(
            (np.asarray(layer["weight"], dtype=np.float64), np.asarray(layer["bias"], float))
            for layer in data["layers"]
        )
        mean, scale = np.asarray(data["mean"], float), np.asarray(data["scale"], float)
        return cls(mean, scale, layers)

    @classmethod
    def load(cls, path: Path = WEIGHTS_PATH) -> SplitWeights:
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DiffBGMError(f"cannot read melody split weights {path}: {exc}") from exc


def _windowed(values: np.ndarray, radius: int, reduce: str) -> np.ndarray:
    """max or sum of `values` (T,) over [t - radius, t + radius] for every step t."""
    padded = np.pad(values, radius, constant_values=-1 if reduce == "max" else 0)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1)
    return windows.max(axis=1) if reduce == "max" else windows.sum(axis=1)


def _repeats(onset: np.ndarray, starts: np.ndarray, pitch: np.ndarray, lag: int) -> np.ndarray:
    """1.0 where the same pitch also starts `lag` steps before or after the note."""
    n_steps = onset.shape[0]
    before = np.where(starts >= lag, onset[np.maximum(starts - lag, 0), pitch], False)
    after = np.where(
        starts + lag < n_steps, onset[np.minimum(starts + lag, n_steps - 1), pitch], False
    )
    return (before | after).astype(np.float64)


def note_features(roll: PianoRoll, notes: np.ndarray, pitch_low: int) -> np.ndarray:
    """(N, len(FEATURE_NAMES)) features of the notes `notes` (rows of roll_to_notes)."""
    n_steps = roll.n_steps
    starts, pitch_index, ends = notes[:, 0], notes[:, 1], notes[:, 2]
    pitch = (pitch_index + pitch_low).astype(np.float64)
    # The highest pitch index starting / sounding at every step (-1 where none).
    index_grid = np.arange(roll.n_pitches)[None, :]
    top_onset = np.where(roll.onset, index_grid, -1).max(axis=1)
    top_sounding = np.where(roll.sustain | roll.onset, index_grid, -1).max(axis=1)
    rank = np.zeros(len(notes))
    n_same = np.zeros(len(notes))
    for i, (s, p) in enumerate(zip(starts, pitch_index, strict=True)):
        row = roll.onset[s]
        rank[i] = row[p + 1 :].sum()
        n_same[i] = row.sum()
    sounding = roll.sustain | roll.onset
    above_sounding = np.zeros(len(notes))
    gap_below = np.full(len(notes), 2.0)
    gap_above = np.full(len(notes), 2.0)
    for i, (s, p) in enumerate(zip(starts, pitch_index, strict=True)):
        above = np.flatnonzero(sounding[s, p + 1 :])
        below = np.flatnonzero(sounding[s, :p])
        above_sounding[i] = len(above)
        if len(above):
            gap_above[i] = min((above[0] + 1) / 12, 2.0)
        if len(below):
            gap_below[i] = min((p - below[-1]) / 12, 2.0)
    # the top note of the onset step before each step (-1 before the first)
    onset_steps = np.flatnonzero(top_onset >= 0)
    previous_step = np.searchsorted(onset_steps, starts, side="left") - 1
    previous_top = np.where(
        previous_step >= 0, top_onset[onset_steps[np.maximum(previous_step, 0)]], pitch_index
    )
    local_top = _windowed(top_sounding, LOCAL_STEPS, "max")
    local_onsets = _windowed(roll.onset.sum(axis=1).astype(np.float64), LOCAL_STEPS, "sum")
    skyline_median = np.zeros(n_steps)
    for t in range(n_steps):
        window = top_onset[max(0, t - LOCAL_STEPS) : t + LOCAL_STEPS + 1]
        window = window[window >= 0]
        skyline_median[t] = np.median(window) if window.size else -1
    return np.stack(
        [
            (pitch - 60) / 12,
            ((pitch - 67) / 12) ** 2,
            (pitch_index == top_onset[starts]).astype(np.float64),
            rank,
            n_same,
            (top_sounding[starts] - pitch_index) / 12,
            above_sounding,
            (local_top[starts] - pitch_index) / 12,
            (pitch_index - skyline_median[starts]) / 12,
            np.log2(np.maximum(ends - starts, 1)),
            (starts % 4 == 0).astype(np.float64),
            local_onsets[starts] / (2 * LOCAL_STEPS + 1),
            gap_below,
            gap_above,
            (n_same == 1).astype(np.float64),
            np.abs(pitch_index - previous_top) / 12,
            _repeats(roll.onset, starts, pitch_index, 4),
            _repeats(roll.onset, starts, pitch_index, 8),
            _repeats(roll.onset, starts, pitch_index, 16),
        ],
        axis=1,
    )


def skyline(roll: PianoRoll, notes: np.ndarray) -> np.ndarray:
    """(N,) bool: the highest note starting on its step while nothing higher still sounds."""
    chosen = np.zeros(len(notes), dtype=bool)
    held_until = np.full(roll.n_pitches, -1)  # end step of the note holding each pitch
    order = np.lexsort((-notes[:, 1], notes[:, 0]))  # by onset, highest first
    last_step = -1
    for i in order:
        s, p, e = notes[i]
        if s != last_step:  # the highest note of a new onset step
            last_step = s
            if not (held_until[p + 1 :] > s).any():
                chosen[i] = True
        held_until[p] = max(held_until[p], e)
    return chosen


def best_line(
    notes: np.ndarray, scores: np.ndarray, config: SplitConfig, pitch_low: int
) -> np.ndarray:
    """(N,) bool: the monophonic line maximising sum(score) - leap costs - restart costs.

    A dynamic programme over notes in onset order: a note follows the best earlier note
    starting on an earlier step within `max_gap_steps` (paying for the leap beyond
    `free_leap`, at most `restart_cost`), or starts a new phrase after everything that
    started longer ago (free). Notes below `min_pitch` and notes
    with a negative score are never taken (a note that lowers the total is left out)."""
    n = len(notes)
    chosen = np.zeros(n, dtype=bool)
    order = np.lexsort((-notes[:, 1], notes[:, 0]))
    starts, pitch = notes[order, 0], notes[order, 1]
    gain = scores[order]
    allowed = (pitch + pitch_low >= config.min_pitch) & (gain > 0)
    best = np.full(n, -np.inf)
    back = np.full(n, -1)
    # best_before[k]: the best total over notes order[:k] (a phrase may start after it)
    best_before = np.zeros(n + 1)
    argbest_before = np.full(n + 1, -1)
    first_of_step = np.searchsorted(starts, starts, side="left")
    window_start = np.searchsorted(starts, starts - config.max_gap_steps, side="left")
    for k in range(n):
        if allowed[k]:
            lo, hi = window_start[k], first_of_step[k]
            # after a gap (nothing chosen within max_gap_steps): a new phrase, free
            best[k], back[k] = gain[k] + best_before[lo], argbest_before[lo]
            # any leap costs at most restart_cost
            if best_before[hi] - config.restart_cost > best_before[lo]:
                best[k], back[k] = (
                    gain[k] + best_before[hi] - config.restart_cost,
                    argbest_before[hi],
                )
            if hi > lo:
                leaps = np.abs(pitch[lo:hi] - pitch[k]) - config.free_leap
                follow = best[lo:hi] - config.leap_cost * np.maximum(leaps, 0)
                j = int(np.argmax(follow))
                if follow[j] + gain[k] > best[k]:
                    best[k], back[k] = follow[j] + gain[k], lo + j
        if best[k] > best_before[k]:
            best_before[k + 1], argbest_before[k + 1] = best[k], k
        else:
            best_before[k + 1], argbest_before[k + 1] = best_before[k], argbest_before[k]
    k = int(argbest_before[n])
    while k >= 0:
        chosen[order[k]] = True
        k = int(back[k])
    return chosen


def melody_mask(
    roll: PianoRoll,
    notes: np.ndarray,
    pitch_low: int,
    config: SplitConfig | None = None,
    weights: SplitWeights | None = None,
) -> np.ndarray:
    """(N,) bool: which of `notes` (rows of roll_to_notes(roll)) are the melody."""
    config = config or SplitConfig()
    if len(notes) == 0:
        return np.zeros(0, dtype=bool)
    if config.method == "skyline":
        mask = skyline(roll, notes)
        return mask & (notes[:, 1] + pitch_low >= config.min_pitch)
    weights = weights or SplitWeights.load()
    scores = weights.logits(note_features(roll, notes, pitch_low)) + config.score_offset
    return best_line(notes, scores, config, pitch_low)


@dataclass(frozen=True)
class Parts:
    """The notes of one roll, split: rows of roll_to_notes (onset step, pitch index, end)."""

    melody: np.ndarray
    accompaniment: np.ndarray


def split_parts(
    roll: PianoRoll,
    pitch_low: int,
    config: SplitConfig | None = None,
    weights: SplitWeights | None = None,
) -> Parts:
    """The roll's notes as melody and accompaniment; every note lands in exactly one part,
    unchanged (the notes of all parts together are the roll's)."""
    notes = roll_to_notes(roll)
    mask = melody_mask(roll, notes, pitch_low, config, weights)
    return Parts(melody=notes[mask], accompaniment=notes[~mask])


def note_f1(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall, F1 of notes matched on (onset step, pitch index)."""
    pred = {(int(s), int(p)) for s, p in predicted[:, :2]}
    real = {(int(s), int(p)) for s, p in truth[:, :2]}
    hits = len(pred & real)
    precision = hits / len(pred) if pred else 0.0
    recall = hits / len(real) if real else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1
