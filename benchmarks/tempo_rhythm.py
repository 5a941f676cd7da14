"""The 16th-note figures of slow songs: real against generated, by tempo, song by song.

    python benchmarks/tempo_rhythm.py --songs 1-800                 # real songs by tempo
    python benchmarks/tempo_rhythm.py --songs 831-859 --midi DIR_S0 DIR_S1 ... \
        --reports EVAL_S0.json EVAL_S1.json ...

The roll's grid is the 16th of a beat whatever the tempo, so a slow song's 16th-note figures
and a fast song's 8th notes look alike to a network that is not told the tempo. For every
song (its first `--bars` bars, as `trainer evaluate` takes them): the tempo, the share of its
onsets on the odd 16ths of the bar and the notes per onset step, real and, with `--midi`
(folders of song<ID>.mid written by `trainer evaluate --midi-dir`, one per seed), generated;
with `--reports` (that evaluation's JSON files) also how often the realism test's forest told
the song's windows right (notes only, both kinds of window). Then the same by tempo band, and
the correlation of that accuracy with the gap in odd-16th share (docs/evaluation.md, "The
tempo as an input").

With `--features NAME ...` (the realism test's note features, `diffbgm.realism`), also their
mean over the songs' 4-bar windows by tempo band, real and generated, and the difference in
pooled standard deviations: what gives the music away at each tempo (docs/evaluation.md,
"Double time": the slow songs' rhythm and chord sizes, the fast songs' register).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from diffbgm.metrics import notes_per_onset_step, odd_16th_share
from diffbgm.realism import feature_names, piece_windows
from trainer.__main__ import parse_song_range

if TYPE_CHECKING:
    from diffbgm.music.roll import PianoRoll
    from trainer.sample import SongPiece

TEMPO_BANDS = ((0.0, 66.0), (66.0, 76.0), (76.0, 90.0), (90.0, 1000.0))


def forest_accuracy(reports: list[Path]) -> dict[str, float]:
    """Song -> share of its windows (generated and real) the forest told right, over reports."""
    told: dict[str, list[float]] = {}
    for path in reports:
        realism = json.loads(path.read_text())["realism"]["notes only"]["generated vs real"]
        for song, (gen_right, gen, real_right, real) in realism["forest"]["per_song"].items():
            told.setdefault(song, []).append((gen_right + real_right) / max(1, gen + real))
    return {song: float(np.mean(values)) for song, values in told.items()}


def band_of(tempo_bpm: float) -> tuple[float, float]:
    return next(band for band in TEMPO_BANDS if band[0] <= tempo_bpm < band[1])


def feature_table(
    names: list[str],
    real: dict[tuple[float, float], list[np.ndarray]],
    generated: dict[tuple[float, float], list[np.ndarray]],
) -> list[str]:
    """Markdown rows: per feature and tempo band, the real and generated window means and the
    difference in pooled standard deviations (windows of (n, features) arrays per band)."""
    columns = [feature_names(False).index(name) for name in names]
    rows = ["| feature | tempo (BPM) | windows real / generated | real | generated | d |"]
    rows.append("|---|---|---|---|---|---|")
    for name, column in zip(names, columns, strict=True):
        for band in TEMPO_BANDS:
            if not real.get(band):
                continue
            ours = np.concatenate(real[band])[:, column]
            theirs = np.concatenate(generated[band])[:, column] if generated.get(band) else None
            cells = f"| {name} | {band[0]:g}-{band[1]:g} | {ours.size} / "
            if theirs is None or not theirs.size:
                rows.append(cells + f"0 | {ours.mean():.3f} | – | – |")
                continue
            pooled = np.sqrt((ours.var() + theirs.var()) / 2.0)
            d = (theirs.mean() - ours.mean()) / pooled if pooled > 0 else 0.0
            rows.append(
                cells + f"{theirs.size} | {ours.mean():.3f} | {theirs.mean():.3f} | {d:+.2f} |"
            )
    return rows


def songs_and_generated(
    songs: list[int], data: Path, bars: int, model: str, midi: list[Path]
) -> Iterator[tuple[str, SongPiece, list[PianoRoll]]]:
    """Each cached song's first `bars` bars (as `trainer evaluate` takes them), with its
    generated music read from the MIDI folders (song<ID>.mid, on the song's own grid; the
    model's config gives the roll's pitches). A song the cache cannot give is reported and
    skipped."""
    from diffbgm.errors import DiffBGMError
    from diffbgm.music.roll import RollSpec, midi_to_roll
    from trainer.models import load_for_inference
    from trainer.sample import load_song_piece

    config = load_for_inference(model).config
    spec = RollSpec(pitch_low=config.pitch_low, n_pitches=config.n_pitches)
    for number in songs:
        song_id = f"{number:03d}"
        try:
            song = load_song_piece(data, song_id, bars, config)
        except DiffBGMError as exc:
            print(f"{song_id}: skipped ({exc})")
            continue
        grid = np.arange(song.onset.shape[0]) * 60.0 / song.tempo_bpm / 4
        files = [folder / f"song{song_id}.mid" for folder in midi]
        yield song_id, song, [midi_to_roll(file, grid, spec) for file in files if file.is_file()]


def add_song_arguments(parser: argparse.ArgumentParser) -> None:
    """--songs, --data, --model, --bars, --midi and --reports, as `songs_and_generated` and
    `forest_accuracy` read them."""
    parser.add_argument("--songs", type=parse_song_range, default=parse_song_range("831-859"))
    parser.add_argument("--data", default="data_cache/pop909")
    parser.add_argument("--model", default="checkpoints/diffbgm-small", help="for its roll spec")
    parser.add_argument("--bars", type=int, default=32)
    parser.add_argument("--midi", nargs="*", type=Path, default=[])
    parser.add_argument("--reports", nargs="*", type=Path, default=[])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_song_arguments(parser)
    parser.add_argument(
        "--features", nargs="*", default=[], help="realism note features to show by tempo band"
    )
    args = parser.parse_args()
    unknown = sorted(set(args.features) - set(feature_names(False)))
    if unknown:
        parser.error(f"unknown features {unknown}; known: {', '.join(feature_names(False))}")
    real_windows: dict[tuple[float, float], list[np.ndarray]] = {}
    generated_windows: dict[tuple[float, float], list[np.ndarray]] = {}
    accuracy = forest_accuracy(args.reports)
    rows = []
    for song_id, song, rolls in songs_and_generated(
        args.songs, Path(args.data), args.bars, args.model, args.midi
    ):
        generated = [roll.onset for roll in rolls]
        if args.features:
            tempo_band = band_of(song.tempo_bpm)
            real_windows.setdefault(tempo_band, []).append(piece_windows(song.onset, song.sustain))
            generated_windows.setdefault(tempo_band, []).extend(
                piece_windows(roll.onset, roll.sustain) for roll in rolls
            )
        rows.append(
            (
                song_id,
                song.tempo_bpm,
                odd_16th_share(song.onset),
                notes_per_onset_step(song.onset),
                np.mean([odd_16th_share(g) for g in generated]) if generated else np.nan,
                np.mean([notes_per_onset_step(g) for g in generated]) if generated else np.nan,
                accuracy.get(song_id, np.nan),
            )
        )
    table = np.array([row[1:] for row in rows], dtype=np.float64).reshape(len(rows), 6)
    print(
        "| song | tempo | odd 16ths real / generated | notes per onset step real / generated | forest |"
    )
    print("|---|---|---|---|---|")
    for song_id, tempo, odd, per_step, gen_odd, gen_per_step, told in rows:
        print(
            f"| {song_id} | {tempo:g} | {odd:.3f} / {gen_odd:.3f} | "
            f"{per_step:.2f} / {gen_per_step:.2f} | {told:.2f} |"
        )
    print("\n| tempo (BPM) | songs | odd 16ths real / generated | forest |")
    print("|---|---|---|---|")
    for low, high in TEMPO_BANDS:
        band = table[(table[:, 0] >= low) & (table[:, 0] < high)]
        if len(band):
            means = [np.nanmean(c) if np.isfinite(c).any() else np.nan for c in band.T]
            print(
                f"| {low:g}-{high:g} | {len(band)} | {means[1]:.3f} / {means[3]:.3f} | {means[5]:.2f} |"
            )
    gap = table[:, 1] - table[:, 3]
    known = np.isfinite(gap) & np.isfinite(table[:, 5])
    if known.sum() > 2:
        correlation = np.corrcoef(gap[known], table[known, 5])[0, 1]
        print(f"\ncorrelation of the forest's accuracy with the odd-16th gap: {correlation:.2f}")
    slow = np.log(table[:, 0])
    print(
        f"correlation of log tempo with the real odd-16th share: {np.corrcoef(slow, table[:, 1])[0, 1]:.2f}"
    )
    if args.features:
        print("\n" + "\n".join(feature_table(args.features, real_windows, generated_windows)))


if __name__ == "__main__":
    main()
