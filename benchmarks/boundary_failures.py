"""Why is a segment boundary not heard? Requested vs played density on either side of it.

    python benchmarks/boundary_failures.py --songs 801-808 --bars 32 --cut-contrast 0.55

For each internal boundary of POP909 songs (their chords, phrases and controls, optionally
with the app's contrast rule at every boundary; shipped generation settings): the requested
onsets per bar of the two segments, the segments' played means, and the bar before vs the
bar after the boundary, which is what the audibility rule judges (onset density +-25 % or
register +-1/4 octave). Seeds follow `trainer evaluate` (seed + place in the list).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from diffbgm.controls import DYNAMIC_CONTROLS
from diffbgm.music.calibration import Calibration
from trainer.__main__ import parse_song_range
from trainer.evaluate import (
    STEPS_PER_BAR,
    EvalOptions,
    boundary_changes,
    contrasted,
    segment_starts,
    span_density,
)
from trainer.models import load_for_inference
from trainer.sample import generate, load_song_piece


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="checkpoints/diffbgm-small")
    parser.add_argument("--data", default="data_cache/pop909")
    parser.add_argument("--songs", type=parse_song_range, default=parse_song_range("801-808"))
    parser.add_argument("--bars", type=int, default=32)
    parser.add_argument("--cut-contrast", type=float, default=0.55)
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaded = load_for_inference(args.model)
    generation = loaded.generation  # the checkpoint's stored settings
    cache = Path(args.data)
    calibration = Calibration.load(cache / "calibration.json")
    column = DYNAMIC_CONTROLS.index("density")
    threshold = EvalOptions(args.model, generation).boundary_threshold  # the evaluation's rule
    heard = total = 0
    for index, number in enumerate(args.songs):
        song = load_song_piece(cache, f"{number:03d}", args.bars, loaded.config)
        piece = song.conditions
        if args.cut_contrast > 0:
            piece = contrasted(piece, args.cut_contrast, calibration)
        roll = generate(loaded, piece, generation, index)
        starts = segment_starts(piece.segment_ids)
        ends = np.append(starts[1:], piece.n_steps)
        for segment, audible in boundary_changes(
            roll.onset, starts, loaded.config.pitch_low, threshold
        ):
            at = int(starts[segment])
            asked = [
                calibration.to_raw("density", float(piece.dynamic[s, column]))
                for s in (segment - 1, segment)
            ]
            played = [span_density(roll.onset, starts[s], ends[s]) for s in (segment - 1, segment)]
            bars = (
                span_density(roll.onset, max(at - STEPS_PER_BAR, 0), at),
                span_density(roll.onset, at, min(at + STEPS_PER_BAR, piece.n_steps)),
            )
            recalls = -1 if piece.recalls is None else int(piece.recalls[segment])
            heard += audible
            total += 1
            print(
                f"{song.song_id} bar {at / STEPS_PER_BAR:6.2f} {'heard' if audible else 'NOT  '}"
                f"  asked {asked[0]:5.1f} -> {asked[1]:5.1f}"
                f"  segments {played[0]:5.1f} -> {played[1]:5.1f}"
                f"  bars {bars[0]:5.1f} -> {bars[1]:5.1f}"
                + (f"  (recalls segment {recalls})" if recalls >= 0 else "")
            )
    print(f"heard {heard}/{total}")


if __name__ == "__main__":
    main()
