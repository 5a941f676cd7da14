"""The denoiser: a UNet over (time in 16th steps, pitch) with segment-aware cross-attention.

Input: the noisy roll x_t (B, 2, T, P) (onset, sustain in [-1, 1]) concatenated with the
chord-tone channel (B, 1, T, P); with `recall_input`, the music a returning phrase repeats
(B, 3, T, P) joins the first feature map through a convolution of its own. Each level
halves time and pitch; cross-attention to the condition tokens sits at the levels in
`config.attention_levels` and in the middle block, which also has the only self-attention
(the coarsest grid is where it is cheap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffbgm.model.attention import (
    ConditionTokens,
    CrossAttentionBlock,
    SelfAttentionBlock,
    cross_attention_mask,
)
from diffbgm.model.conditions import Conditions
from diffbgm.model.config import ModelConfig

RECALL_CHANNELS = 3  # onset and sustain of the recalled music, and where there is some


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) integer timesteps -> (B, dim) sinusoidal features."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def guidance_features(
    guidance: torch.Tensor | None, batch: int, dim: int, like: torch.Tensor
) -> torch.Tensor:
    """(B,) guidance scales (None = 1) -> (B, dim) sinusoidal features of (scale - 1).

    Scaled by 100 so the usual range 1..5 spans as many periods as a few hundred timesteps."""
    if guidance is None:
        guidance = torch.ones(batch, device=like.device)
    return timestep_embedding(100.0 * (guidance.float() - 1.0), dim)


def norm_groups(channels: int) -> int:
    """GroupNorm groups: 8 when it divides the channels (it does for every preset)."""
    return math.gcd(channels, 8)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with the timestep embedding added in between."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_groups(in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(norm_groups(out_ch), out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x (B, Cin, T', P'), emb (B, E) -> (B, Cout, T', P')."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


@dataclass
class DeepFeatures:
    """The UNet's deep part, kept from one call for the next (DeepCache, Ma et al. 2024).

    Between two close timesteps the coarse levels change little, while the outermost level
    holds most of the detail. A call with `reuse` set (and a kept value of its batch and size)
    runs only the outermost level and takes everything below it from the kept value; any other
    call computes the whole network and keeps its deep part in `value`: (B, C1, T, P') at the
    outermost level's resolution (C1: the second level's channels), as the up path hands it
    to that level."""

    value: torch.Tensor | None = None
    reuse: bool = False


class Level(nn.Module):
    """ResBlocks (each followed by cross-attention when the level has it)."""

    def __init__(
        self, channels_in: list[int], out_ch: int, emb_dim: int, config: ModelConfig, attn: bool
    ) -> None:
        super().__init__()
        self.res = nn.ModuleList(
            [ResBlock(c, out_ch, emb_dim, config.dropout) for c in channels_in]
        )
        self.attn = nn.ModuleList(
            [CrossAttentionBlock(out_ch, config.d_cond, config.n_heads) for _ in channels_in]
            if attn
            else []
        )


class Denoiser(nn.Module):
    """Predicts eps (or v) from x_t, t and the conditions; see `forward`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        base = config.base_channels
        chans = [base * m for m in config.channel_mults]
        emb_dim = 4 * base
        self.time_mlp = nn.Sequential(
            nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        # The guidance scale joins the timestep embedding; the last layer starts at zero so a
        # student made from a teacher first predicts exactly the teacher's conditional output.
        self.guidance_mlp: nn.Sequential | None = None
        if config.guidance_embedding:
            last = nn.Linear(emb_dim, emb_dim)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.guidance_mlp = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), last)
        self.tokens = ConditionTokens(config)
        # Learned classifier-free null for the chord channel: a value a real chord mask (0/1)
        # never takes, so "no condition" differs from "no chord sounding".
        self.null_chord = nn.Parameter(torch.tensor(-1.0))
        self.gate = (
            nn.Sequential(nn.Linear(emb_dim, 64), nn.SiLU(), nn.Linear(64, 1))
            if config.selector == "learned"
            else None
        )
        self.input = nn.Conv2d(3, base, 3, padding=1)
        # the recalled music's channels; zero at first, so a warm start from a model without
        # them predicts exactly as before and learns from there how much a repeat repeats
        self.recall_input: nn.Conv2d | None = None
        if config.recall_input:
            self.recall_input = nn.Conv2d(RECALL_CHANNELS, base, 3, padding=1)
            for weights in self.recall_input.parameters():
                nn.init.zeros_(weights)
        # zero at first, so a warm start from a model without it predicts exactly as before
        padded_pitches = config.n_pitches + (-config.n_pitches) % config.time_factor
        self.pitch_embedding = (
            nn.Parameter(torch.zeros(1, base, 1, padded_pitches))
            if config.pitch_embedding
            else None
        )

        self.down: list[Level] = nn.ModuleList()  # type: ignore[assignment]
        self.downsample = nn.ModuleList()
        skip_chans = [base]
        ch = base
        for lvl, out_ch in enumerate(chans):
            ins = [ch] + [out_ch] * (config.n_res_blocks - 1)
            self.down.append(Level(ins, out_ch, emb_dim, config, lvl in config.attention_levels))
            ch = out_ch
            skip_chans += [out_ch] * config.n_res_blocks
            if lvl < len(chans) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skip_chans.append(ch)

        self.mid_res1 = ResBlock(ch, ch, emb_dim, config.dropout)
        self.mid_self = SelfAttentionBlock(ch, config.n_heads)
        self.mid_cross = CrossAttentionBlock(ch, config.d_cond, config.n_heads)
        self.mid_res2 = ResBlock(ch, ch, emb_dim, config.dropout)

        self.up: list[Level] = nn.ModuleList()  # type: ignore[assignment]
        self.upsample = nn.ModuleList()
        for lvl in reversed(range(len(chans))):
            out_ch = chans[lvl]
            ins = []
            for _ in range(config.n_res_blocks + 1):
                ins.append(ch + skip_chans.pop())
                ch = out_ch
            self.up.append(Level(ins, out_ch, emb_dim, config, lvl in config.attention_levels))
            if lvl > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.out_norm = nn.GroupNorm(norm_groups(ch), ch)
        self.output = nn.Conv2d(ch, 2, 3, padding=1)

    def semantic_share(self, t: torch.Tensor) -> torch.Tensor | None:
        """(B,) timesteps -> (B,) g(t) of the learned feature selector: the weight of the
        semantic tokens against the dynamic ones (None for the rule and 'none' selectors)."""
        if self.gate is None:
            return None
        emb = self.time_mlp(timestep_embedding(t, self.config.base_channels))
        return torch.sigmoid(self.gate(emb)[:, 0].float())

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: Conditions,
        drop: torch.Tensor | None = None,
        guidance: torch.Tensor | None = None,
        deep: DeepFeatures | None = None,
    ) -> torch.Tensor:
        """x_t (B, 2, T, P), t (B,) long, drop (B,) bool (True = unconditional) -> (B, 2, T, P).

        guidance (B,) float: the classifier-free guidance scale the output stands for, read
        only by a model with `guidance_embedding` (None = 1, the conditional prediction).
        deep: keep the deep part's output there, or reuse it (`DeepFeatures`).
        T must be a multiple of config.time_factor; P is padded internally.
        """
        cfg = self.config
        batch, _, steps, pitches = x_t.shape
        if steps % cfg.time_factor:
            raise ValueError(f"window of {steps} steps is not a multiple of {cfg.time_factor}")
        if drop is None:
            drop = torch.zeros(batch, dtype=torch.bool, device=x_t.device)
        chord = torch.where(
            drop[:, None, None, None], self.null_chord.to(cond.chord.dtype), cond.chord
        )
        pad = (-pitches) % cfg.time_factor
        h = F.pad(torch.cat([x_t, chord.to(x_t.dtype)], dim=1), (0, pad))  # (B, 3, T, P+pad)

        emb = self.time_mlp(timestep_embedding(t, cfg.base_channels))  # (B, E)
        tokens = self.tokens(cond, drop)  # (B, K, d_cond)
        # the config is read at every call, so an inference-time switch to another selector
        # (the ablation) also turns a trained gate off
        gate_logit = None
        if self.gate is not None and cfg.selector == "learned":
            gate_logit = self.gate(emb)[:, 0]
        if self.guidance_mlp is not None:
            # after the gate: the selector stays a function of the timestep alone
            emb = emb + self.guidance_mlp(
                guidance_features(guidance, batch, cfg.base_channels, x_t)
            )
        masks = {
            2**lvl: cross_attention_mask(cond, t, 2**lvl, cfg, gate_logit)
            for lvl in range(len(cfg.channel_mults))
        }  # factor -> (B, T/factor, K)

        h = self.input(h)  # (B, C0, T, P+pad)
        if self.recall_input is not None:
            h = h + self._recalled_features(cond, drop, pad, like=h)
        if self.pitch_embedding is not None:
            h = h + self.pitch_embedding.to(h.dtype)
        skips = [h]
        h, outputs = self._run_level(self.down[0], h, emb, tokens, masks[1], skips=None)
        skips += outputs
        kept = None if deep is None or not deep.reuse else deep.value
        if kept is not None and kept.shape[0] == batch and kept.shape[2:] == h.shape[2:]:
            h = kept.to(h.dtype)  # (B, C1, T, P'): the up path's input to the outermost level
        else:
            h = self._deep(h, emb, tokens, masks, skips)
            if deep is not None:
                deep.value = h
        h, _ = self._run_level(self.up[-1], h, emb, tokens, masks[1], skips=skips)
        out = self.output(F.silu(self.out_norm(h)))
        return out[..., :pitches]

    def _recalled_features(
        self, cond: Conditions, drop: torch.Tensor, pad: int, like: torch.Tensor
    ) -> torch.Tensor:
        """(B, C0, T, P+pad) features of the recalled music; the unconditional pass (drop)
        sees none, as it sees no other condition."""
        assert self.recall_input is not None and self.recall_input.bias is not None
        if cond.recalled is None:
            return self.recall_input.bias.to(like.dtype)[None, :, None, None].expand_as(like)
        recalled = cond.recalled.to(like.dtype) * (~drop).to(like.dtype)[:, None, None, None]
        return self.recall_input(F.pad(recalled, (0, pad)))  # (B, 3, T, P+pad) in

    def _deep(
        self,
        h: torch.Tensor,
        emb: torch.Tensor,
        tokens: torch.Tensor,
        masks: dict[int, torch.Tensor],
        skips: list[torch.Tensor],
    ) -> torch.Tensor:
        """Everything below the outermost level: (B, C1, T, P') from the outermost level's
        down output to the up path's input to that level. `skips` gains and loses the deep
        levels' skips (it ends as it began)."""
        for lvl in range(1, len(self.down)):
            h = self.downsample[lvl - 1](h)
            skips.append(h)
            h, outputs = self._run_level(self.down[lvl], h, emb, tokens, masks[2**lvl], None)
            skips += outputs
        coarsest = masks[self.config.time_factor]
        h = self.mid_res1(h, emb)
        h = self.mid_self(h)
        h = self.mid_cross(h, tokens, coarsest)
        h = self.mid_res2(h, emb)
        n_levels = len(self.up)
        for i, level in enumerate(self.up[:-1]):
            lvl = n_levels - 1 - i
            h, _ = self._run_level(level, h, emb, tokens, masks[2**lvl], skips=skips)
            h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return h

    @staticmethod
    def _run_level(
        level: Level,
        h: torch.Tensor,
        emb: torch.Tensor,
        tokens: torch.Tensor,
        mask: torch.Tensor,
        skips: list[torch.Tensor] | None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run one level; returns its last output and every block's output (the down path's
        skips). Up levels (skips given) concatenate the matching skip before each block."""
        outputs = []
        for i, res in enumerate(level.res):
            if skips is not None:
                h = torch.cat([h, skips.pop()], dim=1)
            h = res(h, emb)
            if len(level.attn):
                h = level.attn[i](h, tokens, mask)
            outputs.append(h)
        return h, outputs


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
