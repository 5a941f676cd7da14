"""The sampled-texture term (trainer/sampled.py): its features are the realism test's, its
estimate of a squared gap is unbiased, and its soft decode follows the decode's cut."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffbgm.metrics import groove_patterns, grooving_pattern_similarity
from diffbgm.realism import feature_names, window_features
from trainer.sampled import (
    REALISM_EXTRA_FEATURES,
    REALISM_FEATURES,
    TEXTURE_FEATURES,
    matched_thresholds,
    realism_features,
    soft_decoded,
    split_half_squared_gap,
    texture_features,
)


def random_window(rng: np.random.Generator, steps: int = 64, pitches: int = 88) -> np.ndarray:
    """(2, T, P) bool onset and sustain of random notes; every note starts inside the window
    and holds 1-8 steps, its sustain including its onset step, as the cache stores them."""
    onset = np.zeros((steps, pitches), dtype=bool)
    sustain = np.zeros((steps, pitches), dtype=bool)
    for _ in range(int(rng.integers(12, 40))):
        start, pitch = int(rng.integers(0, steps)), int(rng.integers(20, 60))
        if sustain[start, pitch]:
            continue
        end = min(steps, start + int(rng.integers(1, 9)))
        onset[start, pitch] = True
        sustain[start:end, pitch] = True
        for octave in (12, 24):  # some doublings, so the octave share is not zero
            if rng.random() < 0.3 and not sustain[start, pitch + octave]:
                onset[start, pitch + octave] = True
                sustain[start:end, pitch + octave] = True
    return np.stack([onset, sustain])


def test_features_of_binary_rolls_are_the_realism_tests() -> None:
    rng = np.random.default_rng(0)
    windows = np.stack([random_window(rng) for _ in range(5)])
    features, onsets = texture_features(
        torch.from_numpy(windows[:, 0]).float(), torch.from_numpy(windows[:, 1]).float()
    )
    names = feature_names(with_velocity=False)
    same_as = {name: name for name in TEXTURE_FEATURES}
    same_as["octave_share"] = "harmonic_ic_00"
    for row, window in enumerate(windows):
        reference = dict(zip(names, window_features(window[0], window[1]), strict=True))
        odd = sum(reference[f"onset_pos_{i:02d}"] for i in range(1, 16, 2))
        mine = dict(zip(TEXTURE_FEATURES, features[row].tolist(), strict=True))
        assert float(onsets[row]) == window[0].sum()
        assert mine["odd_sixteenth_share"] == pytest.approx(odd, abs=1e-5)
        patterns = groove_patterns(window[0])
        if patterns.any(axis=1).all():  # GPS leaves empty bars out, the window's feature not
            gps = grooving_pattern_similarity(window[0])
            assert mine["groove_similarity"] == pytest.approx(gps, abs=1e-5)
        for name in TEXTURE_FEATURES:
            if name not in ("odd_sixteenth_share", "groove_similarity"):
                assert mine[name] == pytest.approx(reference[same_as[name]], abs=2e-3), name


def test_realism_features_of_binary_rolls_are_the_realism_tests() -> None:
    rng = np.random.default_rng(1)
    windows = np.stack([random_window(rng) for _ in range(5)])
    onset = torch.from_numpy(windows[:, 0]).float()
    features, _ = realism_features(onset, torch.from_numpy(windows[:, 1]).float())
    texture, _ = texture_features(onset, torch.from_numpy(windows[:, 1]).float())
    assert features.shape == (5, len(REALISM_FEATURES))
    assert torch.equal(features[:, : len(TEXTURE_FEATURES)], texture)
    names = feature_names(with_velocity=False)
    for row, window in enumerate(windows):
        reference = dict(zip(names, window_features(window[0], window[1]), strict=True))
        mine = dict(zip(REALISM_FEATURES, features[row].tolist(), strict=True))
        for name in REALISM_EXTRA_FEATURES:
            assert mine[name] == pytest.approx(reference[name], abs=2e-3), name


def test_realism_features_have_a_gradient_everywhere() -> None:
    gen = torch.Generator().manual_seed(0)
    onset = (0.4 * torch.rand(2, 32, 24, generator=gen)).requires_grad_(True)
    held = 0.5 * torch.rand(2, 32, 24, generator=gen)
    features, _ = realism_features(onset, held, pitch_low=0)
    assert torch.isfinite(features).all()
    for column in range(features.shape[1]):
        (grad,) = torch.autograd.grad(features[:, column].sum(), onset, retain_graph=True)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, REALISM_FEATURES[column]


def test_features_of_probabilities_are_those_of_independent_notes() -> None:
    """One step, two possible notes: 0.5 at row 0 and 0.5 at row 12. Some onset: 0.75;
    notes per onset 1 / 0.75; top voice 12 when the upper sounds (0.5), else 0 (0.25 of the
    time): expected top given an onset 6 / 0.75 = 8; bass 12 only when the upper sounds alone
    (0.25): 3 / 0.75 = 4; the only possible pair is an octave."""
    onset = torch.zeros(1, 16, 24)
    onset[0, 0, 0] = onset[0, 0, 12] = 0.5
    features, _ = texture_features(onset, onset.clone(), pitch_low=0)
    mine = dict(zip(TEXTURE_FEATURES, features[0].tolist(), strict=True))
    assert mine["notes_per_onset_mean"] == pytest.approx(1 / 0.75, rel=1e-4)
    assert mine["top_mean"] == pytest.approx(8.0, rel=1e-4)
    assert mine["bass_mean"] == pytest.approx(0.25 * 12 / 0.75, rel=1e-4)  # 12 if only upper
    assert mine["octave_share"] == pytest.approx(1.0, rel=1e-4)


def test_split_half_estimate_is_unbiased_for_the_squared_gap() -> None:
    gen = torch.Generator().manual_seed(0)
    gap = torch.tensor([0.5, -1.0, 0.0])
    estimates, plain = [], []
    for _ in range(4000):
        sampled = torch.randn(8, 3, generator=gen) + gap
        real = torch.randn(8, 3, generator=gen)
        estimates.append(float(split_half_squared_gap(sampled, real, torch.ones(3))))
        plain.append(float(((sampled - real).mean(dim=0)).square().sum()))
    # true value 1.25; the plain squared mean gap is biased up by 3 x 2 / 8 = 0.75
    assert np.mean(estimates) == pytest.approx(1.25, abs=0.08)
    assert np.mean(plain) == pytest.approx(2.0, abs=0.08)
    scaled = split_half_squared_gap(
        torch.tensor([[2.0], [4.0]]), torch.tensor([[0.0], [0.0]]), torch.tensor([2.0])
    )
    assert float(scaled) == pytest.approx(1.0 * 2.0)
    with pytest.raises(ValueError, match="two windows"):
        split_half_squared_gap(torch.zeros(1, 3), torch.zeros(1, 3), torch.ones(3))


def test_soft_decode_follows_the_cut() -> None:
    roll = torch.tensor([-1.0, 0.48, 1.0, 0.4]).reshape(1, 2, 1, 2)
    onset, held = soft_decoded(roll, onset_threshold=0.48, sustain_threshold=0.4, temperature=0.1)
    assert float(onset[0, 0, 0]) < 1e-6 and float(onset[0, 0, 1]) == pytest.approx(0.5)
    assert float(held[0, 0, 0]) > 0.99 and float(held[0, 0, 1]) == pytest.approx(0.5)


def test_matched_thresholds_keep_the_asked_count_within_the_slack() -> None:
    """The density match of the decode, per window: the soft cut keeps the asked number of
    onsets where base +- slack allows, and stops at the band's edge where it does not."""
    values = torch.linspace(-1.0, 1.0, 64 * 88).reshape(1, 64, 88).repeat(2, 1, 1)
    counts = torch.tensor([1000.0, 5000.0])
    cut = matched_thresholds(values, counts, base=0.48, slack=0.5, temperature=0.1)
    kept = torch.sigmoid((values - cut[:, None, None]) / 0.1).sum(dim=(1, 2))
    assert float(kept[0]) == pytest.approx(1000.0, rel=1e-3)
    assert float(cut[1]) == pytest.approx(0.48 - 0.5, abs=1e-4)  # 5000 needs a lower cut
