"""Extra training terms that tie the network's output to its conditions.

The denoising loss teaches the controls only through the notes: a segment's register request
is the mean pitch of its onsets, a summary no single element of the roll carries, and the
network follows it loosely (Spearman 0.78 where density reaches 0.96;
benchmarks/register_spread.py). The register-consistency term (after the cycle consistency of
ControlNet++, Li et al. 2024) compares the mean onset pitch of each segment in the network's x0
estimate with the one the real notes have, which the request was made from. The
density-consistency term does the same for how many onsets each segment holds: pulled towards
one register, the network can meet the request by adding notes (docs/evaluation.md, session 25).
The rhythm-consistency term compares where in the bar the onsets fall: generated music puts
about half of real's share of onsets on the odd 16ths, at every sampler setting and with the
decode steps off (docs/evaluation.md, session 33), so the metric profile is asked for directly.
The voicing- and spread-consistency terms (session 44) do the same for the texture the realism
test still separates on: the harmonic intervals between notes sounding together (generated
music has fewer octave doublings and more thirds) and how far each segment's onsets spread
around its mean pitch (generated music sits in a narrower range, with a lower top voice).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from diffbgm.model.conditions import Conditions
from diffbgm.music.roll import RollSpec

ONSET_SHARPNESS = 6.0  # x0 is +1 at an onset and -1 elsewhere: sigmoid(6 x) is 0.998 / 0.002
OCTAVE = 12.0
SILENT_ONSET = float(torch.sigmoid(torch.tensor(-ONSET_SHARPNESS)))  # a silent cell's soft onset
STEPS_PER_BAR = RollSpec().steps_per_bar  # training windows start on bar lines of 4/4
MIN_RHYTHM_ONSETS = 4.0  # windows with fewer real onsets have no profile worth comparing
MIN_VOICING_PAIRS = 16.0  # windows with fewer (pair, step) co-soundings have no voicing profile
MIN_SPREAD_ONSETS = 3.0  # a segment with fewer real onsets has no spread worth comparing
PITCH_BAND = 6  # semitones per band of the pitch-profile term: 15 bands over the 88 keys

# (x0 estimate (B, 2, T, P), real x0 (B, 2, T, P), conditions, judged items (B,)) -> scalar
ConsistencyTerm = Callable[[torch.Tensor, torch.Tensor, Conditions, torch.Tensor], torch.Tensor]


def note_probability(channel: torch.Tensor) -> torch.Tensor:
    """A channel of an x0 estimate -> (x + 1) / 2 in [0, 1]. Where the estimate is the mean of
    what the notes could be (E[x0 | x_t] for notes at +-1), this is each cell's probability of
    a note, so a sum of it is the expected count: unlike `soft_notes` it does not drop the
    unlikely notes of a noisy step's estimate (a cell at -0.8, a note one time in ten, counts
    0.1 here and 0.006 through the sigmoid)."""
    return ((channel.float() + 1.0) / 2.0).clamp(0.0, 1.0)


def soft_notes(channel: torch.Tensor) -> torch.Tensor:
    """A channel of an x0 estimate (+1 note, -1 none) -> soft note weights in [0, 1) with the
    silent floor taken off: a cell at -1 counts 0, not sigmoid(-6), so that 88 silent rows
    (0.22 notes a step) neither flatten a sparse window's profile nor widen its spread."""
    return (torch.sigmoid(ONSET_SHARPNESS * channel.float()) - SILENT_ONSET).clamp_min(0.0)


def squared_hellinger(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """(..., K) distributions -> (...) squared Hellinger distances (without the 1/2). Rare
    classes weigh as much as a change of the same relative size in common ones; the epsilon
    keeps sqrt's gradient finite where the prediction has no mass."""
    return ((p + 1e-4).sqrt() - (q + 1e-4).sqrt()).square().sum(dim=-1)


def judged_profile_distance(
    predicted: torch.Tensor,
    real: torch.Tensor,
    real_mass: torch.Tensor,
    judged_items: torch.Tensor,
    min_mass: float,
    x0_pred: torch.Tensor,
) -> torch.Tensor:
    """Mean squared Hellinger distance between (B, K) window profiles over the `judged_items`
    whose real mass is at least `min_mass`; a zero that keeps `x0_pred`'s graph when none is
    (DDP wants every step to have one)."""
    judged = judged_items & (real_mass >= min_mass)
    if not judged.any():
        return x0_pred.sum() * 0.0
    return squared_hellinger(predicted, real)[judged].mean()


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
    x0_pred: torch.Tensor, x0: torch.Tensor, cond: Conditions, judged_items: torch.Tensor
) -> torch.Tensor:
    """Squared distance in octaves between the predicted and the real mean onset pitch of every
    segment with real onsets, averaged over those segments of the `judged_items` ((B,) bool:
    conditional items, at the noise levels the term is asked at)."""
    n_segments = cond.segment_mask.shape[1]
    predicted, _ = segment_mean_pitch(
        torch.sigmoid(ONSET_SHARPNESS * x0_pred[:, 0].float()), cond.segment_ids, n_segments
    )
    real, real_mass = segment_mean_pitch((x0[:, 0] > 0).float(), cond.segment_ids, n_segments)
    judged = (real_mass >= 1.0) & cond.segment_mask & judged_items[:, None]  # (B, S)
    if not judged.any():
        return x0_pred.sum() * 0.0  # keeps the graph (DDP wants every step to have one)
    return ((predicted - real) / OCTAVE).square()[judged].mean()


def segment_onset_rate(
    onset_weight: torch.Tensor, segment_ids: torch.Tensor, n_segments: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, P) onset weights, (B, T) segment ids -> onsets per step (B, S), steps (B, S)."""
    member = F.one_hot(segment_ids, n_segments).to(onset_weight.dtype)  # (B, T, S)
    steps = member.sum(dim=1)  # (B, S)
    mass = torch.einsum("btp,bts->bs", onset_weight, member)
    return mass / steps.clamp_min(1.0), steps


def segment_rate_distance(
    predicted_weight: torch.Tensor,
    real_weight: torch.Tensor,
    cond: Conditions,
    judged_items: torch.Tensor,
) -> torch.Tensor:
    """Squared distance between log(1 + count per step) of two (B, T, P) soft note weights in
    every segment of the window, averaged over the segments of the `judged_items` ((B,) bool).
    The log makes one extra note count less in a busy segment than in a sparse one, as the
    controls (quantiles) do."""
    n_segments = cond.segment_mask.shape[1]
    predicted, steps = segment_onset_rate(predicted_weight, cond.segment_ids, n_segments)
    real, _ = segment_onset_rate(real_weight, cond.segment_ids, n_segments)
    judged = (steps >= 1.0) & cond.segment_mask & judged_items[:, None]  # (B, S)
    if not judged.any():
        return predicted_weight.sum() * 0.0
    return (torch.log1p(predicted) - torch.log1p(real)).square()[judged].mean()


def density_consistency(
    x0_pred: torch.Tensor, x0: torch.Tensor, cond: Conditions, judged_items: torch.Tensor
) -> torch.Tensor:
    """`segment_rate_distance` of the onsets per step, of the prediction and of the real
    notes, both counted softly; the density control is a quantile of onsets per bar."""
    # the real notes are counted through the same sigmoid: its floor (88 silent rows at -1
    # count 0.22 onsets a step) then cancels, so the exact answer scores zero
    return segment_rate_distance(
        torch.sigmoid(ONSET_SHARPNESS * x0_pred[:, 0].float()),
        torch.sigmoid(ONSET_SHARPNESS * x0[:, 0].float()),
        cond,
        judged_items,
    )


def sounding_weight(x0: torch.Tensor) -> torch.Tensor:
    """(B, 2, T, P) onset and sustain channels in [-1, 1] -> (B, T, P) soft weight of a note
    sounding (struck or held) at each cell."""
    struck, held = torch.sigmoid(ONSET_SHARPNESS * x0.float()).unbind(dim=1)
    return 1.0 - (1.0 - struck) * (1.0 - held)


def polyphony_consistency(
    x0_pred: torch.Tensor, x0: torch.Tensor, cond: Conditions, judged_items: torch.Tensor
) -> torch.Tensor:
    """`segment_rate_distance` of the notes sounding per step (struck or held), of the
    prediction and of the real notes: asks that notes be held as long as the real ones are,
    which the rhythm term, counting where onsets sit, does not."""
    return segment_rate_distance(sounding_weight(x0_pred), sounding_weight(x0), cond, judged_items)


def metric_profile(
    onset_weight: torch.Tensor, steps_per_bar: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, P) onset weights of windows that start on a bar line -> the share of onset mass
    at each position of the bar (B, steps_per_bar) and the window's onset mass (B,)."""
    batch, steps, _ = onset_weight.shape
    per_step = onset_weight.sum(dim=-1)  # (B, T)
    per_position = per_step.reshape(batch, steps // steps_per_bar, steps_per_bar).sum(dim=1)
    mass = per_position.sum(dim=-1)
    return per_position / mass.clamp_min(1e-6)[:, None], mass


def rhythm_consistency(
    x0_pred: torch.Tensor,
    x0: torch.Tensor,
    cond: Conditions,
    judged_items: torch.Tensor,
    steps_per_bar: int = STEPS_PER_BAR,
) -> torch.Tensor:
    """Squared Hellinger distance between the metric profiles (share of onsets at each 16th of
    the bar) of the prediction and of the real notes, averaged over the `judged_items` ((B,)
    bool) whose real notes hold at least MIN_RHYTHM_ONSETS onsets. Hellinger rather than a
    squared difference of shares so that the rare positions (the odd 16ths, 2 % of onsets
    each) weigh as much as a change of the same relative size on the beats. `cond` is unused:
    the signature is the other terms' (the profile is the window's, not a segment's)."""
    del cond
    predicted, _ = metric_profile(soft_notes(x0_pred[:, 0]), steps_per_bar)
    real, real_mass = metric_profile((x0[:, 0] > 0).float(), steps_per_bar)
    return judged_profile_distance(
        predicted, real, real_mass, judged_items, MIN_RHYTHM_ONSETS, x0_pred
    )


def interval_class_map(n_pitches: int, device: torch.device | None = None) -> torch.Tensor:
    """(P, P, 12) indicator: row pair (p, q) with q > p falls in class (q - p) mod 12."""
    rows = torch.arange(n_pitches, device=device)
    gap = rows[None, :] - rows[:, None]  # (P, P): q - p
    classes = F.one_hot(gap.remainder(12), 12).float()  # (P, P, 12)
    return classes * (gap > 0).float()[..., None]


def interval_profile(sounding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, P) sounding weights -> the share of co-sounding pairs (two notes at one step) in
    each interval class mod 12 (B, 12), and the window's pair mass (B,)."""
    together = torch.einsum("btp,btq->bpq", sounding, sounding)  # (B, P, P)
    per_class = torch.einsum(
        "bpq,pqk->bk", together, interval_class_map(sounding.shape[-1], sounding.device)
    )
    mass = per_class.sum(dim=-1)
    return per_class / mass.clamp_min(1e-6)[:, None], mass


def voicing_consistency(
    x0_pred: torch.Tensor, x0: torch.Tensor, cond: Conditions, judged_items: torch.Tensor
) -> torch.Tensor:
    """Squared Hellinger distance between the interval-class profiles (octaves and unisons,
    minor seconds, ..., major sevenths between notes sounding at the same step) of the
    prediction's sustain channel and of the real notes, averaged over the `judged_items` ((B,)
    bool) with at least MIN_VOICING_PAIRS real co-soundings. Like the rhythm term it judges
    the whole window, so `cond` is unused."""
    del cond
    predicted, _ = interval_profile(soft_notes(x0_pred[:, 1]))
    real, real_mass = interval_profile((x0[:, 1] > 0).float())
    return judged_profile_distance(
        predicted, real, real_mass, judged_items, MIN_VOICING_PAIRS, x0_pred
    )


def segment_pitch_spread(
    onset_weight: torch.Tensor, segment_ids: torch.Tensor, n_segments: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, P) onset weights, (B, T) segment ids -> the weighted standard deviation of onset
    pitch in each segment (B, S), in rows, and the segment's onset mass (B, S)."""
    mean, mass = segment_mean_pitch(onset_weight, segment_ids, n_segments)
    member = F.one_hot(segment_ids, n_segments).to(onset_weight.dtype)  # (B, T, S)
    rows = torch.arange(
        onset_weight.shape[-1], device=onset_weight.device, dtype=onset_weight.dtype
    )
    square_sum = torch.einsum("btp,bts,p->bs", onset_weight, member, rows.square())
    variance = (square_sum / mass.clamp_min(1e-6) - mean.square()).clamp_min(0.0)
    # the small constant keeps sqrt's gradient finite for a segment of one pitch
    return (variance + 1e-3).sqrt(), mass


def spread_consistency(
    x0_pred: torch.Tensor, x0: torch.Tensor, cond: Conditions, judged_items: torch.Tensor
) -> torch.Tensor:
    """Squared distance in octaves between the predicted and the real spread (standard
    deviation of onset pitch) of every segment with at least MIN_SPREAD_ONSETS real onsets,
    averaged over those segments of the `judged_items` ((B,) bool). The register term asks
    for the segment's centre; this one for its width (bass and top voice apart)."""
    n_segments = cond.segment_mask.shape[1]
    predicted, _ = segment_pitch_spread(soft_notes(x0_pred[:, 0]), cond.segment_ids, n_segments)
    real, real_mass = segment_pitch_spread((x0[:, 0] > 0).float(), cond.segment_ids, n_segments)
    judged = (real_mass >= MIN_SPREAD_ONSETS) & cond.segment_mask & judged_items[:, None]
    if not judged.any():
        return x0_pred.sum() * 0.0
    return ((predicted - real) / OCTAVE).square()[judged].mean()


def pitch_band_profile(
    onset_weight: torch.Tensor, band: int = PITCH_BAND
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, P) onset weights -> the share of the window's onset mass in each band of `band`
    semitones from the lowest key up (B, ceil(P / band)), and the onset mass (B,)."""
    per_pitch = onset_weight.sum(dim=1)  # (B, P)
    pad = (-per_pitch.shape[-1]) % band
    per_band = F.pad(per_pitch, (0, pad)).reshape(per_pitch.shape[0], -1, band).sum(dim=-1)
    mass = per_band.sum(dim=-1)
    return per_band / mass.clamp_min(1e-6)[:, None], mass


def pitch_profile_consistency(
    x0_pred: torch.Tensor, x0: torch.Tensor, cond: Conditions, judged_items: torch.Tensor
) -> torch.Tensor:
    """Squared Hellinger distance between the pitch profiles (share of onsets in each band of
    PITCH_BAND semitones) of the prediction and of the real notes, averaged over the
    `judged_items` ((B,) bool) with at least MIN_RHYTHM_ONSETS real onsets. The estimate's
    onsets are counted as probabilities (`note_probability`), so the profile of a noisy
    step's estimate is the expected profile of the notes it could become, bass and top voice
    included; the spread term's standard deviation of a blurred estimate is not (a squared
    statistic of an average). `cond` is unused: the profile is the window's."""
    del cond
    predicted, _ = pitch_band_profile(note_probability(x0_pred[:, 0]))
    real, real_mass = pitch_band_profile((x0[:, 0] > 0).float())
    return judged_profile_distance(
        predicted, real, real_mass, judged_items, MIN_RHYTHM_ONSETS, x0_pred
    )
