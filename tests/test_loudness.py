"""The bounded-memory loudness meter equals pyloudnorm's (same filters, same blocks, same gates)."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest

from diffbgm.music.loudness import integrated_loudness


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
