"""Model speed on this machine: parameters, training steps/s and sampling seconds per window.

    python benchmarks/model.py [--presets tiny small base] [--train-iters 3] [--base-sampling]
                               [--threads N]

Training: one AdamW step on a batch of 16 random windows (forward + backward), the mean of
`--train-iters` after one warm-up. Sampling: one window, 50 DDIM steps with guidance 3
(conditional + unconditional in one batch of 2). Each in fp32 and in bf16 autocast. Then the
whole-model SAC leakage of the 'small' preset at initialisation (see docs/model.md).
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import nullcontext
from dataclasses import replace

import torch

from diffbgm.model.conditions import two_segment_conditions
from diffbgm.model.config import ModelConfig, preset
from diffbgm.model.diffusion import Diffusion, SamplerSettings
from diffbgm.model.unet import Denoiser, count_parameters


def autocast(bf16: bool):  # type: ignore[no-untyped-def]
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()


def train_steps_per_second(config: ModelConfig, bf16: bool, iters: int, batch: int = 16) -> float:
    """Optimiser steps per second at the given batch (one warm-up step not counted)."""
    model = Denoiser(config)
    diffusion = Diffusion(config.diffusion)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x0 = torch.randn(batch, 2, config.window_steps, config.n_pitches).sign()
    cond = two_segment_conditions(config, batch)
    gen = torch.Generator().manual_seed(0)
    elapsed = 0.0
    for i in range(iters + 1):
        start = time.perf_counter()
        with autocast(bf16):
            loss = diffusion.training_loss(model, x0, cond, gen)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if i > 0:
            elapsed += time.perf_counter() - start
    return iters / elapsed


def sample_seconds(config: ModelConfig, bf16: bool, steps: int = 50) -> float:
    """Seconds to sample one window with classifier-free guidance 3."""
    model = Denoiser(config).eval()
    diffusion = Diffusion(config.diffusion)
    cond = two_segment_conditions(config, 1)
    warm_up, timed = SamplerSettings(steps=2), SamplerSettings(steps=steps, guidance=3.0)
    with autocast(bf16):
        diffusion.sample(model, cond, torch.Generator().manual_seed(0), warm_up)
        start = time.perf_counter()
        diffusion.sample(model, cond, torch.Generator().manual_seed(0), timed)
    return time.perf_counter() - start


@torch.no_grad()
def sac_leakage(config: ModelConfig) -> dict[str, float]:
    """Mean |output change| when segment B's (second half) tokens change, at init.

    Returned per region: segment A far from the cut (its first bar), A near the cut (its last
    bar), B itself; for SAC and for the sac=False ablation with the same weights.
    """
    torch.manual_seed(0)
    config = replace(config, selector="none")
    results: dict[str, float] = {}
    sac_model = Denoiser(config).eval()
    full_model = Denoiser(replace(config, sac=False)).eval()
    full_model.load_state_dict(sac_model.state_dict())
    cond = two_segment_conditions(config, 2)
    gen = torch.Generator().manual_seed(1)
    other = cond.with_(
        dynamic=torch.cat([cond.dynamic[:, :1], torch.rand(2, 7, 4, generator=gen) * 5], 1),
        semantic=torch.cat([cond.semantic[:, :1], torch.rand(2, 7, 6, generator=gen) * 5], 1),
    )
    x = torch.randn(2, 2, config.window_steps, config.n_pitches, generator=gen)
    t = torch.tensor([500, 500])
    half = config.window_steps // 2
    for name, model in (("sac", sac_model), ("no-sac", full_model)):
        delta = (model(x, t, cond) - model(x, t, other)).abs()  # (B, 2, T, P)
        results[f"{name} A far"] = float(delta[:, :, :16].mean())
        results[f"{name} A near"] = float(delta[:, :, half - 16 : half].mean())
        results[f"{name} B"] = float(delta[:, :, half:].mean())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "base"])
    parser.add_argument("--train-iters", type=int, default=3)
    parser.add_argument("--base-sampling", action="store_true", help="also time base sampling")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()}")
    print(
        "| preset | params | dtype | train steps/s (batch 16) | sample s/window (50 DDIM, cfg 3) |"
    )
    print("|---|---|---|---|---|")
    for name in args.presets:
        config = preset(name)
        params = count_parameters(Denoiser(config))
        for bf16 in (False, True):
            dtype = "bf16" if bf16 else "fp32"
            train = train_steps_per_second(config, bf16, args.train_iters)
            if name == "base" and not args.base_sampling:
                sample = "skipped"
            else:
                sample = f"{sample_seconds(config, bf16):.2f}"
            print(
                f"| {name} | {params / 1e6:.2f} M | {dtype} | {train:.3f} | {sample} |", flush=True
            )
    print("\nSAC leakage, small preset at init (mean |delta output|, segment B's tokens changed):")
    for key, value in sac_leakage(preset("small")).items():
        print(f"  {key:12s} {value:.4f}")


if __name__ == "__main__":
    main()
