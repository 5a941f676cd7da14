"""How much a network's notes change when it is told the other way of playing.

    python benchmarks/playing_notes.py CHECKPOINT --songs 801 805 811 [--bars 16 --seed 0]

For a network that reads the way of playing (`global_dim` 15; docs/training.md, "The way of
playing as an input"), each song's first bars are generated as `trainer evaluate` does, once
told "even" and once "wide", with the same seed, and the two are compared: onsets, notes
per onset step, and the share of the cells where either has an onset that differ. A network
that reads the key alone writes the same notes both times (0.00 changed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from diffbgm.controls import PLAYING_FEATURE
from diffbgm.metrics import notes_per_onset_step
from diffbgm.music.calibration import Calibration
from trainer.models import load_for_inference
from trainer.sample import generate, load_song_piece, song_generation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--songs", nargs="+", default=["801", "805", "811"])
    parser.add_argument("--data", default="data_cache/pop909")
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_for_inference(args.checkpoint)
    config = song_generation(loaded.generation, None)
    calibration = Calibration.load()
    print("| song | played | onsets even / wide | notes per onset step even / wide | changed |")
    print("|---|---|---|---|---|")
    for song_id in args.songs:
        song = load_song_piece(Path(args.data), song_id, args.bars, loaded.config)
        onsets = []
        for wide in (0.0, 1.0):
            piece = song.conditions.with_global_feature(PLAYING_FEATURE, wide)
            onsets.append(generate(loaded, piece, config, args.seed, calibration).onset)
        even, widely = onsets
        changed = (even != widely).sum() / max(1, (even | widely).sum())
        print(
            f"| {song_id} | {song.playing} | {even.sum()} / {widely.sum()} | "
            f"{notes_per_onset_step(even):.2f} / {notes_per_onset_step(widely):.2f} | "
            f"{changed:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
