"""How far is the texture of a model's sampled windows from the real windows', feature by feature?

    python benchmarks/texture_gap.py --model checkpoints/diffbgm-small [--model OTHER ...]

Samples 4-bar windows of validation songs (801-830 by default: the songs settings are chosen
on) from their real conditions with each model's own sampler, steps and autoguidance, as the
sampled-texture term of training does (`--texture-weight`, trainer/sampled.py), decodes them
at the model's thresholds with no decode rule (the network alone), and prints for each of the
term's features the real windows' mean and, per model, the gap in real standard deviations
(the realism test's `d`), then the sum of the squared gaps. A minute or two per model: a
quick look at whether a training run moved the texture on songs it was not trained on,
before the full `trainer evaluate`. The same windows and noise for every model.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch

from diffbgm.checkpoint import load_checkpoint
from trainer.__main__ import parse_song_range
from trainer.dataset import Pop909Windows, collate_windows
from trainer.sampled import MIN_ONSETS, TEXTURE_FEATURES, SampledTexture, texture_features


def sampled_features(
    model_path: str, roll: torch.Tensor, cond: object, seed: int, chunk: int
) -> torch.Tensor:
    """(N, K) texture features of the windows the model samples from `cond`, decoded hard."""
    loaded = load_checkpoint(model_path)
    loaded.model.float().eval()
    term = SampledTexture.from_checkpoint(loaded, windows=chunk)
    network = term.sampling_network(loaded.model)
    rows = []
    for start in range(0, roll.shape[0], chunk):
        part = cond.index(slice(start, start + chunk))  # type: ignore[attr-defined]
        generator = torch.Generator().manual_seed(seed + start)
        sampled = term.diffusion.sample(network, part, generator, term.settings)
        onset = (sampled[:, 0] > term.onset_threshold).float()
        held = (sampled[:, 1] > term.sustain_threshold).float()
        rows.append(texture_features(onset, held)[0])
    return torch.cat(rows)


@dataclass(frozen=True)
class TextureGaps:
    windows: int  # windows judged (those with at least MIN_ONSETS real onsets)
    real_mean: list[float]  # (K,) in TEXTURE_FEATURES order
    gaps: dict[str, list[float]]  # model -> (K,) gap of its mean in real standard deviations


def measure(
    models: list[str], data: str, songs: str, n_windows: int, chunk: int, seed: int
) -> TextureGaps:
    """The same real windows (evenly spread over `songs`) and noise for every model."""
    windows = Pop909Windows(data, "valid", augment=False)
    song_numbers = np.array([int(windows.songs[int(i)].song_id) for i in windows.index[:, 0]])
    eligible = np.flatnonzero(np.isin(song_numbers, parse_song_range(songs)))
    if eligible.size == 0:
        raise SystemExit(f"no validation windows of songs {songs} in {data}")
    picks = eligible[np.linspace(0, eligible.size - 1, min(n_windows, eligible.size)).astype(int)]
    roll, cond = collate_windows([windows[int(i)] for i in picks], windows.spec)
    real, onsets = texture_features((roll[:, 0] > 0).float(), (roll[:, 1] > 0).float())
    judged = onsets >= MIN_ONSETS
    scale = real[judged].std(dim=0).clamp_min(1e-6)
    gaps = {}
    for path in models:
        with torch.no_grad():
            sampled = sampled_features(path, roll, cond, seed, chunk)
        gaps[path] = ((sampled[judged].mean(dim=0) - real[judged].mean(dim=0)) / scale).tolist()
    return TextureGaps(int(judged.sum()), real[judged].mean(dim=0).tolist(), gaps)


def report(result: TextureGaps, songs: str, seed: int) -> str:
    lines = [
        f"{result.windows} windows of songs {songs}, seed {seed}; gap in real SDs",
        "| feature | real mean | " + " | ".join(result.gaps) + " |",
        "|---" * (2 + len(result.gaps)) + "|",
    ]
    for k, name in enumerate(TEXTURE_FEATURES):
        cells = " | ".join(f"{gap[k]:+.2f}" for gap in result.gaps.values())
        lines.append(f"| {name} | {result.real_mean[k]:.3f} | {cells} |")
    totals = " | ".join(f"{sum(g * g for g in gap):.3f}" for gap in result.gaps.values())
    lines.append(f"| sum of squares | | {totals} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--data", default="data_cache/pop909")
    parser.add_argument("--songs", default="801-830")
    parser.add_argument("--windows", type=int, default=96)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = measure(args.model, args.data, args.songs, args.windows, args.chunk, args.seed)
    print(report(result, args.songs, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
