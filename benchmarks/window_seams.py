"""Do the sampler's window joins show? Bar-to-bar changes at the joins against elsewhere.

    python benchmarks/window_seams.py --songs 801-830 --seed 0 [--overlap-steps 16]

A piece is sampled window by window (4 bars), each window after the first in-painting its
first `overlap_steps` from the one before (diffbgm/generation/windows.py). This generates the
POP909 songs' first 32 bars as `trainer evaluate` does (their chords, phrases and controls; the
model's settings) and measures, between every two neighbouring bars, how much the texture
changes: onsets, mean sounding notes (polyphony), notes per onset step, mean onset pitch and
the highest note. Each change is averaged separately over the joins (the last in-painted bar
against the first new one) and over every other pair of bars, for the generated and for the
real songs at the same bar positions; a ratio over 1 is a larger change than real. A join that
shows has a larger ratio than the other bars. Left-to-right windows of the model's length
only (`window_batch` 1, `max_window_steps` 0).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

STEPS_PER_BAR = 16
MEASURES = ("onsets", "polyphony", "notes per onset", "mean pitch", "highest note")


def bar_measures(onset: np.ndarray, sustain: np.ndarray) -> np.ndarray:
    """(bars, 5) per bar: onsets, mean sounding notes, notes per onset step, mean onset pitch
    index and highest onset pitch index (NaN for the pitches of a bar without onsets)."""
    bars = onset.shape[0] // STEPS_PER_BAR
    rows = []
    for bar in range(bars):
        span = slice(bar * STEPS_PER_BAR, (bar + 1) * STEPS_PER_BAR)
        on, held = onset[span].astype(bool), sustain[span].astype(bool)
        pitches = np.nonzero(on)[1]
        count = float(on.sum())
        rows.append(
            [
                count,
                float(held.sum(axis=1).mean()),
                count / max(int(on.any(axis=1).sum()), 1),
                float(pitches.mean()) if pitches.size else np.nan,
                float(pitches.max()) if pitches.size else np.nan,
            ]
        )
    return np.asarray(rows)


def join_bars(n_bars: int, window_bars: int, overlap_bars: int) -> set[int]:
    """Bars b whose change to bar b + 1 crosses a join: the last in-painted bar of a window."""
    hop = window_bars - overlap_bars
    return {start + overlap_bars - 1 for start in range(hop, n_bars, hop)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="checkpoints/diffbgm-small")
    parser.add_argument("--data", default="data_cache/pop909")
    parser.add_argument("--songs", default="801-830")
    parser.add_argument("--bars", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overlap-steps", type=int, default=None)
    args = parser.parse_args()

    from diffbgm.music.calibration import Calibration
    from trainer.__main__ import parse_song_range
    from trainer.models import load_for_inference
    from trainer.sample import generate, load_song_piece

    loaded = load_for_inference(args.model)
    config = loaded.generation
    if args.overlap_steps is not None:
        config = config.with_overrides(overlap_steps=args.overlap_steps)
    if config.window_batch != 1 or config.max_window_steps != 0:
        raise SystemExit("left-to-right windows of the model's length only (see the docstring)")
    if loaded.config.window_steps % STEPS_PER_BAR or config.overlap_steps % STEPS_PER_BAR:
        raise SystemExit("windows and overlaps of whole bars only")
    window_bars = loaded.config.window_steps // STEPS_PER_BAR
    overlap_bars = config.overlap_steps // STEPS_PER_BAR
    calibration = Calibration.load()
    changes: dict[str, dict[str, list[np.ndarray]]] = {
        side: {"joins": [], "elsewhere": []} for side in ("generated", "real")
    }
    for index, number in enumerate(parse_song_range(args.songs)):
        song = load_song_piece(Path(args.data), f"{number:03d}", args.bars, loaded.config)
        roll = generate(loaded, song.conditions, config, args.seed + index, calibration)
        joins = join_bars(args.bars, window_bars, overlap_bars)
        for side, (onset, sustain) in (
            ("generated", (roll.onset, roll.sustain)),
            ("real", (song.onset, song.sustain)),
        ):
            steps = np.abs(np.diff(bar_measures(onset, sustain), axis=0))  # (bars - 1, 5)
            for bar, change in enumerate(steps):
                changes[side]["joins" if bar in joins else "elsewhere"].append(change)
    for where in ("joins", "elsewhere"):
        generated = np.nanmean(np.asarray(changes["generated"][where]), axis=0)
        real = np.nanmean(np.asarray(changes["real"][where]), axis=0)
        cells = ", ".join(
            f"{name} {g:.2f} / {r:.2f} = {g / r:.2f}x"
            for name, g, r in zip(MEASURES, generated, real, strict=True)
        )
        print(f"{where} ({len(changes['real'][where])} bar pairs), generated / real: {cells}")


if __name__ == "__main__":
    main()
