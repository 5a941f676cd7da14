"""POP909 cache and training windows, on a small cache built from real songs."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from diffbgm.controls import (
    DYNAMIC_CONTROLS,
    FIGURATION_FEATURE,
    FIGURATION_MAX,
    N_GLOBAL_FEATURES,
    PLAYING_FEATURE,
    SEMANTIC_CONTROLS,
    TEMPO_FEATURE,
    tempo_feature,
)
from diffbgm.metrics import odd_16th_share
from diffbgm.model.conditions import Conditions
from diffbgm.music.roll import RollSpec
from tests.scripts import load_script
from trainer.cache import build_cache
from trainer.dataset import (
    EVEN_VELOCITY_SPREAD,
    Pop909Windows,
    collate_windows,
    is_played,
    load_cached_song,
    load_split,
    piece_conditions_for_song,
    shift_pitch,
    velocity_spread,
    way_of_playing,
)

SPEC = RollSpec()
SONGS = ["001", "002", "003", "034", "801", "802"]  # 034 is in 3/4: skipped


@pytest.fixture(scope="module")
def cache_dir(pop909_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cache")
    build_cache(pop909_dir, out, SPEC, songs=SONGS, workers=1, calibration_path=None)
    return out


def test_cache_index_and_arrays(cache_dir: Path) -> None:
    index = json.loads((cache_dir / "index.json").read_text())
    assert index["splits"] == {"train": ["001", "002", "003"], "valid": ["801", "802"]}
    assert list(index["skipped"]) == ["034"] and "4/4" in index["skipped"]["034"]
    with np.load(cache_dir / "songs" / "001.npz") as song:
        n_steps = song["onset"].shape[0]
        assert song["onset"].dtype == np.uint8 and song["sustain"].shape == (n_steps, 88)
        assert song["velocity"].dtype == np.uint8 and song["chord_pcs"].shape == (n_steps, 12)
        assert (
            song["bar_table"].shape[0]
            == song["bar_starts"].shape[0]
            == song["bar_segment"].shape[0]
        )
        assert song["segment_labels"].shape[0] == song["bar_segment"].max() + 1
    cal = json.loads((cache_dir / "calibration.json").read_text())
    assert all(len(v) == 101 for v in cal["quantiles"].values())


def test_item_shapes_and_values(cache_dir: Path) -> None:
    data = Pop909Windows(cache_dir, "train", SPEC, window_bars=4, max_segments=8)
    assert len(data) > 100
    item = data[len(data) // 2]
    roll, cond = item["roll"], item["cond"]
    assert isinstance(roll, np.ndarray) and roll.shape == (2, 64, 88) and roll.dtype == np.float32
    assert set(np.unique(roll)) <= {-1.0, 1.0}
    assert np.all(roll[0] <= roll[1])  # an onset always sounds
    assert cond.chord_pcs.shape == (64, 12) and cond.segment_ids.shape == (64,)
    assert cond.dynamic.shape == (8, len(DYNAMIC_CONTROLS))
    assert cond.semantic.shape == (8, len(SEMANTIC_CONTROLS))
    assert cond.global_.shape == (N_GLOBAL_FEATURES,)  # the key, the way of playing, the tempo


def test_windows_start_on_regular_bar_lines(cache_dir: Path) -> None:
    data = Pop909Windows(cache_dir, "train", SPEC, augment=False)
    songs = {s.song_id: s for s in load_split(cache_dir, "train")}
    for i in range(0, len(data), 7):
        item = data[i]
        song = songs[item["song_id"]]
        bar = item["bar"]
        start = int(song.bar_starts[bar])
        lengths = np.diff(np.append(song.bar_starts, song.n_steps))[bar : bar + 4]
        assert lengths.tolist() == [16, 16, 16, 16]
        expected = song.sustain[start : start + 64].astype(np.float32) * 2 - 1
        np.testing.assert_array_equal(np.asarray(item["roll"])[1], expected)


def test_transposition_moves_roll_chords_and_key_together(cache_dir: Path) -> None:
    plain = Pop909Windows(cache_dir, "train", SPEC, augment=False)
    augmented = Pop909Windows(cache_dir, "train", SPEC, augment=True, seed=3)
    shifts = set()
    for i in range(0, len(plain), 11):
        a, b = plain[i], augmented[i]
        ca, cb = a["cond"], b["cond"]
        shift = (int(np.argmax(cb.global_[:12])) - int(np.argmax(ca.global_[:12]))) % 12
        shift = shift - 12 if shift > 5 else shift
        shifts.add(shift)
        np.testing.assert_array_equal(cb.chord_pcs, np.roll(ca.chord_pcs, shift, axis=1))
        for channel in range(2):
            moved = shift_pitch(np.asarray(a["roll"])[channel] > 0, shift)
            np.testing.assert_array_equal(np.asarray(b["roll"])[channel] > 0, moved)
    assert len(shifts) > 3 and all(-5 <= s <= 5 for s in shifts)


def test_a_transposed_window_asks_for_the_register_of_its_notes(cache_dir: Path) -> None:
    # The register request of a training window is the mean pitch of its notes as they are
    # after the random transposition; read from the song before it, the request was up to 5
    # semitones off (more than half of POP909's spread of registers).
    register = DYNAMIC_CONTROLS.index("register")
    agreement = {}
    for augment in (False, True):
        data = Pop909Windows(cache_dir, "train", SPEC, augment=augment, seed=5)
        asked, sounding = [], []
        for i in range(0, len(data), 3):
            item = data[i]
            onsets = np.asarray(item["roll"])[0] > 0  # (T, P)
            cond = item["cond"]
            for slot in np.flatnonzero(cond.segment_mask):
                pitches = np.nonzero(onsets[cond.segment_ids == slot])[1]
                if (cond.segment_ids == slot).sum() >= 32 and len(pitches) >= 8:
                    asked.append(cond.dynamic[slot, register])
                    sounding.append(pitches.mean())
        assert len(asked) > 30
        agreement[augment] = spearmanr(asked, sounding)[0]
    # (the request covers the segment's whole bars, the window only some of them)
    assert agreement[False] > 0.8 and agreement[True] > agreement[False] - 0.05


def test_segments_renumbered_and_controls_in_unit_range(cache_dir: Path) -> None:
    data = Pop909Windows(cache_dir, "train", SPEC, augment=True, max_segments=8)
    n_segments = []
    for i in range(0, len(data), 5):
        cond = data[i]["cond"]
        ids = cond.segment_ids
        assert ids[0] == 0 and np.all(np.diff(ids) >= 0) and np.all(np.diff(ids) <= 1)
        n = int(ids.max()) + 1
        assert cond.segment_mask.tolist() == [True] * n + [False] * (8 - n)
        assert np.all(cond.dynamic >= 0) and np.all(cond.dynamic <= 1)
        assert np.all(cond.semantic >= 0) and np.all(cond.semantic <= 1)
        n_segments.append(n)
    # Augmentation cuts phrases: windows with 3+ segments appear though phrases are 4+ bars.
    assert max(n_segments) >= 3 and min(n_segments) == 1


def test_augmentation_changes_with_the_epoch(cache_dir: Path) -> None:
    data = Pop909Windows(cache_dir, "train", SPEC, augment=True)
    first = [data[i]["cond"].global_.argmax() for i in range(20)]
    again = [data[i]["cond"].global_.argmax() for i in range(20)]
    data.set_epoch(1)
    later = [data[i]["cond"].global_.argmax() for i in range(20)]
    assert first == again and first != later


def test_piece_conditions_for_song(cache_dir: Path) -> None:
    data = Pop909Windows(cache_dir, "valid", SPEC, augment=False)
    song = data.songs[0]
    phrases = piece_conditions_for_song(song, data.calibration, "phrases")
    bars = piece_conditions_for_song(song, data.calibration, "bars")
    assert phrases.n_steps == bars.n_steps == song.n_steps
    assert bars.dynamic.shape == (song.n_bars, 4) and phrases.dynamic.shape[0] == len(
        song.phrase_segments()
    )
    assert phrases.segment_ids[0] == 0 and phrases.segment_ids[-1] == phrases.dynamic.shape[0] - 1
    # Without augmentation a window's conditions are the song's phrase conditions cut out.
    item = data[10]
    start = int(song.bar_starts[item["bar"]])
    expected = phrases.window(start, 64, 8)
    np.testing.assert_allclose(item["cond"].dynamic, expected.dynamic, atol=1e-6)
    np.testing.assert_array_equal(item["cond"].segment_ids, expected.segment_ids)


def test_collate(cache_dir: Path) -> None:
    """Speed is measured by benchmarks/dataset.py, not here: timed tests flake on busy machines."""
    data = Pop909Windows(cache_dir, "train", SPEC)
    items = [data[i % len(data)] for i in range(200)]
    roll, cond = collate_windows(items[:16], SPEC)
    assert isinstance(cond, Conditions)
    assert roll.shape == (16, 2, 64, 88) and roll.dtype == torch.float32
    assert cond.chord.shape == (16, 1, 64, 88) and cond.segment_ids.dtype == torch.long
    assert cond.dynamic.shape == (16, 8, 4) and cond.semantic.shape == (16, 8, 6)


def test_windows_that_repeat_a_phrase_carry_the_music_they_repeat(cache_dir: Path) -> None:
    """With `recall`, each window step that repeats music from before the window carries that
    music (onset, sustain) and a 1 in the third channel; steps repeating nothing, or repeating
    music of the window itself (the sampler would not have it yet), carry zeros."""
    from diffbgm.generation.recall import recall_map

    plain = Pop909Windows(cache_dir, "train", SPEC, augment=False)
    windows = Pop909Windows(cache_dir, "train", SPEC, augment=False, recall=True)
    assert windows.recall_maps is not None and "recalled" not in plain[0]
    checked = 0
    for item in range(len(windows)):
        song_no, first_bar = (int(x) for x in windows.index[item])
        song = windows.songs[song_no]
        source, semitones = windows.recall_maps[song_no]
        piece = piece_conditions_for_song(song, windows.calibration, spec=SPEC)
        np.testing.assert_array_equal(source, recall_map(piece)[0])
        start = int(song.bar_starts[first_bar])
        src = source[start : start + windows.window_steps]
        recalled = windows[item]["recalled"]
        assert recalled is not None and recalled.shape == (3, windows.window_steps, SPEC.n_pitches)
        earlier = (src >= 0) & (src < start)
        np.testing.assert_array_equal(recalled[2, :, 0] == 1.0, earlier)
        assert not recalled[:, ~earlier].any()
        for step in np.flatnonzero(earlier & (semitones[start : start + len(src)] == 0)):
            np.testing.assert_array_equal(recalled[0, step] == 1.0, song.onset[src[step]])
            np.testing.assert_array_equal(recalled[1, step] == 1.0, song.sustain[src[step]])
            checked += 1
    assert checked > 100  # the songs do repeat their phrases
    _, cond = collate_windows([windows[0], windows[1]], SPEC)
    assert cond.recalled is not None and cond.recalled.shape == (2, 3, 64, SPEC.n_pitches)


def test_augmented_recalled_music_moves_with_the_window_or_is_left_out(cache_dir: Path) -> None:
    """Augmentation transposes the recalled music with the window's notes, and leaves it out
    of about a quarter of the windows that have some (the sampler has none where recall is
    off or its source is not composed yet)."""
    from trainer.dataset import RECALL_DROP_PROBABILITY

    exact = Pop909Windows(cache_dir, "train", SPEC, augment=False, recall=True)
    augmented = Pop909Windows(cache_dir, "train", SPEC, augment=True, recall=True, seed=4)
    kept = dropped = 0
    for item in range(0, len(exact)):
        reference = exact[item]["recalled"]
        assert reference is not None
        if not reference[2].any():
            continue
        window = augmented[item]
        recalled = window["recalled"]
        assert recalled is not None
        if not recalled.any():
            dropped += 1
            continue
        kept += 1
        shifts = [
            k
            for k in range(-5, 6)
            if np.array_equal(shift_pitch(exact[item]["roll"][0] > 0, k), window["roll"][0] > 0)
        ]
        assert any(np.array_equal(shift_pitch(reference[0], k), recalled[0]) for k in shifts), (
            f"window {item}: the recalled music is not moved with the notes"
        )
        np.testing.assert_array_equal(recalled[2], reference[2])
    share = dropped / (kept + dropped)
    assert kept > 20 and abs(share - RECALL_DROP_PROBABILITY) < 0.15


def test_velocity_spread_is_the_median_spread_of_four_bar_windows(cache_dir: Path) -> None:
    song = load_cached_song(next((cache_dir / "songs").glob("*.npz")))
    assert 0.0 < velocity_spread(song) < 40.0  # a real performance
    steps = 3 * 64 + 40  # three whole windows; the trailing 40 steps are no window
    onset = np.zeros((steps, song.onset.shape[1]), dtype=bool)
    onset[::2, 40] = True
    velocity = np.zeros(onset.shape, dtype=np.uint8)
    for window, half in enumerate((0, 10, 20)):  # alternating 80 -/+ half: std = half
        rows = np.arange(window * 64, window * 64 + 64, 2)
        velocity[rows, 40] = np.where(np.arange(rows.size) % 2 == 0, 80 - half, 80 + half)
    velocity[192::2, 40] = np.arange(20) * 6 + 1  # the partial window would spread widely
    played = replace(song, onset=onset, sustain=onset.copy(), velocity=velocity)
    assert velocity_spread(played) == pytest.approx(10.0)
    sparse = velocity.copy()
    sparse[128:192] = 0
    sparse_onset = onset.copy()
    sparse_onset[128:192] = False
    sparse_onset[[128, 130, 132], 40] = True  # three notes: too few to judge a window
    sparse[[128, 130, 132], 40] = (10, 70, 127)
    assert velocity_spread(replace(played, onset=sparse_onset, velocity=sparse)) == pytest.approx(
        5.0
    )  # the median of 0 and 10
    assert math.isnan(velocity_spread(replace(song, velocity=None)))


def test_performance_styles_counts_evenly_played_songs_by_range() -> None:
    styles = load_script("benchmarks/performance_styles.py")
    spreads = {5: 6.0, 50: 15.0, 120: 8.9, 805: 5.0, 806: 19.0, 840: 6.0, 841: float("nan")}
    table = styles.even_share_table(spreads, threshold=9.0)
    assert table == [("001-100", 1, 2), ("101-200", 1, 1), ("801-830", 1, 2), ("831-859", 1, 1)]


def test_is_played_sorts_songs_by_their_velocity_spread(cache_dir: Path) -> None:
    song = load_cached_song(next((cache_dir / "songs").glob("*.npz")))
    wide = velocity_spread(song) > EVEN_VELOCITY_SPREAD
    assert is_played(song, "all")
    assert is_played(song, "wide") == wide and is_played(song, "even") == (not wide)
    unknown = replace(song, velocity=None)
    assert is_played(unknown, "all") and not is_played(unknown, "even")
    assert not is_played(unknown, "wide")
    with pytest.raises(ValueError, match="playing must be one of"):
        is_played(song, "loud")
    # the velocity model's condition: one of the two ways, "even" without velocities
    assert way_of_playing(song) == ("wide" if wide else "even")
    assert way_of_playing(unknown) == "even"


def test_a_songs_conditions_carry_its_way_of_playing_tempo_and_figuration(
    cache_dir: Path,
) -> None:
    """The note network is told how the song is played, as the velocity model is (1 for a
    widely played song, 0 for an evenly played one), at what tempo, and how much of it moves
    in 16th-note figures (its own share of onsets on the odd 16ths, whatever its tempo)."""
    data = Pop909Windows(cache_dir, "train", SPEC, augment=False)
    for song in data.songs:
        piece = piece_conditions_for_song(song, data.calibration)
        assert piece.global_.shape == (N_GLOBAL_FEATURES,)
        assert piece.global_[PLAYING_FEATURE] == float(way_of_playing(song) == "wide")
        assert piece.global_[TEMPO_FEATURE] == pytest.approx(tempo_feature(song.tempo_bpm))
        evenly = piece_conditions_for_song(replace(song, velocity=None), data.calibration)
        assert evenly.global_[PLAYING_FEATURE] == 0.0
        others = np.arange(N_GLOBAL_FEATURES) != PLAYING_FEATURE
        assert np.array_equal(evenly.global_[others], piece.global_[others])
        slower = piece_conditions_for_song(
            replace(song, tempo_bpm=song.tempo_bpm / 2), data.calibration
        )
        assert slower.global_[TEMPO_FEATURE] == pytest.approx(
            max(tempo_feature(song.tempo_bpm) - 1.0, -1.0)
        )
        assert piece.global_[FIGURATION_FEATURE] == pytest.approx(odd_16th_share(song.onset))
        assert slower.global_[FIGURATION_FEATURE] == piece.global_[FIGURATION_FEATURE]
    figured = data.songs[0]
    onset = np.zeros_like(figured.onset)
    onset[1::2, 40] = True  # every onset on an odd 16th
    busy = piece_conditions_for_song(replace(figured, onset=onset), data.calibration)
    assert busy.global_[FIGURATION_FEATURE] == pytest.approx(FIGURATION_MAX)


def test_figuration_tempo_fits_the_line_the_app_tells(
    cache_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """benchmarks/figuration_tempo.py fits share against log2(tempo / 90) on the training songs
    and prints each split's songs beside the app's line."""
    from tests.scripts import load_script

    bench = load_script("benchmarks/figuration_tempo.py")
    monkeypatch.setattr("sys.argv", ["figuration_tempo.py", "--data", str(cache_dir)])
    bench.main()
    out = capsys.readouterr().out
    assert "fit on 3 training songs: share = " in out and "(the app: 0.129 -0.269" in out
    assert "train: 3 songs" in out and "valid: 2 songs" in out
