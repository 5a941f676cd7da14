"""Read one POP909 song folder: MIDI, beats, chords, key, tempo and phrase labels.

Everything is put on one grid: 16th-note steps from the song's first 4/4 downbeat (notes
before it, a pickup, are dropped). Bars are the annotated 4/4 bars, so most are 16 steps
but a few are 8, 12, 20 or 24 (the annotators marked irregular bars). See docs/pop909.md
for how the phrase labels are aligned to those bars and what was measured.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from diffbgm.errors import AnnotationError, MidiError
from diffbgm.music.chords import ChordSpan, chord_index_per_step, note_pc, parse_chord
from diffbgm.music.roll import (
    PianoRoll,
    RollSpec,
    load_midi,
    notes_to_roll,
    step_times_from_beats,
)

if TYPE_CHECKING:  # only annotations: the MIDI is read by diffbgm.music.roll.load_midi
    import pretty_midi

PHRASE_PATTERN = re.compile(r"([A-Za-z])(\d+)")
UNLABELLED = "-"  # segment label of bars the phrase annotation does not cover

# Per-bar sums from which any run of bars gets its raw controls (see segment_raw_controls).
BAR_COLUMNS: tuple[str, ...] = (
    "steps",  # 16th steps in the bar
    "onsets",  # note onsets
    "velocity_sum",  # sum of onset velocities
    "pitch_sum",  # sum of onset MIDI pitches
    "sounding",  # sum over steps of sounding pitches
    "chord_changes",  # steps where a new (different, non-N) chord starts
    "minor_steps",  # steps under a minor-type chord
    "chord_steps",  # steps under any chord
    "melody_onsets",  # onsets of the MELODY track
)
COLUMN = {name: i for i, name in enumerate(BAR_COLUMNS)}

# Raw segment controls, in the units the calibration tables use.
RAW_CONTROLS: tuple[str, ...] = (
    "density",  # onsets per 16-step bar
    "velocity",  # mean onset velocity (MIDI 1-127); NaN without onsets
    "register",  # mean onset pitch (MIDI number); NaN without onsets
    "polyphony",  # mean sounding pitches per step
    "harmonic_rhythm",  # chord changes per 16-step bar
    "minor_share",  # share of chord time on minor-type chords, in [0, 1]
    "melody_density",  # MELODY-track onsets per 16-step bar
)


@dataclass(frozen=True)
class Phrase:
    """One labelled phrase: letter (uppercase = with melody, i intro, o outro) and bars."""

    letter: str
    first_bar: int  # index into the song's bars
    n_bars: int

    @property
    def melodic(self) -> bool:
        return self.letter.isupper()


@dataclass
class Song:
    """A POP909 song on the 16th grid. T = steps, B = bars, all step indices from 0."""

    song_id: str
    midi_path: Path
    tempo_bpm: float
    key_tonic_pc: int
    key_minor: bool
    step_times_s: np.ndarray  # (T,) seconds of each step
    bar_starts: np.ndarray  # (B,) int, first step of each bar
    roll: PianoRoll  # all tracks merged, (T, 88)
    melody_roll: PianoRoll  # MELODY track only
    chords: list[ChordSpan]
    chord_index: np.ndarray  # (T,) int index into chords, -1 = no chord
    chord_pcs: np.ndarray  # (T, 12) uint8
    phrases: list[Phrase]  # aligned to bars; see align_phrases
    label_bars: int  # bars the phrase labels add up to
    meter_beats: int  # median beats between 4/4 downbeats: 4 for a song in 4/4
    spec: RollSpec

    @property
    def n_steps(self) -> int:
        return int(self.step_times_s.shape[0])

    @property
    def n_bars(self) -> int:
        return int(self.bar_starts.shape[0])

    @property
    def bar_ends(self) -> np.ndarray:
        return np.append(self.bar_starts[1:], self.n_steps)


def read_text(path: Path) -> str:
    if not path.is_file():
        raise AnnotationError(f"annotation file missing: {path}")
    return path.read_text(encoding="utf-8", errors="replace")


def read_beats(path: Path) -> np.ndarray:
    """(n_beats, 3) float: time_s, 2/4 downbeat flag, 4/4 downbeat flag."""
    try:
        beats = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise AnnotationError(f"cannot read beat file {path}: {exc}") from exc
    if beats.shape[0] < 2 or beats.shape[1] != 3:
        raise AnnotationError(f"{path}: expected >= 2 rows of 3 columns, got {beats.shape}")
    if np.any(np.diff(beats[:, 0]) <= 0):
        raise AnnotationError(f"{path}: beat times do not increase")
    if not np.any(beats[:, 2] > 0.5):
        raise AnnotationError(f"{path}: no 4/4 downbeat in column 3")
    return beats


def read_chords(path: Path) -> list[ChordSpan]:
    """Chord spans (start_s, end_s, Chord) of a tab-separated chord_midi.txt."""
    spans: list[ChordSpan] = []
    for line_no, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise AnnotationError(f"{path}:{line_no}: expected 'start end label', got {line!r}")
        try:
            start, end = float(parts[0]), float(parts[1])
        except ValueError as exc:
            raise AnnotationError(f"{path}:{line_no}: bad time in {line!r}") from exc
        try:
            spans.append((start, end, parse_chord(parts[2])))
        except AnnotationError as exc:
            raise AnnotationError(f"{path}:{line_no}: {exc}") from exc
    return spans


def parse_key(label: str, source: Path) -> tuple[int, bool]:
    """`Gb:maj` -> (6, False); `C#:min` -> (1, True)."""
    tonic, _, mode = label.strip().partition(":")
    if mode not in ("maj", "min"):
        raise AnnotationError(f"{source}: bad key {label!r} (expected e.g. 'Gb:maj')")
    try:
        return note_pc(tonic, label), mode == "min"
    except AnnotationError as exc:
        raise AnnotationError(f"{source}: bad key {label!r}") from exc


def read_key(song_dir: Path) -> tuple[int, bool]:
    """The song's key: the first key in analyzed_key.txt (a few songs list modulations).

    An empty analyzed_key.txt falls back to the longest region of key_audio.txt.
    """
    analyzed = song_dir / "analyzed_key.txt"
    lines = [line for line in read_text(analyzed).splitlines() if line.strip()]
    if lines:
        return parse_key(lines[0], analyzed)
    regions = song_dir / "key_audio.txt"
    best: tuple[float, str] | None = None
    for line in read_text(regions).splitlines():
        parts = line.split()
        if len(parts) == 3:
            length = float(parts[1]) - float(parts[0])
            if best is None or length > best[0]:
                best = (length, parts[2])
    if best is None:
        raise AnnotationError(f"no key in {analyzed} nor in {regions}")
    return parse_key(best[1], regions)


def read_tempo(path: Path) -> float:
    text = read_text(path).strip()
    try:
        tempo = float(text.split()[0])
    except (ValueError, IndexError) as exc:
        raise AnnotationError(f"{path}: expected a tempo in BPM, got {text[:40]!r}") from exc
    if not 20 <= tempo <= 400:
        raise AnnotationError(f"{path}: implausible tempo {tempo} BPM")
    return tempo


def read_phrase_labels(path: Path) -> list[tuple[str, int]]:
    """`i4A4B8o3` -> [('i', 4), ('A', 4), ('B', 8), ('o', 3)]."""
    text = read_text(path).strip()
    pairs = [(m.group(1), int(m.group(2))) for m in PHRASE_PATTERN.finditer(text)]
    if not pairs or "".join(f"{a}{n}" for a, n in pairs) != text.replace(" ", ""):
        raise AnnotationError(f"{path}: malformed phrase labels {text[:60]!r}")
    if any(n <= 0 for _, n in pairs):
        raise AnnotationError(f"{path}: a phrase with zero bars in {text[:60]!r}")
    return pairs


def per_bar_sum(values_per_step: np.ndarray, bar_starts: np.ndarray) -> np.ndarray:
    """(T,) -> (B,) sums over each bar's steps."""
    return np.add.reduceat(values_per_step, bar_starts) if len(bar_starts) else np.zeros(0)


def align_phrases(
    labels: list[tuple[str, int]], melody_in_bar: np.ndarray, first_note_bar: int
) -> int:
    """Bar index where the first labelled phrase starts.

    The labels usually cover a few bars less than the song. Try every offset that keeps the
    labels inside the song and keep the one where "bar has melody onsets" best agrees with
    "phrase is uppercase"; among ties, the one nearest the first bar with notes.
    """
    n_bars = len(melody_in_bar)
    upper = np.concatenate([[letter.isupper()] * n for letter, n in labels])
    best_offset, best_key = 0, (-1.0, 0)
    for offset in range(max(n_bars - len(upper), 0) + 1):
        covered = min(len(upper), n_bars - offset)
        agreement = float(np.mean(melody_in_bar[offset : offset + covered] == upper[:covered]))
        key = (agreement, -abs(offset - first_note_bar))
        if key > best_key:
            best_offset, best_key = offset, key
    return best_offset


def place_phrases(labels: list[tuple[str, int]], offset: int, n_bars: int) -> list[Phrase]:
    """Lay the labelled phrases end to end from `offset`, cut at the song's last bar."""
    phrases: list[Phrase] = []
    bar = offset
    for letter, length in labels:
        if bar >= n_bars:
            break
        phrases.append(Phrase(letter, bar, min(length, n_bars - bar)))
        bar += length
    return phrases


def load_song(song_dir: str | Path, spec: RollSpec | None = None) -> Song:
    """Read a POP909 song folder (NNN/NNN.mid + annotations) onto the 16th grid of `spec`."""
    spec = spec or RollSpec()
    folder = Path(song_dir)
    song_id = folder.name
    midi_path = folder / f"{song_id}.mid"
    beats = read_beats(folder / "beat_midi.txt")
    downbeats = np.flatnonzero(beats[:, 2] > 0.5)
    first = int(downbeats[0])
    if beats.shape[0] - first < 2:
        raise AnnotationError(
            f"{folder / 'beat_midi.txt'}: fewer than 2 beats after the first downbeat"
        )
    step_times = step_times_from_beats(beats[first:, 0], spec.steps_per_beat)
    bar_starts = ((downbeats - first) * spec.steps_per_beat).astype(np.int64)

    midi = load_midi(midi_path)
    all_notes = notes_of(midi, lambda name: True)
    if all_notes.shape[0] == 0:
        raise MidiError(f"{midi_path} has no notes")
    roll = notes_to_roll(all_notes, step_times, spec)
    melody_notes = notes_of(midi, lambda name: name.strip().upper() == "MELODY")
    melody_roll = notes_to_roll(melody_notes, step_times, spec)

    chords = read_chords(folder / "chord_midi.txt")
    chord_index = chord_index_per_step(chords, step_times)
    pcs_table = np.zeros((len(chords) + 1, 12), dtype=np.uint8)
    for i, (_, _, chord) in enumerate(chords):
        pcs_table[i, sorted(chord.pitch_classes)] = 1

    labels = read_phrase_labels(folder / "human_label1.txt")
    melody_in_bar = per_bar_sum(melody_roll.onset.sum(axis=1), bar_starts) > 0
    any_in_bar = per_bar_sum(roll.onset.sum(axis=1), bar_starts) > 0
    first_note_bar = int(np.argmax(any_in_bar))
    offset = align_phrases(labels, melody_in_bar, first_note_bar)
    tonic, minor = read_key(folder)
    gaps = np.diff(downbeats)
    return Song(
        song_id=song_id,
        midi_path=midi_path,
        tempo_bpm=read_tempo(folder / "tempo.txt"),
        key_tonic_pc=tonic,
        key_minor=minor,
        step_times_s=step_times,
        bar_starts=bar_starts,
        roll=roll,
        melody_roll=melody_roll,
        chords=chords,
        chord_index=chord_index,
        chord_pcs=pcs_table[chord_index],
        phrases=place_phrases(labels, offset, len(bar_starts)),
        label_bars=sum(n for _, n in labels),
        meter_beats=int(np.median(gaps)) if len(gaps) else spec.beats_per_bar,
        spec=spec,
    )


def notes_of(midi: pretty_midi.PrettyMIDI, track_wanted: Callable[[str], bool]) -> np.ndarray:
    """(N, 4) start_s, end_s, pitch, velocity of the non-drum tracks whose name is wanted."""
    rows = [
        (note.start, note.end, note.pitch, note.velocity)
        for instrument in midi.instruments
        if not instrument.is_drum and track_wanted(instrument.name)
        for note in instrument.notes
    ]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def bar_segments(song: Song) -> tuple[np.ndarray, list[str]]:
    """(B,) segment index of every bar, and each segment's label letter.

    Segments are the aligned phrases; bars before the first phrase and after the last one
    form their own segments labelled UNLABELLED.
    """
    seg_of_bar = np.full(song.n_bars, -1, dtype=np.int64)
    labels: list[str] = []
    bar = 0
    for phrase in song.phrases:
        if phrase.first_bar > bar:
            labels.append(UNLABELLED)
            seg_of_bar[bar : phrase.first_bar] = len(labels) - 1
        labels.append(phrase.letter)
        seg_of_bar[phrase.first_bar : phrase.first_bar + phrase.n_bars] = len(labels) - 1
        bar = phrase.first_bar + phrase.n_bars
    if bar < song.n_bars:
        labels.append(UNLABELLED)
        seg_of_bar[bar:] = len(labels) - 1
    return seg_of_bar, labels


def bar_table(song: Song) -> np.ndarray:
    """(B, len(BAR_COLUMNS)) float64 per-bar sums; see BAR_COLUMNS."""
    starts = song.bar_starts
    onset, sustain = song.roll.onset, song.roll.sustain
    pitches = np.arange(onset.shape[1]) + song.spec.pitch_low
    chord_ids = song.chord_index
    chord_list = [c for _, _, c in song.chords]
    # Equal consecutive labels (POP909 repeats 'N' every beat) are no change.
    same_as_previous = np.zeros(song.n_steps, dtype=bool)
    prev_ids = np.concatenate([[-1], chord_ids[:-1]])
    for step in np.flatnonzero(chord_ids != prev_ids):
        a, b = chord_ids[step], prev_ids[step]
        same_as_previous[step] = a >= 0 and b >= 0 and chord_list[a] == chord_list[b]
    has_chord = chord_ids >= 0
    change = (chord_ids != prev_ids) & has_chord & ~same_as_previous
    minor_flags = np.array([c.is_minor for c in chord_list] + [False])
    columns = {
        "steps": np.ones(song.n_steps),
        "onsets": onset.sum(axis=1),
        "velocity_sum": song.roll.velocity.sum(axis=1, dtype=np.float64),
        "pitch_sum": (onset * pitches).sum(axis=1),
        "sounding": sustain.sum(axis=1),
        "chord_changes": change,
        "minor_steps": minor_flags[chord_ids],
        "chord_steps": has_chord,
        "melody_onsets": song.melody_roll.onset.sum(axis=1),
    }
    return np.stack(
        [per_bar_sum(np.asarray(columns[name], dtype=np.float64), starts) for name in BAR_COLUMNS],
        axis=1,
    )


def segment_raw_controls(sums: np.ndarray, steps_per_bar: int = 16) -> dict[str, float]:
    """Raw controls (RAW_CONTROLS) of a run of bars from its summed BAR_COLUMNS row."""
    steps = max(float(sums[COLUMN["steps"]]), 1.0)
    bars = steps / steps_per_bar
    onsets = float(sums[COLUMN["onsets"]])
    chord_steps = float(sums[COLUMN["chord_steps"]])
    return {
        "density": onsets / bars,
        "velocity": float(sums[COLUMN["velocity_sum"]]) / onsets if onsets else float("nan"),
        "register": float(sums[COLUMN["pitch_sum"]]) / onsets if onsets else float("nan"),
        "polyphony": float(sums[COLUMN["sounding"]]) / steps,
        "harmonic_rhythm": float(sums[COLUMN["chord_changes"]]) / bars,
        "minor_share": float(sums[COLUMN["minor_steps"]]) / chord_steps if chord_steps else 0.0,
        "melody_density": float(sums[COLUMN["melody_onsets"]]) / bars,
    }


def melody_agreement(song: Song, offset: int) -> float:
    """Share of labelled bars where "has melody onsets" equals "phrase is uppercase"."""
    labels = read_phrase_labels(song.midi_path.parent / "human_label1.txt")
    upper = np.concatenate([[letter.isupper()] * n for letter, n in labels])
    melody_in_bar = per_bar_sum(song.melody_roll.onset.sum(axis=1), song.bar_starts) > 0
    covered = min(len(upper), song.n_bars - offset)
    return float(np.mean(melody_in_bar[offset : offset + covered] == upper[:covered]))


def alignment_row(song_dir: Path) -> dict[str, object]:
    """How the phrase labels of one song fit its bars under three alignment rules."""
    song = load_song(song_dir)
    first_note_bar = int(np.argmax(per_bar_sum(song.roll.onset.sum(axis=1), song.bar_starts) > 0))
    chosen = song.phrases[0].first_bar if song.phrases else 0
    return {
        "song": song.song_id,
        "meter_beats": song.meter_beats,
        "extra_bars": song.n_bars - song.label_bars,
        "offset": chosen,
        "first_note_bar": first_note_bar,
        "agree_chosen": melody_agreement(song, chosen),
        "agree_downbeat": melody_agreement(song, 0),
        "agree_first_note": melody_agreement(song, min(first_note_bar, song.n_bars - 1)),
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m diffbgm.music.pop909 POP909_DIR`: print the phrase-alignment statistics."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("pop909", type=Path)
    args = parser.parse_args(argv)
    rows = [alignment_row(d) for d in sorted(args.pop909.iterdir()) if d.name.isdigit()]
    four = [r for r in rows if r["meter_beats"] == 4]
    extra = np.array([r["extra_bars"] for r in four])
    print(f"songs: {len(rows)}, in 4/4: {len(four)}")
    print(f"labels cover 0-5 bars fewer than the song: {int(np.sum((extra >= 0) & (extra <= 5)))}")
    print(
        f"labels longer than the song: {int(np.sum(extra < 0))}, >5 bars shorter: {int(np.sum(extra > 5))}"
    )
    offsets = np.array([r["offset"] for r in four])
    print(
        f"chosen offset 0: {int(np.sum(offsets == 0))}, 1: {int(np.sum(offsets == 1))}, >=2: {int(np.sum(offsets >= 2))}"
    )
    print(
        f"chosen offset == first bar with notes: {sum(r['offset'] == r['first_note_bar'] for r in four)}"
    )
    for rule in ("agree_downbeat", "agree_first_note", "agree_chosen"):
        values = np.array([r[rule] for r in four], dtype=np.float64)
        print(
            f"{rule}: mean {values.mean():.3f}, median {np.median(values):.3f}, "
            f"songs >= 0.9: {int(np.sum(values >= 0.9))}, >= 0.8: {int(np.sum(values >= 0.8))}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
