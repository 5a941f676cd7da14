"""trainer/losses.py: the consistency terms on known rolls."""

from __future__ import annotations

import pytest
import torch

from diffbgm.model.conditions import two_segment_conditions
from diffbgm.model.config import preset
from trainer.losses import (
    SILENT_ONSET,
    density_consistency,
    interval_class_map,
    interval_profile,
    metric_profile,
    note_probability,
    pitch_band_profile,
    pitch_profile_consistency,
    polyphony_consistency,
    register_consistency,
    rhythm_consistency,
    segment_mean_pitch,
    segment_onset_rate,
    segment_pitch_spread,
    soft_notes,
    spread_consistency,
    voicing_consistency,
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


def test_polyphony_consistency_sees_notes_held_short_not_where_they_start() -> None:
    """The figures of a slow song held under the pedal against the same onsets let go at
    once: the same onsets (the density and rhythm terms see no difference), fewer notes
    sounding per step (the polyphony term does)."""
    config = preset("tiny")
    cond = two_segment_conditions(config)
    held = -torch.ones(2, 2, config.window_steps, config.n_pitches)
    for step, pitch in zip(range(0, config.window_steps, 2), [40, 44, 47, 52] * 64, strict=False):
        held[:, 0, step, pitch] = 1.0
        held[:, 1, step + 1 : step + 8, pitch] = 1.0  # held for eight 16ths
    short = held.clone()
    short[:, 1] = -1.0  # every note let go after its 16th
    short[:, 1, 1::2] = torch.where(held[:, 0, ::2] > 0, 1.0, -1.0)  # held one more 16th
    judged = torch.ones(2, dtype=torch.bool)
    assert polyphony_consistency(held, held, cond, judged) < 1e-10
    assert density_consistency(short, held, cond, judged) < 1e-10
    assert rhythm_consistency(short, held, cond, judged) < 1e-10
    assert polyphony_consistency(short, held, cond, judged) > 0.05
    assert polyphony_consistency(short, held, cond, torch.zeros(2, dtype=torch.bool)) == 0.0
    guess = short.clone().requires_grad_(True)
    polyphony_consistency(guess, held, cond, judged).backward()
    assert guess.grad is not None
    assert guess.grad[:, 1].min() < 0  # holding a note longer lowers the loss


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


def test_soft_notes_count_silent_cells_as_nothing() -> None:
    channel = torch.tensor([-1.0, -3.0, 0.0, 1.0, 10.0])
    weights = soft_notes(channel)
    assert weights[0] == 0.0 and weights[1] == 0.0
    assert 0.45 < weights[2] < 0.5 and weights[3] > 0.99 and weights[4] < 1.0


def test_interval_class_map_folds_every_upward_interval_into_twelve_classes() -> None:
    classes = interval_class_map(30)
    assert classes.shape == (30, 30, 12)
    assert classes[3, 15, 0] == 1.0 and classes[3, 10, 7] == 1.0 and classes[0, 29, 5] == 1.0
    assert classes[15, 3].sum() == 0.0 and classes[4, 4].sum() == 0.0  # each pair once
    assert classes.sum() == 30 * 29 / 2


def test_interval_profile_counts_pairs_sounding_at_the_same_step() -> None:
    sounding = torch.zeros(1, 4, 40)
    sounding[0, 0, [10, 14, 17]] = 1.0  # a major triad: a major 3rd, a minor 3rd, a 5th
    sounding[0, 1, [10, 22]] = 1.0  # an octave
    sounding[0, 2, 30] = 1.0  # a single note: no pair
    profile, mass = interval_profile(sounding)
    assert mass.item() == 4.0
    expected = torch.zeros(12)
    expected[[0, 3, 4, 7]] = 0.25
    assert torch.allclose(profile[0], expected)


def test_voicing_consistency_sees_the_intervals_not_the_register_or_the_rhythm() -> None:
    config = preset("tiny")
    cond = two_segment_conditions(config)
    real = -torch.ones(2, 2, config.window_steps, config.n_pitches)
    real[:, 1, ::2, 40] = real[:, 1, ::2, 52] = real[:, 1, ::2, 47] = 1.0  # octave and a 5th
    judged = torch.ones(2, dtype=torch.bool)
    confident = 10.0 * real
    assert voicing_consistency(confident, real, cond, judged) < 1e-6
    # moved up a third, or to the odd steps: the same intervals
    assert voicing_consistency(torch.roll(confident, 4, dims=-1), real, cond, judged) < 1e-6
    assert voicing_consistency(torch.roll(confident, 1, dims=2), real, cond, judged) < 1e-6
    # the octave closed to a major 7th: one of three pairs changes class
    closed = confident.clone()
    closed[:, 1, ::2, 52] = -10.0
    closed[:, 1, ::2, 51] = 10.0
    assert voicing_consistency(closed, real, cond, judged) > 0.2
    assert voicing_consistency(closed, real, cond, torch.zeros(2, dtype=torch.bool)) == 0.0
    # a window of single notes has no voicing to compare
    melody = -torch.ones(2, 2, config.window_steps, config.n_pitches)
    melody[:, 1, ::2, 40] = 1.0
    assert voicing_consistency(closed, melody, cond, judged) == 0.0


def test_voicing_consistency_pulls_toward_the_real_doublings() -> None:
    config = preset("tiny")
    cond = two_segment_conditions(config).index(slice(0, 1))
    real = -torch.ones(1, 2, config.window_steps, config.n_pitches)
    real[:, 1, :, 40] = real[:, 1, :, 52] = real[:, 1, :, 44] = 1.0  # bass, octave, third
    guess = real.clone()
    guess[:, 1, :, 52] = -0.5  # the octave only half there
    guess.requires_grad_(True)
    voicing_consistency(guess, real, cond, torch.ones(1, dtype=torch.bool)).backward()
    assert guess.grad is not None
    assert guess.grad[0, 1, :, 52].max() < 0  # sounding it lowers the loss


def test_segment_pitch_spread_is_the_weighted_deviation_of_onset_pitch() -> None:
    weight = torch.zeros(1, 4, 20)
    weight[0, 0, 4] = weight[0, 1, 10] = 1.0  # segment 0: rows 4 and 10 -> deviation 3
    weight[0, 2, 7] = 2.0  # segment 1: one pitch -> deviation 0 (up to the constant)
    spread, mass = segment_pitch_spread(weight, torch.tensor([[0, 0, 1, 1]]), 3)
    assert spread[0, 0].item() == pytest.approx(3.0, abs=1e-3)
    assert spread[0, 1].item() == pytest.approx(0.0, abs=0.05)
    assert torch.allclose(mass[0], torch.tensor([2.0, 2.0, 0.0]))


def test_spread_consistency_sees_the_width_not_the_centre() -> None:
    config = preset("tiny")
    cond = two_segment_conditions(config)
    real = -torch.ones(2, 2, config.window_steps, config.n_pitches)
    real[:, 0, ::4, 30] = real[:, 0, ::4, 54] = 1.0  # two octaves apart: deviation one octave
    judged = torch.ones(2, dtype=torch.bool)
    confident = 10.0 * real
    assert spread_consistency(confident, real, cond, judged) < 1e-6
    # moved up, or at other steps: the same spread (the register term sees the move)
    assert spread_consistency(torch.roll(confident, 5, dims=-1), real, cond, judged) < 1e-6
    assert spread_consistency(torch.roll(confident, 2, dims=2), real, cond, judged) < 1e-6
    # closed to one octave apart: half an octave narrower everywhere
    closed = confident.clone()
    closed[:, 0, ::4, 54] = -10.0
    closed[:, 0, ::4, 42] = 10.0
    assert spread_consistency(closed, real, cond, judged).item() == pytest.approx(0.25, abs=0.01)
    assert spread_consistency(closed, real, cond, torch.zeros(2, dtype=torch.bool)) == 0.0


def test_spread_consistency_has_a_gradient_toward_a_wider_voicing() -> None:
    config = preset("tiny")
    cond = two_segment_conditions(config).index(slice(0, 1))
    real = -torch.ones(1, 2, config.window_steps, config.n_pitches)
    real[:, 0, ::4, 30] = real[:, 0, ::4, 54] = 1.0
    guess = real.clone()
    guess[:, 0, ::4, 30] = -10.0  # the bass moved up next to the top note
    guess[:, 0, ::4, 50] = 10.0
    guess.requires_grad_(True)
    spread_consistency(guess, real, cond, torch.ones(1, dtype=torch.bool)).backward()
    assert guess.grad is not None
    # a note far from the centre widens the segment: raising one there lowers the loss
    assert guess.grad[0, 0, ::4, 20].max() < 0


def test_note_probability_is_linear_in_the_estimate() -> None:
    channel = torch.tensor([-1.5, -1.0, -0.8, 0.0, 1.0, 2.0])
    assert torch.allclose(note_probability(channel), torch.tensor([0.0, 0.0, 0.1, 0.5, 1.0, 1.0]))


def test_pitch_band_profile_sums_onsets_by_band_of_the_keyboard() -> None:
    weight = torch.zeros(1, 3, 14)  # 14 rows in bands of 6: 0-5, 6-11, 12-13 (padded)
    weight[0, 0, 1] = weight[0, 1, 4] = 1.0
    weight[0, 2, 7] = 1.0
    weight[0, 2, 13] = 1.0
    profile, mass = pitch_band_profile(weight, band=6)
    assert mass.item() == 4.0
    assert torch.allclose(profile[0], torch.tensor([0.5, 0.25, 0.25]))


def test_pitch_profile_consistency_sees_the_range_not_the_rhythm() -> None:
    config = preset("tiny")
    cond = two_segment_conditions(config)
    real = -torch.ones(2, 2, config.window_steps, config.n_pitches)
    real[:, 0, ::4, 30] = real[:, 0, ::4, 54] = 1.0  # a bass and a top note
    judged = torch.ones(2, dtype=torch.bool)
    assert pitch_profile_consistency(real, real, cond, judged) < 1e-6
    # the same notes at other steps: the same profile
    assert pitch_profile_consistency(torch.roll(real, 1, dims=2), real, cond, judged) < 1e-6
    # the top note brought down next to the bass: a different profile
    narrower = real.clone()
    narrower[:, 0, ::4, 54] = -1.0
    narrower[:, 0, ::4, 36] = 1.0
    assert pitch_profile_consistency(narrower, real, cond, judged) > 0.5
    assert pitch_profile_consistency(narrower, real, cond, torch.zeros(2, dtype=torch.bool)) == 0


def test_pitch_profile_consistency_counts_an_unsure_estimate_as_expected_notes() -> None:
    config = preset("tiny")
    cond = two_segment_conditions(config).index(slice(0, 1))
    real = -torch.ones(1, 2, config.window_steps, config.n_pitches)
    real[:, 0, ::4, 30] = real[:, 0, ::4, 54] = 1.0
    # a noisy step's estimate: each note half likely (x = 0) still has the real profile ...
    unsure = torch.where(real > 0, torch.zeros_like(real), real)
    judged = torch.ones(1, dtype=torch.bool)
    assert pitch_profile_consistency(unsure, real, cond, judged) < 1e-6
    # ... and a top note less likely than the bass is pulled up
    guess = unsure.clone()
    guess[:, 0, ::4, 54] = -0.6
    guess.requires_grad_(True)
    pitch_profile_consistency(guess, real, cond, judged).backward()
    assert guess.grad is not None
    assert guess.grad[0, 0, ::4, 54].max() < 0 < guess.grad[0, 0, ::4, 30].min()
