"""A texture term judged on what the sampler writes, not on one step's x0 estimate.

The consistency terms of trainer/losses.py compare the network's x0 estimate at one noise
level with the real notes. That is sound for statistics linear in the notes (counts, shares
of counts), and not for the texture the realism test still separates on: notes per onset,
the spread of polyphony, octave doublings, the top voice. At the noisy steps, where the
sampler settles the texture, the estimate is a blur, and a non-linear statistic of a blur is
not the statistic of the music it turns into (docs/evaluation.md, session 44).

So this term runs the model's own sampler (its steps, its stochastic solver, its autoguidance
by the weak model) from noise to music with the autograd graph kept, the reward
fine-tuning of DRaFT (Clark et al. 2024) with a distribution-level reward: the mean of
fifteen of the realism test's window features over the sampled windows should be the mean
over the real windows the conditions came from. Measured (docs/evaluation.md, session 45):
it moves the texture it judges; the music was nearer real on the songs the weight was
chosen on and not on the songs reported, so no shipped model uses it. The squared gap of
two means is estimated without bias by the product of the gaps of two halves of the batch,
gap_a * gap_b: its expectation is the squared gap (the halves are independent), and its
gradient is the gradient of the squared gap, with no pull towards sampling every window
alike (which a per-window squared error would add).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from diffbgm.checkpoint import LoadedModel
from diffbgm.model.autoguidance import Autoguided
from diffbgm.model.conditions import Conditions
from diffbgm.model.diffusion import Diffusion, SamplerSettings
from diffbgm.music.roll import RollSpec

STEPS_PER_BAR = RollSpec().steps_per_bar
OCTAVE = 12
MIN_ONSETS = 4.0  # the realism test leaves out windows with fewer notes: so does the term

TEXTURE_FEATURES: tuple[str, ...] = (
    "onsets_per_bar",
    "notes_per_onset_mean",
    "note_length_mean",
    "polyphony_mean",
    "polyphony_std",
    "pitch_mean",
    "pitch_std",
    "bass_mean",
    "top_mean",
    "octave_share",
    "odd_sixteenth_share",
    "melodic_repeat_share",
    "melodic_stepwise_share",
    "melodic_leap_share",
    "groove_similarity",
)


def _any_of(weights: torch.Tensor) -> torch.Tensor:
    """(..., P) independent note probabilities -> (...) probability that at least one sounds."""
    return 1.0 - torch.exp(torch.log1p(-weights.clamp(max=1.0 - 1e-6)).sum(dim=-1))


def _first_sounding(onset: torch.Tensor, highest: bool) -> torch.Tensor:
    """(B, T, P) onset probabilities -> (B, T, P) probability that row p holds the highest (or
    lowest) onset of its step; a step's sum is the probability that it has an onset."""
    ordered = onset.flip(-1) if highest else onset
    none_before = torch.exp(torch.cumsum(torch.log1p(-ordered.clamp(max=1.0 - 1e-6)), dim=-1))
    first = ordered * torch.cat([torch.ones_like(none_before[..., :1]), none_before[..., :-1]], -1)
    return first.flip(-1) if highest else first


def _extreme_pitch(onset: torch.Tensor, highest: bool) -> torch.Tensor:
    """(B, T, P) onset probabilities -> (B, T) expected highest (or lowest) onset row of each
    step, times the probability that the step has an onset (0 where none can be)."""
    rows = torch.arange(onset.shape[-1], device=onset.device, dtype=onset.dtype)
    return (_first_sounding(onset, highest) * rows).sum(dim=-1)


def melodic_shares(onset: torch.Tensor) -> torch.Tensor:
    """(B, T, P) onset probabilities -> (B, 3) shares of the top voice's moves between
    successive onset steps that repeat the pitch, move by 1-2 semitones and leap by 5 or more
    (the realism test's melodic features). The onset steps are those more likely than not to
    have one (a choice, not differentiated); the top note of each is a distribution."""
    first = _first_sounding(onset, highest=True)
    any_onset = first.sum(dim=-1)  # (B, T)
    top = first / any_onset.clamp_min(1e-6)[..., None]
    rows = torch.arange(onset.shape[-1], device=onset.device)
    apart = (rows[:, None] - rows[None, :]).abs()  # (P, P)
    classes = torch.stack([apart == 0, (apart >= 1) & (apart <= 2), apart >= 5]).to(onset.dtype)
    shares = []
    for window in range(onset.shape[0]):
        steps = torch.nonzero(any_onset[window].detach() > 0.5).flatten()
        if steps.numel() < 2:
            shares.append(onset.new_zeros(3))
            continue
        before, after = top[window, steps[:-1]], top[window, steps[1:]]  # (n, P)
        moves = before[:, :, None] * after[:, None, :]  # (n, P, P)
        shares.append(torch.einsum("npq,kpq->k", moves, classes) / (steps.numel() - 1))
    return torch.stack(shares)


def groove_similarity(onset_step: torch.Tensor) -> torch.Tensor:
    """(B, T) probability of an onset at each step -> (B,) mean grooving similarity (1 - the
    share of places in the bar where one bar has an onset and the other not) over the pairs
    of the window's bars: GPS (diffbgm/metrics.py) within the window."""
    bars = onset_step.reshape(onset_step.shape[0], -1, STEPS_PER_BAR)  # (B, N, 16)
    n = bars.shape[1]
    first, second = torch.triu_indices(n, n, offset=1, device=onset_step.device)
    a, b = bars[:, first], bars[:, second]  # (B, pairs, 16)
    differ = a * (1 - b) + b * (1 - a)
    return 1.0 - differ.mean(dim=(1, 2))


def matched_thresholds(
    onset_values: torch.Tensor,
    counts: torch.Tensor,
    base: float,
    slack: float,
    temperature: float,
    iterations: int = 30,
) -> torch.Tensor:
    """(B, T, P) onset values, (B,) wanted onset counts -> (B,) onset thresholds within
    base +- slack whose soft cut keeps each window's count (the decode's density match,
    diffbgm/generation/decoding.py, with the real window's count as the request). Found by
    bisection, without a gradient: the cut is where the decode puts it, not a parameter."""
    values = onset_values.detach().float()
    low = torch.full_like(counts, base - slack, dtype=torch.float32)
    high = torch.full_like(counts, base + slack, dtype=torch.float32)
    for _ in range(iterations):
        middle = (low + high) / 2
        kept = torch.sigmoid((values - middle[:, None, None]) / temperature).sum(dim=(1, 2))
        too_many = kept > counts
        low = torch.where(too_many, middle, low)
        high = torch.where(too_many, high, middle)
    return (low + high) / 2


def soft_decoded(
    roll: torch.Tensor,
    onset_threshold: float | torch.Tensor,
    sustain_threshold: float,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 2, T, P) sampled rolls -> (B, T, P) onset and sustain probabilities: the decode's
    cut at the thresholds (the onset one a number or one per window, (B,)), softened by a
    sigmoid of width `temperature`. A cell the sampler settled at +-1 counts as the decode
    counts it (sigmoid(+-5) at width 0.1) and passes almost no gradient; the cells near the
    cut, which a small change would flip, pass it."""
    cut = torch.as_tensor(onset_threshold, dtype=torch.float32, device=roll.device)
    if cut.ndim == 1:
        cut = cut[:, None, None]
    onset = torch.sigmoid((roll[:, 0].float() - cut) / temperature)
    held = torch.sigmoid((roll[:, 1].float() - sustain_threshold) / temperature)
    return onset, held


def texture_features(
    onset: torch.Tensor, held: torch.Tensor, pitch_low: int = 21
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, P) onset and sustain probabilities -> (B, K) features in TEXTURE_FEATURES order,
    and (B,) onset counts. On a binary roll they are the realism test's own statistics
    (diffbgm/realism.py); on probabilities, those of independent notes, with a gradient.
    Sounding = onset or sustain, as the test's `window_features` counts it."""
    sounding = 1.0 - (1.0 - onset) * (1.0 - held)
    batch, steps, pitches = onset.shape
    tiny = 1e-6
    n_onsets = onset.sum(dim=(1, 2))  # (B,)
    onset_step = _any_of(onset)  # (B, T)
    n_onset_steps = onset_step.sum(dim=1)
    per_step = sounding.sum(dim=-1)  # (B, T) polyphony
    busy = _any_of(sounding).sum(dim=1)
    poly_mean = per_step.sum(dim=1) / busy.clamp_min(tiny)
    poly_var = per_step.square().sum(dim=1) / busy.clamp_min(tiny) - poly_mean.square()
    rows = torch.arange(pitches, device=onset.device, dtype=onset.dtype) + pitch_low
    pitch_mean = torch.einsum("btp,p->b", onset, rows) / n_onsets.clamp_min(tiny)
    pitch_var = torch.einsum("btp,p->b", onset, rows.square()) / n_onsets.clamp_min(tiny)
    pitch_var = pitch_var - pitch_mean.square()
    bass = _extreme_pitch(onset, highest=False).sum(dim=1) / n_onset_steps.clamp_min(tiny)
    top = _extreme_pitch(onset, highest=True).sum(dim=1) / n_onset_steps.clamp_min(tiny)
    # pairs of notes sounding together at the onset steps, and those an octave (or octaves) apart
    pairs = (per_step.square() - sounding.square().sum(dim=-1)) / 2.0  # (B, T)
    octaves = sum(
        (sounding[..., :-gap] * sounding[..., gap:]).sum(dim=-1)
        for gap in range(OCTAVE, pitches, OCTAVE)
    )
    assert isinstance(octaves, torch.Tensor)
    octave_share = (onset_step * octaves).sum(dim=1) / (onset_step * pairs).sum(dim=1).clamp_min(
        tiny
    )
    odd = (torch.arange(steps, device=onset.device) % STEPS_PER_BAR) % 2 == 1
    odd_share = onset[:, odd].sum(dim=(1, 2)) / n_onsets.clamp_min(tiny)
    bars = steps / STEPS_PER_BAR
    features = torch.stack(
        [
            n_onsets / bars,
            n_onsets / n_onset_steps.clamp_min(tiny),
            sounding.sum(dim=(1, 2)) / n_onsets.clamp_min(tiny),  # steps sounding per note
            poly_mean,
            (poly_var.clamp_min(0.0) + 1e-4).sqrt(),
            pitch_mean,
            (pitch_var.clamp_min(0.0) + 1e-4).sqrt(),
            bass + pitch_low,
            top + pitch_low,
            octave_share,
            odd_share,
            *melodic_shares(onset).unbind(dim=1),
            groove_similarity(onset_step),
        ],
        dim=1,
    )
    return features, n_onsets


# The rest of the realism test's note features (diffbgm/realism.py), for the adversarial
# critic's view: with TEXTURE_FEATURES, all of them but the note lengths' spread and shares
# and the top voice's mean step.
REALISM_EXTRA_FEATURES: tuple[str, ...] = (
    *(f"onset_pos_{i:02d}" for i in range(STEPS_PER_BAR)),
    *(f"harmonic_ic_{i:02d}" for i in range(OCTAVE)),
    "notes_per_onset_std",
    "single_note_onset_share",
    "silent_step_share",
    "pitch_min",
    "pitch_max",
)
REALISM_FEATURES: tuple[str, ...] = TEXTURE_FEATURES + REALISM_EXTRA_FEATURES


def _exactly_one(weights: torch.Tensor) -> torch.Tensor:
    """(..., P) independent note probabilities -> (...) probability that exactly one sounds."""
    log_none = torch.log1p(-weights.clamp(max=1.0 - 1e-6))  # (..., P)
    others_none = torch.exp(log_none.sum(dim=-1, keepdim=True) - log_none)
    return (weights * others_none).sum(dim=-1)


def realism_features(
    onset: torch.Tensor, held: torch.Tensor, pitch_low: int = 21
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, P) onset and sustain probabilities -> (B, K) features in REALISM_FEATURES order
    (the texture features, then the onset positions in the bar, the interval classes of the
    notes sounding together at onset steps, the spread of chord sizes, single-note onsets,
    silent steps and the lowest and highest note), and (B,) onset counts. On a binary roll
    they are the realism test's own statistics; on probabilities, smooth stand-ins."""
    texture, n_onsets = texture_features(onset, held, pitch_low)
    sounding = 1.0 - (1.0 - onset) * (1.0 - held)
    batch, steps, pitches = onset.shape
    tiny = 1e-6
    per_bar = onset.reshape(batch, -1, STEPS_PER_BAR, pitches).sum(dim=(1, 3))  # (B, 16)
    positions = per_bar / n_onsets.clamp_min(tiny)[:, None]
    onset_step = _any_of(onset)  # (B, T)
    # pairs of notes sounding together at each step, by their distance in semitones mod 12
    classes = [sounding.new_zeros(batch, steps) for _ in range(OCTAVE)]
    for gap in range(1, pitches):
        classes[gap % OCTAVE] = classes[gap % OCTAVE] + (
            sounding[..., :-gap] * sounding[..., gap:]
        ).sum(dim=-1)
    intervals = torch.stack([(onset_step * c).sum(dim=1) for c in classes], dim=1)  # (B, 12)
    intervals = intervals / intervals.sum(dim=1, keepdim=True).clamp_min(tiny)
    n_onset_steps = onset_step.sum(dim=1).clamp_min(tiny)
    chord = onset.sum(dim=-1)  # (B, T) notes struck per step
    chord_mean = (onset_step * chord).sum(dim=1) / n_onset_steps
    chord_var = (onset_step * chord.square()).sum(dim=1) / n_onset_steps - chord_mean.square()
    single = _exactly_one(onset).sum(dim=1) / n_onset_steps
    silent = 1.0 - _any_of(sounding).mean(dim=1)
    present = onset.amax(dim=1, keepdim=True)  # (B, 1, P): pitches struck in the window
    lowest = _extreme_pitch(present, highest=False)[:, 0] + pitch_low
    highest = _extreme_pitch(present, highest=True)[:, 0] + pitch_low
    extra = torch.cat(
        [
            positions,
            intervals,
            torch.stack(
                [
                    (chord_var.clamp_min(0.0) + 1e-4).sqrt(),
                    single,
                    silent,
                    lowest,
                    highest,
                ],
                dim=1,
            ),
        ],
        dim=1,
    )
    return torch.cat([texture, extra], dim=1), n_onsets


def split_half_squared_gap(
    sampled: torch.Tensor, real: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """(N, K) features of sampled and of real windows (row i of each from the same
    conditions), (K,) scales -> sum over features of the squared gap between their means in
    scale units, estimated as gap_a * gap_b over two halves (even and odd rows): unbiased, and
    its gradient is unbiased for the squared gap's (module docstring)."""
    if sampled.shape[0] < 2:
        raise ValueError("the split-half estimate needs at least two windows")
    gaps = (sampled - real) / scale  # (N, K)
    gap_a, gap_b = gaps[0::2].mean(dim=0), gaps[1::2].mean(dim=0)
    return (gap_a * gap_b).sum()


@dataclass
class SampledTexture:
    """The term: `loss(model, roll, cond, generator)` samples the first `windows` windows'
    conditions with the model's sampler and compares their texture with the real rolls."""

    diffusion: Diffusion
    settings: SamplerSettings
    weak: nn.Module | None  # the autoguidance weak model (frozen), or None
    autoguidance: float
    autoguidance_from_t: int
    windows: int
    onset_threshold: float
    sustain_threshold: float
    temperature: float = 0.1
    last_calls: int | None = 1
    density_slack: float = 0.0  # > 0: each window cut as the decode's density match cuts it

    @classmethod
    def from_checkpoint(
        cls,
        loaded: LoadedModel,
        windows: int,
        last_calls: int | None = 1,
        density_cut: bool = False,
    ) -> SampledTexture:
        """The sampler, steps, autoguidance and decode thresholds the checkpoint ships with
        (its generation settings and weak/ model); with `density_cut`, also its density
        slack (each window cut to the real count, as the density match would; it let the
        network add onsets the real decode cannot take back: docs/evaluation.md, session 45)."""
        generation = loaded.generation
        diffusion = Diffusion(loaded.config.diffusion)
        weak = None
        if generation.autoguidance != 1.0 and loaded.weak is not None:
            weak = loaded.weak.model.eval().requires_grad_(False)
        from_t = round((1.0 - generation.autoguidance_share) * diffusion.num_train_steps)
        return cls(
            diffusion=diffusion,
            settings=generation.sampler_settings(diffusion.num_train_steps),
            weak=weak,
            autoguidance=generation.autoguidance,
            autoguidance_from_t=from_t,
            windows=windows,
            onset_threshold=generation.onset_threshold,
            sustain_threshold=generation.sustain_threshold,
            last_calls=last_calls,
            density_slack=generation.density_slack if density_cut else 0.0,
        )

    def sampling_network(self, model: nn.Module) -> nn.Module:
        """`model` as the checkpoint samples with it: pushed away from the weak model where
        autoguidance applies (the DDP wrapper, which hides the config, taken off)."""
        network: nn.Module = getattr(model, "module", model)
        if self.weak is None:
            return network
        device = next(network.parameters()).device
        return Autoguided(
            network, self.weak.to(device), self.autoguidance, self.autoguidance_from_t
        )

    def sample(
        self,
        model: nn.Module,
        cond: Conditions,
        generator: torch.Generator,
        windows: int | None = None,
    ) -> torch.Tensor:
        """(N, 2, T, P): the first `windows` (default: the term's) windows of the batch's
        conditions sampled as the checkpoint samples them, the graph of the last `last_calls`
        network calls kept (none when gradients are off)."""
        count = min(windows or self.windows, cond.chord.shape[0])
        return self.diffusion.sample_with_grad(
            self.sampling_network(model),
            cond.index(slice(0, count)),
            generator,
            self.settings,
            self.last_calls,
        )

    def loss(
        self, model: nn.Module, roll: torch.Tensor, cond: Conditions, generator: torch.Generator
    ) -> torch.Tensor:
        """Scalar: the split-half squared texture gap (features scaled by the real windows'
        standard deviation over the whole batch); 0 with the graph kept when too few of the
        windows have notes to judge."""
        count = min(self.windows, roll.shape[0])
        sampled = self.sample(model, cond, generator)
        real_features, real_onsets = texture_features(
            (roll[:, 0] > 0).float(), (roll[:, 1] > 0).float()
        )
        cut: float | torch.Tensor = self.onset_threshold
        if self.density_slack > 0:
            cut = matched_thresholds(
                sampled[:, 0],
                real_onsets[:count],
                self.onset_threshold,
                self.density_slack,
                self.temperature,
            )
        decoded = soft_decoded(sampled, cut, self.sustain_threshold, self.temperature)
        sampled_features, _ = texture_features(*decoded)
        scale = real_features[real_onsets >= MIN_ONSETS].std(dim=0).clamp_min(1e-3)
        judged = real_onsets[:count] >= MIN_ONSETS
        if int(judged.sum()) < 2 or not torch.isfinite(scale).all():
            return sampled.sum() * 0.0
        return split_half_squared_gap(
            sampled_features[judged], real_features[:count][judged], scale.detach()
        )
