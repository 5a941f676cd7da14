"""Spread guidance: widen the register around the asked centre, judged by the evaluation.

    python benchmarks/spread_guidance.py --weight 0.35 --share 1.0 --shift 0.2 -- \
        --model checkpoints/diffbgm-small --data data_cache/pop909 --songs 801-830 --bars 32 \
        --threads 1 --seed 0 --no-bf16 --no-musdr-si --json spread.json

Asked only for a mean pitch, the network writes the register's centre and too little of its
edges: in the songs of 76 BPM and faster a top voice 1.3-1.7 semitones low and a narrow range
(docs/evaluation.md, "Double time"). Two more passes of the same network, asked for a register
`--shift` quantiles higher and lower, say what it would write with the music moved up or
down. Above each segment's centre pitch (its register request, through the calibration) the
prediction is pushed towards the higher pass, below it towards the lower one:
D + w (m (D_up - D) + (1 - m) (D_down - D)), m a sigmoid over the pitch rows. It runs the
shipped `trainer evaluate` (every flag after `--`, in one process: the same music as its
`--workers`) with the sampling network so wrapped. Measured in docs/evaluation.md, "Spread
guidance (session 62)": it widens the range and adds notes, and the realism test tells the
music apart more often; it is not a GenerationConfig knob.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from torch import nn

import diffbgm.generation.generate as generation_module
from diffbgm.controls import DYNAMIC_CONTROLS
from diffbgm.generation.config import GenerationConfig
from diffbgm.model.conditions import Conditions
from diffbgm.model.guided import GuidedNetwork
from diffbgm.model.unet import DeepFeatures
from diffbgm.music.calibration import Calibration


class SpreadGuided(GuidedNetwork):
    """Called like the Denoiser. At timesteps t < `below_t`, the output pushed by `weight`
    towards the pass asked for `shift` more register quantile above each segment's centre pitch
    and towards the pass asked for `shift` less below it; at the noisier steps, the network's
    output as it is. `register_pitches` (101,) is the calibration's register table (the mean
    MIDI pitch at each quantile), so a segment's request gives its centre row.
    """

    def __init__(
        self,
        network: nn.Module,
        weight: float,
        below_t: int,
        register_column: int,
        register_pitches: np.ndarray,
        shift: float = 0.2,
        width: float = 3.0,
    ) -> None:
        super().__init__(network)
        self.weight = weight
        self.below_t = below_t
        self.register_column = register_column
        self.shift = shift
        self.width = width  # semitones over which the mask turns from the lower pass to the upper
        self.register_pitches = torch.as_tensor(register_pitches, dtype=torch.float32)

    def shifted(self, cond: Conditions, by: float) -> Conditions:
        dynamic = cond.dynamic.clone()  # (B, S, Dd)
        column = dynamic[..., self.register_column]
        dynamic[..., self.register_column] = (column + by).clamp(0.0, 1.0)
        return cond.with_(dynamic=dynamic)

    def upper_mask(self, cond: Conditions, n_pitches: int) -> torch.Tensor:
        """(B, 1, T, P): near 1 above each step's segment centre pitch, near 0 below."""
        quantile = cond.dynamic[..., self.register_column].float()  # (B, S)
        table = self.register_pitches.to(quantile.device)
        position = quantile.clamp(0.0, 1.0) * (len(table) - 1)
        low = position.floor().long().clamp(max=len(table) - 2)
        centre_midi = table[low] + (position - low) * (table[low + 1] - table[low])  # (B, S)
        centre = torch.gather(centre_midi, 1, cond.segment_ids)  # (B, T)
        rows = torch.arange(n_pitches, device=quantile.device, dtype=torch.float32)
        centre_row = centre - self.config.pitch_low  # (B, T)
        mask = torch.sigmoid((rows[None, None, :] - centre_row[..., None]) / self.width)
        return mask[:, None]  # (B, 1, T, P)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: Conditions,
        drop: torch.Tensor | None = None,
        guidance: torch.Tensor | None = None,
        deep: DeepFeatures | None = None,
    ) -> torch.Tensor:
        """x_t (B, 2, T, P), t (B,) -> (B, 2, T, P) float32."""
        if deep is not None:
            raise ValueError("spread guidance does not reuse deep features (deep_reuse 0)")
        guided_here = t < self.below_t  # (B,)
        if self.weight == 0.0 or not bool(guided_here.any()):
            return self.network(x_t, t, cond, drop, guidance).float()
        conds = [cond, self.shifted(cond, self.shift), self.shifted(cond, -self.shift)]
        out, up, down = self.passes(x_t, t, conds, drop, guidance)  # (B, 2, T, P) each
        upper = self.upper_mask(cond, x_t.shape[-1])
        pushed = out + self.weight * (upper * (up - out) + (1.0 - upper) * (down - out))
        return torch.where(guided_here[:, None, None, None], pushed, out)


def main() -> int:
    from trainer.__main__ import main as trainer_main

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weight", type=float, default=0.35, help="w; 0 = off")
    parser.add_argument("--share", type=float, default=1.0, help="of the schedule, from t = 0")
    parser.add_argument("--shift", type=float, default=0.2, help="register quantiles up / down")
    parser.add_argument(
        "evaluate", nargs=argparse.REMAINDER, help="-- then trainer evaluate's flags"
    )
    args = parser.parse_args()
    shipped = generation_module.sampling_network

    def spread_network(model, config: GenerationConfig, precision: str) -> nn.Module:  # type: ignore[no-untyped-def]
        network = shipped(model, config, precision)
        below_t = round(args.share * model.config.diffusion.num_train_steps)
        register = Calibration.load().table("register")
        column = DYNAMIC_CONTROLS.index("register")
        return SpreadGuided(network, args.weight, below_t, column, register, args.shift)

    generation_module.sampling_network = spread_network  # type: ignore[assignment]
    flags = [flag for flag in args.evaluate if flag != "--"]
    return trainer_main(["evaluate", *flags, "--workers", "1"])


if __name__ == "__main__":
    sys.exit(main())
