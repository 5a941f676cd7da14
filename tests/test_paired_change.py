"""benchmarks/paired_change.py decides which settings ship: its statistics on known numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.scripts import load_script

paired = load_script("benchmarks/paired_change.py")


def _report(values: list[float]) -> dict:
    songs = [{"song": 801 + i, "generated": {"si_bar_mid": v}} for i, v in enumerate(values)]
    control = {"generated": {"register_obedience": 0.8, "density_obedience": 0.9}}
    return {"songs": songs, "control": control}


def test_change_of_the_mean_and_mean_of_changes_differ_where_a_song_is_small() -> None:
    reference = _report([0.1, 0.5, 0.6])
    candidate = _report([0.2, 0.45, 0.55])  # +100 %, -10 %, -8.3 % song by song
    of_mean, error, n = paired.change_of_mean(reference, candidate, "si_bar_mid")
    per_song, _, _ = paired.paired_change(reference, candidate, "si_bar_mid")
    assert n == 3
    assert of_mean == pytest.approx(0.0, abs=1e-9)  # the table's mean did not move
    assert per_song == pytest.approx((100.0 - 10.0 - 100.0 / 12.0) / 3.0)
    differences = [0.1, -0.05, -0.05]
    sd = math.sqrt(sum(d * d for d in differences) / 2)  # their mean is 0
    assert error == pytest.approx(100.0 * sd / math.sqrt(3) / 0.4)


def test_the_verdict_follows_the_chosen_rule(tmp_path: Path) -> None:
    reference, candidate = tmp_path / "ref.json", tmp_path / "cand.json"
    reference.write_text(json.dumps(_report([0.1, 0.5, 0.6])))
    candidate.write_text(json.dumps(_report([0.2, 0.45, 0.55])))
    assert paired.main([str(reference), str(candidate)]) == 0
    assert paired.main([str(reference), str(candidate), "--rule", "per-song"]) == 1
    assert paired.main([str(reference), str(candidate), "--tolerance", "0.001"]) == 0


def test_musdr_si_is_judged_where_both_reports_have_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference, candidate = tmp_path / "ref.json", tmp_path / "cand.json"
    with_si = _report([0.4, 0.5, 0.6])
    for song in with_si["songs"]:
        song["generated"]["si_musdr_mid"] = 0.4
    reference.write_text(json.dumps(with_si))
    for song in with_si["songs"]:
        song["generated"]["si_musdr_mid"] = 0.3  # -25 %
    candidate.write_text(json.dumps(with_si))
    assert paired.main([str(reference), str(candidate)]) == 1
    assert "| si_musdr_mid | -25.0 %" in capsys.readouterr().out
    candidate.write_text(json.dumps(_report([0.4, 0.5, 0.6])))  # run with --no-musdr-si
    assert paired.main([str(reference), str(candidate)]) == 0
    assert "| si_musdr_mid | – |" in capsys.readouterr().out
