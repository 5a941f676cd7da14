"""trainer/losses.py: the register-, density- and rhythm-consistency terms on known rolls."""

from __future__ import annotations

import pytest
import torch

from diffbgm.model.conditions import two_segment_conditions
from diffbgm.model.config import preset
from trainer.losses import (
    SILENT_ONSET,
    density_consistency,
    metric_profile,
    register_consistency,
    rhythm_consistency,
    segment_mean_pitch,
    segment_onset_rate,
)


def test_segment_mean_pitch_weights_rows_by_onsets() -> None:
    weight = torch.zeros(1, 4, 10)
    weight[0, 0, 2] = 1.0
    weight[0, 1, 6] = 3.0  # segment 0: rows 2 (x1) and 6 (x3) -> mean 5
    weight[0, 3, 9] = 1.0  # segment 1: row 9
    mean, mass = segment_mean_pitch(weight, torch.tensor([[0, 0, 1, 1]]), 3)
    assert torch.allclose(mean[0, :2], torch.tensor([5.0, 9.0]))
    assert torch.allclose(mass[0], torch.tensor([4.0, 1.0, 0.0]))


def test_register_consistency_counts_octaves_between_prediction_and_notes() -> None:
    config = preset("tiny")
    cond = two_segment_conditions(config)
    x0 = -torch.ones(2, 2, config.window_steps, config.n_pitches)
    x0[:, 0, ::4, 40] = 1.0
    confident = 10.0 * x0  # far beyond +-1: the soft onsets are the notes themselves
    judged = torch.ones(2, dtype=torch.bool)
    assert register_consistency(confident, x0, cond, judged) < 1e-6
    octave_up = torch.roll(confident, 12, dims=-1)
    assert torch.isclose(register_consistency(octave_up, x0, cond, judged), torch.tensor(1.0))
    # items left unjudged (unconditional, or below --register-min-t) add nothing
    assert register_consistency(octave_up, x0, cond, torch.zeros(2, dtype=torch.bool)) == 0.0


def test_register_consistency_has_a_gradient_toward_the_notes() -> None:
    config = preset("tiny")
    cond = two_segment_conditions(config)
    x0 = -torch.ones(1, 2, config.window_steps, config.n_pitches)
    x0[:, 0, ::4, 40] = 1.0
    cond = cond.index(slice(0, 1))
    guess = (10.0 * torch.roll(x0, 5, dims=-1)).requires_grad_(True)
    register_consistency(guess, x0, cond, torch.ones(1, dtype=torch.bool)).backward()
    assert guess.grad is not None
    # the guess sits 5 rows too high: more onset on a low row lowers the loss, on a high row
    # raises it
    low, high = guess.grad[0, 0, :, 30].sum(), guess.grad[0, 0, :, 60].sum()
    assert low < 0 < high


def test_segment_onset_rate_counts_onsets_per_step_of_each_segment() -> None:
    weight = torch.zeros(1, 4, 10)
    weight[0, 0, 2] = weight[0, 0, 3] = weight[0, 1, 6] = 1.0  # segment 0: 3 onsets, 2 steps
    weight[0, 3, 9] = 1.0  # segment 1: 1 onset in 2 steps
    rate, steps = segment_onset_rate(weight, torch.tensor([[0, 0, 1, 1]]), 3)
    assert torch.allclose(rate[0], torch.tensor([1.5, 0.5, 0.0]))
    assert torch.allclose(steps[0], torch.tensor([2.0, 2.0, 0.0]))


def test_density_consistency_measures_extra_onsets_on_a_log_scale() -> None:
    config = preset("tiny")
    cond = two_segment_conditions(config)
    x0 = -torch.ones(2, 2, config.window_steps, config.n_pitches)
    x0[:, 0, ::4, 40] = 1.0  # one onset every 4 steps in both segments: 0.25 a step
    judged = torch.ones(2, dtype=torch.bool)
    # the exact answer scores zero: the real notes are counted through the same sigmoid
    assert density_consistency(x0, x0, cond, judged) < 1e-10
    # the register moved, the count kept: the density term does not see it (the register does)
    assert density_consistency(torch.roll(x0, 12, dims=-1), x0, cond, judged) < 1e-10
    doubled = x0.clone()
    doubled[:, 0, ::4, 52] = 1.0  # an octave doubling on every onset
    on, off = torch.sigmoid(torch.tensor(6.0)), torch.sigmoid(torch.tensor(-6.0))
    real = 0.25 * on + (88 - 0.25) * off  # soft onsets per step
    expected = (torch.log1p(real + 0.25 * (on - off)) - torch.log1p(real)).square()
    assert torch.isclose(density_consistency(doubled, x0, cond, judged), expected, rtol=1e-4)
    assert density_consistency(doubled, x0, cond, torch.zeros(2, dtype=torch.bool)) == 0.0


def test_density_consistency_has_a_gradient_against_extra_onsets() -> None:
    config = preset("tiny")
    cond = two_segment_conditions(config).index(slice(0, 1))
    x0 = -torch.ones(1, 2, config.window_steps, config.n_pitches)
    x0[:, 0, ::4, 40] = 1.0
    guess = x0.clone()
    guess[:, 0, ::2, 50] = 0.0  # half-sure extra onsets on every other step
    guess.requires_grad_(True)
    density_consistency(guess, x0, cond, torch.ones(1, dtype=torch.bool)).backward()
    assert guess.grad is not None
    assert guess.grad[0, 0, ::2, 50].min() > 0  # lowering them lowers the loss


def test_metric_profile_sums_onsets_by_position_in_the_bar() -> None:
    weight = torch.zeros(1, 32, 5)  # two bars of 16 steps
    weight[0, 0, 1] = weight[0, 16, 2] = 1.0  # a downbeat in each bar
    weight[0, 3, 4] = 2.0  # bar 1, the fourth 16th: two onsets' worth
    profile, mass = metric_profile(weight, 16)
    assert mass.item() == 4.0
    assert profile[0, 0].item() == 0.5 and profile[0, 3].item() == 0.5
    assert profile.sum().item() == 1.0


def test_rhythm_consistency_sees_where_in_the_bar_not_how_many_or_how_high() -> None:
    config = preset("tiny")
    cond = two_segment_conditions(config)
    x0 = -torch.ones(2, 2, config.window_steps, config.n_pitches)
    x0[:, 0, ::4, 40] = 1.0  # onsets on the beats
    judged = torch.ones(2, dtype=torch.bool)
    confident = 10.0 * x0
    assert rhythm_consistency(confident, x0, cond, judged) < 1e-6
    # the same positions: an octave higher, or with every onset doubled, score zero
    assert rhythm_consistency(torch.roll(confident, 12, dims=-1), x0, cond, judged) < 1e-6
    doubled = confident.clone()
    doubled[:, 0, ::4, 52] = 10.0
    assert rhythm_consistency(doubled, x0, cond, judged) < 1e-6
    # every onset a 16th late: no position in common, the largest squared Hellinger distance
    # (2, less what the square roots' epsilon of 1e-4 takes off: 8 x (0.5 - 0.01)^2 = 1.92)
    late = torch.roll(confident, 1, dims=2)
    assert rhythm_consistency(late, x0, cond, judged) == pytest.approx(1.92, abs=0.01)
    assert rhythm_consistency(late, x0, cond, torch.zeros(2, dtype=torch.bool)) == 0.0


def test_rhythm_consistency_skips_nearly_empty_windows_and_ignores_the_silent_floor() -> None:
    config = preset("tiny")
    cond = two_segment_conditions(config)
    sparse = -torch.ones(1, 2, config.window_steps, config.n_pitches)
    sparse[:, 0, 0, 40] = 1.0  # one onset: too few to have a rhythm worth comparing
    judged = torch.ones(1, dtype=torch.bool)
    cond = cond.index(slice(0, 1))
    assert rhythm_consistency(torch.roll(sparse, 1, dims=2), sparse, cond, judged) == 0.0
    # a prediction at exactly -1 everywhere but the real onsets adds nothing at silent cells
    real = -torch.ones(1, 2, config.window_steps, config.n_pitches)
    real[:, 0, ::8, 40] = 1.0
    soft = torch.where(real > 0, torch.full_like(real, 10.0), real)
    assert SILENT_ONSET < 0.003
    assert rhythm_consistency(soft, real, cond, judged) < 1e-6


def test_rhythm_consistency_pulls_onsets_toward_the_real_positions() -> None:
    config = preset("tiny")
    cond = two_segment_conditions(config).index(slice(0, 1))
    real = -torch.ones(1, 2, config.window_steps, config.n_pitches)
    real[:, 0, ::2, 40] = 1.0  # on every even 16th
    real[:, 0, 1::8, 45] = 1.0  # and a syncopation on some odd ones
    guess = real.clone()
    guess[:, 0, 1::8, 45] = -0.5  # the syncopations only half there
    guess.requires_grad_(True)
    rhythm_consistency(guess, real, cond, torch.ones(1, dtype=torch.bool)).backward()
    assert guess.grad is not None
    assert guess.grad[0, 0, 1::8, 45].max() < 0  # raising them lowers the loss
