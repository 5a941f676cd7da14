"""Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself").

Classifier-free guidance pushes a prediction away from the unconditional one, which also pulls
it toward the condition: here that made the chords safer than POP909's and added notes
(docs/evaluation.md, "Where the extra notes come from"). Autoguidance pushes it away from a
weaker model of the same task instead, D + (w - 1)(D - D_weak), which corrects what the weak
model gets wrong without asking for more of the condition. The weak model is the same
architecture, narrower and shorter-trained; a checkpoint ships it in its `weak/` folder.
"""

from __future__ import annotations

import torch
from torch import nn

from diffbgm.model.conditions import Conditions
from diffbgm.model.config import DiffusionConfig, ModelConfig
from diffbgm.model.guided import GuidedNetwork
from diffbgm.model.unet import DeepFeatures


class Autoguided(GuidedNetwork):
    """Called like the Denoiser: the network's output pushed away from the weak network's by
    `weight` at timesteps t >= `from_t`; below, the network's output as it is.

    The weak network gets the same inputs except the guidance scale (it is not distilled) and
    the deep features (it keeps none): with a guidance-distilled network, or guidance 1, that
    is D_guided + (w - 1)(D_guided - D_weak); with classifier-free guidance each of its two
    passes is pushed away from the weak network's pass with the same condition dropped.
    """

    def __init__(self, network: nn.Module, weak: nn.Module, weight: float, from_t: int) -> None:
        super().__init__(network)
        self.weak = weak
        self.weight = weight
        self.from_t = from_t

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
        out = self.network(x_t, t, cond, drop, guidance, deep).float()
        pushed_here = t >= self.from_t  # (B,)
        if self.weight == 1.0 or not bool(pushed_here.any()):
            return out
        weak = self.weak(x_t, t, cond, drop).float()
        pushed = out + (self.weight - 1.0) * (out - weak)
        return torch.where(pushed_here[:, None, None, None], pushed, out)


def check_weak_model(config: ModelConfig, weak: ModelConfig) -> None:
    """Raise ValueError unless `weak` can guide `config`: the same noise schedule and
    prediction target (the two outputs are mixed as they are) and the same window."""
    same_diffusion: DiffusionConfig = config.diffusion
    if weak.diffusion != same_diffusion:
        raise ValueError(
            f"the weak model's diffusion settings {weak.diffusion} differ from the model's "
            f"{same_diffusion}: their outputs cannot be mixed"
        )
    if (weak.window_steps, weak.n_pitches) != (config.window_steps, config.n_pitches):
        raise ValueError(
            f"the weak model's window ({weak.window_steps} steps x {weak.n_pitches} pitches) "
            f"differs from the model's ({config.window_steps} x {config.n_pitches})"
        )
