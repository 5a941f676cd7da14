"""How much do phrases repeat their own bars, and a returning phrase its first occurrence?

    python benchmarks/phrase_repeats.py --songs 801-830 --midi DIR [DIR ...]

For POP909 songs (their first 32 bars, as `trainer evaluate` takes them) and the music
generated for them (`trainer evaluate --midi-dir DIR`): inside each phrase, the share of
(step, pitch) onsets a bar has in common with the bar 1, 2 and 4 bars before it (Jaccard; both
bars in the same phrase), and for the bars a returning phrase recalls (`recall_map`), the same
share with the bar it recalls. Real and each folder side by side: mean share and the share of
bar pairs that are near copies (at least 0.8). Pairs of two silent bars are left out.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from diffbgm.generation.recall import SILENCE, recall_map, transposed_steps
from diffbgm.model.conditions import PieceConditions

try:
    from benchmarks.form_repeats import jaccard
    from benchmarks.tempo_rhythm import add_song_arguments, songs_and_generated
except ModuleNotFoundError:  # run as a script from benchmarks/
    from form_repeats import jaccard  # type: ignore[no-redef]
    from tempo_rhythm import add_song_arguments, songs_and_generated  # type: ignore[no-redef]

STEPS_PER_BAR = 16
LAGS = (1, 2, 4)
NEAR_COPY = 0.8


def inner_shares(onset: np.ndarray, segment_ids: np.ndarray) -> dict[int, list[float]]:
    """lag in bars -> the onset share of every pair of bars that far apart in one phrase."""
    n_bars = onset.shape[0] // STEPS_PER_BAR
    bars = onset[: n_bars * STEPS_PER_BAR].reshape(n_bars, STEPS_PER_BAR, -1)
    phrase = segment_ids[: n_bars * STEPS_PER_BAR : STEPS_PER_BAR]
    shares: dict[int, list[float]] = {}
    for lag in LAGS:
        pairs = [
            b
            for b in range(n_bars - lag)
            if phrase[b] == phrase[b + lag] and (bars[b].any() or bars[b + lag].any())
        ]
        shares[lag] = [jaccard(bars[b + lag], bars[b]) for b in pairs]
    return shares


def recalled_shares(onset: np.ndarray, piece: PieceConditions) -> list[float]:
    """The onset share of every wholly recalled bar with the (transposed) bar it recalls."""
    source, shift = recall_map(piece)
    shares = []
    for start in range(0, onset.shape[0] - STEPS_PER_BAR + 1, STEPS_PER_BAR):
        steps = np.arange(start, start + STEPS_PER_BAR)
        if (source[steps] < 0).any() or not onset[source[steps]].any() and not onset[steps].any():
            continue
        # the sampler's own transposition of recalled music, on a one-channel roll in [-1, 1]
        there = np.where(onset[source[steps]], 1.0, SILENCE)[None]  # (1, bar, P)
        recalled = transposed_steps(there, shift[steps])[0] > 0
        shares.append(jaccard(onset[steps], recalled))
    return shares


def summary(shares: list[float]) -> str:
    if not shares:
        return "–"
    values = np.asarray(shares)
    return f"{values.mean():.3f} ({np.mean(values >= NEAR_COPY):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_song_arguments(parser)
    args = parser.parse_args()
    # column -> row -> shares
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    columns = ["real", *(str(folder) for folder in args.midi)]
    for _, song, rolls in songs_and_generated(
        args.songs, Path(args.data), args.bars, args.model, args.midi
    ):
        if len(rolls) != len(args.midi):
            continue  # a folder lacks this song: compare like with like
        onsets = [song.onset, *(roll.onset for roll in rolls)]
        for column, onset in zip(columns, onsets, strict=True):
            for lag, shares in inner_shares(onset, song.conditions.segment_ids).items():
                table[column][f"inside a phrase, {lag} bar(s) apart"] += shares
            table[column]["a returning phrase's recalled bars"] += recalled_shares(
                onset, song.conditions
            )
    print(f"onset share (Jaccard) of bar pairs, mean (share of pairs >= {NEAR_COPY})\n")
    print("| bar pairs | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for row in table["real"]:
        pairs = len(table["real"][row])
        cells = " | ".join(summary(table[column][row]) for column in columns)
        print(f"| {row} ({pairs} pairs) | {cells} |")


if __name__ == "__main__":
    main()
