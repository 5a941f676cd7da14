"""Choose phrase recall and the decoding settings on validation songs.

    python benchmarks/decode_settings.py --model checkpoints/diffbgm-small --songs 801-812 \
        --bars 32 --recall 0 0.5 0.8 --groove 0 0.1 0.2 --edge-bars 0 1

Recall acts while sampling, groove and edge bars only while decoding: each recall strength
samples the songs once (DDIM 25, guidance 2, the evaluation's seeds: song n of the list gets
seed n; `--first-seed` for a later part of a list split over processes) and every groove / edge-bars pair decodes the same continuous rolls (onset
threshold 0.5, sustain 0.4, density slack 0.5), so those rows differ by decoding alone.
`--cut-contrast R` conditions on the app's contrast rule at every phrase boundary (as
`trainer evaluate --cut-contrast`). Prints one row per setting with the evaluation's
metrics and control columns, and the real songs' row. `--cache DIR` keeps the sampled
rolls (one .npz per song, strength and contrast) for re-decoding.
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="checkpoints/diffbgm-small")
    parser.add_argument("--data", default="data_cache/pop909")
    parser.add_argument("--songs", default="801-812")
    parser.add_argument("--bars", type=int, default=32)
    parser.add_argument("--recall", type=float, nargs="+", default=[0.0, 0.5, 0.8])
    parser.add_argument("--groove", type=float, nargs="+", default=[0.0, 0.1, 0.2])
    parser.add_argument("--edge-bars", type=int, nargs="+", default=[0])
    parser.add_argument("--cut-contrast", type=float, default=0.0)
    parser.add_argument(
        "--recall-edges",
        action="store_true",
        help="sample as the shipped edge-bars setting does: a returning phrase asked for "
        "another density than its source leaves the bars at a changing boundary unguided",
    )
    parser.add_argument("--cache", type=Path, default=None, help="folder for sampled rolls")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seed of the first song (then +1 per song)"
    )
    args = parser.parse_args()

    import torch
    from diffbgm.model.sampling import decode_piece, sample_piece

    from diffbgm.metrics import aggregate, piece_metrics
    from diffbgm.metrics_cli import parse_song_range
    from diffbgm.model.diffusion import Diffusion
    from diffbgm.music.calibration import Calibration
    from trainer.evaluate import EvalOptions, _Accumulator, contrasted
    from trainer.models import load_for_inference
    from trainer.sample import load_song_piece

    torch.set_num_threads(args.threads)
    defaults = EvalOptions(model=args.model)
    loaded = load_for_inference(args.model)
    diffusion = Diffusion(loaded.config.diffusion)
    cache = Path(args.data)
    calibration = Calibration.load(cache / "calibration.json")
    songs = [load_song_piece(cache, n, args.bars, loaded.config) for n in
             parse_song_range(args.songs)]  # fmt: skip
    if args.cut_contrast > 0:
        songs = [replace(s, conditions=contrasted(s.conditions, args.cut_contrast, calibration))
                 for s in songs]  # fmt: skip
    names = ("pche", "gps", "si_short", "chord_tone_ratio", "onsets_per_bar", "polyphony")
    controls = ("boundary_audibility", "boundary_audibility_asked", "density_obedience",
                "register_obedience")  # fmt: skip
    print("| recall | groove | edge bars | " + " | ".join(names + controls) + " |")
    print("|" + "---|" * (3 + len(names) + len(controls)))
    for strength in args.recall:
        started = time.perf_counter()
        tag = f"recall{strength:g}" + (
            f"-contrast{args.cut_contrast:g}" if args.cut_contrast else ""
        )
        tag += "-edges" if args.recall_edges else ""
        rolls = [_sampled(loaded, diffusion, song, n, strength, args.cache, tag, sample_piece,
                          torch, args.recall_edges)
                 for n, song in enumerate(songs, start=args.first_seed)]  # fmt: skip
        seconds = time.perf_counter() - started
        for groove, edge_bars in itertools.product(args.groove, args.edge_bars):
            accumulator = _Accumulator()
            rows = []
            for x, song in zip(rolls, songs, strict=True):
                decoded = decode_piece(x, song.conditions, 0.5, 0.4, 0.5, calibration, groove,
                                       edge_bars)  # fmt: skip
                chords = song.conditions.chord_pcs
                rows.append(piece_metrics(decoded.onset, decoded.sustain, chords, song.key))
                accumulator.add(
                    decoded.onset, song, loaded.config.pitch_low, calibration,
                    defaults.boundary_threshold,
                )  # fmt: skip
            label = f"{strength:g} | {groove:g} | {edge_bars}"
            print(_row(label, aggregate(rows), accumulator, names, controls))
        print(f"(recall {strength:g}: {len(songs)} songs sampled in {seconds:.0f} s)")
    real = _Accumulator()
    for song in songs:
        real.add(
            song.onset, song, loaded.config.pitch_low, calibration, defaults.boundary_threshold
        )
    real_rows = [piece_metrics(s.onset, s.sustain, s.conditions.chord_pcs, s.key) for s in songs]
    print(_row("real | – | –", aggregate(real_rows), real, names, controls))


def _sampled(
    loaded, diffusion, song, n, strength, folder, tag, sample_piece, torch, edges
) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The continuous roll of one song at one recall strength (from the cache when there)."""
    path = folder / f"{song.song_id}-{tag}.npz" if folder else None
    from diffbgm.model.sampling import requested_onsets_per_bar

    if path is not None and path.is_file():
        return np.load(path)["x"]
    generator = torch.Generator().manual_seed(n)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = sample_piece(loaded.model, diffusion, song.conditions, loaded.config, generator,
                         steps=25, guidance=2.0, recall_strength=strength,
                         onsets_per_bar=requested_onsets_per_bar(song.conditions) if edges else None)  # fmt: skip
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, x=x)
    return x


def _row(label, summary, accumulator, names, controls) -> str:  # type: ignore[no-untyped-def]
    values = [summary[name].mean for name in names]
    values += [accumulator.summary(True)[name] for name in controls]
    return f"| {label} | " + " | ".join(f"{v:.3f}" for v in values) + " |"


if __name__ == "__main__":
    main()
