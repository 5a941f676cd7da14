"""`python -m diffbgm.metrics`: the metric table for a folder of MIDI files or POP909 songs.

A plain folder is measured on each MIDI's own beat grid (its tempo map, bars from its first
downbeat), with the key from its key signature if it has one and no chords. POP909 songs are
measured on their annotated beats, chords and key.

With `--realism`, a FOLDER of MIDI files is compared with the POP909 songs by the classifier
two-sample test of diffbgm.realism (first `--bars` bars of every piece; each file is its own
group, as is each song).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pretty_midi

from diffbgm.errors import DiffBGMError, MidiError
from diffbgm.metrics import MetricConfig, aggregate, format_table, piece_metrics
from diffbgm.music.pop909 import load_song
from diffbgm.music.roll import (
    PianoRoll,
    RollSpec,
    load_midi,
    midi_to_roll,
    step_times_from_beats,
)


def parse_song_range(text: str) -> list[str]:
    """'801-859' -> ['801', ..., '859']; '5,7,10-12' works too (three-digit folder names)."""
    ids: list[str] = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"bad song range {text!r}: use e.g. 801-859") from exc
        ids.extend(f"{n:03d}" for n in range(low, high + 1))
    return ids


def midi_key(midi: pretty_midi.PrettyMIDI) -> tuple[int, bool] | None:
    """(tonic pitch class, minor?) from the first key signature, or None without one."""
    if not midi.key_signature_changes:
        return None
    number = midi.key_signature_changes[0].key_number  # 0-11 major, 12-23 minor
    return number % 12, number >= 12


def midi_file_roll(path: Path, spec: RollSpec) -> tuple[PianoRoll, pretty_midi.PrettyMIDI]:
    """A MIDI file on its own beat grid, bars counted from the bar of its first note (silent
    bars before it left out) in quarter-note time: the app's score.mid opens with a lead-in
    measure (k/16) before the music's first bar (diffbgm.arrange.timing), also left out."""
    midi = load_midi(path)
    beats = midi.get_beats()
    downbeats = midi.get_downbeats()
    quarters = [ts.time for ts in midi.time_signature_changes if ts.denominator == 4]
    if quarters:
        downbeats = downbeats[downbeats >= min(quarters) - 1e-6]
    starts = [note.start for instrument in midi.instruments for note in instrument.notes]
    if starts and len(downbeats):
        before = downbeats[downbeats <= min(starts) + 1e-6]
        downbeats = downbeats[downbeats >= before[-1] - 1e-6] if before.size else downbeats
    first = int(np.searchsorted(beats, downbeats[0] - 1e-6)) if len(downbeats) else 0
    end = midi.get_end_time()
    if len(beats) - first < 2:
        raise MidiError(f"{path} is too short to measure (fewer than two beats)")
    step_times = step_times_from_beats(beats[first:], spec.steps_per_beat)
    step_times = step_times[step_times < end]
    return midi_to_roll(midi, step_times, spec, name=str(path)), midi


def midi_file_metrics(path: Path, spec: RollSpec, config: MetricConfig) -> dict[str, float]:
    """Metrics of one MIDI file on its own beat grid, bars counted from its first downbeat."""
    roll, midi = midi_file_roll(path, spec)
    return piece_metrics(roll.onset, roll.sustain, key=midi_key(midi), config=config)


def pop909_song_metrics(song_dir: Path, spec: RollSpec, config: MetricConfig) -> dict[str, float]:
    """Metrics of one POP909 song on its annotated beats, chords and key."""
    song = load_song(song_dir, spec)
    return piece_metrics(
        song.roll.onset,
        song.roll.sustain,
        chord_pcs=song.chord_pcs,
        key=(song.key_tonic_pc, song.key_minor),
        config=config,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m diffbgm.metrics",
        description="Print PCHE, GPS, SI and the other music metrics (mean ± std) for a "
        "folder of MIDI files or for POP909 songs.",
    )
    parser.add_argument("folder", nargs="?", type=Path, help="folder of .mid/.midi files")
    parser.add_argument("--pop909", type=Path, help="POP909 folder (NNN/NNN.mid + annotations)")
    parser.add_argument(
        "--songs", type=parse_song_range, default=None, help="POP909 songs, e.g. 801-859"
    )
    parser.add_argument("--csv", type=Path, help="also write one row per piece to this CSV")
    parser.add_argument(
        "--realism",
        action="store_true",
        help="classifier two-sample test of FOLDER's MIDI files against the --pop909 songs",
    )
    parser.add_argument("--bars", type=int, default=32, help="bars per piece for --realism")
    return parser


def realism_main(args: argparse.Namespace) -> int:
    """FOLDER vs POP909 songs: the realism test's table, notes only and with velocities."""
    from diffbgm.realism import RealismConfig, WindowSet, feature_names, piece_windows
    from diffbgm.realism import realism_report as report_of

    spec = RollSpec()
    config = RealismConfig(pitch_low=spec.pitch_low, steps_per_bar=spec.steps_per_bar)
    steps = args.bars * spec.steps_per_bar
    sets = {
        (kind, velocity): WindowSet(feature_names(velocity))
        for kind in ("generated", "real")
        for velocity in (False, True)
    }
    rolls: list[tuple[str, str, PianoRoll]] = []
    for path in sorted(p for p in args.folder.iterdir() if p.suffix.lower() in (".mid", ".midi")):
        try:
            rolls.append(("generated", f"file:{path.stem}", midi_file_roll(path, spec)[0]))
        except DiffBGMError as exc:
            print(f"skipped {path.name}: {exc}", file=sys.stderr)
    ids = args.songs or sorted(p.name for p in args.pop909.iterdir() if p.is_dir())
    for song_id in ids:
        try:
            rolls.append(("real", song_id, load_song(args.pop909 / song_id, spec).roll))
        except DiffBGMError as exc:
            print(f"skipped {song_id}: {exc}", file=sys.stderr)
    for kind, name, roll in rolls:
        on, sus, vel = roll.onset[:steps], roll.sustain[:steps], roll.velocity[:steps]
        windows = piece_windows(on, sus, vel, config)  # notes-only rows are its first columns
        sets[(kind, False)].add(name, windows[:, : len(feature_names(False))])
        sets[(kind, True)].add(name, windows)
    for velocity in (False, True):
        real, generated = sets[("real", velocity)], sets[("generated", velocity)]
        if not real.songs or not generated.songs:
            print("no windows to compare", file=sys.stderr)
            return 1
        print(f"\n{'with velocities' if velocity else 'notes only'}:")
        for comparison, results in report_of(real, generated, config).items():
            for kind, result in results.items():
                top = ", ".join(f"{n} {w:+.3f}" for n, w in result.top_features)
                print(
                    f"  {comparison}, {kind}: {result.accuracy:.3f} ± {result.std:.3f} "
                    f"({result.windows_a} / {result.windows_b} windows; {top})"
                )
    return 0


def pieces_to_measure(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(name, path) of every piece named on the command line."""
    if args.pop909 is not None:
        ids = args.songs or sorted(p.name for p in args.pop909.iterdir() if p.is_dir())
        return [(song_id, args.pop909 / song_id) for song_id in ids]
    folder: Path = args.folder
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".mid", ".midi"))
    return [(p.stem, p) for p in files]


def write_csv(path: Path, rows: list[tuple[str, dict[str, float]]]) -> None:
    names = list(rows[0][1]) if rows else []
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["piece", *names])
        for piece, values in rows:
            writer.writerow([piece, *(f"{values[n]:.6g}" for n in names)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.realism:
        if args.folder is None or args.pop909 is None:
            parser.error("--realism compares a FOLDER of MIDI files with --pop909 songs")
        return realism_main(args)
    if (args.folder is None) == (args.pop909 is None):
        parser.error("give either a FOLDER of MIDI files or --pop909 DIR")
    source = args.pop909 if args.pop909 is not None else args.folder
    if not source.is_dir():
        parser.error(f"not a folder: {source}")
    spec, config = RollSpec(), MetricConfig(pitch_low=RollSpec().pitch_low)
    measure = pop909_song_metrics if args.pop909 is not None else midi_file_metrics
    rows: list[tuple[str, dict[str, float]]] = []
    started = time.perf_counter()
    for name, path in pieces_to_measure(args):
        try:
            rows.append((name, measure(path, spec, config)))
        except DiffBGMError as exc:
            print(f"skipped {name}: {exc}", file=sys.stderr)
    elapsed = time.perf_counter() - started
    if not rows:
        print(f"no piece could be measured in {source}", file=sys.stderr)
        return 1
    print(format_table(aggregate([values for _, values in rows])))
    per_piece = elapsed / len(rows)
    print(f"\n{len(rows)} pieces measured in {elapsed:.1f} s ({per_piece:.2f} s each)")
    if args.csv is not None:
        write_csv(args.csv, rows)
        print(f"per-piece values: {args.csv}")
    return 0
