"""`python -m trainer compare`: a choice judged against the seeds' and the songs' spread."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainer.__main__ import main
from trainer.compare import compare, markdown, pair_by_seed

SONGS = [f"{n:03d}" for n in range(801, 831)]


def _report(
    seed: int,
    forest: dict[str, float],
    pche: dict[str, float] | None = None,
    register: float = 0.88,
    model: str = "m",
) -> dict[str, Any]:
    """An evaluate report: the forest told each song's real and generated windows (40 each,
    8 windows over 5 repeats) right at forest[song]; logistic at chance; PCHE per song
    (real 2.6)."""
    pche = pche or {song: 2.7 for song in SONGS}
    per_song = {
        song: [round(40 * share), 40, round(40 * share), 40] for song, share in forest.items()
    }
    counts = np.array(list(per_song.values()), dtype=float)
    accuracy = 0.5 * (
        counts[:, 0].sum() / counts[:, 1].sum() + counts[:, 2].sum() / counts[:, 3].sum()
    )

    def result(acc: float, songs: dict[str, list[int]]) -> dict[str, Any]:
        return {"accuracy": acc, "std": 0.03, "folds": 5, "per_song": songs, "repeats": 5}

    chance = {song: [20, 40, 20, 40] for song in forest}
    return {
        "options": {"songs": [int(s) for s in SONGS], "bars": 32, "seed": seed, "model": model},
        "summary": {
            "generated": {"pche": {"mean": float(np.mean(list(pche.values())))}},
            "real": {"pche": {"mean": 2.6}},
        },
        "control": {"generated": {"register_obedience": register}},
        "realism": {
            "with velocities": {
                "generated vs real": {
                    "logistic": result(0.5, chance),
                    "forest": result(float(accuracy), per_song),
                }
            }
        },
        "songs": [
            {"song": song, "generated": {"pche": pche[song]}, "real": {"pche": 2.6}}
            for song in SONGS
        ],
        "_path": f"{model}_s{seed}.json",
    }


def _forest(share: float, jitter: float, rng: np.random.Generator) -> dict[str, float]:
    return {song: float(np.clip(share + rng.normal(0, jitter), 0, 1)) for song in SONGS}


def _row(comparison: Any, target: str) -> Any:
    return next(row for row in comparison.rows if row.target == target)


def test_a_gain_on_every_seed_and_song_is_chosen() -> None:
    rng = np.random.default_rng(0)
    reference = [_report(s, _forest(0.75, 0.05, rng)) for s in range(5)]
    candidate = [_report(s, _forest(0.68, 0.05, rng), model="c") for s in range(5)]
    comparison = compare(reference, candidate)
    forest = _row(comparison, "realism forest")
    assert forest.verdict == "nearer" and forest.improvement == pytest.approx(7, abs=1.5)
    assert forest.p_nearer < 0.05 and forest.song_p_nearer < 0.05
    assert comparison.chosen and "realism forest" in comparison.reason


def test_a_gain_smaller_than_the_seeds_spread_is_noise() -> None:
    rng = np.random.default_rng(1)
    reference = [_report(s, _forest(0.70, 0.05, rng)) for s in range(3)]
    # +2 points on average, but -3 to +7 between seeds
    shifts = [0.07, -0.03, 0.02]
    candidate = [_report(s, _forest(0.70 - shifts[s], 0.05, rng), model="c") for s in range(3)]
    comparison = compare(reference, candidate)
    forest = _row(comparison, "realism forest")
    assert forest.verdict == "noise" and forest.p_nearer > 0.05
    assert forest.seeds_needed > 3
    assert not comparison.chosen
    assert "no primary target nearer real beyond" in comparison.reason


def test_a_gain_from_a_few_songs_is_noise_over_the_songs() -> None:
    # the same on every seed (the seeds' test is sure), but only two songs moved
    reference = [_report(s, {song: 0.7 for song in SONGS}) for s in range(4)]
    moved = {song: (0.1 if song in SONGS[:2] else 0.7) for song in SONGS}
    candidate = [_report(s, moved, model="c") for s in range(4)]
    forest = _row(compare(reference, candidate), "realism forest")
    assert forest.improvement > 1 and forest.p_nearer < 0.05
    # two songs of thirty: a resample lacks both one time in eight (28/30)^30
    assert forest.song_p_nearer > 0.05
    assert forest.verdict == "noise"


def test_a_target_further_by_more_than_the_tolerance_stops_the_choice() -> None:
    rng = np.random.default_rng(2)
    reference = [_report(s, _forest(0.75, 0.05, rng), register=0.90 + 0.01 * s) for s in range(4)]
    candidate = [
        _report(s, _forest(0.68, 0.05, rng), register=0.85 + 0.01 * s, model="c") for s in range(4)
    ]
    comparison = compare(reference, candidate)
    assert _row(comparison, "register").verdict == "further"
    assert not comparison.chosen and "register" in comparison.reason
    # a 5-point loss is allowed when the tolerance says so
    assert compare(reference, candidate, tolerance=6.0).chosen


def test_the_gap_metrics_are_judged_by_their_distance_from_real() -> None:
    rng = np.random.default_rng(3)
    forest = _forest(0.7, 0.05, rng)
    # PCHE +3.8 % of real -> +0.4 %: nearer real on every song
    reference = [_report(s, forest, {song: 2.7 for song in SONGS}) for s in range(3)]
    pche = [{song: 2.61 + 0.01 * rng.random() for song in SONGS} for _ in range(3)]
    candidate = [_report(s, forest, pche[s], model="c") for s in range(3)]
    row = _row(compare(reference, candidate), "PCHE")
    assert row.reference == pytest.approx(3.85, abs=0.01)
    assert row.verdict == "nearer" and row.song_p_nearer < 0.05
    # undershooting real by as much is as far
    under = [_report(s, forest, {song: 2.5 for song in SONGS}, model="c") for s in range(3)]
    assert _row(compare(reference, under), "PCHE").improvement == pytest.approx(0, abs=0.01)


def test_reports_pair_only_by_seed_and_the_same_songs() -> None:
    rng = np.random.default_rng(4)
    reference = [_report(s, _forest(0.7, 0.05, rng)) for s in range(2)]
    with pytest.raises(ValueError, match="without a partner"):
        pair_by_seed(reference, [_report(5, _forest(0.7, 0.05, rng))])
    other_songs = _report(0, _forest(0.7, 0.05, rng))
    other_songs["options"]["songs"] = [831]
    with pytest.raises(ValueError, match="differ in 'songs'"):
        pair_by_seed(reference[:1], [other_songs])
    one = compare(reference[:1], [_report(0, _forest(0.6, 0.05, rng))])
    assert not one.chosen and "one pair" in one.reason


def test_reports_without_per_song_counts_are_judged_over_the_seeds_alone() -> None:
    rng = np.random.default_rng(5)
    reference = [_report(s, _forest(0.75, 0.05, rng)) for s in range(3)]
    candidate = [_report(s, _forest(0.68, 0.05, rng), model="c") for s in range(3)]
    for report in reference + candidate:  # as written before session 46
        forest_result = report["realism"]["with velocities"]["generated vs real"]["forest"]
        del forest_result["per_song"], forest_result["repeats"]
    comparison = compare(reference, candidate)
    forest = _row(comparison, "realism forest")
    assert np.isnan(forest.song_p_nearer) and forest.verdict == "nearer"
    assert len(comparison.notes) == 1 and "6 report(s)" in comparison.notes[0]


def test_the_command_prints_the_table_and_writes_json(tmp_path: Path, capsys: Any) -> None:
    rng = np.random.default_rng(6)
    paths: dict[str, list[str]] = {"reference": [], "candidate": []}
    for side, share in (("reference", 0.75), ("candidate", 0.68)):
        for seed in range(3):
            path = tmp_path / f"{side}_s{seed}.json"
            report = _report(seed, _forest(share, 0.05, rng), model=side)
            del report["_path"]
            path.write_text(json.dumps(report))
            paths[side].append(str(path))
    out = tmp_path / "comparison.json"
    argv = ["compare", "--reference", *paths["reference"], "--candidate", *paths["candidate"]]
    assert main([*argv, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| realism forest |" in printed and "**choose the candidate**" in printed
    assert "Note:" not in printed
    saved = json.loads(out.read_text())
    assert saved["chosen"] is True and saved["seeds"] == [0, 1, 2]
    assert (
        main(
            [
                "compare",
                "--reference",
                str(tmp_path / "missing.json"),
                "--candidate",
                *paths["candidate"],
            ]
        )
        == 2
    )
    assert main([*argv, "--primary", "nonsense"]) == 2
    assert main([*argv, "--features", "0"]) == 0


def _with_feature_means(report: dict[str, Any], d: dict[str, float]) -> dict[str, Any]:
    """The report with realism_feature_means of effect sizes `d` (real mean 1.0 each)."""
    report["realism_feature_means"] = [
        {"name": name, "mean_a": 1.0, "mean_b": 1.0 + value, "d": value}
        for name, value in d.items()
    ]
    return report


def test_the_features_furthest_from_real_on_either_side_are_listed() -> None:
    rng = np.random.default_rng(7)
    reference = [
        _with_feature_means(
            _report(s, _forest(0.7, 0.05, rng)),
            {"polyphony": 0.1 * s, "odd_16ths": -0.6, "octaves": 0.2, "old": 0.9},
        )
        for s in range(2)
    ]
    candidate = [
        _with_feature_means(
            _report(s, _forest(0.7, 0.05, rng), model="c"),
            {"polyphony": -0.5, "odd_16ths": -0.1, "octaves": 0.2},
        )
        for s in range(2)
    ]
    comparison = compare(reference, candidate, features=2)
    # ranked by the larger |d| of the two sides; "old" is missing from the candidate's reports
    assert [shift.feature for shift in comparison.features] == ["odd_16ths", "polyphony"]
    odd, poly = comparison.features
    assert (odd.reference_d, odd.candidate_d, odd.real) == (-0.6, -0.1, 1.0)
    assert poly.reference_d == pytest.approx(0.05) and poly.candidate_d == -0.5
    table = markdown(comparison)
    assert "| odd_16ths | 1.000 | -0.60 | -0.10 |" in table
    assert "| octaves |" not in table
    assert compare(reference, candidate, features=0).features == []
    assert "What gives the music away" not in markdown(compare(reference, candidate, features=0))
    # reports written before the feature means existed: no table, the judgement as before
    for report in reference:
        del report["realism_feature_means"]
    assert compare(reference, candidate).features == []


def _with_metric(report: dict[str, Any], metric: str, generated: float) -> dict[str, Any]:
    """The report with a per-song metric: every song `generated`, real 1.0."""
    report["summary"]["generated"][metric] = {"mean": generated}
    report["summary"]["real"][metric] = {"mean": 1.0}
    for song in report["songs"]:
        song["generated"][metric] = generated
        song["real"][metric] = 1.0
    return report


def test_si_bar_stops_a_choice_only_where_musdr_si_was_not_judged() -> None:
    rng = np.random.default_rng(8)
    reference = [
        _with_metric(_report(s, _forest(0.75, 0.05, rng)), "si_bar_mid", 0.95) for s in range(4)
    ]
    # the forest 7 points nearer real, SI-bar mid 3 points further (-5 % -> -8 % of real)
    candidate = [
        _with_metric(
            _report(s, _forest(0.68, 0.05, rng), model="c"), "si_bar_mid", 0.92 - 0.001 * s
        )
        for s in range(4)
    ]
    alone = compare(reference, candidate)
    assert _row(alone, "SI-bar mid").verdict == "further"
    assert not alone.chosen and "SI-bar mid" in alone.reason
    # with MusDr's SI in every report (unmoved), MusDr's SI decides and SI-bar is a note
    for report in reference + candidate:
        _with_metric(report, "si_musdr_mid", 0.96)
    both = compare(reference, candidate)
    assert _row(both, "MusDr SI mid").verdict != "further"
    assert _row(both, "SI-bar mid").verdict == "further"
    assert both.chosen, both.reason
    assert any("SI-bar mid is further by 3.1, not a veto" in note for note in both.notes)
    assert "Note: SI-bar mid is further" in markdown(both)
    # MusDr's SI further itself still stops the choice
    for report in candidate:
        _with_metric(report, "si_musdr_mid", 0.90 - 0.001 * int(report["options"]["seed"]))
    worse = compare(reference, candidate)
    assert not worse.chosen and "MusDr SI mid" in worse.reason
