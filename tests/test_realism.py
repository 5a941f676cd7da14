"""The realism test: window features on known rolls, and the grouped two-sample test."""

from __future__ import annotations

import numpy as np
import pytest

from diffbgm.realism import (
    FEATURE_GROUPS,
    RealismConfig,
    WindowSet,
    feature_differences,
    feature_names,
    group_tests,
    grouped_folds,
    note_lengths,
    piece_windows,
    realism_report,
    split_by_parity,
    two_sample_test,
    window_features,
)

LOW = 21  # pitch index 0 = MIDI 21


def _features(onset: np.ndarray, sustain: np.ndarray, velocity=None) -> dict[str, float]:  # type: ignore[no-untyped-def]
    values = window_features(onset, sustain, velocity, RealismConfig())
    return dict(zip(feature_names(velocity is not None), values, strict=True))


def _triads(pitches: tuple[int, ...], length: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """4 bars: the chord struck on every downbeat, held `length` sixteenths."""
    onset = np.zeros((64, 88), dtype=bool)
    sustain = np.zeros((64, 88), dtype=bool)
    for bar in range(4):
        for pitch in pitches:
            onset[bar * 16, pitch - LOW] = True
            sustain[bar * 16 : bar * 16 + length, pitch - LOW] = True
    return onset, sustain


def test_window_features_of_a_known_roll() -> None:
    onset, sustain = _triads((60, 64, 67))  # C major triad on every downbeat, a quarter long
    f = _features(onset, sustain)
    assert f["onset_pos_00"] == 1.0 and f["onset_pos_04"] == 0.0
    assert f["onsets_per_bar"] == 3.0
    assert f["notes_per_onset_mean"] == 3.0 and f["notes_per_onset_std"] == 0.0
    assert f["single_note_onset_share"] == 0.0
    assert f["note_length_mean"] == 4.0 and f["short_note_share"] == 0.0
    assert f["polyphony_mean"] == 3.0 and f["silent_step_share"] == 0.75
    assert (f["pitch_min"], f["pitch_max"]) == (60.0, 67.0)
    assert f["pitch_mean"] == pytest.approx(191 / 3)
    assert (f["bass_mean"], f["top_mean"]) == (60.0, 67.0)
    # pairs C-E (4), C-G (7), E-G (3): one third each
    for ic in (3, 4, 7):
        assert f[f"harmonic_ic_{ic:02d}"] == pytest.approx(1 / 3)
    assert f["harmonic_ic_00"] == 0.0
    assert f["melodic_repeat_share"] == 1.0 and f["melodic_step_mean"] == 0.0
    assert f["octave_doubling_share"] == 0.0


def test_octave_doublings_melodic_steps_and_velocities() -> None:
    onset, sustain = _triads((48, 60, 64))  # C3 doubled at C4
    onset[8, 62 - LOW] = True  # a D4 on beat 3 of the first bar, one sixteenth long
    sustain[8, 62 - LOW] = True
    velocity = np.where(onset, 80, 0).astype(np.uint8)
    velocity[8, 62 - LOW] = 50
    f = _features(onset, sustain, velocity)
    assert f["octave_doubling_share"] == 1.0  # every chord (the D alone is no chord)
    assert f["harmonic_ic_00"] > 0
    # top voice: E4 D4 E4 E4 E4 -> steps 2, 2, 0, 0
    assert f["melodic_step_mean"] == 1.0
    assert f["melodic_stepwise_share"] == 0.5 and f["melodic_repeat_share"] == 0.5
    assert f["single_note_onset_share"] == pytest.approx(1 / 5)
    assert f["velocity_distinct"] == 2.0
    assert f["velocity_mean"] == pytest.approx((12 * 80 + 50) / 13)


def test_note_lengths_end_at_a_new_onset_of_the_same_pitch() -> None:
    onset = np.zeros((16, 4), dtype=bool)
    sustain = np.zeros((16, 4), dtype=bool)
    onset[[0, 3], 1] = True
    sustain[0:8, 1] = True  # re-struck at step 3: two notes, 3 and 5 steps
    assert note_lengths(onset, sustain).tolist() == [3.0, 5.0]


def test_piece_windows_skip_near_silent_windows_and_partial_ones() -> None:
    onset, sustain = _triads((60, 64, 67))
    silent = np.zeros((64, 88), dtype=bool)
    piece_on = np.concatenate([onset, silent, onset[:32]])  # 2.5 windows, the middle silent
    piece_sus = np.concatenate([sustain, silent, sustain[:32]])
    windows = piece_windows(piece_on, piece_sus)
    assert windows.shape == (1, len(feature_names(False)))


def _sample(rng: np.random.Generator, songs: list[str], shift: float) -> tuple[np.ndarray, list]:  # type: ignore[type-arg]
    rows, groups = [], []
    for song in songs:
        centre = rng.normal(0, 0.5, size=6)  # songs differ a little from each other
        rows.append(centre + shift + rng.normal(size=(8, 6)))
        groups += [song] * 8
    return np.vstack(rows), groups


def test_two_sample_test_is_chance_on_one_distribution_and_perfect_on_two() -> None:
    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(6)]
    songs_a = [f"a{i}" for i in range(16)]
    songs_b = [f"b{i}" for i in range(16)]
    a, ga = _sample(rng, songs_a, 0.0)
    same, gs = _sample(rng, songs_b, 0.0)
    apart, gb = _sample(rng, songs_b, 3.0)
    for kind in ("logistic", "forest"):
        chance = two_sample_test(a, ga, same, gs, names, kind)
        assert abs(chance.accuracy - 0.5) < 0.15, (kind, chance)
        told = two_sample_test(a, ga, apart, gb, names, kind)
        assert told.accuracy > 0.95, (kind, told)
        assert told.folds == 5 and told.windows_a == told.windows_b == 128
        assert len(told.top_features) == 5


def test_two_sample_test_counts_held_out_windows_per_song() -> None:
    rng = np.random.default_rng(2)
    names = [f"f{i}" for i in range(6)]
    a, ga = _sample(rng, [f"{i:03d}" for i in range(12)], 0.0)
    b, gb = _sample(rng, [f"{i:03d}" for i in range(12)], 1.0)  # the same songs, shifted
    result = two_sample_test(a, ga, b, gb, names, "logistic")
    assert sorted(result.per_song) == [f"{i:03d}" for i in range(12)]
    counts = np.array(list(result.per_song.values()))  # (songs, 4)
    assert (counts[:, 1] == 8).all() and (counts[:, 3] == 8).all()  # every window held out once
    assert (counts[:, 0] <= counts[:, 1]).all() and (counts[:, 2] <= counts[:, 3]).all()
    # pooled over songs, the held-out counts give the balanced accuracy the folds average
    pooled = 0.5 * (
        counts[:, 0].sum() / counts[:, 1].sum() + counts[:, 2].sum() / counts[:, 3].sum()
    )
    assert pooled > 0.6
    assert abs(pooled - result.accuracy) < 0.05


def test_grouped_folds_never_put_a_song_in_train_and_test() -> None:
    # generated and real windows of the same song share the song's group
    groups = np.array([f"{s:03d}" for s in range(10) for _ in range(8)] * 2)
    labels = np.repeat([0, 1], 80)
    folds = grouped_folds(labels, groups, 5, seed=0)
    assert len(folds) == 5
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(160))  # every window tested once
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])


def test_realism_report_has_the_floor_of_even_against_odd_songs() -> None:
    rng = np.random.default_rng(1)
    names = feature_names(False)
    real, generated = WindowSet(names), WindowSet(names)
    for song in range(801, 813):
        real.add(str(song), rng.normal(size=(4, len(names))))
        generated.add(str(song), rng.normal(2.0, 1.0, size=(4, len(names))))
    report = realism_report(real, generated, RealismConfig(trees=20))
    assert set(report) == {"generated vs real", "real vs real (floor)"}
    assert report["generated vs real"]["logistic"].accuracy > 0.9
    assert report["real vs real (floor)"]["forest"].songs == 12
    assert split_by_parity(["802", "801", "803"]) == (["802"], ["801", "803"])


def test_feature_differences_name_the_shifted_features_in_their_own_units() -> None:
    rng = np.random.default_rng(2)
    names = feature_names(False)
    real, generated = WindowSet(names), WindowSet(names)
    real.add("801", rng.normal(size=(400, len(names))))
    shifted = rng.normal(size=(400, len(names)))
    top, bass = names.index("top_mean"), names.index("bass_mean")
    shifted[:, top] -= 1.5  # a lower top voice
    shifted[:, bass] += 0.8  # a higher bass
    generated.add("802", shifted)
    found = feature_differences(real, generated, top=2)
    assert [f.name for f in found] == ["top_mean", "bass_mean"]
    assert found[0].d == pytest.approx(-1.5, abs=0.25) and found[1].d == pytest.approx(0.8, abs=0.2)
    assert found[0].mean_b < found[0].mean_a
    assert feature_differences(real, WindowSet(names)) == []


def test_feature_groups_cover_every_feature_once() -> None:
    grouped = [name for members in FEATURE_GROUPS.values() for name in members]
    assert sorted(grouped) == sorted(feature_names(True))


def test_group_tests_find_the_aspect_that_gives_the_music_away() -> None:
    """Generated windows that differ from real only in their melody: the melody alone is told
    apart, every other group alone is chance, and without the melody nothing is told apart."""
    rng = np.random.default_rng(3)
    names = feature_names(True)
    real, generated = WindowSet(names), WindowSet(names)
    melody = [names.index(name) for name in FEATURE_GROUPS["melody"]]
    for song in range(8):
        real.add(f"{801 + song}", rng.normal(size=(20, len(names))))
        fake = rng.normal(size=(20, len(names)))
        fake[:, melody] += 2.0
        generated.add(f"{801 + song}", fake)
    results = {r.group: r for r in group_tests(real, generated, RealismConfig(trees=20))}
    assert set(results) == set(FEATURE_GROUPS)
    assert results["melody"].features == 4
    assert min(results["melody"].alone.values()) > 0.9
    assert max(results["melody"].without.values()) < 0.7
    for group in ("rhythm", "register", "velocity"):
        assert max(results[group].alone.values()) < 0.7
        assert min(results[group].without.values()) > 0.85
