"""Harte chord labels: parsing, every label POP909 uses, chords on a step grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diffbgm.errors import AnnotationError
from diffbgm.music.chords import ChordError, chord_index_per_step, chords_to_steps, parse_chord


@pytest.mark.parametrize(
    ("label", "root", "bass", "pcs", "minor"),
    [
        ("C:maj", 0, 0, {0, 4, 7}, False),
        ("A:min7", 9, 9, {9, 0, 4, 7}, True),
        ("G:7/3", 7, 11, {7, 11, 2, 5}, False),
        ("Db:sus4(b7)", 1, 1, {1, 6, 8, 11}, False),
        ("E:maj/b7", 4, 2, {4, 8, 11, 2}, False),
        ("F#:hdim7", 6, 6, {6, 9, 0, 4}, True),
        ("Bb:dim", 10, 10, {10, 1, 4}, True),
        ("C#:minmaj7", 1, 1, {1, 4, 8, 0}, True),
        ("Ab:aug", 8, 8, {8, 0, 4}, False),
        ("B:min/b3", 11, 2, {11, 2, 6}, True),
        ("C:maj/G", 0, 7, {0, 4, 7}, False),
        ("D:maj(*3)", 2, 2, {2, 9}, False),
        ("D", 2, 2, {2, 6, 9}, False),
    ],
)
def test_parse_labels(label: str, root: int, bass: int, pcs: set[int], minor: bool) -> None:
    chord = parse_chord(label)
    assert (chord.root_pc, chord.bass_pc, set(chord.pitch_classes), chord.is_minor) == (
        root,
        bass,
        pcs,
        minor,
    )


def test_no_chord() -> None:
    chord = parse_chord("N")
    assert chord.root_pc is None and chord.pitch_classes == frozenset() and not chord.is_minor


@pytest.mark.parametrize("label", ["H:maj", "C:blues", "C:maj/x", "C:min(b17)", "", "C:"])
def test_unknown_labels_raise(label: str) -> None:
    with pytest.raises(ChordError):
        parse_chord(label)
    assert issubclass(ChordError, AnnotationError)


def test_every_pop909_label_parses(pop909_dir: Path) -> None:
    labels = set()
    for path in sorted(pop909_dir.glob("[0-9][0-9][0-9]/chord_midi.txt")):
        for line in path.read_text().splitlines():
            if line.strip():
                labels.add(line.split("\t")[2].strip())
    assert len(labels) > 200
    minor_qualities = set()
    for label in labels:
        chord = parse_chord(label)
        assert chord.root_pc is None or chord.root_pc in chord.pitch_classes
        if chord.is_minor:
            minor_qualities.add(chord.quality)
    assert minor_qualities == {"min", "min6", "min7", "minmaj7", "dim", "dim7", "hdim7"}


def test_chords_on_steps() -> None:
    grid = np.arange(8) * 0.5
    spans = [
        (0.0, 1.0, parse_chord("C:maj")),
        (1.0, 2.6, parse_chord("N")),
        (2.6, 9.0, parse_chord("A:min")),
    ]
    index = chord_index_per_step(spans, grid)
    assert index.tolist() == [0, 0, 1, 1, 1, 2, 2, 2]
    mask = chords_to_steps(spans, grid)
    assert mask.shape == (8, 12)
    assert np.flatnonzero(mask[0]).tolist() == [0, 4, 7]
    assert mask[2].sum() == 0
    assert np.flatnonzero(mask[7]).tolist() == [0, 4, 9]
    assert chords_to_steps([], grid).sum() == 0
