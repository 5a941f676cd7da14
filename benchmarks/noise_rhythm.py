"""Where the odd 16ths are lost: a network's estimate of real windows, noise level by noise level.

    python benchmarks/noise_rhythm.py checkpoints/diffbgm-small-teacher --split train \
        --songs 379 311 775 393 [--windows 24 --tempo song|centre|double|half] \
        [--figuration song|typical|none|most]

Real windows of the given songs (the cache's, bar-aligned, as training reads them) are noised
to each level t and the network (a teacher: the conditional prediction) estimates the clean
roll from them. Printed per t: the share of the estimate's onset mass on the odd 16ths of
the bar (soft: (x0 + 1) / 2; cut: x0 > 0) against the real windows', and how many of the real
onsets on the odd and on the even 16ths the cut estimate keeps. A network that knows which
songs fill the odd 16ths keeps their share at the noisy levels, where the notes are not yet
visible; `--tempo` (`--figuration`) tells a network that reads the tempo (the figuration)
something else than each song's own (trainer/probes.py), to see whether that is what it knows
it from (docs/evaluation.md, "The tempo as an input", "The figuration as an input").
"""

from __future__ import annotations

import argparse

import torch

from diffbgm.checkpoint import load_checkpoint
from diffbgm.model.diffusion import Diffusion
from diffbgm.music.roll import RollSpec
from trainer.dataset import Pop909Windows, collate_windows
from trainer.probes import FIGURATION_PROBES, TEMPO_PROBES, told_figuration, told_tempo

NOISE_LEVELS = (50, 150, 300, 500, 700, 900)


def odd_mass_share(onset_mass: torch.Tensor) -> float:
    """(B, T, P) onset weights -> the share of their sum on the odd steps (T from a bar line)."""
    odd = (torch.arange(onset_mass.shape[1]) % 2 == 1).to(onset_mass.dtype)
    total = float(onset_mass.sum())
    return float((onset_mass * odd[None, :, None]).sum()) / total if total else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--songs", nargs="+", default=["379", "311", "775", "393"])
    parser.add_argument("--split", default="train", choices=("train", "valid"))
    parser.add_argument("--data", default="data_cache/pop909")
    parser.add_argument("--windows", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tempo", choices=TEMPO_PROBES, default="song", help="the tempo told")
    parser.add_argument(
        "--figuration", choices=FIGURATION_PROBES, default="song", help="the figuration told"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_checkpoint(args.checkpoint)
    model, config = loaded.model.eval(), loaded.config
    diffusion = Diffusion(config.diffusion)
    spec = RollSpec(pitch_low=config.pitch_low, n_pitches=config.n_pitches)
    windows = Pop909Windows(args.data, args.split, spec, augment=False)
    wanted = set(args.songs)
    chosen = [
        i for i, (song, _) in enumerate(windows.index) if windows.songs[song].song_id in wanted
    ]
    if not chosen:
        raise SystemExit(f"none of {', '.join(args.songs)} in the {args.split} split")
    chosen = chosen[:: max(1, len(chosen) // args.windows)][: args.windows]
    roll, cond = collate_windows([windows[i] for i in chosen], spec)
    cond = told_figuration(told_tempo(cond, args.tempo), args.figuration)
    real = (roll[:, 0] > 0).float()  # (B, T, P)
    odd = (torch.arange(real.shape[1]) % 2 == 1).float()[None, :, None]
    print(
        f"{len(chosen)} windows of {', '.join(sorted(wanted))}; tempo told: {args.tempo}; "
        f"figuration told: {args.figuration}"
    )
    print(f"real: odd-16th share {odd_mass_share(real):.3f}, {int(real.sum())} onsets")
    print(
        "| t | odd share, soft / cut | onsets cut | real odd onsets kept | real even onsets kept |"
    )
    print("|---|---|---|---|---|")
    generator = torch.Generator().manual_seed(args.seed)
    for level in NOISE_LEVELS:
        t = torch.full((roll.shape[0],), level)
        x_t = diffusion.q_sample(roll, t, torch.randn(roll.shape, generator=generator))
        with torch.no_grad():
            x0 = diffusion.predicted_x0(model(x_t, t, cond), x_t, t)[:, 0].clamp(-1, 1)
        cut = (x0 > 0).float()
        kept_odd = float((cut * real * odd).sum() / (real * odd).sum().clamp_min(1))
        kept_even = float((cut * real * (1 - odd)).sum() / (real * (1 - odd)).sum().clamp_min(1))
        print(
            f"| {level} | {odd_mass_share((x0 + 1) / 2):.3f} / {odd_mass_share(cut):.3f} | "
            f"{int(cut.sum())} | {kept_odd:.2f} | {kept_even:.2f} |"
        )


if __name__ == "__main__":
    main()
