"""`python -m trainer targets`: a target is met only when its whole interval is in the band."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.test_compare import SONGS, _forest, _report
from trainer.__main__ import main
from trainer.targets import standings


def _standing(rows: Any, target: str) -> Any:
    return next(row for row in rows if row.target == target)


def test_targets_are_met_not_met_or_undecided_by_their_interval() -> None:
    rng = np.random.default_rng(0)
    reports = [
        _report(
            seed,
            _forest(0.80, 0.05, rng),  # far from the 65 % the issue asks
            {song: 2.6 * (1 + rng.normal(0, 0.01)) for song in SONGS},  # PCHE near real
            register=0.95 + 0.005 * seed,
        )
        for seed in range(3)
    ]
    rows = standings(reports)
    forest = _standing(rows, "realism forest")
    assert forest.verdict == "not met" and forest.low > 65
    pche = _standing(rows, "PCHE")
    assert pche.verdict == "met" and -3 < pche.low < pche.value < pche.high < 3
    register = _standing(rows, "register")  # no per-song data: a t-interval over the seeds
    assert register.verdict == "met" and register.low < 95.5 < register.high
    # a logistic regression at chance is within the band
    assert _standing(rows, "realism logistic").verdict == "met"


def test_a_figure_near_the_edge_of_its_band_is_undecided() -> None:
    rng = np.random.default_rng(1)
    # PCHE +2.9 % of real on average, songs spread by 4 %: inside the band, but not surely
    reports = [
        _report(
            seed, _forest(0.7, 0.05, rng), {s: 2.675 * (1 + rng.normal(0, 0.04)) for s in SONGS}
        )
        for seed in range(2)
    ]
    pche = _standing(standings(reports), "PCHE")
    assert -3 < pche.value < 3 and pche.low < 3 < pche.high
    assert pche.verdict == "undecided"


def test_one_report_without_per_song_data_gets_no_interval() -> None:
    rng = np.random.default_rng(2)
    report = _report(0, _forest(0.7, 0.05, rng))
    rows = standings([report])
    register = _standing(rows, "register")
    assert register.verdict == "no interval" and np.isnan(register.low)
    # the songs can still be resampled for what the report keeps per song
    assert _standing(rows, "realism forest").verdict in ("met", "not met", "undecided")


def test_reports_of_one_model_must_share_songs_and_differ_in_seed() -> None:
    rng = np.random.default_rng(3)
    first, second = _report(0, _forest(0.7, 0.05, rng)), _report(1, _forest(0.7, 0.05, rng))
    second["options"]["bars"] = 64
    with pytest.raises(ValueError, match="'bars'"):
        standings([first, second])
    with pytest.raises(ValueError, match="one seed"):
        standings([first, _report(0, _forest(0.7, 0.05, rng))])


def test_the_command_prints_the_standings_and_writes_json(tmp_path: Path, capsys: Any) -> None:
    rng = np.random.default_rng(4)
    paths = []
    for seed in range(2):
        report = _report(seed, _forest(0.8, 0.05, rng))
        del report["_path"]
        path = tmp_path / f"s{seed}.json"
        path.write_text(json.dumps(report))
        paths.append(str(path))
    out = tmp_path / "standings.json"
    assert main(["targets", *paths, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| realism forest | ≤ 65 |" in printed and "not met" in printed
    saved = {row["target"]: row for row in json.loads(out.read_text())}
    assert saved["realism forest"]["verdict"] == "not met"
    assert main(["targets", str(tmp_path / "missing.json")]) == 2
