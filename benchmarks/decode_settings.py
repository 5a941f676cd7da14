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
rolls (one .npz per song, strength and contrast) for re-decoding. Sampling is
`diffbgm.generation.generate_roll` (its raw values), each variant `diffbgm.generation.decode`.
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from diffbgm.checkpoint import LoadedModel
    from diffbgm.generation import GenerationConfig
    from diffbgm.music.calibration import Calibration
    from trainer.sample import SongPiece


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

    from diffbgm.generation import GenerationConfig, decode
    from diffbgm.metrics import aggregate, piece_metrics
    from diffbgm.metrics_cli import parse_song_range
    from diffbgm.music.calibration import Calibration
    from trainer.evaluate import EvalOptions, _Accumulator, contrasted
    from trainer.models import load_for_inference
    from trainer.sample import load_song_piece

    torch.set_num_threads(args.threads)
    # The settings of this study, whatever the checkpoint stores: DDIM 25 at guidance 2,
    # onset threshold 0.5, sustain 0.4, density slack 0.5; recall, groove and edge bars vary.
    base = GenerationConfig(
        sampler="ddim",
        steps=25,
        guidance=2.0,
        onset_threshold=0.5,
        sustain_threshold=0.4,
        density_slack=0.5,
    )
    defaults = EvalOptions(model=args.model, generation=base)
    loaded = load_for_inference(args.model)
    cache = Path(args.data)
    calibration = Calibration.load(cache / "calibration.json")
    songs = [load_song_piece(cache, n, args.bars, loaded.config) for n in
             parse_song_range(args.songs)]  # fmt: skip
    if args.cut_contrast > 0:
        songs = [replace(s, conditions=contrasted(s.conditions, args.cut_contrast, calibration))
                 for s in songs]  # fmt: skip
    names = ("pche", "gps", "si_bar_short", "chord_tone_ratio", "onsets_per_bar", "polyphony")
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
        # edge bars only matter to sampling as on/off: recall yields at a changing edge
        sampling = base.with_overrides(recall=strength, edge_bars=1 if args.recall_edges else 0)
        rolls = [_sampled(loaded, song, n, sampling, calibration, args.cache, tag)
                 for n, song in enumerate(songs, start=args.first_seed)]  # fmt: skip
        seconds = time.perf_counter() - started
        for groove, edge_bars in itertools.product(args.groove, args.edge_bars):
            config = base.with_overrides(groove=groove, edge_bars=edge_bars)
            accumulator = _Accumulator()
            rows = []
            for x, song in zip(rolls, songs, strict=True):
                decoded = decode(
                    x, song.conditions, config, calibration, pitch_low=loaded.config.pitch_low
                )
                chords = song.conditions.chord_pcs
                rows.append(piece_metrics(decoded.onset, decoded.sustain, chords, song.key))
                accumulator.add(
                    decoded.onset, decoded.sustain, song, loaded.config.pitch_low, calibration,
                    defaults.boundary_threshold,
                )  # fmt: skip
            label = f"{strength:g} | {groove:g} | {edge_bars}"
            print(_row(label, aggregate(rows), accumulator, names, controls))
        print(f"(recall {strength:g}: {len(songs)} songs sampled in {seconds:.0f} s)")
    real = _Accumulator()
    for song in songs:
        real.add(
            song.onset,
            song.sustain,
            song,
            loaded.config.pitch_low,
            calibration,
            defaults.boundary_threshold,
        )
    real_rows = [piece_metrics(s.onset, s.sustain, s.conditions.chord_pcs, s.key) for s in songs]
    print(_row("real | – | –", aggregate(real_rows), real, names, controls))


def _sampled(
    loaded: LoadedModel,
    song: SongPiece,
    seed: int,
    config: GenerationConfig,
    calibration: Calibration,
    folder: Path | None,
    tag: str,
) -> np.ndarray:
    """The continuous roll (2, T, P) of one song at one sampling setting (from the cache when
    there): generate_roll's sampled values, which every decoding variant then cuts."""
    from diffbgm.generation import generate_roll

    path = folder / f"{song.song_id}-{tag}.npz" if folder else None
    if path is not None and path.is_file():
        return np.asarray(np.load(path)["x"])
    x = generate_roll(loaded, song.conditions, config, seed, calibration=calibration).raw
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
