"""What a network writes when it is told another tempo or figuration: slow songs' 16th notes.

    python benchmarks/tempo_notes.py CHECKPOINT --songs 843 846 854 [--bars 16 --seed 0] \
        [--tempos song 60 120] [--figurations 0 0.3 0.5] \
        [--setting ddim:100:eta=1:guidance=1:groove=0:density_slack=0]

The roll's grid is the 16th of a beat at any tempo. POP909's slow songs put a third of their
onsets on the odd 16ths (16th-note figures), its fast ones a twentieth (docs/evaluation.md,
"The tempo as an input"). For a network that reads the tempo (`global_dim` 16), each song's
first bars are generated as `trainer evaluate` does, told each of `--tempos` (`song`: its own)
with the same seed, and the share of onsets on the odd 16ths, the onsets per bar, the notes
per onset step and the notes sounding per 16th are printed beside the real song's. A network
that does not read the tempo writes the same notes whatever it is told. `--figurations` adds
columns told each share of onsets on the odd 16ths (a network with `global_dim` 17; the tempo
its own), `typical` the share typical of the song's tempo (what the app tells). `--setting`
samples with other generation settings (`GenerationConfig.with_setting`'s
'sampler:steps[:knob=value...]'; e.g. ancestral sampling without guidance or decode rules, to
see what the network itself writes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from diffbgm.controls import (
    FIGURATION_FEATURE,
    TEMPO_FEATURE,
    figuration_feature,
    tempo_feature,
    typical_figuration,
)
from diffbgm.metrics import notes_per_onset_step, odd_16th_share, polyphony
from diffbgm.music.calibration import Calibration
from trainer.models import load_for_inference
from trainer.sample import generate, load_song_piece, song_generation

STEPS_PER_BAR = 16


def describe(onset: np.ndarray, sustain: np.ndarray) -> str:
    onset = np.asarray(onset, dtype=bool)
    bars = max(onset.shape[0] / STEPS_PER_BAR, 1e-9)
    per_step = notes_per_onset_step(onset)
    sounding = polyphony(onset, np.asarray(sustain, dtype=bool))
    return (
        f"{odd_16th_share(onset):.3f} / {onset.sum() / bars:.1f} / {per_step:.2f} / {sounding:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--songs", nargs="+", default=["843", "846", "854"])
    parser.add_argument("--data", default="data_cache/pop909")
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--tempos", nargs="+", default=["song", "60", "120"], help="'song' or beats per minute"
    )
    parser.add_argument(
        "--figurations", nargs="*", default=[], help="'typical' or a share of odd-16th onsets"
    )
    parser.add_argument("--setting", help="sampler:steps[:knob=value...] (default: the model's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_for_inference(args.checkpoint)
    generation = loaded.generation
    if args.setting:
        generation = generation.with_setting(args.setting)
    config = song_generation(generation, None)
    calibration = Calibration.load()
    told = [f"told {t}" for t in args.tempos] + [f"told share {f}" for f in args.figurations]
    print(
        "odd-16th share of onsets / onsets per bar / notes per onset step / notes sounding per "
        "16th (polyphony)"
    )
    print(f"| song | tempo | real | {' | '.join(told)} |")
    print("|---|---|---|" + "---|" * len(told))
    for song_id in args.songs:
        song = load_song_piece(Path(args.data), song_id, args.bars, loaded.config)
        told_features = [
            (TEMPO_FEATURE, tempo_feature(song.tempo_bpm if tempo == "song" else float(tempo)))
            for tempo in args.tempos
        ] + [
            (
                FIGURATION_FEATURE,
                figuration_feature(
                    typical_figuration(song.tempo_bpm) if share == "typical" else float(share)
                ),
            )
            for share in args.figurations
        ]
        cells = []
        for feature, value in told_features:
            piece = song.conditions.with_global_feature(feature, value)
            roll = generate(loaded, piece, config, args.seed, calibration)
            cells.append(describe(roll.onset, roll.sustain))
        print(
            f"| {song_id} | {song.tempo_bpm:g} | {describe(song.onset, song.sustain)} | {' | '.join(cells)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
