"""Extra training terms that tie the network's output to its conditions.

The denoising loss teaches the controls only through the notes: a segment's register request
is the mean pitch of its onsets, a summary no single element of the roll carries, and the
network follows it loosely (Spearman 0.78 where density reaches 0.96;
benchmarks/register_spread.py). The register-consistency term (after the cycle consistency of
ControlNet++, Li et al. 2024) compares the mean onset pitch of each segment in the network's x0
estimate with the one the real notes have, which the request was made from.

The polyphony-consistency term does the same for the polyphony request (mean sounding pitches
per 16th step): the network writes thicker chords than POP909 (polyphony +9 % of real at the
shipped settings) though each window is conditioned on the real segment's polyphony. An x0
estimate at high noise is a blur whose many faint cells add up to phantom notes, so items are
weighted by their signal fraction alpha_bar(t): the term speaks where the estimate is sharp.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diffbgm.model.conditions import Conditions

ONSET_SHARPNESS = 6.0  # x0 is +1 at an onset and -1 elsewhere: sigmoid(6 x) is 0.998 / 0.002
OCTAVE = 12.0
POLYPHONY_SCALE = 2.0  # sounding pitches: a segment off by two notes a step costs 1


def segment_mean_pitch(
    onset_weight: torch.Tensor, segment_ids: torch.Tensor, n_segments: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, P) onset weights, (B, T) segment ids -> mean pitch row (B, S), weight (B, S)."""
    member = F.one_hot(segment_ids, n_segments).to(onset_weight.dtype)  # (B, T, S)
    rows = torch.arange(
        onset_weight.shape[-1], device=onset_weight.device, dtype=onset_weight.dtype
    )
    mass = torch.einsum("btp,bts->bs", onset_weight, member)
    pitch_sum = torch.einsum("btp,bts,p->bs", onset_weight, member, rows)
    return pitch_sum / mass.clamp_min(1e-6), mass


def register_consistency(
    x0_pred: torch.Tensor, x0: torch.Tensor, cond: Conditions, drop: torch.Tensor
) -> torch.Tensor:
    """Squared distance in octaves between the predicted and the real mean onset pitch of every
    segment with real onsets, averaged over those segments of the conditional items."""
    n_segments = cond.segment_mask.shape[1]
    predicted, _ = segment_mean_pitch(
        torch.sigmoid(ONSET_SHARPNESS * x0_pred[:, 0].float()), cond.segment_ids, n_segments
    )
    real, real_mass = segment_mean_pitch((x0[:, 0] > 0).float(), cond.segment_ids, n_segments)
    judged = (real_mass >= 1.0) & cond.segment_mask & ~drop[:, None]  # (B, S)
    if not judged.any():
        return x0_pred.sum() * 0.0  # keeps the graph (DDP wants every step to have one)
    return ((predicted - real) / OCTAVE).square()[judged].mean()


def segment_mean_per_step(
    values: torch.Tensor, segment_ids: torch.Tensor, n_segments: int
) -> torch.Tensor:
    """(B, T) per-step values, (B, T) segment ids -> (B, S) mean over each segment's steps."""
    member = F.one_hot(segment_ids, n_segments).to(values.dtype)  # (B, T, S)
    return torch.einsum("bt,bts->bs", values, member) / member.sum(dim=1).clamp_min(1.0)


def polyphony_consistency(
    x0_pred: torch.Tensor,
    x0: torch.Tensor,
    cond: Conditions,
    drop: torch.Tensor,
    signal: torch.Tensor,
) -> torch.Tensor:
    """Squared difference, in POLYPHONY_SCALE pitches, between the predicted and the real mean
    number of sounding pitches per step of every segment, weighted per item by `signal` (B,)
    (alpha_bar of its timestep) and averaged over the segments of the conditional items."""
    n_segments = cond.segment_mask.shape[1]
    sounding = torch.sigmoid(ONSET_SHARPNESS * x0_pred[:, 1].float()).sum(dim=-1)  # (B, T)
    predicted = segment_mean_per_step(sounding, cond.segment_ids, n_segments)
    real = segment_mean_per_step((x0[:, 1] > 0).float().sum(dim=-1), cond.segment_ids, n_segments)
    judged = cond.segment_mask & ~drop[:, None]  # (B, S)
    if not judged.any():
        return x0_pred.sum() * 0.0
    error = ((predicted - real) / POLYPHONY_SCALE).square() * signal[:, None].float()
    return error[judged].sum() / judged.sum()
