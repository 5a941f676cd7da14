"""benchmarks/texture_gap.py on the tiny model and a two-song cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scripts import load_script
from trainer.sampled import TEXTURE_FEATURES

REPO = Path(__file__).resolve().parents[1]
texture_gap = load_script("benchmarks/texture_gap.py")


def test_every_model_is_judged_on_the_same_windows_and_noise(two_song_cache: Path) -> None:
    model = str(REPO / "checkpoints" / "diffbgm-tiny")
    result = texture_gap.measure([model], str(two_song_cache), "801", 6, 3, 0)
    again = texture_gap.measure([model], str(two_song_cache), "801-801", 6, 3, 0)
    assert 0 < result.windows <= 6 and result.gaps == again.gaps
    assert len(result.gaps[model]) == len(result.real_mean) == len(TEXTURE_FEATURES)
    real = dict(zip(TEXTURE_FEATURES, result.real_mean, strict=True))
    assert real["onsets_per_bar"] > 1 and 0 < real["groove_similarity"] <= 1
    table = texture_gap.report(result, "801", 0)
    assert len(table.splitlines()) == 3 + len(TEXTURE_FEATURES) + 1
    total = sum(gap * gap for gap in result.gaps[model])
    assert table.splitlines()[-1] == f"| sum of squares | | {total:.3f} |"
    with pytest.raises(SystemExit, match="no validation windows"):
        texture_gap.measure([model], str(two_song_cache), "850-859", 6, 3, 0)
