"""Harmony of the plan: the key, and a chord progression over the segments.

The key's mode follows the video's mood (valence); tonic, harmonic rhythm and chords come from
POP909's statistics (diffbgm.music.harmony), so the progression sounds like the songs the
model learned from. A user's chord labels replace the generated progression.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from diffbgm.music.chords import parse_chord
from diffbgm.music.harmony import ChordModel, label_to_token, sample_progression, token_to_label
from diffbgm.plan.config import PlanConfig
from diffbgm.plan.records import BEATS_PER_BAR, MODES, PlanChord, PlanKey


def choose_key(
    valence: float, model: ChordModel, rng: np.random.Generator, config: PlanConfig
) -> PlanKey:
    """Mode from valence (with a margin where the mode is drawn at POP909's odds); tonic drawn
    among POP909's keys of that mode, weighted by how many songs use each."""
    mode_counts = {m: sum(n for k, n in model.key_counts.items() if k.endswith(m)) for m in MODES}
    if valence > config.key_valence_margin:
        mode = "major"
    elif valence < -config.key_valence_margin:
        mode = "minor"
    else:
        p_major = mode_counts["major"] / max(1, sum(mode_counts.values()))
        mode = "major" if rng.random() < p_major else "minor"
    keys = [(PlanKey.parse(k), n) for k, n in sorted(model.key_counts.items()) if k.endswith(mode)]
    if not keys:
        return PlanKey(0, mode)
    weights = np.asarray([n for _, n in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=weights / weights.sum()))][0]


# Probability given to a chord the model never continues with (a token outside its tables):
# rare enough that a key where the user's chords are all known wins, not so rare that one
# borrowed chord decides the key alone.
UNSEEN_CHORD_PROBABILITY = 1e-3
# A progression tends to start or end on its key's tonic chord (the first thing a musician
# checks); each of the two that is the tonic multiplies a key's odds by this.
TONIC_EDGE_ODDS = 3.0
TONIC_CLASSES = {"major": ("0:maj", "0:maj7"), "minor": ("0:min", "0:min7")}


# Chords the chord model has no class for, read as the class it has: a 9th, 11th or 13th
# acts as its seventh chord; a power chord or a bare root may be major or minor.
EXTENDED_CLASSES: dict[str, tuple[str, ...]] = {
    "9": ("7",),
    "11": ("7",),
    "13": ("7",),
    "maj9": ("maj7",),
    "maj13": ("maj7",),
    "min9": ("min7",),
    "min11": ("min7",),
    "min13": ("min7",),
    "5": ("maj", "min"),
    "1": ("maj", "min"),
}


def key_tokens(label: str, tonic_pc: int) -> tuple[str, ...]:
    """The chord model's degree tokens a Harte label may stand for in a key (empty: none)."""
    token = label_to_token(label, tonic_pc)
    if token is not None:
        return (token,)
    chord = parse_chord(label)
    if chord.root_pc is None:
        return ()
    degree = (chord.root_pc - tonic_pc) % 12
    return tuple(f"{degree}:{q}" for q in EXTENDED_CLASSES.get(chord.quality, ()))


def key_from_chords(labels: Sequence[str], model: ChordModel) -> PlanKey:
    """The key in which a user's progression (Harte labels, one per bar) is most likely.

    Every one of the 24 keys is scored by the chord model's log-probability of the
    progression's chord changes read in that key's degrees (an extended or power chord as the
    likeliest class it may stand for, `EXTENDED_CLASSES`), plus the log share of POP909 songs
    in its mode, and `TONIC_EDGE_ODDS` where the progression starts or ends on the key's tonic
    chord. Which tonics POP909 happens to use is left out, so a progression and its
    transposition get keys a transposition apart.
    """
    changes = [label for i, label in enumerate(labels) if i == 0 or label != labels[i - 1]]
    songs = {
        mode: 1 + sum(n for k, n in model.key_counts.items() if k.endswith(mode)) for mode in MODES
    }
    best: tuple[float, PlanKey] | None = None
    for mode in MODES:
        for tonic in range(12):
            score = math.log(songs[mode] / sum(songs.values()))
            history: list[str] = []
            read: list[str | None] = []  # each change as the token it was read as
            for label in changes:
                options = key_tokens(label, tonic)
                known = model.next_distribution(mode, history) if options else {}
                token = max(options, key=lambda t: known.get(t, 0.0), default=None)
                probability = known.get(token, 0.0) if token is not None else 0.0
                score += math.log(max(probability, UNSEEN_CHORD_PROBABILITY))
                read.append(token)
                if token is not None:
                    history.append(token)
            for edge in {0, len(changes) - 1}:
                if read[edge] in TONIC_CLASSES[mode]:
                    score += math.log(TONIC_EDGE_ODDS)
            if best is None or score > best[0]:
                best = (score, PlanKey(tonic, mode))
    assert best is not None  # 24 keys were scored
    return best[1]


def chord_slots(
    start_beat: int, end_beat: int, changes_per_bar: float, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """(start_beat, n_beats) chord spans covering a segment at about `changes_per_bar`.

    A new chord at the segment start and at bar lines; with rate r < 1 a bar keeps the previous
    chord with probability 1 - r, with r > 1 it changes at mid-bar with probability r - 1.
    """
    slots: list[list[int]] = []
    beat = start_beat
    while beat < end_beat:
        bar_end = min((beat // BEATS_PER_BAR + 1) * BEATS_PER_BAR, end_beat)
        full_bar = beat % BEATS_PER_BAR == 0 and bar_end - beat == BEATS_PER_BAR
        if slots and full_bar and changes_per_bar < 1.0 and rng.random() >= changes_per_bar:
            slots[-1][1] += bar_end - beat
        elif full_bar and changes_per_bar > 1.0 and rng.random() < changes_per_bar - 1.0:
            half = BEATS_PER_BAR // 2
            slots.extend([[beat, half], [beat + half, half]])
        else:
            slots.append([beat, bar_end - beat])
        beat = bar_end
    return [(a, n) for a, n in slots]


def generate_chords(
    edges: Sequence[int],
    key: PlanKey,
    densities: Sequence[float],
    model: ChordModel,
    rng: np.random.Generator,
) -> list[PlanChord]:
    """A progression over the segments: harmonic rhythm per segment from POP909's distribution
    (nudged by the segment's density), chords from the n-gram model with cadences."""
    slots = []
    for (start, end), density in zip(
        zip(edges[:-1], edges[1:], strict=True), densities, strict=True
    ):
        quantile = 0.5 * float(rng.random()) + 0.5 * density
        slots.append(chord_slots(start, end, model.changes_per_bar(quantile), rng))
    tokens = sample_progression(model, key.mode, [len(s) for s in slots], rng)
    return [
        PlanChord.at_beat(a, n, token_to_label(tok, key.tonic_pc))
        for seg_slots, seg_tokens in zip(slots, tokens, strict=True)
        for (a, n), tok in zip(seg_slots, seg_tokens, strict=True)
    ]


def chords_from_labels(
    labels: Sequence[str], n_bars: int, restart_bars: Sequence[int] = ()
) -> list[PlanChord]:
    """One chord per bar from the user's labels, repeated to fill `n_bars`; the progression
    starts again at each of `restart_bars` (where the user's sections start), so every
    section opens with its first chord and a repeated section has the same chords."""
    chords = []
    start = 0
    restarts = set(restart_bars)
    for bar in range(n_bars):
        if bar in restarts:
            start = bar
        chords.append(PlanChord(bar, 0, BEATS_PER_BAR, labels[(bar - start) % len(labels)]))
    return chords


def chord_statistics(
    chords: Sequence[PlanChord], start_beat: int, end_beat: int
) -> tuple[float, float]:
    """(share of the span's beats on minor-type chords, chord onsets per bar) in [start, end)."""
    minor_beats = 0
    onsets = 0
    for chord in chords:
        a, b = chord.start_beat, chord.start_beat + chord.n_beats
        overlap = max(0, min(b, end_beat) - max(a, start_beat))
        if overlap and parse_chord(chord.label).is_minor:
            minor_beats += overlap
        onsets += int(start_beat <= a < end_beat)
    n_beats = end_beat - start_beat
    return minor_beats / n_beats, onsets / (n_beats / BEATS_PER_BAR)
