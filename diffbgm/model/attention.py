"""Condition tokens, segment-aware cross-attention (SAC) and the feature selector.

Token layout for S segment slots (K = 2S + 2 tokens per batch item):
    [0, S)      dynamic token of slot s   ("how busy": density, velocity, register, ...)
    [S, 2S)     semantic token of slot s  ("what it is": melody, intro/outro, minor, ...)
    2S          global token (the key), visible to every frame
    2S + 1      a learned always-present token, so no frame ever has an empty key set

Which tokens a music frame may attend to is the AND of two masks, each a small pure function
below: SAC (a frame sees its own segment's tokens + the global ones) and the selector (at a
noisy timestep the semantic tokens, at a clean one the dynamic tokens).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from diffbgm.model.conditions import Conditions, model_global
from diffbgm.model.config import ModelConfig


def n_tokens(max_segments: int) -> int:
    """K: dynamic + semantic token per slot, the global token and the always-present token."""
    return 2 * max_segments + 2


def frame_segments(segment_ids: torch.Tensor, factor: int, slots: int) -> torch.Tensor:
    """(B, T) step segments in [0, slots) -> (B, T // factor): each coarse frame takes its
    majority segment, a tie the earlier (lower) one.

    A frame of the UNet level that halved time log2(factor) times covers `factor` 16th steps;
    plans put cuts on bar lines so frames rarely straddle a boundary, and when they do the
    majority keeps the frame with the segment most of its steps belong to. Counted with a
    one-hot sum rather than `torch.mode`, which has no ONNX form.
    """
    if factor == 1:
        return segment_ids
    batch, steps = segment_ids.shape
    grouped = segment_ids.reshape(batch, steps // factor, factor)
    counts = F.one_hot(grouped, slots).sum(dim=2)  # (B, F, S)
    return counts.argmax(dim=-1)  # the first maximum: the earlier segment


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Scaled dot-product attention, (B, H, Lq, D) x (B, H, Lk, D) -> (B, H, Lq, D).

    While exporting to ONNX it is written out (softmax(q k^T / sqrt(D) + bias) v): ONNX
    Runtime runs that form about twice as fast as the exported fused kernel here."""
    if not torch.onnx.is_in_onnx_export():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    return torch.softmax(scores, dim=-1) @ v


def sac_visibility(frame_seg: torch.Tensor, segment_mask: torch.Tensor, sac: bool) -> torch.Tensor:
    """(B, F) frame segments, (B, S) real slots -> (B, F, K) bool: which tokens a frame sees.

    sac=True: a frame sees the dynamic and semantic token of its own slot and the global
    tokens. sac=False (ablation): it sees the tokens of every real slot.
    """
    slots = segment_mask.shape[1]
    if sac:
        own = F.one_hot(frame_seg, slots).bool()  # (B, F, S)
    else:
        own = segment_mask[:, None, :].expand(-1, frame_seg.shape[1], -1)
    always = torch.ones(*own.shape[:2], 2, dtype=torch.bool, device=own.device)
    return torch.cat([own, own, always], dim=-1)


def selector_visibility(
    t: torch.Tensor, mode: str, threshold_step: float, max_segments: int
) -> torch.Tensor:
    """(B,) timesteps -> (B, K) bool: the token kinds the feature selector lets through.

    'rule': t >= threshold_step (noisy) -> semantic + global; t < threshold_step -> dynamic +
    global. 'learned' and 'none' hide nothing ('learned' biases the logits instead).
    """
    always = torch.ones_like(t, dtype=torch.bool)[:, None]  # (B, 1)
    if mode == "rule":
        semantic_phase = (t.float() >= threshold_step)[:, None]  # (B, 1)
        dynamic, semantic = ~semantic_phase, semantic_phase
    elif mode in ("learned", "none"):
        dynamic, semantic = always, always
    else:
        raise ValueError(f"unknown selector mode {mode!r}")
    # concatenated rather than written into slices: an ONNX export keeps the batch variable
    others = n_tokens(max_segments) - 2 * max_segments
    parts = [dynamic.expand(-1, max_segments), semantic.expand(-1, max_segments)]
    return torch.cat([*parts, always.expand(-1, others)], dim=1)


def gate_bias(gate_logit: torch.Tensor, max_segments: int) -> torch.Tensor:
    """(B,) gate logits a -> (B, K) additive logit bias: log(1-g) on dynamic, log g on
    semantic tokens, 0 on global ones, with g = sigmoid(a). g -> 1 acts like the semantic phase
    of the rule, g -> 0 like its dynamic phase."""
    logit = gate_logit.float()[:, None]  # (B, 1)
    dynamic = F.logsigmoid(-logit).expand(-1, max_segments)
    semantic = F.logsigmoid(logit).expand(-1, max_segments)
    others = torch.zeros_like(logit).expand(-1, n_tokens(max_segments) - 2 * max_segments)
    # concatenated rather than written into slices: an ONNX export keeps the batch variable
    return torch.cat([dynamic, semantic, others], dim=1)


def attention_bias(visible: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """(B, F, K) bool visibility (+ optional (B, K) bias) -> (B, F, K) float additive mask."""
    mask = torch.zeros(visible.shape, device=visible.device)
    mask = mask.masked_fill(~visible, float("-inf"))
    if bias is not None:
        mask = mask + bias[:, None, :]
    return mask


def cross_attention_mask(
    cond: Conditions,
    t: torch.Tensor,
    factor: int,
    config: ModelConfig,
    gate_logit: torch.Tensor | None = None,
) -> torch.Tensor:
    """The (B, F, K) additive mask of a UNet level whose frames cover `factor` 16th steps."""
    frames = frame_segments(cond.segment_ids, factor, cond.segment_mask.shape[1])
    visible = sac_visibility(frames, cond.segment_mask.bool(), config.sac)
    visible = (
        visible
        & selector_visibility(t, config.selector, config.selector_step, config.max_segments)[
            :, None, :
        ]
    )
    bias = gate_bias(gate_logit, config.max_segments) if gate_logit is not None else None
    return attention_bias(visible, bias)


class ConditionTokens(nn.Module):
    """Conditions -> (B, K, d_cond) tokens; dropped items get learned null tokens.

    Null tokens carry no slot embedding, so the unconditional model does not depend on where
    the segments are either.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.d_cond
        self.max_segments = config.max_segments
        self.dynamic_proj = nn.Linear(config.dynamic_dim, d)
        self.semantic_proj = nn.Linear(config.semantic_dim, d)
        self.global_dim = config.global_dim
        self.global_proj = nn.Linear(config.global_dim, d)
        self.slot_embedding = nn.Parameter(torch.randn(config.max_segments, d) * 0.02)
        self.always_token = nn.Parameter(torch.randn(d) * 0.02)
        self.null_dynamic = nn.Parameter(torch.randn(d) * 0.02)
        self.null_semantic = nn.Parameter(torch.randn(d) * 0.02)
        self.null_global = nn.Parameter(torch.randn(d) * 0.02)
        self.norm = nn.LayerNorm(d)

    def forward(self, cond: Conditions, drop: torch.Tensor) -> torch.Tensor:
        """drop (B,) bool -> tokens (B, K, d_cond)."""
        slots = self.slot_embedding[None]  # (1, S, d)
        dynamic = self.dynamic_proj(cond.dynamic) + slots  # (B, S, d)
        semantic = self.semantic_proj(cond.semantic) + slots  # (B, S, d)
        glob = self.global_proj(model_global(cond.global_, self.global_dim))[:, None]  # (B, 1, d)
        dropped = drop[:, None, None]
        dynamic = torch.where(dropped, self.null_dynamic.to(dynamic.dtype), dynamic)
        semantic = torch.where(dropped, self.null_semantic.to(semantic.dtype), semantic)
        glob = torch.where(dropped, self.null_global.to(glob.dtype), glob)
        # the batch size read off a tensor, not cond.batch_size (an int), so an ONNX export
        # keeps it variable
        always = self.always_token.to(glob.dtype).expand(glob.shape[0], 1, -1)
        return self.norm(torch.cat([dynamic, semantic, glob, always], dim=1))


class CrossAttentionBlock(nn.Module):
    """Music positions (queries) attend to condition tokens under a per-frame mask.

    Every position (frame, pitch) is a query; the mask depends on the frame only. Norms are
    per position (LayerNorm), so one frame's output depends only on its own input and on the
    tokens its mask lets through: the property SAC relies on.
    """

    def __init__(self, channels: int, d_cond: int, n_heads: int) -> None:
        super().__init__()
        if channels % n_heads:
            raise ValueError(f"{channels} channels cannot be split into {n_heads} heads")
        self.n_heads = n_heads
        self.norm = nn.LayerNorm(channels)
        self.query = nn.Linear(channels, channels, bias=False)
        self.key = nn.Linear(d_cond, channels, bias=False)
        self.value = nn.Linear(d_cond, channels, bias=False)
        self.out = nn.Linear(channels, channels)
        self.ff_norm = nn.LayerNorm(channels)
        self.ff = nn.Sequential(
            nn.Linear(channels, 4 * channels), nn.GELU(), nn.Linear(4 * channels, channels)
        )

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, C, F, P), tokens (B, K, d_cond), mask (B, F, K) -> (B, C, F, P)."""
        batch, channels, frames, pitches = x.shape
        seq = x.permute(0, 2, 3, 1).reshape(batch, frames * pitches, channels)  # (B, F*P, C)
        q = self._heads(self.query(self.norm(seq)))  # (B, H, F*P, C/H)
        k = self._heads(self.key(tokens))  # (B, H, K, C/H)
        v = self._heads(self.value(tokens))
        # position index = frame * P + pitch, so each frame's mask row repeats P times
        pos_mask = mask[:, None, :, None, :].expand(-1, -1, -1, pitches, -1)
        pos_mask = pos_mask.reshape(batch, 1, frames * pitches, mask.shape[-1]).to(q.dtype)
        attended = attend(q, k, v, pos_mask)
        attended = attended.transpose(1, 2).reshape(batch, frames * pitches, channels)
        seq = seq + self.out(attended)
        seq = seq + self.ff(self.ff_norm(seq))
        return seq.reshape(batch, frames, pitches, channels).permute(0, 3, 1, 2)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, channels = x.shape
        return x.reshape(batch, length, self.n_heads, channels // self.n_heads).transpose(1, 2)


class SelfAttentionBlock(nn.Module):
    """Global self-attention over all (frame, pitch) positions; used only where it is cheap."""

    def __init__(self, channels: int, n_heads: int) -> None:
        super().__init__()
        if channels % n_heads:
            raise ValueError(f"{channels} channels cannot be split into {n_heads} heads")
        self.n_heads = n_heads
        self.norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, F, P) -> (B, C, F, P)."""
        batch, channels, frames, pitches = x.shape
        seq = x.permute(0, 2, 3, 1).reshape(batch, frames * pitches, channels)
        qkv = self.qkv(self.norm(seq)).reshape(batch, -1, 3, self.n_heads, channels // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, F*P, C/H)
        attended = attend(q, k, v)
        attended = attended.transpose(1, 2).reshape(batch, frames * pitches, channels)
        seq = seq + self.out(attended)
        return seq.reshape(batch, frames, pitches, channels).permute(0, 3, 1, 2)
