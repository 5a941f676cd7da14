"""trainer/losses.py: the register- and density-consistency terms on known rolls."""

from __future__ import annotations

import torch

from diffbgm.model.conditions import two_segment_conditions
from diffbgm.model.config import preset
from trainer.losses import (
    density_consistency,
    register_consistency,
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
