"""Where do the extra notes come from? The network's x0 estimate on real windows, with and
without guidance, noise level by noise level.

    python benchmarks/guidance_counts.py --model checkpoints/diffbgm-small-teacher --songs 801-830

Takes the model-sized windows (4 bars for the shipped models) of the given validation songs
(no augmentation), noises them to each timestep of --timesteps (a fixed seed per timestep), and
decodes the network's estimate of the clean roll there as generation decodes a roll
(`decode_roll` with the model's onset and sustain thresholds unless given: a note starts at an
onset and sounds while its sustain lasts) from the conditional pass alone and with guidance
--guidance. Prints onsets and sounding pitches per
16th step next to the real windows'. Where the conditional estimate matches the real counts at
the quiet timesteps and guidance raises them at the noisy ones, the generated music's surplus
of notes comes from guidance, not from what the network learned. A guidance-distilled model is
given the scale instead of running two passes (`Diffusion.guided_prediction`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch

from diffbgm.generation.decoding import decode_roll
from diffbgm.model.config import ModelConfig
from diffbgm.model.diffusion import Diffusion
from trainer.__main__ import parse_song_range
from trainer.dataset import Pop909Windows, collate_windows
from trainer.models import load_for_inference
from trainer.sources import roll_spec_for, window_bars_for


@dataclass(frozen=True)
class Counts:
    """Decoded cells per 16th step, averaged over the windows."""

    onsets: float
    sounding: float


@dataclass(frozen=True)
class NoiseLevel:
    """The decoded estimates at one timestep."""

    timestep: int
    signal: float  # alpha_bar: the share of the clean roll in x_t
    conditional: Counts
    guided: Counts


def song_windows(
    data: str, songs: tuple[int, ...], config: ModelConfig
) -> tuple[Pop909Windows, np.ndarray]:
    """The validation split's windows of the model's size (no augmentation), and the item
    numbers of those from `songs`."""
    spec = roll_spec_for(config)
    bars = window_bars_for(config, spec)
    windows = Pop909Windows(data, "valid", spec, bars, config.max_segments, augment=False)
    keep = [i for i, song in enumerate(windows.songs) if int(song.song_id) in songs]
    return windows, np.flatnonzero(np.isin(windows.index[:, 0], keep))


def decoded_counts(x0: torch.Tensor, onset_threshold: float, sustain_threshold: float) -> Counts:
    """(B, 2, T, P) estimate -> onsets and sounding pitches per step of its decoded notes."""
    rolls = [decode_roll(x.numpy(), onset_threshold, sustain_threshold) for x in x0.float()]
    onsets = np.mean([roll.onset.sum(axis=1).mean() for roll in rolls])
    sounding = np.mean([roll.sustain.sum(axis=1).mean() for roll in rolls])
    return Counts(float(onsets), float(sounding))


def measure(
    model_path: str,
    data: str,
    songs: tuple[int, ...],
    timesteps: tuple[int, ...],
    guidance: float,
    onset_threshold: float | None,
    sustain_threshold: float | None,
    max_windows: int,
) -> tuple[Counts, list[NoiseLevel]]:
    """(the real windows' counts, one NoiseLevel per timestep); thresholds None: the model's."""
    loaded = load_for_inference(model_path)
    if onset_threshold is None:
        onset_threshold = loaded.generation.onset_threshold
    if sustain_threshold is None:
        sustain_threshold = loaded.generation.sustain_threshold
    model = loaded.model.eval()
    diffusion = Diffusion(loaded.config.diffusion)
    windows, picks = song_windows(data, songs, loaded.config)
    if len(picks) == 0:
        raise SystemExit(f"no validation windows of songs {songs[0]}-{songs[-1]} in {data}")
    every = max(1, len(picks) // max_windows)
    items = [windows[int(i)] for i in picks[::every][:max_windows]]
    roll, cond = collate_windows(items, windows.spec)
    real = decoded_counts(roll, 0.0, 0.0)
    levels = []
    with torch.no_grad():
        for t in timesteps:
            noise = torch.randn(roll.shape, generator=torch.Generator().manual_seed(t))
            ts = torch.full((roll.shape[0],), t)
            x_t = diffusion.q_sample(roll, ts, noise)
            signal = diffusion.alphas_cumprod[t]
            counts = []
            for scale in (1.0, guidance):
                pred = diffusion.guided_prediction(model, x_t, t, cond, scale)
                x0 = diffusion.split_prediction(pred, x_t, signal)[0].clamp(-1.0, 1.0)
                counts.append(decoded_counts(x0, onset_threshold, sustain_threshold))
            levels.append(NoiseLevel(t, float(signal), counts[0], counts[1]))
    return real, levels


def report(real: Counts, levels: list[NoiseLevel], guidance: float) -> str:
    """A Markdown table: one row per timestep, then the real windows."""
    lines = [
        f"| timestep | signal | onsets / step: conditional | guided (w = {guidance:g}) "
        "| sounding / step: conditional | guided |",
        "|---|---|---|---|---|---|",
    ]
    for level in levels:
        lines.append(
            f"| {level.timestep} | {level.signal:.3f} | {level.conditional.onsets:.3f} "
            f"| {level.guided.onsets:.3f} | {level.conditional.sounding:.3f} "
            f"| {level.guided.sounding:.3f} |"
        )
    lines.append(f"| real windows | – | {real.onsets:.3f} | | {real.sounding:.3f} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="checkpoints/diffbgm-small-teacher")
    parser.add_argument("--data", default="data_cache/pop909")
    parser.add_argument("--songs", type=parse_song_range, default=parse_song_range("801-830"))
    parser.add_argument("--timesteps", type=int, nargs="+", default=[100, 250, 400, 600, 800, 950])
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--onset-threshold", type=float, help="default: the model's")
    parser.add_argument("--sustain-threshold", type=float, help="default: the model's")
    parser.add_argument("--windows", type=int, default=96, help="at most this many windows")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    real, levels = measure(
        args.model,
        args.data,
        tuple(args.songs),
        tuple(args.timesteps),
        args.guidance,
        args.onset_threshold,
        args.sustain_threshold,
        args.windows,
    )
    print(report(real, levels, args.guidance))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
