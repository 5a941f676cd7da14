"""How close a few-step sampler lands to the exact solution of the same sampling ODE.

    python benchmarks/solver_accuracy.py --songs 801-830 \
        --settings dpm:15 unipc:10 unipc:12 dpm:15:guidance_share=0.5 --reference dpm:200

DDIM (eta 0), DPM-Solver++ and UniPC all integrate one ODE: from the same starting noise they
should reach the same roll, and a solver with few steps differs from it by its error. So a
setting is compared with a many-step reference window by window, with no sampling noise in
the comparison (unlike the metric tables, where two settings are two different draws and a
2 % band on SI is below what chance does over 30 songs). Each song's first window (4 bars,
the song's real chords, phrases and controls, its evaluation seed) is sampled with every
setting; printed per setting: network calls per window, the decoded notes' agreement with
the reference (onset and sustain F1) and the mean absolute difference of the raw roll.
References are kept in --out, so a second run only samples the candidates.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from diffbgm.generation import GenerationConfig, generate_roll
from diffbgm.model.conditions import PieceConditions
from diffbgm.model.diffusion import Diffusion
from diffbgm.music.calibration import Calibration
from trainer.__main__ import parse_song_range
from trainer.models import load_for_inference
from trainer.sample import load_song_piece


def network_calls(config: GenerationConfig, diffusion: Diffusion) -> int:
    """Forward passes per window in batch-1 units (a guided step costs two)."""
    settings = config.sampler_settings(diffusion.num_train_steps)
    scale = 2 if config.guidance != 1.0 else 1
    return sum(scale if settings.guides_at(t) else 1 for t in diffusion.timesteps(config.steps))


def f1(a: np.ndarray, b: np.ndarray) -> float:
    both = int((a & b).sum())
    return 2 * both / max(int(a.sum()) + int(b.sum()), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="checkpoints/diffbgm-small")
    parser.add_argument("--data", default="data_cache/pop909")
    parser.add_argument("--songs", default="801-830")
    parser.add_argument("--bars", type=int, default=4, help="4 = one window, no in-painting")
    parser.add_argument("--reference", default="dpm:200")
    parser.add_argument("--settings", nargs="+", default=["dpm:15", "unipc:10", "unipc:12"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/solver_accuracy"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_for_inference(args.model)
    calibration = Calibration.load()
    songs = parse_song_range(args.songs)
    pieces = [
        (index, load_song_piece(Path(args.data), f"{number:03d}", args.bars, loaded.config))
        for index, number in enumerate(songs)
    ]

    def sample(
        setting: str, index: int, piece_conditions: PieceConditions
    ) -> tuple[np.ndarray, ...]:
        config = loaded.generation.with_setting(setting)
        result = generate_roll(
            loaded, piece_conditions, config, args.seed + index, calibration=calibration
        )
        return result.raw, result.notes.onset, result.notes.sustain

    args.out.mkdir(parents=True, exist_ok=True)
    reference: dict[int, tuple[np.ndarray, ...]] = {}
    for index, song in pieces:
        path = args.out / f"{args.reference}_{song.song_id}_{args.bars}bars_{args.seed}.npz"
        if not path.exists():
            raw, onset, sustain = sample(args.reference, index, song.conditions)
            np.savez_compressed(path, raw=raw, onset=onset, sustain=sustain)
        stored = np.load(path)
        reference[index] = (stored["raw"], stored["onset"], stored["sustain"])

    diffusion = Diffusion(loaded.config.diffusion)
    print(f"{len(pieces)} songs x {args.bars} bars against {args.reference} (seed {args.seed})")
    print("| setting | calls/window | onset F1 | sustain F1 | mean abs raw | s/window |")
    print("|---|---|---|---|---|---|")
    for setting in args.settings:
        onset_f1, sustain_f1, raw_err = [], [], []
        started = time.perf_counter()
        for index, song in pieces:
            raw, onset, sustain = sample(setting, index, song.conditions)
            ref_raw, ref_onset, ref_sustain = reference[index]
            onset_f1.append(f1(onset, ref_onset))
            sustain_f1.append(f1(sustain, ref_sustain))
            raw_err.append(float(np.abs(raw - ref_raw).mean()))
        seconds = (time.perf_counter() - started) / len(pieces)
        calls = network_calls(loaded.generation.with_setting(setting), diffusion)
        print(
            f"| {setting} | {calls:g} | {np.mean(onset_f1):.3f} ± "
            f"{np.std(onset_f1) / np.sqrt(len(onset_f1)):.3f} | {np.mean(sustain_f1):.3f} | "
            f"{np.mean(raw_err):.4f} | {seconds:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
