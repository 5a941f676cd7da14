"""Where in the beat the notes start: straight 8ths, 16th-note figures and triplet ballads.

    python benchmarks/beat_positions.py --songs 831-859 [--midi DIR_S0 ...] [--reports EVAL.json ...]

The roll's grid is four steps a beat, so a song played in triplets (a 12/8 ballad) lands on the
beat, its first 16th and its last (0, 1/3 and 2/3 of a beat round to steps 0, 1 and 3) and
hardly ever on the "and" (step 2): the odd-16th share of `benchmarks/figured_songs.py` counts
such songs among the figured ones, though their figures are not 16ths. For each song (its first
`--bars` bars, as `trainer evaluate` takes them): the share of its onsets on each step of the
beat and its feel (`beat_feel`), real and, with `--midi` (folders of song<ID>.mid written by
`trainer evaluate --midi-dir`, one per seed), generated; with `--reports` also how often the
realism test's forest told its windows right (notes only). Then the same by feel
(docs/evaluation.md, "Spread guidance and the triplet ballads").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

STEPS_PER_BEAT = 4
FEELS = ("8ths", "16ths", "triplets")
# A song in triplets puts at least this share of its onsets on steps 1 and 3 together...
TRIPLET_ODD_SHARE = 0.15
# ...and on step 2 less than this fraction of what steps 1 and 3 hold on average.
TRIPLET_AND_RATIO = 0.5
FIGURED_ODD_SHARE = 0.25  # as benchmarks/figured_songs.py: a song in 16th-note figures


def beat_position_shares(onset: np.ndarray) -> np.ndarray:
    """(T, P) onsets -> (4,) share of the onsets on each 16th of the beat (0 = on the beat)."""
    per_step = np.asarray(onset, dtype=bool).sum(axis=1)
    position = np.arange(per_step.shape[0]) % STEPS_PER_BEAT
    counts = np.array([per_step[position == k].sum() for k in range(STEPS_PER_BEAT)], float)
    return counts / max(1.0, counts.sum())


def beat_feel(shares: np.ndarray) -> str:
    """'triplets', '16ths' or '8ths' from a song's beat-position shares."""
    odd = shares[1] + shares[3]
    if odd >= TRIPLET_ODD_SHARE and shares[2] < TRIPLET_AND_RATIO * odd / 2:
        return "triplets"
    return "16ths" if odd >= FIGURED_ODD_SHARE else "8ths"


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from tempo_rhythm import add_song_arguments, forest_accuracy, songs_and_generated

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_song_arguments(parser)
    args = parser.parse_args()
    told = forest_accuracy(args.reports)
    rows: list[tuple[str, float, str, np.ndarray, np.ndarray, float]] = []
    for song_id, song, rolls in songs_and_generated(
        args.songs, Path(args.data), args.bars, args.model, args.midi
    ):
        generated = [beat_position_shares(roll.onset) for roll in rolls]
        real = beat_position_shares(song.onset)
        mean_generated = np.mean(generated, axis=0) if generated else np.full(4, np.nan)
        right = told.get(song_id, np.nan)
        rows.append((song_id, song.tempo_bpm, beat_feel(real), real, mean_generated, right))
    print("| song | tempo | feel | steps 0-3 real | steps 0-3 generated | forest |")
    print("|---|---|---|---|---|---|")
    for song_id, tempo, feel, real, generated, right in rows:
        print(
            f"| {song_id} | {tempo:g} | {feel} | {' '.join(f'{x:.2f}' for x in real)} | "
            f"{' '.join(f'{x:.2f}' for x in generated)} | {right:.2f} |"
        )
    print("\n| feel | songs | steps 0-3 real | steps 0-3 generated | forest |")
    print("|---|---|---|---|---|")
    for feel in FEELS:
        group = [row for row in rows if row[2] == feel]
        if not group:
            continue
        real = np.mean([row[3] for row in group], axis=0)
        generated = np.mean([row[4] for row in group], axis=0)  # NaN without --midi
        right = np.mean([row[5] for row in group])  # NaN without --reports
        print(
            f"| {feel} | {len(group)} | {' '.join(f'{x:.2f}' for x in real)} | "
            f"{' '.join(f'{x:.2f}' for x in generated)} | {right:.2f} |"
        )


if __name__ == "__main__":
    main()
