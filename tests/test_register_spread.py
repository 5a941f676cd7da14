"""benchmarks/register_spread.py: its statistics on known numbers."""

from __future__ import annotations

import numpy as np
import pytest

from tests.scripts import load_script

spread = load_script("benchmarks/register_spread.py")


def segments(asked: np.ndarray, got: np.ndarray, per_song: int = 6) -> list:
    return [
        spread.Segment(song=800 + i // per_song, bars=1.0 + i % 6, asked=float(a), got=float(g))
        for i, (a, g) in enumerate(zip(asked, got, strict=True))
    ]


def test_a_network_that_realises_every_request_scores_one_everywhere() -> None:
    asked = np.random.default_rng(0).uniform(0, 1, 60)
    report = spread.spread_report(segments(asked, asked))
    assert report["pooled"] == pytest.approx(1.0)
    assert report["within songs (deviations)"] == pytest.approx(1.0)
    assert report["across songs (song means)"] == pytest.approx(1.0)
    assert report["fit slope"] == pytest.approx(1.0) and report["segments"] == 60


def test_scatter_shows_as_a_wide_realised_spread_with_the_slope_kept() -> None:
    rng = np.random.default_rng(1)
    asked = rng.uniform(0, 1, 3000)
    got = asked + rng.normal(0, 0.2, asked.size)
    report = spread.spread_report(segments(asked, got))
    assert report["fit slope"] == pytest.approx(1.0, abs=0.05)
    assert report["realised std"] > 1.2 * report["requested std"]
    assert 0.6 < report["pooled"] < 0.9


def test_segments_without_notes_are_left_out() -> None:
    asked = np.linspace(0, 1, 12)
    got = asked.copy()
    got[3] = np.nan
    assert spread.spread_report(segments(asked, got))["segments"] == 11


def test_song_ranges() -> None:
    assert spread.song_range("801-803") == (801, 802, 803)
    assert spread.song_range("805") == (805,)
