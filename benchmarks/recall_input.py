"""How much does a network with the recall input use the music a repeat recalls?

    python benchmarks/recall_input.py MODEL [MODEL ...] --data data_cache/pop909 --windows 48

Takes validation windows (songs 801-859, no augmentation) whose steps mostly repeat an
earlier phrase, noises the real roll to a few timesteps, and prints, at the recalling steps,
the squared error of the network's x0 estimate (clipped to [-1, 1]) against the real notes
and against the recalled notes, once with the recalled music shown and once without. The
last column is the error of the recalled notes themselves against the real ones: a network
that only copied would reach it, one that ignores the input keeps its "without" error.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from diffbgm.model.conditions import Conditions
    from diffbgm.model.diffusion import Diffusion

REPO = Path(__file__).resolve().parents[1]
RECALLING_SHARE = 0.5  # windows with at least this share of recalling steps


@dataclass(frozen=True)
class RecallUse:
    """Squared errors at the recalling steps at one timestep (see the module docstring)."""

    t: int
    to_real_with: float
    to_real_without: float
    to_recalled_with: float
    to_recalled_without: float
    recalled_to_real: float


def recall_use(
    model: torch.nn.Module,
    diffusion: Diffusion,
    roll: torch.Tensor,
    cond: Conditions,
    timesteps: list[int],
    seed: int = 1,
) -> list[RecallUse]:
    """roll (B, 2, T, P) real windows in [-1, 1], cond their Conditions with `recalled`."""
    if cond.recalled is None:
        raise ValueError("the conditions carry no recalled music")
    recalled = cond.recalled[:, :2] * 2.0 - 1.0  # (B, 2, T, P) in [-1, 1]
    where = cond.recalled[:, 2:3].bool().expand_as(recalled)
    rows = []
    for t in timesteps:
        t_batch = torch.full((roll.shape[0],), t)
        noise = torch.randn(roll.shape, generator=torch.Generator().manual_seed(seed))
        x_t = diffusion.q_sample(roll, t_batch, noise)
        with torch.no_grad():
            shown = diffusion.predicted_x0(model(x_t, t_batch, cond).float(), x_t, t_batch)
            hidden = diffusion.predicted_x0(
                model(x_t, t_batch, cond.with_(recalled=torch.zeros_like(cond.recalled))).float(),
                x_t,
                t_batch,
            )

        def error(x: torch.Tensor, y: torch.Tensor) -> float:
            return float(((x.clamp(-1.0, 1.0) - y) ** 2)[where].mean())

        rows.append(
            RecallUse(
                t,
                error(shown, roll),
                error(hidden, roll),
                error(shown, recalled),
                error(hidden, recalled),
                error(recalled, roll),
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", nargs="+", help="checkpoint folders with recall_input")
    parser.add_argument("--data", type=Path, default=REPO / "data_cache" / "pop909")
    parser.add_argument("--windows", type=int, default=48)
    parser.add_argument("--timesteps", type=int, nargs="+", default=[900, 600, 300])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from diffbgm.checkpoint import load_checkpoint
    from diffbgm.model.diffusion import Diffusion
    from trainer.dataset import Pop909Windows, collate_windows

    windows = Pop909Windows(args.data, "valid", augment=False, recall=True)
    chosen: list[int] = []
    for item in range(0, len(windows), 7):
        recalled = windows[item]["recalled"]
        if recalled is not None and recalled[2, :, 0].mean() >= RECALLING_SHARE:
            chosen.append(item)
        if len(chosen) == args.windows:
            break
    roll, cond = collate_windows([windows[i] for i in chosen], windows.spec)
    print(f"{len(chosen)} validation windows, mostly recalling steps")
    print(
        "| model | t | to real: shown / hidden | to recalled: shown / hidden | recalled to real |"
    )
    print("|---|---|---|---|---|")
    for folder in args.models:
        loaded = load_checkpoint(folder)
        if not loaded.config.recall_input:
            raise SystemExit(f"{folder} has no recall input (ModelConfig.recall_input)")
        diffusion = Diffusion(loaded.config.diffusion)
        for row in recall_use(loaded.model.eval(), diffusion, roll, cond, args.timesteps):
            print(
                f"| {Path(folder).name} | {row.t} | {row.to_real_with:.4f} / "
                f"{row.to_real_without:.4f} | {row.to_recalled_with:.4f} / "
                f"{row.to_recalled_without:.4f} | {row.recalled_to_real:.4f} |"
            )


if __name__ == "__main__":
    main()
