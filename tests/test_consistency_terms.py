"""benchmarks/consistency_terms.py on the tiny model and a three-song cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.scripts import load_script
from trainer.losses import ONSET_SHARPNESS

REPO = Path(__file__).resolve().parents[1]
terms = load_script("benchmarks/consistency_terms.py")


def test_terms_vanish_where_the_estimate_is_its_input_and_grow_with_noise(
    two_song_cache: Path,
) -> None:
    model = str(REPO / "checkpoints" / "diffbgm-tiny")
    quiet, noisy = terms.measure(model, str(two_song_cache), (1, 900), 2.0, 8)
    assert quiet.real_rate == noisy.real_rate > 0
    # at t = 1 the estimate is the real window itself; both are counted through the same
    # sigmoid, so the soft count's floor (88 silent rows x sigmoid(-6) = 0.22 a step) cancels
    floor = 88 * float(torch.sigmoid(torch.tensor(-ONSET_SHARPNESS)))
    assert quiet.real_rate > floor
    assert quiet.estimated_rate == pytest.approx(quiet.real_rate, abs=0.02)
    assert quiet.register < 0.01 and quiet.density < 0.002
    assert noisy.register + noisy.density > quiet.register + quiet.density
    # the rhythm term and the odd-16th share: the estimate at t = 1 is the real windows'
    assert quiet.estimated_odd_share == pytest.approx(quiet.real_odd_share, abs=0.02)
    assert quiet.real_odd_share == noisy.real_odd_share and 0 < quiet.real_odd_share < 1
    assert quiet.rhythm < 0.01 < noisy.rhythm
    # the voicing and spread terms likewise vanish at t = 1 and grow with the noise
    assert quiet.estimated_octave_share == pytest.approx(quiet.real_octave_share, abs=0.02)
    assert 0 < quiet.real_octave_share < 1
    # (the tiny model's estimate at t = 1 leaks a little onset mass over the silent rows,
    # which widens its spread by about half a semitone)
    assert quiet.estimated_spread == pytest.approx(quiet.real_spread, abs=1.0)
    assert quiet.real_spread > 1
    assert quiet.voicing < 0.01 < noisy.voicing
    assert quiet.spread < 0.01 < noisy.spread
    # the pitch profile counts the estimate as probabilities, so the tiny model's leak over
    # the silent rows (a few hundredths a cell) moves it more than the sigmoid counts above;
    # it still grows with the noise
    assert 0 < quiet.real_top_band == noisy.real_top_band < 1
    assert 0 < quiet.estimated_top_band < 1
    assert quiet.pitch_profile < noisy.pitch_profile
    table = terms.report([quiet, noisy], 2.0)
    assert table.count("\n") == 3 and "| 900 |" in table
    assert table.splitlines()[0].count("|") == table.splitlines()[2].count("|") == 18
