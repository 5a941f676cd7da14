"""Sheet music: a grid-exact score -> MusicXML (diffbgm.music.musicxml) and an engraved SVG
(verovio).

Everything here counts in grid steps (16ths by default) from the piece's first downbeat, so a
note is (start step, end step, MIDI pitch) and bars are `beats_per_bar * steps_per_beat`
steps. The layout is done here (it once was left to music21, which (10.5) writes overlapping
notes of one part into a single voice and reads them back wrong): each part's notes
are grouped into chords (same start and end), the chords are laid out in as few voices as keep
every voice free of overlaps, and every note or rest is cut at bar lines and into written
lengths (whole, dotted half, ..., 16th) joined by ties. A wide piano part goes on two staves
(split at middle C). Key and time signature, tempo, chord symbols and one rehearsal mark per
segment go on the first staff. diffbgm.music.musicxml writes the laid-out parts as MusicXML
text (accidentals and beams included); music21 only reads it back.

`sheet_from_midi` reads a score in video time (the pipeline's score.mid, or the arranger's
grid-exact PrettyMIDI) against the plan's grid; `read_musicxml_notes` reads the notes back
(tests/test_sheet.py: MusicXML -> notes equals the score's notes).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pretty_midi

from diffbgm.errors import DiffBGMError
from diffbgm.music.chords import Chord
from diffbgm.music.harmony import ROOT_NAMES
from diffbgm.music.roll import notes_to_roll, roll_to_notes

if TYPE_CHECKING:
    from diffbgm.music.pop909 import Song
    from diffbgm.plan import MusicPlan

# Written lengths in steps of a 16th grid, longest first: whole, dotted half, half, dotted
# quarter, quarter, dotted eighth, eighth, 16th (scaled for other grids).
WRITTEN_SIXTEENTHS = (16, 12, 8, 6, 4, 3, 2, 1)
SPLIT_PITCH = 60  # middle C: a two-staff part puts this and above on the upper staff
MIN_SPAN_FOR_TWO_STAVES = 19  # semitones: a part wider than this (and across C4) gets two

# Key signatures (sharps > 0, flats < 0) by tonic pitch class, spelled with the fewest
# accidentals: major C Db D Eb E F F# G Ab A Bb B, minor C C# D Eb E F F# G G# A Bb B
MAJOR_FIFTHS = (0, -5, 2, -3, 4, -1, 6, 1, -4, 3, -2, 5)
MINOR_FIFTHS = (-3, 4, -1, -6, 1, -4, 3, -2, 5, 0, -5, 2)

# Harte shorthand -> MusicXML harmony kind
HARMONY_KINDS = {
    "maj": "major",
    "min": "minor",
    "dim": "diminished",
    "aug": "augmented",
    "maj7": "major-seventh",
    "min7": "minor-seventh",
    "7": "dominant",
    "dim7": "diminished-seventh",
    "hdim7": "half-diminished",
    "minmaj7": "major-minor",
    "maj6": "major-sixth",
    "min6": "minor-sixth",
    "9": "dominant-ninth",
    "maj9": "major-ninth",
    "min9": "minor-ninth",
    "11": "dominant-11th",
    "min11": "minor-11th",
    "13": "dominant-13th",
    "maj13": "major-13th",
    "min13": "minor-13th",
    "sus2": "suspended-second",
    "sus4": "suspended-fourth",
    "5": "power",
    "1": "major",  # a bare root: written as the major chord's symbol
}


@dataclass(frozen=True)
class SheetPart:
    """One part: its name (the stem's), GM program, drum flag and (N, 3) int notes:
    start step, end step (exclusive), MIDI pitch."""

    name: str
    notes: np.ndarray
    program: int = 0
    is_drum: bool = False


@dataclass(frozen=True)
class SheetHeader:
    """What the sheet says besides the notes. chords and marks: (step, text)."""

    title: str
    tempo_bpm: float
    key_tonic_pc: int
    key_minor: bool
    beats_per_bar: int = 4
    steps_per_beat: int = 4
    chords: list[tuple[int, str]] = field(default_factory=list)
    marks: list[tuple[int, str]] = field(default_factory=list)
    n_bars: int = 0  # at least this many bars (the notes may need more)

    @property
    def bar_steps(self) -> int:
        return self.beats_per_bar * self.steps_per_beat

    @property
    def fifths(self) -> int:
        """The key signature: how many sharps (> 0) or flats (< 0)."""
        return (MINOR_FIFTHS if self.key_minor else MAJOR_FIFTHS)[self.key_tonic_pc]

    @property
    def sharps(self) -> bool:
        """Does the key signature have sharps (or none)? Black keys are then spelled as
        sharps (A# in E major), else as flats (Bb in F major, Gb in Eb minor)."""
        return self.fifths >= 0


def header_from_plan(
    plan: MusicPlan, title: str = "Diff-BGM", marks: Sequence[tuple[int, str]] | None = None
) -> SheetHeader:
    """Key, metre, tempo, the plan's chords and the rehearsal marks: `marks` ((beat, text),
    e.g. the user's form) or one per segment (A, B, ...; a segment that takes up an earlier
    one's music gets that letter with a prime)."""
    letters: list[str] = []
    for segment in plan.segments:
        if segment.recalls >= 0:
            letters.append(letters[segment.recalls].rstrip("'") + "'")
        else:
            letters.append(_letter(sum(1 for s in letters if not s.endswith("'"))))
    steps = 4
    return SheetHeader(
        title=title,
        tempo_bpm=float(plan.tempo_bpm),
        key_tonic_pc=plan.key.tonic_pc,
        key_minor=plan.key.minor,
        beats_per_bar=plan.beats_per_bar,
        steps_per_beat=steps,
        chords=[(c.start_beat * steps, c.label) for c in plan.chords],
        marks=[(s.start_beat * steps, letters[i]) for i, s in enumerate(plan.segments)]
        if marks is None
        else [(beat * steps, text) for beat, text in marks],
        n_bars=plan.n_bars,
    )


def _letter(index: int) -> str:
    return chr(ord("A") + index % 26) + ("" if index < 26 else str(index // 26))


def parts_from_midi(
    midi: pretty_midi.PrettyMIDI, offset_s: float, tempo_bpm: float, steps_per_beat: int = 4
) -> list[SheetPart]:
    """The instruments of a score in video time as grid parts: step = (time - offset_s) / step
    length, rounded (the pipeline's notes sit on the grid, except where the video's start or
    end cut them). Instruments without notes are left out."""
    step_s = 60.0 / tempo_bpm / steps_per_beat
    parts = []
    for index, instrument in enumerate(midi.instruments):
        if not instrument.notes:
            continue
        rows = []
        for note in instrument.notes:
            start = int(round((note.start - offset_s) / step_s))
            end = max(start + 1, int(round((note.end - offset_s) / step_s)))
            rows.append((start, end, note.pitch))
        notes = np.asarray(sorted(rows), dtype=np.int64).reshape(-1, 3)
        name = instrument.name.strip() or f"part {index + 1}"
        parts.append(SheetPart(name, notes, instrument.program, instrument.is_drum))
    return parts


def written_lengths(steps: int, steps_per_beat: int = 4) -> list[int]:
    """A length in steps as written note values (longest first), tied together."""
    scale = steps_per_beat / 4
    values = [
        int(v * scale) for v in WRITTEN_SIXTEENTHS if v * scale == int(v * scale) and v * scale >= 1
    ]
    out = []
    while steps > 0:
        value = next(v for v in values if v <= steps)
        out.append(value)
        steps -= value
    return out


def voices(notes: np.ndarray) -> list[list[tuple[int, int, tuple[int, ...]]]]:
    """Notes grouped into chords (same start and end) and laid out in as few voices as keep
    every voice free of overlaps (greedy by start: the interval-partitioning optimum)."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for start, end, pitch in notes.tolist():
        groups[(start, end)].append(pitch)
    # longer notes first at the same start, so the first voice holds the long ones
    ordered = sorted(groups.items(), key=lambda item: (item[0][0], -item[0][1]))
    laid: list[list[tuple[int, int, tuple[int, ...]]]] = []
    free_from: list[int] = []
    for (start, end), pitches in ordered:
        for v, free in enumerate(free_from):
            if free <= start:
                laid[v].append((start, end, tuple(sorted(set(pitches)))))
                free_from[v] = end
                break
        else:
            laid.append([(start, end, tuple(sorted(set(pitches))))])
            free_from.append(end)
    return laid


def staves(part: SheetPart) -> list[tuple[str, np.ndarray]]:
    """One staff, or two (upper: middle C and above) for a wide pitched part across C4."""
    pitches = part.notes[:, 2]
    wide = pitches.size and int(pitches.max() - pitches.min()) > MIN_SPAN_FOR_TWO_STAVES
    across = pitches.size and pitches.min() < SPLIT_PITCH <= pitches.max()
    if part.is_drum or not (wide and across):
        return [("", part.notes)]
    upper = part.notes[pitches >= SPLIT_PITCH]
    lower = part.notes[pitches < SPLIT_PITCH]
    return [("upper", upper), ("lower", lower)]


def bar_count(parts: list[SheetPart], header: SheetHeader) -> int:
    """How many bars the sheet has: the header's, or more if the notes need them."""
    if not any(p.notes.size for p in parts):
        raise DiffBGMError("the score has no notes to write as sheet music")
    first = min(int(p.notes[:, 0].min()) for p in parts if p.notes.size)
    if first < 0:
        raise DiffBGMError(f"a note starts {-first} steps before the first bar")
    last = max(int(p.notes[:, 1].max()) for p in parts if p.notes.size)
    return max(header.n_bars, -(-last // header.bar_steps), 1)


def voice_pieces(
    voice_notes: list[tuple[int, int, tuple[int, ...]]], total: int, bar: int, steps_per_beat: int
) -> list[tuple[int, int, tuple[int, ...], str | None]]:
    """(start, length, pitches, tie) pieces of one voice over [0, total): rests (no pitches)
    fill the gaps, every piece lies in one bar and has a written length; tie is
    start/continue/stop, or None for a note written as one piece and for rests."""
    spans: list[tuple[int, int, tuple[int, ...]]] = []
    cursor = 0
    for start, end, pitches in voice_notes:
        if start > cursor:
            spans.append((cursor, start, ()))
        spans.append((start, min(end, total), pitches))
        cursor = end
    if cursor < total:
        spans.append((cursor, total, ()))
    pieces = []
    for start, end, pitches in spans:
        lengths: list[tuple[int, int]] = []
        position = start
        while position < end:
            bar_end = (position // bar + 1) * bar
            for value in written_lengths(min(end, bar_end) - position, steps_per_beat):
                lengths.append((position, value))
                position += value
        for i, (at, value) in enumerate(lengths):
            tie = None
            if pitches and len(lengths) > 1:
                tie = "start" if i == 0 else "stop" if i == len(lengths) - 1 else "continue"
            pieces.append((at, value, pitches, tie))
    return pieces


def write_musicxml(parts: list[SheetPart], header: SheetHeader, path: str | Path) -> Path:
    """The parts as a MusicXML 4.0 file (uncompressed .musicxml), accidentals and beams
    included."""
    # imported here: diffbgm.music.musicxml builds on this module's layout
    from diffbgm.music.musicxml import score_partwise

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(score_partwise(parts, header), encoding="utf-8")
    return path


def read_musicxml_notes(path: str | Path, steps_per_beat: int = 4) -> dict[str, np.ndarray]:
    """The notes of a MusicXML file per part name (two staves of a part merged): (N, 3) int
    start step, end step, pitch; tied notes joined back into one."""
    from music21 import converter, note, stream

    score = converter.parse(str(path))
    if not isinstance(score, stream.Score):
        raise DiffBGMError(f"{Path(path).name} holds no score")
    found: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for staff in score.parts:
        open_ties: dict[int, list[int]] = {}  # pitch -> [start, end] of a tied note so far
        rows = found[str(staff.partName or staff.id)]
        for element in staff.flatten().notes:
            if not isinstance(element, note.NotRest) or type(element).__name__ == "ChordSymbol":
                continue
            start = int(round(float(element.getOffsetInHierarchy(staff)) * steps_per_beat))
            end = start + int(round(float(element.quarterLength) * steps_per_beat))
            tie_type = element.tie.type if element.tie is not None else None
            for pitch in (p.midi for p in element.pitches):
                held = open_ties.get(pitch)
                if held is not None and held[1] == start and tie_type in ("stop", "continue"):
                    held[1] = end
                    if tie_type == "stop":
                        rows.append((held[0], held[1], pitch))
                        del open_ties[pitch]
                elif tie_type == "start":
                    open_ties[pitch] = [start, end]
                else:
                    rows.append((start, end, pitch))
        rows.extend((s, e, p) for p, (s, e) in open_ties.items())
    return {
        name: np.asarray(sorted(rows), dtype=np.int64).reshape(-1, 3)
        for name, rows in found.items()
    }


def note_f1(expected: np.ndarray, got: np.ndarray) -> float:
    """F1 of two (N, 3) note lists matched exactly on (start, end, pitch), as multisets."""
    from collections import Counter

    a = Counter(map(tuple, np.asarray(expected).tolist()))
    b = Counter(map(tuple, np.asarray(got).tolist()))
    matched = sum((a & b).values())
    if not a and not b:
        return 1.0
    if matched == 0:
        return 0.0
    precision, recall = matched / sum(b.values()), matched / sum(a.values())
    return 2 * precision * recall / (precision + recall)


def render_svg(musicxml: str | Path, svg_path: str | Path, scale: int = 40) -> Path:
    """The engraved sheet (verovio) as one SVG file: its pages stacked top to bottom."""
    import verovio

    # verovio finds its fonts by itself only in the thread that imported it (measured: a
    # toolkit made in a web server's worker thread failed "Leipzig font could not be
    # loaded"), so its resource folder is always given
    toolkit = verovio.toolkit(False)
    toolkit.setResourcePath(str(Path(verovio.__file__).parent / "data"))
    toolkit.setOptions(
        {
            "scale": scale,
            "pageWidth": 2100,
            "pageHeight": 60000,  # verovio's largest page: short pieces fit on one
            "adjustPageHeight": True,
            "breaks": "auto",
            "footer": "none",
            "header": "auto",
        }
    )
    if not toolkit.loadFile(str(musicxml)):
        raise DiffBGMError(
            f"verovio could not engrave {Path(musicxml).name} (its log above says why: the "
            "file, or its fonts missing from the verovio package)"
        )
    pages = [toolkit.renderToSVG(page) for page in range(1, toolkit.getPageCount() + 1)]
    svg_path = Path(svg_path)
    svg_path.write_text(pages[0] if len(pages) == 1 else _stack(pages))
    return svg_path


def _stack(pages: list[str]) -> str:
    """Several SVG pages as one SVG document (each page a nested <svg>, one under another)."""
    heights, bodies = [], []
    for page in pages:
        match = re.search(r'height="(\d+(?:\.\d+)?)px"', page)
        heights.append(float(match.group(1)) if match else 1000.0)
        bodies.append(re.sub(r"^<\?xml[^>]*>\s*", "", page))
    widths = [re.search(r'width="(\d+(?:\.\d+)?)px"', p) for p in pages]
    width = max(float(m.group(1)) if m else 1000.0 for m in widths)
    out, y = [], 0.0
    for height, body in zip(heights, bodies, strict=True):
        out.append(f'<g transform="translate(0,{y:g})">{body}</g>')
        y += height
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:g}px" height="{y:g}px" '
        f'viewBox="0 0 {width:g} {y:g}">' + "".join(out) + "</svg>"
    )


def sheet_from_midi(
    midi: pretty_midi.PrettyMIDI,
    plan: MusicPlan,
    title: str = "Diff-BGM",
    marks: Sequence[tuple[int, str]] | None = None,
) -> tuple[list[SheetPart], SheetHeader]:
    """A score in video time (grid-exact) and its plan as sheet parts and header (`marks`:
    rehearsal marks as (beat, text) instead of one per segment)."""
    header = header_from_plan(plan, title, marks)
    return parts_from_midi(midi, plan.offset_s, plan.tempo_bpm, header.steps_per_beat), header


POP909_TRACKS = (("MELODY", "melody", 0), ("BRIDGE", "bridge", 0), ("PIANO", "piano", 0))


def sheet_from_song(song: Song) -> tuple[list[SheetPart], SheetHeader]:
    """A POP909 song (diffbgm.music.pop909.load_song) on its own beat grid as sheet parts
    (its MELODY, BRIDGE and PIANO tracks), with its key, tempo, chords and one rehearsal mark
    per labelled phrase."""
    from diffbgm.music.pop909 import notes_of
    from diffbgm.music.roll import load_midi

    midi = load_midi(song.midi_path)
    parts = []
    for track, name, program in POP909_TRACKS:
        timed = notes_of(midi, _track_named(track))
        notes = roll_to_notes(notes_to_roll(timed, song.step_times_s, song.spec))
        grid = np.stack([notes[:, 0], notes[:, 2], notes[:, 1] + song.spec.pitch_low], axis=1)
        if grid.size:
            parts.append(SheetPart(name, grid, program))
    chords = []
    for start_s, _, chord in song.chords:
        step = int(np.searchsorted(song.step_times_s, start_s - 1e-3))
        if chord.root_pc is not None and step < song.n_steps:
            chords.append((step, chord_label(chord)))
    bar = song.spec.steps_per_bar
    header = SheetHeader(
        title=f"POP909 {song.song_id}",
        tempo_bpm=song.tempo_bpm,
        key_tonic_pc=song.key_tonic_pc,
        key_minor=song.key_minor,
        beats_per_bar=bar // song.spec.steps_per_beat,
        steps_per_beat=song.spec.steps_per_beat,
        chords=chords,
        marks=[(phrase.first_bar * bar, phrase.letter) for phrase in song.phrases],
        n_bars=song.n_bars,
    )
    return parts, header


def _track_named(track: str) -> Callable[[str], bool]:
    return lambda name: name.strip().upper() == track


def chord_label(chord: Chord) -> str:
    """A parsed chord back as a Harte label (root:quality, /bass as a note name)."""
    assert chord.root_pc is not None
    label = f"{ROOT_NAMES[chord.root_pc]}:{chord.quality}"
    if chord.bass_pc is not None and chord.bass_pc != chord.root_pc:
        label += f"/{ROOT_NAMES[chord.bass_pc]}"
    return label
