"""Music metrics on hand-made rolls with known answers, and on real POP909 songs."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from scipy.stats import spearmanr

from diffbgm import metrics as m
from diffbgm.metrics_cli import main, parse_song_range

P = 88  # pitches from MIDI 21
C4 = 60 - 21  # pitch index of middle C
SPB = 16


def empty(bars: int) -> np.ndarray:
    return np.zeros((bars * SPB, P), dtype=bool)


def place(roll: np.ndarray, step: int, midi_pitch: int) -> None:
    roll[step, midi_pitch - 21] = True


# --------------------------------------------------------------------------- PCHE


def test_pche_single_pitch_class_is_zero() -> None:
    onset = empty(8)
    for bar in range(8):
        place(onset, bar * SPB, 60 + 12 * (bar % 3 - 1))  # C in three octaves
    assert m.pitch_class_entropy(onset) == 0.0


def test_pche_uniform_twelve_is_log2_12() -> None:
    onset = empty(8)
    for i in range(12 * 4):
        place(onset, i * 2, 48 + i % 12)
    assert m.pitch_class_entropy(onset) == pytest.approx(math.log2(12))


def test_pche_averages_eight_bar_groups_and_drops_partial_group() -> None:
    onset = empty(17)
    place(onset, 0, 60)  # group 1: only C -> 0 bits
    place(onset, 8 * SPB, 60)  # group 2: C and G once each -> 1 bit
    place(onset, 8 * SPB + 4, 67)
    for step in range(16 * SPB, 17 * SPB, 2):  # partial 17th bar: ignored
        place(onset, step, 61 + step % 5)
    assert m.pitch_class_entropy(onset) == pytest.approx(0.5)


def test_pche_short_piece_is_one_group_and_silence_is_nan() -> None:
    onset = empty(2)
    place(onset, 0, 60)
    place(onset, 1, 62)
    assert m.pitch_class_entropy(onset) == pytest.approx(1.0)
    assert math.isnan(m.pitch_class_entropy(empty(8)))


# --------------------------------------------------------------------------- GPS


def test_gps_identical_bars_is_one() -> None:
    onset = empty(6)
    for bar in range(6):
        for step in (0, 4, 6, 12):
            place(onset, bar * SPB + step, 60 + bar)  # pitch does not matter
    assert m.grooving_pattern_similarity(onset) == 1.0


def test_gps_complementary_bars_is_zero() -> None:
    onset = empty(2)
    for step in range(SPB):
        place(onset, (step % 2) * SPB + step, 60)  # bar 0 even steps, bar 1 odd steps
    assert m.grooving_pattern_similarity(onset) == 0.0


def test_gps_matches_pairwise_definition_and_skips_empty_bars() -> None:
    rng = np.random.default_rng(3)
    onset = empty(7)
    onset[: 5 * SPB] = rng.random((5 * SPB, P)) < 0.01  # bars 5 and 6 stay empty
    patterns = m.groove_patterns(onset)[:5]
    assert patterns.any(axis=1).all()
    expected = np.mean(
        [m.grooving_similarity(a, b) for a, b in itertools.combinations(patterns, 2)]
    )
    assert m.grooving_pattern_similarity(onset) == pytest.approx(expected)


def test_gps_needs_two_non_empty_bars() -> None:
    onset = empty(4)
    place(onset, 3, 60)
    assert math.isnan(m.grooving_pattern_similarity(onset))


# --------------------------------------------------------------------------- SI


def periodic_ssm(n: int, period: int, penalty: float = -2.0) -> np.ndarray:
    lag = np.arange(n)[:, None] - np.arange(n)[None, :]
    return np.where(lag % period == 0, 1.0, penalty)


def test_fitness_of_a_block_repeated_four_times() -> None:
    ssm = periodic_ssm(16, 4)
    # A segment on a block line has 4 copies, paths of 4 cells each:
    # score_n = (16 - 4) / 16 and coverage_n = (16 - 4) / 16 -> fitness 0.75.
    four = m.segment_fitness(ssm, 4)
    assert four[[0, 4, 8, 12]] == pytest.approx(np.full(4, 0.75))
    assert four.max() == pytest.approx(0.75)
    # 8 bars: 2 copies of 8 cells -> (16 - 8) / 16 for both terms -> 0.5.
    assert m.segment_fitness(ssm, 8)[[0, 4, 8]] == pytest.approx(np.full(3, 0.5))


def test_fitness_is_zero_without_repetition() -> None:
    ssm = np.full((12, 12), -2.0)
    np.fill_diagonal(ssm, 1.0)
    assert np.all(m.segment_fitness(ssm, 3) == 0.0)


def test_smoothing_averages_along_diagonals() -> None:
    rng = np.random.default_rng(0)
    sim = rng.random((6, 6))
    out = m.smooth_diagonals(sim, 3)
    for i, j in itertools.product(range(6), range(6)):
        cells = [sim[i + k, j + k] for k in (-1, 0, 1) if 0 <= i + k < 6 and 0 <= j + k < 6]
        assert out[i, j] == pytest.approx(np.mean(cells))


def random_piece(rng: np.random.Generator, bars: int) -> tuple[np.ndarray, np.ndarray]:
    onset = rng.random((bars * SPB, P)) < 0.015
    sustain = onset | (rng.random((bars * SPB, P)) < 0.03)
    return onset, sustain


def test_repeated_eight_bar_block_is_more_structured_than_random() -> None:
    rng = np.random.default_rng(1)
    block_on, block_sus = random_piece(rng, 8)
    repeated = (np.tile(block_on, (8, 1)), np.tile(block_sus, (8, 1)))
    noise = random_piece(rng, 64)
    for bar_range in ((3, 8), (8, 15)):
        si_repeated = m.structureness(*repeated, bar_range)
        si_noise = m.structureness(*noise, bar_range)
        assert si_repeated > 0.8
        assert si_repeated > si_noise + 0.3


def test_structure_survives_transposition() -> None:
    rng = np.random.default_rng(2)
    block_on, block_sus = random_piece(rng, 8)
    up_on, up_sus = np.roll(block_on, 5, axis=1), np.roll(block_sus, 5, axis=1)
    onset = np.concatenate([block_on, up_on, block_on, up_on])
    sustain = np.concatenate([block_sus, up_sus, block_sus, up_sus])
    assert m.structureness(onset, sustain, (8, 8)) > 0.6


def test_si_is_nan_for_a_piece_shorter_than_the_range() -> None:
    onset, sustain = random_piece(np.random.default_rng(0), 2)
    assert math.isnan(m.structureness(onset, sustain, (3, 8)))


# --------------------------------------------------------------------------- harmony, texture


def test_chord_tone_ratio_exact() -> None:
    onset = empty(1)
    chords = np.zeros((SPB, 12), dtype=np.uint8)
    chords[:8, [0, 4, 7]] = 1  # C major for half a bar, then no chord
    place(onset, 0, 60)  # C: chord tone
    place(onset, 2, 62)  # D: not
    place(onset, 4, 76)  # E: chord tone
    place(onset, 9, 65)  # F over no chord: not counted
    assert m.chord_tone_ratio(onset, chords) == pytest.approx(2 / 3)
    assert math.isnan(m.chord_tone_ratio(onset, np.zeros((SPB, 12))))


def test_in_key_ratio_major_and_minor() -> None:
    onset = empty(1)
    for step, pitch in enumerate((60, 62, 66)):  # C, D, F#
        place(onset, step, pitch)
    assert m.in_key_ratio(onset, (0, False)) == pytest.approx(2 / 3)
    minor = empty(1)
    for step, pitch in enumerate((57, 60, 68, 67)):  # A, C, G#, G in A minor
        place(minor, step, pitch)
    assert m.in_key_ratio(minor, (9, True)) == pytest.approx(3 / 4)


def test_empty_bars_polyphony_and_density() -> None:
    onset, sustain = empty(4), empty(4)
    for pitch in (60, 64):
        place(onset, 0, pitch)
        sustain[0:4, pitch - 21] = True
    for pitch in (48, 52, 55, 60):
        place(onset, 3 * SPB, pitch)
        sustain[3 * SPB : 3 * SPB + 2, pitch - 21] = True
    sustain[SPB : SPB + 3, C4] = True  # bar 1 only holds a note: not empty
    assert m.empty_bar_ratio(onset, sustain) == pytest.approx(1 / 4)
    # sounding counts per busy step: 2,2,2,2 (bar 0), 1,1,1 (bar 1), 4,4 (bar 3)
    assert m.polyphony(onset, sustain) == pytest.approx((8 + 3 + 8) / 9)
    assert m.onsets_per_bar(onset) == pytest.approx(6 / 4)


def test_partial_bar_is_padded() -> None:
    onset = np.zeros((20, P), dtype=bool)
    onset[[0, 18], C4] = True
    assert m.onsets_per_bar(onset) == 1.0


def test_non_binary_rolls_are_refused() -> None:
    model_output = np.full((SPB, P), -1.0)
    with pytest.raises(ValueError, match="binary"):
        m.pitch_class_entropy(model_output)


# --------------------------------------------------------------------------- alignment, correlation


def test_cut_alignment_counts_cuts_within_tolerance() -> None:
    share = m.cut_alignment([1.0, 5.2, 9.0], [0.0, 1.1, 4.0, 8.0], tolerance_s=0.5)
    assert share == pytest.approx(1 / 3)
    assert math.isnan(m.cut_alignment([], [1.0], 0.5))
    assert m.cut_alignment([1.0], [], 0.5) == 0.0


def test_spearman_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(4)
    x = rng.integers(0, 5, 30).astype(float)
    y = x + rng.normal(0, 2, 30)
    assert m.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert m.spearman([1, 2, 3], [1, 8, 27]) == pytest.approx(1.0)
    assert m.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(m.spearman([1, 1, 1], [1, 2, 3]))


def test_density_motion_correlation_and_control_correlations() -> None:
    onset = empty(6)
    starts = [0, 2 * SPB, 4 * SPB]  # three 2-bar segments with 2, 8 and 4 onsets
    for k, step in enumerate(range(0, 2 * SPB, 16)):
        place(onset, step, 60 + k)
    for step in range(2 * SPB, 4 * SPB, 4):
        place(onset, step, 60)
    for step in range(4 * SPB, 6 * SPB, 8):
        place(onset, step, 60)
    assert m.segment_onset_density(onset, starts) == pytest.approx([1.0, 4.0, 2.0])
    assert m.density_motion_correlation(onset, starts, [0.1, 0.9, 0.5]) == pytest.approx(1.0)
    corr = m.control_correlations(
        {"density": [0, 1, 2], "register": [1, 2, 3]}, {"density": [5, 3, 1]}
    )
    assert corr == {"density": pytest.approx(-1.0)}


# --------------------------------------------------------------------------- per piece, aggregate


def test_piece_metrics_without_harmony_has_nan_chord_metrics() -> None:
    onset, sustain = random_piece(np.random.default_rng(5), 16)
    values = m.piece_metrics(onset, sustain)
    assert math.isnan(values["chord_tone_ratio"]) and math.isnan(values["in_key_ratio"])
    assert values["bars"] == 16.0
    assert 0 < values["pche"] <= math.log2(12)
    assert 0 <= values["gps"] <= 1 and 0 <= values["si_bar_short"] <= 1


def test_aggregate_skips_nan() -> None:
    summary = m.aggregate([{"a": 1.0, "b": math.nan}, {"a": 3.0, "b": 2.0}])
    assert summary["a"] == m.MetricSummary(2.0, 1.0, 2)
    assert summary["b"] == m.MetricSummary(2.0, 0.0, 1)
    assert "| a | 2.000 ± 1.000 | 2 |" in m.format_table(summary)


# --------------------------------------------------------------------------- real data, CLI


def test_parse_song_range() -> None:
    assert parse_song_range("801-803,9") == ["801", "802", "803", "009"]


def test_pop909_songs_look_like_real_music(
    pop909_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--pop909", str(pop909_dir), "--songs", "801-802"]) == 0
    table = capsys.readouterr().out
    rows = {
        line.split("|")[1].strip(): float(line.split("|")[2].split("±")[0])
        for line in table.splitlines()
        if line.startswith("| ") and "±" in line and "mean" not in line
    }
    assert 2.0 < rows["pche"] < 3.3
    assert rows["chord_tone_ratio"] > 0.7
    assert rows["in_key_ratio"] > 0.8
    assert rows["gps"] > 0.5
    assert "2 pieces measured" in table


def test_cli_on_a_folder_of_midi_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    midi.key_signature_changes.append(pretty_midi.KeySignature(0, 0.0))  # C major
    piano = pretty_midi.Instrument(program=0)
    for beat in range(32):  # 8 bars, one note per beat, C major arpeggio
        pitch = (60, 64, 67, 72)[beat % 4]
        piano.notes.append(pretty_midi.Note(90, pitch, beat * 0.5, beat * 0.5 + 0.4))
    midi.instruments.append(piano)
    midi.write(str(tmp_path / "arpeggio.mid"))
    assert main([str(tmp_path), "--csv", str(tmp_path / "out.csv")]) == 0
    out = capsys.readouterr().out
    assert "| in_key_ratio | 1.000 ± 0.000 | 1 |" in out
    assert "| gps | 1.000 ± 0.000 | 1 |" in out
    assert "| onsets_per_bar | 4.000 ± 0.000 | 1 |" in out
    assert (tmp_path / "out.csv").read_text().startswith("piece,pche,gps")


def test_per_bar_si_is_si_bar_and_old_reports_still_read() -> None:
    from diffbgm.metrics import current_metric_name, metric_from

    onset = np.zeros((16 * 12, 88), dtype=bool)
    onset[::4, 39] = True
    values = m.piece_metrics(onset, onset)
    assert "si_bar_short" in values and "si_short" not in values  # not MusDr's SI
    assert current_metric_name("si_mid") == "si_bar_mid"
    assert metric_from({"si_short": 0.4}, "si_bar_short") == 0.4
    assert metric_from({"si_bar_short": 0.5, "si_short": 0.4}, "si_bar_short") == 0.5
    with pytest.raises(KeyError):
        metric_from({}, "si_bar_mid")
