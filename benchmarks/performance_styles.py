"""POP909's two ways of playing: how evenly each song is performed, and what the notes show.

    python benchmarks/performance_styles.py --data data_cache/pop909

Every cached song gets its velocity spread (trainer.dataset.velocity_spread: the median over
its 4-bar windows of the standard deviation of the performed velocities). The songs fall
into two groups, even and wide, with whole runs of song numbers in one group, so the
groups are the performances, not the music. The script prints how many songs of each run
of song numbers (the training hundreds, the choice songs 801-830, the report songs 831-859)
are played evenly, and then the realism test's classifiers (diffbgm.realism, notes only:
the velocities are what defines the groups) telling the first bars of evenly played
training songs from those of widely played ones: how far apart two groups of real songs
lie on the same scale that judges the generated music.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np


def song_ranges(last_train: int = 800) -> list[tuple[int, int]]:
    """The training hundreds, then the choice and the report songs."""
    hundreds = [(first, min(first + 99, last_train)) for first in range(1, last_train + 1, 100)]
    return [*hundreds, (801, 830), (831, 859)]


def even_share_table(spreads: dict[int, float], threshold: float) -> list[tuple[str, int, int]]:
    """(range, evenly played songs, songs) for every range that holds songs."""
    rows = []
    for first, last in song_ranges():
        values = [v for n, v in spreads.items() if first <= n <= last and not math.isnan(v)]
        if values:
            even = sum(v <= threshold for v in values)
            rows.append((f"{first:03d}-{last:03d}", even, len(values)))
    return rows


def main() -> None:
    from diffbgm.realism import RealismConfig, feature_names, piece_windows, two_sample_test
    from trainer.dataset import EVEN_VELOCITY_SPREAD, load_cached_song, velocity_spread

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data_cache/pop909")
    parser.add_argument("--bars", type=int, default=32, help="first bars of each song judged")
    parser.add_argument("--per-group", type=int, default=150, help="training songs a group")
    parser.add_argument("--repeats", type=int, default=5, help="cross-validations averaged")
    parser.add_argument("--threshold", type=float, default=EVEN_VELOCITY_SPREAD)
    args = parser.parse_args()

    songs_dir = Path(args.data) / "songs"
    paths = sorted(songs_dir.glob("[0-9][0-9][0-9].npz"))
    if not paths:
        raise SystemExit(f"no cached songs in {songs_dir}: run `python -m trainer cache` first")
    config = RealismConfig(repeats=args.repeats)
    names = feature_names(False)
    spreads: dict[int, float] = {}
    windows: dict[int, np.ndarray] = {}
    for path in paths:
        song = load_cached_song(path)
        number = int(song.song_id)
        spreads[number] = velocity_spread(song)
        if number <= 800:  # only training songs are compared below
            steps = args.bars * 16
            windows[number] = piece_windows(song.onset[:steps], song.sustain[:steps], None, config)

    print(f"### Velocity spread of {len(spreads)} cached songs (even: at most {args.threshold})\n")
    print("| songs | evenly played | songs | share |")
    print("|---|---|---|---|")
    for label, even, total in even_share_table(spreads, args.threshold):
        print(f"| {label} | {even} | {total} | {even / total:.2f} |")
    values = np.array([v for v in spreads.values() if not math.isnan(v)])
    between = values[(values > args.threshold) & (values < 11.0)]
    print(
        f"\nspread quantiles 5/25/50/75/95 %: {np.round(np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95]), 1).tolist()}; "
        f"songs between {args.threshold} and 11: {between.size}"
    )

    rng = np.random.default_rng(0)
    train = [n for n, w in windows.items() if len(w) > 0]
    groups = {
        "even": [n for n in train if spreads[n] <= args.threshold],
        "wide": [n for n in train if spreads[n] > args.threshold],
    }
    size = min(args.per_group, *(len(g) for g in groups.values()))
    if size < 2:
        raise SystemExit("fewer than two training songs in a group: nothing to compare")
    chosen = {k: sorted(rng.choice(v, size, replace=False).tolist()) for k, v in groups.items()}
    samples = {k: np.vstack([windows[n] for n in v]) for k, v in chosen.items()}
    songs = {k: [str(n) for n in v for _ in range(len(windows[n]))] for k, v in chosen.items()}
    print(f"\n### Evenly against widely played training songs, notes only ({size} songs a group)\n")
    print("| classifier | accuracy | windows | what separates most |")
    print("|---|---|---|---|")
    for classifier in ("logistic", "forest"):
        result = two_sample_test(
            samples["even"],
            songs["even"],
            samples["wide"],
            songs["wide"],
            names,
            classifier,
            config,
        )
        top = ", ".join(f"{n} {w:+.3f}" for n, w in result.top_features[:4])
        print(
            f"| {classifier} | {result.accuracy:.3f} ± {result.std:.3f} "
            f"| {result.windows_a} / {result.windows_b} | {top} |"
        )


if __name__ == "__main__":
    main()
