"""POP909 reader: one real song end to end, phrase alignment, bad annotation files, calibration."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from diffbgm.errors import AnnotationError, MidiError
from diffbgm.music.calibration import Calibration, CalibrationError
from diffbgm.music.pop909 import (
    BAR_COLUMNS,
    UNLABELLED,
    align_phrases,
    bar_segments,
    bar_table,
    load_song,
    place_phrases,
    read_phrase_labels,
    segment_raw_controls,
)


def test_load_song_001(pop909_dir: Path) -> None:
    song = load_song(pop909_dir / "001")
    beats = np.loadtxt(pop909_dir / "001" / "beat_midi.txt")
    first_downbeat = int(np.flatnonzero(beats[:, 2] > 0.5)[0])
    assert song.n_steps == 4 * (len(beats) - first_downbeat)
    assert song.step_times_s[0] == pytest.approx(beats[first_downbeat, 0])
    assert song.bar_starts[0] == 0 and np.all(np.diff(song.bar_starts) > 0)
    assert song.roll.onset.shape == (song.n_steps, 88) and song.chord_pcs.shape == (
        song.n_steps,
        12,
    )
    assert (song.key_tonic_pc, song.key_minor, song.tempo_bpm) == (6, False, 90.0)  # Gb:maj
    assert song.meter_beats == 4
    assert (
        song.melody_roll.onset.sum() > 100 and song.melody_roll.onset.sum() < song.roll.onset.sum()
    )
    # Phrases follow each other without gaps and stay inside the song.
    for before, after in zip(song.phrases, song.phrases[1:], strict=False):
        assert after.first_bar == before.first_bar + before.n_bars
    assert song.phrases[-1].first_bar + song.phrases[-1].n_bars <= song.n_bars
    assert song.phrases[0].letter == "i" and song.phrases[-1].letter == "o"


def test_bar_segments_and_controls(pop909_dir: Path) -> None:
    song = load_song(pop909_dir / "001")
    seg_of_bar, labels = bar_segments(song)
    assert seg_of_bar.shape == (song.n_bars,) and seg_of_bar.min() == 0
    assert np.all(np.diff(seg_of_bar) >= 0) and seg_of_bar.max() == len(labels) - 1
    assert len([x for x in labels if x != UNLABELLED]) == len(song.phrases)
    table = bar_table(song)
    assert table.shape == (song.n_bars, len(BAR_COLUMNS))
    assert table[:, BAR_COLUMNS.index("steps")].sum() == song.n_steps
    assert table[:, BAR_COLUMNS.index("onsets")].sum() == song.roll.onset.sum()
    raw = segment_raw_controls(table.sum(axis=0))
    assert 1 <= raw["velocity"] <= 127 and 21 <= raw["register"] <= 108
    assert 0 <= raw["minor_share"] <= 1 and raw["density"] > 0 and raw["polyphony"] > 0
    assert 0 < raw["harmonic_rhythm"] < 16


def test_alignment_prefers_the_offset_matching_the_melody() -> None:
    labels = [("i", 2), ("A", 3), ("b", 1)]
    melody = np.array([False, False, False, False, True, True, True, False])  # lead-in of 2 bars
    assert align_phrases(labels, melody, first_note_bar=0) == 2
    # Ties go to the offset nearest the first bar with notes.
    assert align_phrases([("A", 2)], np.array([True, True, True, True]), first_note_bar=1) == 1
    phrases = place_phrases(labels, 2, 7)
    assert [(p.letter, p.first_bar, p.n_bars) for p in phrases] == [("i", 2, 2), ("A", 4, 3)]


def test_phrase_labels_parse_and_reject(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("i4A4B8o3\n")
    assert read_phrase_labels(good) == [("i", 4), ("A", 4), ("B", 8), ("o", 3)]
    bad = tmp_path / "bad.txt"
    bad.write_text("i4A?B8")
    with pytest.raises(AnnotationError, match="bad.txt"):
        read_phrase_labels(bad)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("human_label1.txt", None, "human_label1.txt"),
        ("beat_midi.txt", "1.0 0 1\nnot a number\n", "beat_midi.txt"),
        ("chord_midi.txt", "0.0\t1.0\tC:blues\n", "chord_midi.txt"),
        ("analyzed_key.txt", "H:maj\n", "analyzed_key.txt"),
        ("tempo.txt", "fast\n", "tempo.txt"),
    ],
)
def test_bad_annotations_name_the_file(
    pop909_dir: Path, tmp_path: Path, name: str, content: str | None, match: str
) -> None:
    song_dir = tmp_path / "001"
    shutil.copytree(pop909_dir / "001", song_dir)
    if content is None:
        (song_dir / name).unlink()
    else:
        (song_dir / name).write_text(content)
    with pytest.raises(AnnotationError, match=match):
        load_song(song_dir)


def test_corrupt_midi_names_the_file(pop909_dir: Path, tmp_path: Path) -> None:
    song_dir = tmp_path / "001"
    shutil.copytree(pop909_dir / "001", song_dir)
    (song_dir / "001.mid").write_bytes(b"not a midi file")
    with pytest.raises(MidiError, match="001.mid"):
        load_song(song_dir)


def test_calibration_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cal = Calibration.fit({"density": rng.gamma(4.0, 5.0, 2000), "steps": np.array([1.0, 1, 1, 2])})
    q = cal.to_quantile("density", np.array([0.0, 20.0, 1e9]))
    assert q[0] == 0.0 and q[2] == 1.0 and 0.4 < q[1] < 0.7
    assert cal.to_quantile("density", cal.to_raw("density", 0.3)) == pytest.approx(0.3, abs=1e-6)
    assert isinstance(cal.to_quantile("density", 20.0), float)
    # A value repeated over many quantiles maps to the middle of its run.
    # ([1, 1, 1, 2] has the value 1 up to its 66 % quantile.)
    assert cal.to_quantile("steps", 1.0) == pytest.approx(0.33, abs=0.006)
    path = tmp_path / "cal.json"
    cal.save(path)
    loaded = Calibration.load(path)
    np.testing.assert_allclose(loaded.table("density"), cal.table("density"), atol=1e-5)
    with pytest.raises(CalibrationError):
        loaded.table("nope")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(CalibrationError, match="broken.json"):
        Calibration.load(tmp_path / "broken.json")


def test_shipped_calibration_has_the_controls() -> None:
    cal = Calibration.load()
    for name in ("density", "velocity", "register", "polyphony", "harmonic_rhythm"):
        assert np.all(np.diff(cal.table(name)) >= 0)
    assert 5 < cal.to_raw("density", 0.5) < 60
    assert 40 < cal.to_raw("register", 0.5) < 80


def test_odd_time_signature_is_refused_with_a_reason(pop909_dir: Path) -> None:
    """Song 034 is in a six-beat metre: the 4/4 training cache names it and says why."""
    from diffbgm.errors import DiffBGMError
    from diffbgm.music.roll import RollSpec
    from trainer.cache import song_arrays

    with pytest.raises(DiffBGMError, match=r"034: not in 4/4"):
        song_arrays(pop909_dir / "034", RollSpec())
