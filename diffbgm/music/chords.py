"""Chord labels in Harte syntax (as in POP909's chord_midi.txt) and chords on a step grid.

A label is `ROOT:QUALITY(EXTENSIONS)/BASS`, e.g. `C:maj`, `A:min7`, `G:7/3`,
`Db:sus4(b7)`, `E:maj/b7`; `N` means no chord. The bass is a scale degree relative to the
root (`/3`, `/b7`) or a note name (`/F#`); it is a tone of the chord.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from diffbgm.errors import AnnotationError
from diffbgm.music.roll import nearest_step

# Diatonic pitch classes relative to the tonic.
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
NATURAL_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)


def scale_pitch_classes(tonic_pc: int, minor: bool) -> np.ndarray:
    """(12,) bool: the diatonic scale (major, or natural minor) of the key."""
    mask = np.zeros(12, dtype=bool)
    degrees = NATURAL_MINOR_SCALE if minor else MAJOR_SCALE
    mask[[(tonic_pc + d) % 12 for d in degrees]] = True
    return mask


class ChordError(AnnotationError):
    """A chord label cannot be parsed."""


NOTE_PCS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}

# Semitones above the root of each degree of the major scale (9, 11, 13 = 2, 4, 6 an octave up).
DEGREE_SEMITONES = {1: 0, 2: 2, 3: 4, 4: 5, 5: 7, 6: 9, 7: 11, 9: 2, 11: 5, 13: 9}

# Intervals (semitones above the root) of every shorthand in Harte's syntax.
QUALITY_INTERVALS: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "dim": (0, 3, 6),
    "aug": (0, 4, 8),
    "maj7": (0, 4, 7, 11),
    "min7": (0, 3, 7, 10),
    "7": (0, 4, 7, 10),
    "dim7": (0, 3, 6, 9),
    "hdim7": (0, 3, 6, 10),
    "minmaj7": (0, 3, 7, 11),
    "maj6": (0, 4, 7, 9),
    "min6": (0, 3, 7, 9),
    "9": (0, 4, 7, 10, 2),
    "maj9": (0, 4, 7, 11, 2),
    "min9": (0, 3, 7, 10, 2),
    "11": (0, 4, 7, 10, 2, 5),
    "min11": (0, 3, 7, 10, 2, 5),
    "13": (0, 4, 7, 10, 2, 9),
    "maj13": (0, 4, 7, 11, 2, 9),
    "min13": (0, 3, 7, 10, 2, 9),
    "sus2": (0, 2, 7),
    "sus4": (0, 5, 7),
    "5": (0, 7),
    "1": (0,),
}

LABEL_PATTERN = re.compile(
    r"^(?P<root>[A-G][#b]*)(?::(?P<quality>[a-z0-9]*))?(?:\((?P<ext>[^)]*)\))?(?:/(?P<bass>.+))?$"
)
DEGREE_PATTERN = re.compile(r"^(?P<accidentals>[#b]*)(?P<degree>\d+)$")


@dataclass(frozen=True)
class Chord:
    """A chord: root and bass pitch classes (0 = C), quality shorthand, sounding classes."""

    root_pc: int | None
    quality: str
    bass_pc: int | None
    pitch_classes: frozenset[int]

    @property
    def is_minor(self) -> bool:
        """A minor third above the root and no major third: min, min6/7/9, minmaj7, dim, hdim7, dim7."""
        if self.root_pc is None:
            return False
        has_minor_third = (self.root_pc + 3) % 12 in self.pitch_classes
        has_major_third = (self.root_pc + 4) % 12 in self.pitch_classes
        return has_minor_third and not has_major_third

    @property
    def is_none(self) -> bool:
        return self.root_pc is None


NO_CHORD = Chord(root_pc=None, quality="N", bass_pc=None, pitch_classes=frozenset())


def note_pc(name: str, label: str = "") -> int:
    """Pitch class of a note name such as `C`, `F#`, `Bb`, `Cbb`."""
    if not name or name[0] not in NOTE_PCS or any(c not in "#b" for c in name[1:]):
        raise ChordError(f"bad note name {name!r} in chord label {label!r}")
    return (NOTE_PCS[name[0]] + name.count("#") - name.count("b")) % 12


def degree_semitones(text: str, label: str = "") -> int:
    """Semitones above the root of a Harte degree such as `3`, `b7`, `#11`."""
    match = DEGREE_PATTERN.match(text)
    if match is None or int(match["degree"]) not in DEGREE_SEMITONES:
        raise ChordError(f"bad scale degree {text!r} in chord label {label!r}")
    shift = match["accidentals"].count("#") - match["accidentals"].count("b")
    return DEGREE_SEMITONES[int(match["degree"])] + shift


def parse_chord(label: str) -> Chord:
    """Parse one Harte chord label; raise ChordError naming the label when it is not one."""
    text = label.strip()
    if text in ("N", "X"):  # X = unknown chord in Harte's syntax: nothing to condition on
        return NO_CHORD
    match = LABEL_PATTERN.match(text)
    if match is None:
        raise ChordError(f"cannot parse chord label {label!r}")
    root = note_pc(match["root"], label)
    quality = match["quality"] if match["quality"] is not None else "maj"
    if quality == "" and match["ext"] is None:
        raise ChordError(f"chord label {label!r} has an empty quality")
    if quality and quality not in QUALITY_INTERVALS:
        raise ChordError(f"unknown chord quality {quality!r} in label {label!r}")
    intervals = set(QUALITY_INTERVALS[quality]) if quality else {0}
    for item in (match["ext"] or "").split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("*"):  # `*3` removes a degree from the shorthand
            intervals.discard(degree_semitones(item[1:], label) % 12)
        else:
            intervals.add(degree_semitones(item, label) % 12)
    bass = root
    if match["bass"] is not None:
        bass_text = match["bass"]
        bass = (
            note_pc(bass_text, label)
            if bass_text[0] in NOTE_PCS
            else (root + degree_semitones(bass_text, label)) % 12
        )
    pitch_classes = frozenset({(root + i) % 12 for i in intervals} | {bass})
    return Chord(root_pc=root, quality=quality or "1", bass_pc=bass, pitch_classes=pitch_classes)


ChordSpan = tuple[float, float, Chord]


def chord_index_per_step(chords: list[ChordSpan], step_times_s: np.ndarray) -> np.ndarray:
    """(T,) int: index into `chords` of the chord sounding at each step, -1 where none.

    A chord spanning [start_s, end_s) covers the steps from the one nearest its start up to,
    not including, the one nearest its end; a later chord overwrites an overlapping earlier one.
    """
    steps = np.asarray(step_times_s, dtype=np.float64)
    index = np.full(steps.shape[0], -1, dtype=np.int64)
    if not chords:
        return index
    spans = np.asarray([(start, end) for start, end, _ in chords], dtype=np.float64)
    # Chords entirely off the grid cover nothing.
    half = (steps[1] - steps[0]) / 2 if len(steps) > 1 else 0.0
    grid_with_end = np.append(steps, steps[-1] + 2 * half)
    first = nearest_step(spans[:, 0], grid_with_end)
    last = nearest_step(spans[:, 1], grid_with_end)
    for i, (a, b) in enumerate(zip(first, last, strict=True)):
        if spans[i, 1] <= steps[0] - half:
            continue
        index[a:b] = i
    return index


def chords_to_steps(chords: list[ChordSpan], step_times_s: np.ndarray) -> np.ndarray:
    """(T, 12) uint8 pitch-class mask of the chord sounding at each step (all 0 for N)."""
    table = np.zeros((len(chords) + 1, 12), dtype=np.uint8)  # last row = no chord
    for i, (_, _, chord) in enumerate(chords):
        table[i, sorted(chord.pitch_classes)] = 1
    return table[chord_index_per_step(chords, step_times_s)]
