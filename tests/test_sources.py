"""diffbgm/music/sources.py: audio read a stretch at a time, the same from memory and disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from diffbgm.music.sources import ArrayAudio, FadedAudio, RawAudio, WavAudio, stretches


def noise(frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, (frames, 2)).astype(np.float32)


def test_every_source_reads_exact_stretches_with_zeros_past_the_end(tmp_path: Path) -> None:
    audio = noise(1000)
    soundfile.write(str(tmp_path / "a.wav"), audio, 8000, subtype="FLOAT")
    raw = RawAudio.silent(tmp_path / "a.f32", 1000, 2)
    raw.add(0, audio)
    for source in (ArrayAudio(audio), raw, WavAudio.of(tmp_path / "a.wav")):
        assert (source.frames, source.channels) == (1000, 2)
        assert np.array_equal(source.read(100, 300), audio[100:300])
        tail = source.read(900, 1100)
        assert tail.shape == (200, 2) and tail.dtype == np.float32
        assert np.array_equal(tail[:100], audio[900:]) and not tail[100:].any()
        assert source.read(1200, 1300).shape == (100, 2)


def test_raw_audio_writes_and_adds_in_place_and_starts_silent(tmp_path: Path) -> None:
    raw = RawAudio.silent(tmp_path / "mix.f32", 500, 2)
    assert not raw.read(0, 500).any()
    first, second = noise(500, 1), noise(300, 2)
    raw.write(0, first)
    raw.add(100, second)
    expected = first.copy()
    expected[100:400] += second
    assert np.array_equal(raw.read(0, 500), expected)  # float32 sums, in the order added


def test_faded_audio_cuts_and_fades_the_same_in_any_stretch() -> None:
    audio = np.ones((1000, 2), dtype=np.float32)
    faded = FadedAudio(ArrayAudio(audio), frames=800, fade=100)
    whole = faded.read(0, 900)
    assert np.all(whole[:700] == 1.0) and not whole[800:].any()
    assert whole[700, 0] == 1.0 and whole[799, 0] == 0.0  # the fade runs 1 -> 0
    assert np.all(np.diff(whole[700:800, 0]) < 0)
    parts = np.concatenate([faded.read(a, b) for a, b in stretches(900, 333)])
    assert np.array_equal(parts, whole)
    assert np.array_equal(FadedAudio(ArrayAudio(audio), 1200, 0).read(0, 1200)[:1000], audio)
    assert np.all(audio == 1.0)  # the source's own samples are left alone
    assert np.array_equal(faded.read(700, 800), whole[700:800])  # read twice, faded once


def test_stretches_cover_the_frames() -> None:
    assert stretches(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert stretches(0, 4) == []
