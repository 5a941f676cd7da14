"""benchmarks/window_seams.py: where the joins are, and what it measures per bar."""

from __future__ import annotations

import numpy as np
import pytest

from tests.scripts import load_script

seams = load_script("benchmarks/window_seams.py")


def test_the_joins_are_the_last_in_painted_bar_of_each_window() -> None:
    # 4-bar windows, one bar in-painted: windows start at bars 0, 3, 6, ...; bar 3 is the
    # in-painted one, so the first join is the change from bar 3 to bar 4
    assert seams.join_bars(12, 4, 1) == {3, 6, 9}
    # two bars in-painted: windows at 0, 2, 4, ...; bars 2-3 in-painted, the join after bar 3
    assert seams.join_bars(10, 4, 2) == {3, 5, 7, 9}


def test_bar_measures_count_onsets_chords_and_the_highest_note() -> None:
    onset = np.zeros((32, 88), dtype=bool)
    sustain = np.zeros((32, 88), dtype=bool)
    onset[0, [40, 44, 47]] = True  # a three-note chord in bar 0
    sustain[0:8, [40, 44, 47]] = True
    onset[20, 60] = True  # one high note in bar 1
    sustain[20:24, 60] = True
    first, second = seams.bar_measures(onset, sustain)
    assert first[:3] == pytest.approx([3.0, 3 * 8 / 16, 3.0])
    assert first[3:] == pytest.approx([(40 + 44 + 47) / 3, 47])
    assert second == pytest.approx([1.0, 4 / 16, 1.0, 60, 60])
    empty = seams.bar_measures(np.zeros((16, 88), bool), np.zeros((16, 88), bool))[0]
    assert empty[0] == 0 and np.isnan(empty[3]) and np.isnan(empty[4])
