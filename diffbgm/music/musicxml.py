"""MusicXML 4.0 (partwise) of laid-out sheet parts, written directly as text.

The layout (voices, pieces cut at bar lines into written lengths, ties, staves) is
diffbgm.music.sheet's; this module only spells it. music21 did this before and was the slow part
of the score stage (its `write()` deep-copies the score and reruns its notation pass: 2.3 s for
POP909 song 001); writing the text ourselves takes a few hundredths of that
(docs/sound.md, "Measured").

What a reader relies on is written: part names and General MIDI programs, divisions (one per
grid step), key, time, clefs, tempo (metronome mark and playback tempo), rehearsal marks, chord
symbols, voices separated by <backup>, rests, chords, ties, note types and dots, accidentals
and beams. A two-staff part is one <part> with <staves>2</staves> (how MusicXML writes a grand
staff; readers draw its brace themselves and keep its notes under one part name), its lower
staff's voices numbered after the upper staff's so that no voice number is shared.

Accidentals follow the engraving rule: a note shows one when its alteration differs from what
the key signature, or an earlier note of the same step and octave in the same bar and staff,
implies; the continuation of a tied note shows none. Beams join the eighths and shorter notes
of one voice that start in the same beat (a rest breaks them).
"""

from __future__ import annotations

from fractions import Fraction
from xml.sax.saxutils import escape

import numpy as np

from diffbgm.errors import DiffBGMError
from diffbgm.music.chords import QUALITY_INTERVALS, Chord, parse_chord
from diffbgm.music.sheet import (
    HARMONY_KINDS,
    SheetHeader,
    SheetPart,
    bar_count,
    staves,
    voice_pieces,
    voices,
)

# Pitch class -> (step, alter), black keys as sharps or as flats
SHARP_SPELLING = (
    ("C", 0),
    ("C", 1),
    ("D", 0),
    ("D", 1),
    ("E", 0),
    ("F", 0),
    ("F", 1),
    ("G", 0),
    ("G", 1),
    ("A", 0),
    ("A", 1),
    ("B", 0),
)
FLAT_SPELLING = (
    ("C", 0),
    ("D", -1),
    ("D", 0),
    ("E", -1),
    ("E", 0),
    ("F", 0),
    ("G", -1),
    ("G", 0),
    ("A", -1),
    ("A", 0),
    ("B", -1),
    ("B", 0),
)
SHARP_ORDER = "FCGDAEB"  # the order sharps enter a key signature; flats enter in reverse
ACCIDENTAL_NAMES = {-1: "flat", 0: "natural", 1: "sharp"}
# Note types and their length in quarters; a dotted one is 3/2 of it
NOTE_TYPES = (
    ("whole", Fraction(4)),
    ("half", Fraction(2)),
    ("quarter", Fraction(1)),
    ("eighth", Fraction(1, 2)),
    ("16th", Fraction(1, 4)),
    ("32nd", Fraction(1, 8)),
    ("64th", Fraction(1, 16)),
)
BEAM_COUNTS = {"eighth": 1, "16th": 2, "32nd": 3, "64th": 4}
DRUM_CHANNEL = 10  # General MIDI's percussion channel

Piece = tuple[int, int, tuple[int, ...], str | None]  # start, length, pitches (none: rest), tie


def score_partwise(parts: list[SheetPart], header: SheetHeader) -> str:
    """The parts under this header as a MusicXML 4.0 partwise document."""
    n_bars = bar_count(parts, header)
    title = escape(header.title)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 4.0 Partwise//EN" '
        '"http://www.musicxml.org/dtds/partwise.dtd">',
        '<score-partwise version="4.0">',
        f"<work><work-title>{title}</work-title></work>",
        f"<movement-title>{title}</movement-title>",
        "<identification><encoding><software>Diff-BGM</software>"
        '<supports element="accidental" type="yes"/><supports element="beam" type="yes"/>'
        '<supports element="stem" type="no"/></encoding></identification>',
        "<part-list>",
    ]
    channel = 0
    for index, part in enumerate(parts, start=1):
        if part.is_drum:
            midi_channel = DRUM_CHANNEL
        else:
            channel += 1 + (channel + 1 == DRUM_CHANNEL)  # pitched parts skip channel 10
            midi_channel = min(channel, 16)
        name = escape(part.name)
        out.append(
            f'<score-part id="P{index}"><part-name>{name}</part-name>'
            f'<score-instrument id="P{index}-I1"><instrument-name>{name}</instrument-name>'
            f'</score-instrument><midi-instrument id="P{index}-I1">'
            f"<midi-channel>{midi_channel}</midi-channel>"
            f"<midi-program>{part.program + 1}</midi-program></midi-instrument></score-part>"
        )
    out.append("</part-list>")
    for index, part in enumerate(parts, start=1):
        out.append(f'<part id="P{index}">')
        out.extend(_part_measures(part, header, n_bars, top=index == 1))
        out.append("</part>")
    out.append("</score-partwise>")
    return "\n".join(out) + "\n"


def _part_measures(part: SheetPart, header: SheetHeader, n_bars: int, top: bool) -> list[str]:
    """The <measure> elements of one part: each staff's voices, one after another."""
    bar = header.bar_steps
    staff_notes = staves(part)
    two = len(staff_notes) > 1
    # per staff: per voice: per bar: that voice's pieces in that bar
    laid: list[list[list[list[Piece]]]] = []
    for _, notes in staff_notes:
        staff_voices = []
        for voice_notes in voices(notes) or [[]]:
            per_bar: list[list[Piece]] = [[] for _ in range(n_bars)]
            for piece in voice_pieces(voice_notes, n_bars * bar, bar, header.steps_per_beat):
                per_bar[piece[0] // bar].append(piece)
            staff_voices.append(per_bar)
        laid.append(staff_voices)
    spelling = SHARP_SPELLING if header.sharps else FLAT_SPELLING
    key_alters = {} if part.is_drum else _key_alters(header.fifths)
    annotations = _annotations(header, n_bars, staff=1 if two else 0) if top else {}
    out = []
    for m in range(n_bars):
        out.append(f'<measure number="{m + 1}">')
        if m == 0:
            out.append(_attributes(part, header, staff_notes))
        if m in annotations:
            out.extend(annotations[m])
        first_voice = 1
        written = False
        for s, staff_voices in enumerate(laid):
            staff_number = s + 1 if two else 0
            shown = _accidentals([v[m] for v in staff_voices], spelling, key_alters)
            for v, per_bar in enumerate(staff_voices):
                pieces = per_bar[m]
                if v > 0 and not any(p[2] for p in pieces):
                    continue  # a voice with nothing to say in this bar is left out
                if written:
                    out.append(f"<backup><duration>{bar}</duration></backup>")
                written = True
                out.extend(
                    _voice_notes(
                        pieces,
                        first_voice + v,
                        staff_number,
                        header,
                        spelling,
                        shown.get(v, {}),
                    )
                )
            first_voice += len(staff_voices)
        out.append("</measure>")
    return out


def _attributes(
    part: SheetPart, header: SheetHeader, staff_notes: list[tuple[str, np.ndarray]]
) -> str:
    """The first bar's <attributes>: divisions, key, time, staves and clefs."""
    text = f"<attributes><divisions>{header.steps_per_beat}</divisions>"
    if not part.is_drum:  # a drum staff has no key
        mode = "minor" if header.key_minor else "major"
        text += f"<key><fifths>{header.fifths}</fifths><mode>{mode}</mode></key>"
    text += f"<time><beats>{header.beats_per_bar}</beats><beat-type>4</beat-type></time>"
    if len(staff_notes) > 1:
        text += f"<staves>{len(staff_notes)}</staves>"
    for s, (suffix, notes) in enumerate(staff_notes):
        number = f' number="{s + 1}"' if len(staff_notes) > 1 else ""
        pitches = notes[:, 2]
        if part.is_drum:
            sign = "<sign>percussion</sign>"
        elif suffix == "lower" or (pitches.size and np.median(pitches) < 55):
            sign = "<sign>F</sign><line>4</line>"
        else:
            sign = "<sign>G</sign><line>2</line>"
        text += f"<clef{number}>{sign}</clef>"
    return text + "</attributes>"


def _annotations(header: SheetHeader, n_bars: int, staff: int) -> dict[int, list[str]]:
    """Per bar: the tempo (first bar), rehearsal marks and chord symbols that fall in it, each
    reached with <forward> from the bar's start and the cursor brought back with <backup>."""
    bar = header.bar_steps
    staff_tag = f"<staff>{staff}</staff>" if staff else ""
    items: dict[int, list[tuple[int, int, str]]] = {}  # bar -> (step in bar, order, xml)
    tempo = f"{round(header.tempo_bpm, 1):g}"
    items.setdefault(0, []).append(
        (
            0,
            1,
            '<direction placement="above"><direction-type><metronome>'
            f"<beat-unit>quarter</beat-unit><per-minute>{tempo}</per-minute></metronome>"
            f'</direction-type>{staff_tag}<sound tempo="{tempo}"/></direction>',
        )
    )
    for step, text in header.marks:
        if 0 <= step < n_bars * bar:
            items.setdefault(step // bar, []).append(
                (
                    step % bar,
                    0,
                    '<direction placement="above"><direction-type>'
                    f"<rehearsal>{escape(text)}</rehearsal></direction-type>{staff_tag}</direction>",
                )
            )
    spelling = SHARP_SPELLING if header.sharps else FLAT_SPELLING
    for step, label in header.chords:
        symbol = harmony_xml(label, spelling, staff_tag)
        if symbol is not None and 0 <= step < n_bars * bar:
            items.setdefault(step // bar, []).append((step % bar, 2, symbol))
    out: dict[int, list[str]] = {}
    for m, entries in items.items():
        lines, cursor = [], 0
        for at, _, xml in sorted(entries, key=lambda e: (e[0], e[1])):
            if at > cursor:
                lines.append(f"<forward><duration>{at - cursor}</duration></forward>")
                cursor = at
            lines.append(xml)
        if cursor:
            lines.append(f"<backup><duration>{cursor}</duration></backup>")
        out[m] = lines
    return out


def harmony_xml(
    label: str, spelling: tuple[tuple[str, int], ...], staff_tag: str = ""
) -> str | None:
    """A Harte label as a <harmony> chord symbol (root, kind, and the bass of a slash chord);
    None for no chord."""
    chord = parse_chord(label)
    if chord.root_pc is None:
        return None
    step, alter = spelling[chord.root_pc]
    text = f"<harmony><root><root-step>{step}</root-step>"
    text += f"<root-alter>{alter}</root-alter></root>" if alter else "</root>"
    text += f"<kind>{HARMONY_KINDS.get(written_quality(chord), 'major')}</kind>"
    if chord.bass_pc is not None and chord.bass_pc != chord.root_pc:
        step, alter = spelling[chord.bass_pc]
        text += f"<bass><bass-step>{step}</bass-step>"
        text += f"<bass-alter>{alter}</bass-alter></bass>" if alter else "</bass>"
    for value, degree_alter, kind in chord_degrees(chord):
        text += (
            f"<degree><degree-value>{value}</degree-value><degree-alter>{degree_alter}"
            f"</degree-alter><degree-type>{kind}</degree-type></degree>"
        )
    return text + staff_tag + "</harmony>"


# Semitones above the root -> (degree, alteration) of a tone added to a chord symbol
ADDED_DEGREES = {
    4: (3, 0),  # a third added to a suspended chord
    1: (9, -1),
    2: (9, 0),
    3: (9, 1),
    5: (11, 0),
    6: (11, 1),
    8: (13, -1),
    9: (13, 0),
    10: (7, -1),
    11: (7, 0),
}
# ... and of a tone the symbol's kind has but the chord leaves out
REMOVED_DEGREES = {3: 3, 4: 3, 7: 5, 10: 7, 11: 7, 2: 9, 5: 11, 9: 13}


def written_quality(chord: Chord) -> str:
    """The shorthand a chord symbol is written with: the label's own, or for a label without
    one (`C:(1,b3,5)`) the shorthand whose tones it shares most (fewest left over)."""
    if chord.quality != "1" or chord.root_pc is None:
        return chord.quality
    tones = {(pc - chord.root_pc) % 12 for pc in chord.pitch_classes}
    if tones == {0}:
        return "1"
    return max(
        (q for q in QUALITY_INTERVALS if q != "1"),
        key=lambda q: (
            len(tones & set(QUALITY_INTERVALS[q])),
            -len(set(QUALITY_INTERVALS[q]) - tones),
        ),
    )


def chord_degrees(chord: Chord) -> list[tuple[int, int, str]]:
    """(degree, alteration, 'add' | 'alter' | 'subtract') for the tones a Harte label's
    extensions add to or take from the shorthand it is written with (C:7(b9), C:7(*5,b5)), so
    the chord symbol shows them, in the order of their degrees; a slash chord's bass is not
    one of them."""
    assert chord.root_pc is not None
    root = chord.root_pc
    base = {i % 12 for i in QUALITY_INTERVALS.get(written_quality(chord), (0, 4, 7))}
    tones = {(pc - root) % 12 for pc in chord.pitch_classes}
    if chord.bass_pc is not None and (chord.bass_pc - root) % 12 not in base:
        tones.discard((chord.bass_pc - root) % 12)  # the bass of C/D is not an added ninth
    added, removed = sorted(tones - base), sorted(base - tones)
    degrees: list[tuple[int, int, str]] = []
    altered_fifth = [i for i in added if i in (6, 8)]
    if 7 in removed and altered_fifth:  # a flat or sharp fifth replaces the fifth
        degrees.append((5, altered_fifth[0] - 7, "alter"))
        removed.remove(7)
        added.remove(altered_fifth[0])
    if not base & {3, 4}:  # no third in the shorthand (C5, Csus4): 3 semitones are a b3
        degrees += [(3, i - 4, "add") for i in added if i in (3, 4)]
        added = [i for i in added if i not in (3, 4)]
    degrees += [(*ADDED_DEGREES[i], "add") for i in added if i in ADDED_DEGREES]
    degrees += [(REMOVED_DEGREES[i], 0, "subtract") for i in removed if i in REMOVED_DEGREES]
    return sorted(degrees, key=lambda degree: degree[0])


def _key_alters(fifths: int) -> dict[str, int]:
    """Step -> alteration the key signature gives it (steps it leaves alone are absent)."""
    if fifths >= 0:
        return {step: 1 for step in SHARP_ORDER[:fifths]}
    return {step: -1 for step in SHARP_ORDER[::-1][:-fifths]}


def _accidentals(
    bar_voices: list[list[Piece]],
    spelling: tuple[tuple[str, int], ...],
    key_alters: dict[str, int],
) -> dict[int, dict[tuple[int, int], str]]:
    """Which notes of one staff's bar show an accidental: voice -> (piece index, pitch) -> name.
    Notes are taken in time order across the voices; an accidental holds for its step and
    octave to the end of the bar."""
    timed = sorted(
        (piece[0], v, i)
        for v, pieces in enumerate(bar_voices)
        for i, piece in enumerate(pieces)
        if piece[2]
    )
    in_force: dict[tuple[str, int], int] = {}  # (step, octave) -> alteration now in force
    shown: dict[int, dict[tuple[int, int], str]] = {}
    for _, v, i in timed:
        _, _, pitches, tie = bar_voices[v][i]
        if tie in ("stop", "continue"):
            continue  # a tied continuation repeats its note: no sign, nothing changes
        for pitch in pitches:
            step, alter = spelling[pitch % 12]
            where = (step, pitch // 12 - 1)
            if in_force.get(where, key_alters.get(step, 0)) != alter:
                shown.setdefault(v, {})[(i, pitch)] = ACCIDENTAL_NAMES[alter]
                in_force[where] = alter
    return shown


def note_type(length: int, steps_per_beat: int) -> tuple[str, int]:
    """(MusicXML type, dots) of a written length in steps."""
    quarters = Fraction(length, steps_per_beat)
    for name, value in NOTE_TYPES:
        if quarters == value:
            return name, 0
        if quarters == value * 3 / 2:
            return name, 1
    raise DiffBGMError(f"{length} steps of a {steps_per_beat}-step beat is no written note value")


def _beams(pieces: list[Piece], types: list[str], steps_per_beat: int) -> list[list[str]]:
    """Per piece its <beam> elements: eighths and shorter notes that start in the same beat
    are beamed together (a rest or a longer note breaks the group)."""
    beams: list[list[str]] = [[] for _ in pieces]
    groups: list[list[int]] = []
    beat = -1
    for i, (start, _, pitches, _) in enumerate(pieces):
        if not pitches or types[i] not in BEAM_COUNTS:
            beat = -1
            continue
        own_beat = start // steps_per_beat  # a note is grouped with the beat it starts in
        if own_beat == beat and groups and groups[-1][-1] == i - 1:
            groups[-1].append(i)
        else:
            groups.append([i])
            beat = own_beat
    for group in groups:
        if len(group) < 2:
            continue
        for level in range(1, 1 + max(BEAM_COUNTS[types[i]] for i in group)):
            has = [BEAM_COUNTS[types[i]] >= level for i in group]
            for k, i in enumerate(group):
                if not has[k]:
                    continue
                before = k > 0 and has[k - 1]
                after = k + 1 < len(group) and has[k + 1]
                if before and after:
                    value = "continue"
                elif after:
                    value = "begin"
                elif before:
                    value = "end"
                else:  # a lone shorter note: a hook towards its neighbour in the group
                    value = "backward hook" if k > 0 else "forward hook"
                beams[i].append(f'<beam number="{level}">{value}</beam>')
    return beams


def _voice_notes(
    pieces: list[Piece],
    voice: int,
    staff: int,
    header: SheetHeader,
    spelling: tuple[tuple[str, int], ...],
    shown: dict[tuple[int, int], str],
) -> list[str]:
    """The <note> elements of one voice in one bar."""
    spb = header.steps_per_beat
    staff_tag = f"<staff>{staff}</staff>" if staff else ""
    voice_tag = f"<voice>{voice}</voice>"
    if len(pieces) == 1 and not pieces[0][2] and pieces[0][1] == header.bar_steps:
        # a bar of rest: a whole-bar rest, whatever the metre
        return [
            f'<note><rest measure="yes"/><duration>{pieces[0][1]}</duration>'
            f"{voice_tag}{staff_tag}</note>"
        ]
    types = [note_type(p[1], spb) for p in pieces]
    beams = _beams(pieces, [t[0] for t in types], spb)
    out = []
    for i, (_, length, pitches, tie) in enumerate(pieces):
        kind, dots = types[i]
        shape = f"<type>{kind}</type>" + "<dot/>" * dots
        if not pitches:
            out.append(
                f"<note><rest/><duration>{length}</duration>{voice_tag}{shape}{staff_tag}</note>"
            )
            continue
        ties, tied = "", ""
        if tie in ("stop", "continue"):
            ties += '<tie type="stop"/>'
            tied += '<tied type="stop"/>'
        if tie in ("start", "continue"):
            ties += '<tie type="start"/>'
            tied += '<tied type="start"/>'
        notations = f"<notations>{tied}</notations>" if tied else ""
        for k, pitch in enumerate(pitches):
            step, alter = spelling[pitch % 12]
            alter_tag = f"<alter>{alter}</alter>" if alter else ""
            sign = shown.get((i, pitch))
            accidental = f"<accidental>{sign}</accidental>" if sign else ""
            out.append(
                f"<note>{'<chord/>' if k else ''}<pitch><step>{step}</step>{alter_tag}"
                f"<octave>{pitch // 12 - 1}</octave></pitch><duration>{length}</duration>"
                f"{ties}{voice_tag}{shape}{accidental}{staff_tag}"
                f"{''.join(beams[i]) if k == 0 else ''}{notations}</note>"
            )
    return out
