"""How large are the consistency terms of trainer/losses.py on a model's x0 estimate, by noise level?

    python benchmarks/consistency_terms.py --model checkpoints/diffbgm-small

Draws validation windows of the POP909 cache, noises them to each timestep, and asks the model
(guided at `--guidance`; a guidance-distilled model takes the scale as its input) for its x0
estimate. Prints, per timestep, the three training terms of trainer/losses.py on that
estimate, the estimate's soft onsets per step (sigmoid(6 x), as the density term counts them)
and its share of onsets on the odd 16ths (as the rhythm term counts them), the share of octaves
and unisons among notes sounding together (as the voicing term counts them) and the mean
spread of onset pitch per segment in semitones (as the spread term measures it), the pitch-
profile term and the expected share of onsets at C5 and above (counted as the pitch-profile
term counts, as probabilities), each next to the real windows'. Used to size `--register-weight` / `--density-weight` / `--rhythm-weight` /
`--voicing-weight` / `--spread-weight` / `--pitch-profile-weight` and to choose their `--*-min-t` (docs/evaluation.md,
sessions 26, 43 and 44).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch

from diffbgm.checkpoint import load_checkpoint
from diffbgm.model.diffusion import Diffusion
from diffbgm.music.roll import RollSpec
from trainer.dataset import Pop909Windows, collate_windows
from trainer.losses import (
    MIN_SPREAD_ONSETS,
    ONSET_SHARPNESS,
    STEPS_PER_BAR,
    density_consistency,
    interval_profile,
    metric_profile,
    note_probability,
    pitch_band_profile,
    pitch_profile_consistency,
    register_consistency,
    rhythm_consistency,
    segment_onset_rate,
    segment_pitch_spread,
    soft_notes,
    spread_consistency,
    voicing_consistency,
)


@dataclass(frozen=True)
class TermSizes:
    timestep: int
    register: float
    density: float
    estimated_rate: float  # soft onsets per step of the estimate, mean over segments
    real_rate: float
    rhythm: float
    estimated_odd_share: float  # share of the windows' onset mass on the odd 16ths
    real_odd_share: float
    voicing: float
    estimated_octave_share: float  # share of co-sounding pairs an octave (or unison) apart
    real_octave_share: float
    spread: float
    estimated_spread: float  # standard deviation of onset pitch per segment, semitones
    real_spread: float
    pitch_profile: float
    estimated_top_band: float  # expected share of onsets at MIDI 72 (C5) and above
    real_top_band: float


def odd_sixteenth_share(onset_weight: torch.Tensor) -> float:
    """(B, T, P) onset weights -> the share of all their mass on the odd 16ths of the bar."""
    profile, mass = metric_profile(onset_weight, STEPS_PER_BAR)
    per_position = (profile * mass[:, None]).sum(dim=0)
    return float(per_position[1::2].sum() / per_position.sum().clamp_min(1e-6))


def top_band_share(onset_weight: torch.Tensor) -> float:
    """(B, T, P) onset weights -> the share of all their mass at MIDI 72 (C5) and above."""
    profile, mass = pitch_band_profile(onset_weight, band=1)
    per_pitch = (profile * mass[:, None]).sum(dim=0)
    return float(per_pitch[72 - RollSpec().pitch_low :].sum() / per_pitch.sum().clamp_min(1e-6))


def octave_share(sounding: torch.Tensor) -> float:
    """(B, T, P) sounding weights -> the share of all co-sounding pairs in interval class 0."""
    profile, mass = interval_profile(sounding)
    per_class = (profile * mass[:, None]).sum(dim=0)
    return float(per_class[0] / per_class.sum().clamp_min(1e-6))


def measure(
    model_path: str,
    data: str,
    timesteps: tuple[int, ...],
    guidance: float,
    n_windows: int,
    seed: int = 0,
) -> list[TermSizes]:
    """One TermSizes per timestep, on `n_windows` validation windows drawn with `seed`."""
    loaded = load_checkpoint(model_path)
    model = loaded.model.float().eval()
    diffusion = Diffusion(loaded.config.diffusion)
    windows = Pop909Windows(data, "valid", augment=False)
    if len(windows) == 0:
        raise SystemExit(f"no validation windows in {data}")
    picks = np.random.default_rng(seed).choice(
        len(windows), min(n_windows, len(windows)), replace=False
    )
    roll, cond = collate_windows([windows[int(i)] for i in picks], windows.spec)
    batch = roll.shape[0]
    judged = torch.ones(batch, dtype=torch.bool)
    n_segments = cond.segment_mask.shape[1]
    # counted through the same sigmoid as the estimate (and as the density term counts)
    real_rate, steps = segment_onset_rate(
        torch.sigmoid(ONSET_SHARPNESS * roll[:, 0]), cond.segment_ids, n_segments
    )
    in_window = (steps >= 1.0) & cond.segment_mask  # (B, S)
    real_odd = odd_sixteenth_share((roll[:, 0] > 0).float())
    real_octaves = octave_share((roll[:, 1] > 0).float())
    real_top = top_band_share((roll[:, 0] > 0).float())
    real_spread, real_onsets = segment_pitch_spread(
        (roll[:, 0] > 0).float(), cond.segment_ids, n_segments
    )
    spread_judged = (real_onsets >= MIN_SPREAD_ONSETS) & cond.segment_mask  # (B, S)
    sizes = []
    with torch.no_grad():
        for t in timesteps:
            noise = torch.randn(roll.shape, generator=torch.Generator().manual_seed(seed + t))
            ts = torch.full((batch,), t)
            x_t = diffusion.q_sample(roll, ts, noise)
            pred = diffusion.guided_prediction(model, x_t, t, cond, guidance)
            x0 = diffusion.predicted_x0(pred, x_t, ts)
            soft_onsets = torch.sigmoid(ONSET_SHARPNESS * x0[:, 0])
            rate, _ = segment_onset_rate(soft_onsets, cond.segment_ids, n_segments)
            spread, _ = segment_pitch_spread(soft_notes(x0[:, 0]), cond.segment_ids, n_segments)
            sizes.append(
                TermSizes(
                    t,
                    float(register_consistency(x0, roll, cond, judged)),
                    float(density_consistency(x0, roll, cond, judged)),
                    float(rate[in_window].mean()),
                    float(real_rate[in_window].mean()),
                    float(rhythm_consistency(x0, roll, cond, judged)),
                    odd_sixteenth_share(soft_notes(x0[:, 0])),
                    real_odd,
                    float(voicing_consistency(x0, roll, cond, judged)),
                    octave_share(soft_notes(x0[:, 1])),
                    real_octaves,
                    float(spread_consistency(x0, roll, cond, judged)),
                    float(spread[spread_judged].mean()),
                    float(real_spread[spread_judged].mean()),
                    float(pitch_profile_consistency(x0, roll, cond, judged)),
                    top_band_share(note_probability(x0[:, 0])),
                    real_top,
                )
            )
    return sizes


def report(sizes: list[TermSizes], guidance: float) -> str:
    """A Markdown table, one row per timestep."""
    lines = [
        f"| timestep | register term | density term | onsets / step: estimate (w = {guidance:g}) "
        "| real | rhythm term | odd-16th share: estimate | real | voicing term "
        "| octave share: estimate | real | spread term | spread: estimate | real "
        "| pitch-profile term | share at C5 and above: expected | real |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size in sizes:
        lines.append(
            f"| {size.timestep} | {size.register:.4f} | {size.density:.4f} "
            f"| {size.estimated_rate:.3f} | {size.real_rate:.3f} | {size.rhythm:.4f} "
            f"| {size.estimated_odd_share:.3f} | {size.real_odd_share:.3f} "
            f"| {size.voicing:.4f} | {size.estimated_octave_share:.3f} "
            f"| {size.real_octave_share:.3f} | {size.spread:.4f} "
            f"| {size.estimated_spread:.2f} | {size.real_spread:.2f} "
            f"| {size.pitch_profile:.4f} | {size.estimated_top_band:.3f} "
            f"| {size.real_top_band:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="checkpoints/diffbgm-small")
    parser.add_argument("--data", default="data_cache/pop909")
    parser.add_argument("--timesteps", type=int, nargs="+", default=[50, 125, 250, 500, 750, 950])
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--windows", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    sizes = measure(
        args.model, args.data, tuple(args.timesteps), args.guidance, args.windows, args.seed
    )
    print(report(sizes, args.guidance))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
