"""MusicXML written by diffbgm.music.musicxml: accidentals, beams, ties, chord symbols, voices,
and a file that music21 and verovio both read."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest

from diffbgm.music import musicxml, sheet

C_MAJOR = sheet.SheetHeader(title="t", tempo_bpm=120.0, key_tonic_pc=0, key_minor=False)


def written(parts: list[sheet.SheetPart], header: sheet.SheetHeader) -> ElementTree.Element:
    return ElementTree.fromstring(musicxml.score_partwise(parts, header).split("\n", 2)[2])


def pitched_notes(measure: ElementTree.Element) -> list[ElementTree.Element]:
    return [n for n in measure.iter("note") if n.find("pitch") is not None]


def test_accidentals_follow_the_bar_and_the_key() -> None:
    # bar 1: F#4, F4, F4, F#4; bar 2: F4, then F#4 tied over into bar 3, then F#4 again
    melody = np.array(
        [(0, 4, 66), (4, 8, 65), (8, 12, 65), (12, 16, 66)]
        + [(16, 20, 65), (28, 36, 66), (36, 40, 66)]
    )
    root = written([sheet.SheetPart("melody", melody)], C_MAJOR)
    bars = root.findall("part/measure")
    signs = [[n.findtext("accidental") for n in pitched_notes(bar)] for bar in bars]
    assert signs[0] == ["sharp", "natural", None, "sharp"]  # not repeated while in force
    assert signs[1] == [None, "sharp"]  # a new bar forgets bar 1's sharp and natural
    # the tied-over F# shows no sign; the next F# in that bar shows its sharp again
    assert signs[2] == [None, "sharp"]


def test_key_signature_decides_what_is_natural() -> None:
    # D major (F# and C# in the key): F# needs no sign, F natural does; then F# again does
    header = sheet.SheetHeader(title="t", tempo_bpm=120.0, key_tonic_pc=2, key_minor=False)
    melody = np.array([(0, 4, 66), (4, 8, 65), (8, 12, 66), (12, 16, 61)])
    root = written([sheet.SheetPart("melody", melody)], header)
    assert root.findtext("part/measure/attributes/key/fifths") == "2"
    signs = [n.findtext("accidental") for n in pitched_notes(root.find("part/measure"))]
    assert signs == [None, "natural", "sharp", None]


def test_flat_keys_spell_flats() -> None:
    for tonic, minor, fifths in ((5, False, -1), (3, True, -6), (6, False, 6), (8, True, 5)):
        header = sheet.SheetHeader("t", 100.0, key_tonic_pc=tonic, key_minor=minor)
        assert header.fifths == fifths and header.sharps == (fifths >= 0)
    eb_minor = sheet.SheetHeader("t", 100.0, key_tonic_pc=3, key_minor=True)
    root = written([sheet.SheetPart("m", np.array([(0, 4, 66), (4, 8, 59)]))], eb_minor)
    notes = pitched_notes(root.find("part/measure"))
    assert [(n.findtext("pitch/step"), n.findtext("pitch/alter")) for n in notes] == [
        ("G", "-1"),  # Gb: in the key, no sign
        ("B", None),  # B natural against the key's Bb
    ]
    assert [n.findtext("accidental") for n in notes] == [None, "natural"]


def test_beams_group_eighths_and_sixteenths_by_beat() -> None:
    melody = np.array(
        [(0, 2, 60), (2, 4, 62), (4, 6, 64), (6, 8, 65)]  # beats 1-2: two pairs of eighths
        + [(8, 9, 67), (9, 10, 65), (10, 11, 64), (11, 12, 62)]  # beat 3: four 16ths
        + [(12, 15, 60), (15, 16, 62)]  # beat 4: dotted eighth and 16th
        + [(16, 18, 60), (20, 22, 60)]  # bar 2: eighths in different beats, not beamed
    )
    root = written([sheet.SheetPart("melody", melody)], C_MAJOR)
    bars = root.findall("part/measure")
    beams = [[tuple(b.text for b in n.findall("beam")) for n in pitched_notes(bar)] for bar in bars]
    assert beams[0] == [
        ("begin",),
        ("end",),
        ("begin",),
        ("end",),
        ("begin", "begin"),
        ("continue", "continue"),
        ("continue", "continue"),
        ("end", "end"),
        ("begin",),
        ("end", "backward hook"),
    ]
    assert beams[1] == [(), ()]
    levels = [b.get("number") for b in pitched_notes(bars[0])[4].findall("beam")]
    assert levels == ["1", "2"]


def test_tie_across_the_bar_line_and_back(tmp_path: Path) -> None:
    melody = np.array([(12, 20, 60), (20, 24, 64)])
    root = written([sheet.SheetPart("melody", melody)], C_MAJOR)
    first, second = (pitched_notes(bar)[0] for bar in root.findall("part/measure")[:2])
    assert [t.get("type") for t in first.findall("tie")] == ["start"]
    assert [t.get("type") for t in first.findall("notations/tied")] == ["start"]
    assert [t.get("type") for t in second.findall("tie")] == ["stop"]
    assert [t.get("type") for t in second.findall("notations/tied")] == ["stop"]
    # a note over three bars: its middle piece both ends and starts a tie
    long = np.array([(8, 40, 67)])
    path = sheet.write_musicxml([sheet.SheetPart("m", long)], C_MAJOR, tmp_path / "t.musicxml")
    middle = pitched_notes(ElementTree.parse(path).getroot().findall("part/measure")[1])[0]
    assert [t.get("type") for t in middle.findall("tie")] == ["stop", "start"]
    assert np.array_equal(sheet.read_musicxml_notes(path)["m"], long)


def test_chord_symbols_and_marks(tmp_path: Path) -> None:
    from music21 import converter, harmony

    header = sheet.SheetHeader(
        title="t",
        tempo_bpm=90.0,
        key_tonic_pc=10,
        key_minor=False,
        chords=[(0, "Bb:maj"), (8, "G:min7"), (16, "Eb:maj7/G"), (24, "F:sus4"), (28, "N")],
        marks=[(0, "A"), (16, "B")],
    )
    melody = np.array([(0, 16, 70), (16, 32, 74)])
    path = sheet.write_musicxml([sheet.SheetPart("m", melody)], header, tmp_path / "c.musicxml")
    root = ElementTree.parse(path).getroot()
    harmonies = root.findall("part/measure/harmony")
    assert [(h.findtext("root/root-step"), h.findtext("root/root-alter")) for h in harmonies] == [
        ("B", "-1"),
        ("G", None),
        ("E", "-1"),
        ("F", None),
    ]
    kinds = [h.findtext("kind") for h in harmonies]
    assert kinds == ["major", "minor-seventh", "major-seventh", "suspended-fourth"]
    assert harmonies[2].findtext("bass/bass-step") == "G"
    assert [r.text for r in root.iter("rehearsal")] == ["A", "B"]
    # music21 reads the symbols where they were put (the second one half a bar in)
    score = converter.parse(str(path))
    symbols = list(score.recurse().getElementsByClass(harmony.ChordSymbol))
    assert [float(s.getOffsetInHierarchy(score.parts[0])) for s in symbols] == [0, 2, 4, 6]
    assert symbols[2].bass().name == "G"


def test_chord_symbols_show_their_added_and_altered_tones(tmp_path: Path) -> None:
    from music21 import converter, harmony

    header = sheet.SheetHeader(
        title="t",
        tempo_bpm=90.0,
        key_tonic_pc=0,
        key_minor=False,
        chords=[(0, "G:7(b9)"), (8, "C:maj(9)"), (16, "G:7(*5,b5)"), (24, "D:sus4(b7)")],
        marks=[],
    )
    melody = np.array([(0, 32, 67)])
    path = sheet.write_musicxml([sheet.SheetPart("m", melody)], header, tmp_path / "d.musicxml")
    harmonies = ElementTree.parse(path).getroot().findall("part/measure/harmony")
    degrees = [
        [
            (d.findtext("degree-value"), d.findtext("degree-alter"), d.findtext("degree-type"))
            for d in h.findall("degree")
        ]
        for h in harmonies
    ]
    assert degrees == [
        [("9", "-1", "add")],
        [("9", "0", "add")],
        [("5", "-1", "alter")],
        [("7", "-1", "add")],
    ]
    # music21 reads the tones back: G7(b9) sounds Ab, G7(b5) a Db and no D
    symbols = list(converter.parse(str(path)).recurse().getElementsByClass(harmony.ChordSymbol))
    names = [{p.name for p in symbol.pitches} for symbol in symbols]
    assert "A-" in names[0] and "D" in names[1]
    assert "D-" in names[2] and "D" not in names[2]


@pytest.mark.parametrize(
    ("label", "kind", "degrees"),
    [
        ("C:7(*5,b5,b9)", "7", [(5, -1, "alter"), (9, -1, "add")]),
        ("C:(1,b3,5)", "min", []),  # no shorthand: written as the one it sounds like
        ("C:5(b3)", "5", [(3, -1, "add")]),
        ("C:sus4(b7,9)", "sus4", [(7, -1, "add"), (9, 0, "add")]),  # in the degrees' order
    ],
)
def test_chord_degrees_of_unusual_labels(label: str, kind: str, degrees: list) -> None:
    from diffbgm.music.chords import parse_chord
    from diffbgm.music.musicxml import chord_degrees, written_quality

    chord = parse_chord(label)
    assert written_quality(chord) == kind and chord_degrees(chord) == degrees


def test_two_staves_have_their_own_voices() -> None:
    piano = np.array([(0, 16, 72), (0, 4, 76), (0, 16, 40), (4, 8, 43), (0, 2, 36)])
    root = written([sheet.SheetPart("piano", piano)], C_MAJOR)
    assert root.findtext("part/measure/attributes/staves") == "2"
    by_staff: dict[str, set[str]] = {}
    for note in root.iter("note"):
        by_staff.setdefault(note.findtext("staff") or "", set()).add(note.findtext("voice") or "")
    assert set(by_staff) == {"1", "2"}
    assert not by_staff["1"] & by_staff["2"]


def test_file_reads_back_in_music21_and_verovio(tmp_path: Path) -> None:
    import verovio
    from music21 import converter, stream

    header = sheet.SheetHeader(
        title="Tom & Jerry <3",  # escaped, not broken
        tempo_bpm=96.5,
        key_tonic_pc=2,
        key_minor=True,
        chords=[(0, "D:min"), (8, "Bb:maj7/D")],
        marks=[(0, "A")],
    )
    parts = [
        sheet.SheetPart("melody & co", np.array([(2, 5, 76), (5, 6, 77), (8, 20, 79)]), 73),
        sheet.SheetPart("piano", np.array([(0, 16, 48), (0, 4, 64), (4, 9, 65), (9, 16, 72)])),
        sheet.SheetPart("drums", np.array([(0, 1, 36), (4, 5, 42), (8, 9, 38)]), is_drum=True),
    ]
    path = sheet.write_musicxml(parts, header, tmp_path / "v.musicxml")
    text = path.read_text()
    assert text.startswith('<?xml version="1.0"') and 'score-partwise version="4.0"' in text
    root = ElementTree.parse(path).getroot()
    programs = [
        int(p.findtext("midi-instrument/midi-program") or 0) for p in root.iter("score-part")
    ]
    assert programs == [74, 1, 1]  # MusicXML counts programs from 1
    assert root.findtext("part-list/score-part[3]/midi-instrument/midi-channel") == "10"
    assert [c.findtext("sign") for c in root.iter("clef")] == ["G", "G", "F", "percussion"]
    score = converter.parse(str(path))
    assert isinstance(score, stream.Score)
    assert score.metadata.bestTitle == "Tom & Jerry <3"
    assert [p.partName for p in score.parts] == ["melody & co", "piano", "piano", "drums"]
    back = sheet.read_musicxml_notes(path)
    for part in parts:
        assert np.array_equal(back[part.name], np.asarray(sorted(part.notes.tolist())))
    toolkit = verovio.toolkit(False)
    toolkit.setResourcePath(str(Path(verovio.__file__).parent / "data"))
    assert toolkit.loadFile(str(path))
    assert re.search(r'class="note', toolkit.renderToSVG(1))
