"""What a guidance wrapper of the sampling network shares: the network and its config.

The sampler reads `config` (whether the network takes a guidance scale) and `parameters()`
(its device) from whatever it is given, so a wrapper that mixes several passes of a network
(`Autoguided`, `ControlGuided`) must show the wrapped network's.
"""

from __future__ import annotations

from torch import nn

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
