"""trainer/losses.py: the register-consistency term on known rolls."""

from __future__ import annotations

import torch

from diffbgm.model.conditions import two_segment_conditions
from diffbgm.model.config import preset
from trainer.losses import register_consistency, segment_mean_pitch


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
