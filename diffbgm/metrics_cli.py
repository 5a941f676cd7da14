"""`python -m diffbgm.metrics`: the metric table for a folder of MIDI files or POP909 songs.

A plain folder is measured on each MIDI's own beat grid (its tempo map, bars from its first
downbeat), with the key from its key signature if it has one and no chords. POP909 songs are
measured on their annotated beats, chords and key.
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
from diffbgm.music.roll import RollSpec, load_midi, midi_to_roll, step_times_from_beats


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


def midi_file_metrics(path: Path, spec: RollSpec, config: MetricConfig) -> dict[str, float]:
    """Metrics of one MIDI file on its own beat grid, bars counted from its first downbeat."""
    midi = load_midi(path)
    beats = midi.get_beats()
    downbeats = midi.get_downbeats()
    first = int(np.searchsorted(beats, downbeats[0])) if len(downbeats) else 0
    end = midi.get_end_time()
    if len(beats) - first < 2:
        raise MidiError(f"{path} is too short to measure (fewer than two beats)")
    step_times = step_times_from_beats(beats[first:], spec.steps_per_beat)
    step_times = step_times[step_times < end]
    roll = midi_to_roll(midi, step_times, spec, name=str(path))
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
    return parser


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
