"""What a guidance wrapper of the sampling network shares: the network and its config.

The sampler reads `config` (whether the network takes a guidance scale) and `parameters()`
(its device) from whatever it is given, so a wrapper that mixes several passes of a network
(`Autoguided`, `ControlGuided`) must show the wrapped network's.
"""

from __future__ import annotations

import torch
from torch import nn

from diffbgm.model.conditions import Conditions
from diffbgm.model.config import ModelConfig


class GuidedNetwork(nn.Module):
    """Base of the wrappers called like the Denoiser; `network` is the one they guide."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network  # its parameters() give the sampler its device

    @property
    def config(self) -> ModelConfig:
        """The guided network's config (the sampler reads whether it takes a scale)."""
        config = getattr(self.network, "config", None)
        assert isinstance(config, ModelConfig)
        return config

    def passes(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        conds: list[Conditions],
        drop: torch.Tensor | None,
        guidance: torch.Tensor | None,
    ) -> list[torch.Tensor]:
        """The network's output (B, 2, T, P) float32 for each of `conds` on the same input, in
        one batched call of len(conds) x B items."""
        k = len(conds)
        joined = conds[0]
        for other in conds[1:]:
            joined = joined.cat(other)
        out = self.network(
            torch.cat([x_t] * k),
            torch.cat([t] * k),
            joined,
            None if drop is None else torch.cat([drop] * k),
            None if guidance is None else torch.cat([guidance] * k),
        ).float()
        return list(out.chunk(k))
