"""The bounded-memory loudness meter equals pyloudnorm's (same filters, same blocks, same gates)."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
from scipy.signal import lfilter

from diffbgm.music.loudness import (
    hop_and_block_energies,
    hop_bounds,
    hop_energies,
    integrated_loudness,
)


@pytest.mark.parametrize("sample_rate", [22050, 44100, 48000])
@pytest.mark.parametrize("extra", [1, 137, 3 * 44100 + 17])
def test_equals_pyloudnorm(sample_rate: int, extra: int) -> None:
    rng = np.random.default_rng(extra)
    n = int(0.4 * sample_rate) + extra
    audio = rng.standard_normal((n, 2)) * 0.1
    audio[: n // 3] *= 0.001  # a quiet stretch, so the relative gate removes blocks
    audio[:, 1] *= 0.5
    expected = pyloudnorm.Meter(sample_rate).integrated_loudness(audio)
    assert integrated_loudness(audio, sample_rate) == pytest.approx(expected, abs=1e-6)


def test_mono_and_silence() -> None:
    rate = 44100
    tone = 0.5 * np.sin(2 * np.pi * 997 * np.arange(2 * rate) / rate)
    assert integrated_loudness(tone, rate) == pytest.approx(
        pyloudnorm.Meter(rate).integrated_loudness(tone), abs=1e-6
    )
    assert integrated_loudness(np.zeros((rate, 2)), rate) == float("-inf")
    with pytest.raises(ValueError, match="400 ms"):
        integrated_loudness(np.zeros((100, 2)), rate)


def test_chunk_boundaries_do_not_matter() -> None:
    """Longer than one chunk of hops: the filter state must carry across chunks."""
    rate = 8000
    rng = np.random.default_rng(0)
    audio = rng.standard_normal((rate * 30, 2)) * np.linspace(0.01, 0.3, rate * 30)[:, None]
    expected = pyloudnorm.Meter(rate).integrated_loudness(audio)
    assert integrated_loudness(audio, rate) == pytest.approx(expected, abs=1e-6)


def test_block_energies_are_the_k_weighted_energy_of_each_block() -> None:
    """Per 32-sample block from one read, across chunk boundaries (a chunk starts inside a
    block), equal to filtering the whole signal at once."""
    rate = 8000
    rng = np.random.default_rng(3)
    audio = (
        rng.standard_normal((rate * 20 + 77, 2)) * np.linspace(0.01, 0.3, rate * 20 + 77)[:, None]
    )
    hops, blocks = hop_and_block_energies(audio, rate, block=32)
    assert np.array_equal(hops, hop_energies(audio, rate))
    covered = int(hop_bounds(audio.shape[0], rate)[-1])
    expected = np.zeros(-(-covered // 32))
    for channel, weight in enumerate((1.0, 1.0)):
        filtered = audio[:covered, channel]
        for stage in pyloudnorm.Meter(rate)._filters.values():
            filtered = lfilter(stage.b, stage.a, filtered)
        squares = np.zeros(expected.size * 32)
        squares[:covered] = np.square(filtered)
        expected += weight * squares.reshape(-1, 32).sum(axis=1)
    assert blocks == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert hop_and_block_energies(audio, rate)[1].size == 0
