"""Control guidance: follow a segment control more closely by guiding against a typical one.

By itself the network follows the register it is asked for at a Spearman of about 0.89
(docs/evaluation.md). Guidance in the manner of classifier-free guidance, with the
"unconditional" pass replaced by the same network asked for a typical segment (the chosen
controls at their POP909 median, quantile 0.5): D + (w - 1)(D - D_typical). It amplifies only
what the asked control changes from a typical segment, so the chords, the key and the other
controls keep their weight. Applied at the quiet steps, where the feature selector lets the
dynamic controls steer (at every step it costs realism: docs/evaluation.md, "Control guidance
for the register").
"""

from __future__ import annotations

import torch
from torch import nn

from diffbgm.model.conditions import Conditions
from diffbgm.model.guided import GuidedNetwork
from diffbgm.model.unet import DeepFeatures

TYPICAL_QUANTILE = 0.5  # a control at the median of POP909's training segments


class ControlGuided(GuidedNetwork):
    """Called like the Denoiser: at timesteps t < `below_t` the network's output pushed away
    by `weight` from its output for the same input asked for a typical segment (the dynamic
    control `columns` at the median); at the noisier steps, the network's output as it is.

    Both passes share one batched call (2B items); a guidance-distilled network gets its scale
    in both. `deep` features are not supported (they are recorded for one batch).
    """

    def __init__(self, network: nn.Module, weight: float, below_t: int, columns: list[int]) -> None:
        super().__init__(network)
        if not columns:
            raise ValueError("control guidance needs at least one dynamic control column")
        self.weight = weight
        self.below_t = below_t
        self.columns = columns

    def typical(self, cond: Conditions) -> Conditions:
        """The same conditions with the guided controls of every segment at the median."""
        dynamic = cond.dynamic.clone()  # (B, S, Dd)
        dynamic[..., self.columns] = TYPICAL_QUANTILE
        return cond.with_(dynamic=dynamic)

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
            raise ValueError("control guidance does not reuse deep features (deep_reuse 0)")
        guided_here = t < self.below_t  # (B,)
        if self.weight == 1.0 or not bool(guided_here.any()):
            return self.network(x_t, t, cond, drop, guidance).float()
        out, typical = self.passes(x_t, t, [cond, self.typical(cond)], drop, guidance)
        pushed = out + (self.weight - 1.0) * (out - typical)
        return torch.where(guided_here[:, None, None, None], pushed, out)
