"""Pieces in 16th-note figures: double time (every beat written as two, then put back), the
figured network, and the benchmarks that find such songs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from diffbgm.controls import (
    DYNAMIC_CONTROLS,
    FIGURATION_FEATURE,
    SEMANTIC_CONTROLS,
    TEMPO_FEATURE,
    global_features,
    tempo_feature,
    typical_figuration,
)
from diffbgm.errors import GenerationError
from diffbgm.generation import GenerationConfig, KnownMusic, generate_roll
from diffbgm.generation.decoding import DecodedRoll
from diffbgm.generation.double_time import (
    asks_for_figures,
    doubled_conditions,
    doubled_known,
    halved_notes,
    halved_raw,
    halved_recall,
    piece_figuration,
    piece_tempo_bpm,
)
from diffbgm.model.conditions import PieceConditions
from diffbgm.music.calibration import Calibration

REPO = Path(__file__).resolve().parents[1]
DENSITY = DYNAMIC_CONTROLS.index("density")
REGISTER = DYNAMIC_CONTROLS.index("register")
HARMONIC_RHYTHM = SEMANTIC_CONTROLS.index("harmonic_rhythm")


def _piece(figuration: float | None, tempo_bpm: float = 60.0, n_bars: int = 4) -> PieceConditions:
    """Two segments of two bars; the global features of a song at `tempo_bpm` with
    `figuration` of its onsets on the odd 16ths (None: an old plan that tells neither)."""
    steps = n_bars * 16
    chords = np.zeros((steps, 12), dtype=np.float32)
    chords[: steps // 2, [0, 4, 7]] = 1.0  # C major, then A minor
    chords[steps // 2 :, [9, 0, 4]] = 1.0
    dynamic = np.array([[0.3, 0.5, 0.6, 0.5], [0.8, 0.5, 0.4, 0.5]], dtype=np.float32)
    semantic = np.full((2, len(SEMANTIC_CONTROLS)), 0.5, dtype=np.float32)
    global_ = np.asarray(
        global_features(0, False, tempo_bpm=tempo_bpm, figuration=figuration or 0.0),
        dtype=np.float32,
    )
    if figuration is None:
        global_ = global_[:TEMPO_FEATURE]  # the key and the way of playing only
    return PieceConditions(
        chord_pcs=chords,
        segment_ids=np.repeat([0, 1], steps // 2).astype(np.int64),
        dynamic=dynamic,
        semantic=semantic,
        global_=global_,
        recalls=np.array([-1, 0]),
    )


def test_only_a_piece_asking_for_enough_figures_is_composed_in_double_time() -> None:
    assert piece_tempo_bpm(_piece(0.4, 60.0)) == pytest.approx(60.0)
    assert piece_figuration(_piece(0.4)) == pytest.approx(0.4)
    assert asks_for_figures(_piece(0.4), 0.25)
    assert asks_for_figures(_piece(0.25), 0.25)
    assert not asks_for_figures(_piece(0.1), 0.25)
    assert not asks_for_figures(_piece(0.4), 0.0)  # off
    assert piece_figuration(_piece(None)) is None and piece_tempo_bpm(_piece(None)) is None
    assert not asks_for_figures(_piece(None), 0.25)


def test_doubled_conditions_last_twice_as_long_and_ask_for_half_the_events_a_bar() -> None:
    calibration = Calibration.load()
    piece = _piece(0.4, 60.0)
    long = doubled_conditions(piece, calibration)
    assert long.n_steps == 2 * piece.n_steps
    assert np.array_equal(long.chord_pcs[::2], piece.chord_pcs)
    assert np.array_equal(long.chord_pcs[1::2], piece.chord_pcs)
    assert np.array_equal(long.segment_ids[1::2], piece.segment_ids)
    asked = calibration.to_raw("density", piece.dynamic[:, DENSITY].astype(np.float64))
    told = calibration.to_raw("density", long.dynamic[:, DENSITY].astype(np.float64))
    assert np.allclose(told, np.asarray(asked) / 2, rtol=1e-3)
    changes = calibration.to_raw("harmonic_rhythm", piece.semantic[:, HARMONIC_RHYTHM])
    halved = calibration.to_raw("harmonic_rhythm", long.semantic[:, HARMONIC_RHYTHM])
    assert np.all(np.asarray(halved) < np.asarray(changes))
    # per step or per note: the register, the key, the recalls keep their values
    assert np.array_equal(long.dynamic[:, REGISTER], piece.dynamic[:, REGISTER])
    assert np.array_equal(long.global_[:TEMPO_FEATURE], piece.global_[:TEMPO_FEATURE])
    assert long.global_[TEMPO_FEATURE] == pytest.approx(tempo_feature(120.0))
    assert long.global_[FIGURATION_FEATURE] == pytest.approx(typical_figuration(120.0))
    assert long.recalls is not None and piece.recalls is not None
    assert np.array_equal(long.recalls, piece.recalls)


def test_segment_features_that_are_not_pop909_controls_are_only_stretched() -> None:
    """A BGM909 model's segments carry video features, not per-bar counts."""
    from dataclasses import replace

    rng = np.random.default_rng(0)
    piece = replace(
        _piece(0.4),
        dynamic=rng.random((2, 512)).astype(np.float32),
        semantic=rng.random((2, 768)).astype(np.float32),
    )
    long = doubled_conditions(piece, Calibration.load())
    assert np.array_equal(long.dynamic, piece.dynamic)
    assert np.array_equal(long.semantic, piece.semantic)
    assert long.n_steps == 2 * piece.n_steps


def _notes(steps: int, notes: list[tuple[int, int, int]]) -> DecodedRoll:
    onset = np.zeros((steps, 88), dtype=bool)
    sustain = np.zeros_like(onset)
    for start, end, pitch in notes:
        onset[start, pitch] = True
        sustain[start:end, pitch] = True
    return DecodedRoll(onset, sustain)


def test_halved_notes_keep_their_place_and_length_on_the_piece_grid() -> None:
    composed = _notes(
        32,
        [
            (0, 4, 40),  # a quarter of the composed grid: an 8th of the piece
            (2, 3, 52),  # the composed 8th off-beat: the piece's odd 16th
            (15, 17, 60),  # between two steps of the piece: to the earlier one
            (16, 24, 60),  # the next note of that pitch, on the beat
            (20, 21, 64),  # two composed 16ths of a pitch that start together on the piece
            (21, 26, 64),  # grid: one note, the longer
        ],
    )
    assert halved_notes(composed).notes() == [
        (0, 2, 40),
        (1, 2, 52),
        (7, 8, 60),
        (8, 12, 60),
        (10, 13, 64),
    ]


def test_known_music_doubled_and_halved_is_the_same_music() -> None:
    music = _notes(16, [(0, 4, 40), (1, 2, 52), (3, 4, 52), (6, 16, 70), (15, 16, 30)])
    keep = np.zeros(16, dtype=bool)
    keep[:8] = True
    known = KnownMusic.from_notes(music.onset, music.sustain, keep)
    roll, mask = doubled_known(known.roll, known.mask)
    assert roll.shape == (2, 32, 88) and mask.shape == (2, 32, 88)
    assert mask[:, :16].all() and not mask[:, 16:].any()
    long = DecodedRoll(roll[0] > 0, roll[1] > 0)
    assert halved_notes(long).notes() == music.notes()
    step_mask = doubled_known(known.roll, keep.astype(np.float32))[1]
    assert np.array_equal(step_mask, np.repeat(keep, 2).astype(np.float32))


def test_halved_raw_takes_the_larger_value_of_each_pair() -> None:
    raw = np.full((2, 6, 88), -1.0, dtype=np.float32)
    raw[0, 1, 5] = 0.7
    raw[1, 4, 5] = 0.2
    halved = halved_raw(raw)
    assert halved.shape == (2, 3, 88)
    assert halved[0, 0, 5] == pytest.approx(0.7) and halved[1, 2, 5] == pytest.approx(0.2)
    assert (halved[:, 1] == -1.0).all()


@pytest.fixture(scope="module")
def tiny():  # type: ignore[no-untyped-def]
    from diffbgm.checkpoint import load_checkpoint

    return load_checkpoint(str(REPO / "checkpoints" / "diffbgm-tiny"))


def test_a_figured_piece_is_composed_twice_as_long_and_comes_back_on_its_grid(tiny) -> None:  # type: ignore[no-untyped-def]
    piece = _piece(0.4)
    plain = tiny.generation.with_overrides(steps=3, double_time_from=0.0)
    doubled = plain.with_overrides(double_time_from=0.25)
    calls: dict[str, list[int]] = {"plain": [], "doubled": []}
    normal = generate_roll(
        tiny, piece, plain, seed=2, progress=lambda d, t: calls["plain"].append(t)
    )
    figured = generate_roll(
        tiny, piece, doubled, seed=2, progress=lambda d, t: calls["doubled"].append(t)
    )
    assert figured.onset.shape == normal.onset.shape == (piece.n_steps, 88)
    assert figured.raw.shape == normal.raw.shape
    assert calls["doubled"][-1] > calls["plain"][-1]  # more windows sampled
    assert not np.array_equal(figured.onset, normal.onset)
    # a piece asking for fewer figures is not doubled by the same setting
    plainer = _piece(0.1)
    assert np.array_equal(
        generate_roll(tiny, plainer, doubled, seed=2).onset,
        generate_roll(tiny, plainer, plain, seed=2).onset,
    )


def test_the_setting_is_a_generation_knob() -> None:
    assert GenerationConfig().double_time_from == 0.0
    assert GenerationConfig().with_setting("dpm:10:double_time_from=0.3").double_time_from == 0.3


def test_the_figured_songs_benchmark_counts_each_group_of_songs_apart() -> None:
    from tests.scripts import load_script

    bench = load_script("benchmarks/figured_songs.py")
    per_song = {"843": [10, 10, 6, 10], "851": [1, 10, 9, 10], "852": [5, 10, 5, 10]}
    realism = {
        kind: {"generated vs real": {c: {"per_song": per_song} for c in bench.CLASSIFIERS}}
        for kind in bench.KINDS
    }
    told = bench.told_by_group({"realism": realism}, figured={"843", "852"})
    assert set(told) == {(k, c) for k in bench.KINDS for c in bench.CLASSIFIERS}
    figured, rest = told[("with velocities", "forest")]
    assert figured == pytest.approx((16 + 10) / 40) and rest == pytest.approx(10 / 20)


def test_beat_positions_tells_8ths_16th_figures_and_triplets_apart() -> None:
    from tests.scripts import load_script

    bench = load_script("benchmarks/beat_positions.py")

    def roll(steps_in_beat: tuple[int, ...], beats: int = 16) -> np.ndarray:
        onset = np.zeros((beats * 4, 88), dtype=bool)
        for beat in range(beats):
            for k in steps_in_beat:
                onset[beat * 4 + k, 40 + k] = True
        return onset

    eighths = bench.beat_position_shares(roll((0, 2)))
    assert eighths == pytest.approx([0.5, 0.0, 0.5, 0.0])
    assert bench.beat_feel(eighths) == "8ths"
    sixteenths = bench.beat_position_shares(roll((0, 1, 2, 3)))
    assert bench.beat_feel(sixteenths) == "16ths"
    # triplet 8ths (0, 1/3, 2/3 of a beat) land on steps 0, 1 and 3
    triplets = bench.beat_position_shares(roll((0, 1, 3)))
    assert triplets == pytest.approx([1 / 3, 1 / 3, 0.0, 1 / 3])
    assert bench.beat_feel(triplets) == "triplets"
    assert bench.beat_position_shares(np.zeros((8, 88), dtype=bool)).sum() == 0.0


def _with_figured_network(tmp_path: Path, changed: bool = True) -> Path:
    """The tiny checkpoint with a figured/ network: its own weights, nudged where `changed`."""
    import shutil

    import torch

    from diffbgm.checkpoint import FIGURED_FOLDER, load_checkpoint, save_checkpoint
    from tests.test_generation import TINY

    folder = tmp_path / "tiny-with-figured"
    shutil.copytree(TINY, folder)
    tiny = load_checkpoint(TINY)
    if changed:
        with torch.no_grad():
            for parameter in tiny.model.parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))
    save_checkpoint(folder / FIGURED_FOLDER, tiny.model, tiny.config, tiny.extra)
    return folder


def test_a_figured_piece_is_composed_by_the_figured_network_where_asked(tmp_path: Path) -> None:
    from diffbgm.checkpoint import load_checkpoint, networks_sha256
    from tests.test_generation import TINY

    folder = _with_figured_network(tmp_path)
    loaded = load_checkpoint(folder)
    assert loaded.figured is not None and loaded.figured.weak is loaded.weak
    assert networks_sha256(folder) == networks_sha256(TINY)  # the default networks alike
    config = GenerationConfig(steps=4, figured_network_from=0.25)
    plain = replace(config, figured_network_from=0.0)
    figured, slow_plain = _piece(0.4), _piece(0.1)

    def notes(model, piece, settings):  # type: ignore[no-untyped-def]
        return generate_roll(model, piece, settings, seed=3).notes.onset

    own = load_checkpoint(TINY)
    # a figured piece: the figured network's music; a plainer one or the knob off: the parent's
    assert not np.array_equal(notes(loaded, figured, config), notes(own, figured, plain))
    assert np.array_equal(notes(loaded, figured, plain), notes(own, figured, plain))
    assert np.array_equal(notes(loaded, slow_plain, config), notes(own, slow_plain, plain))
    with pytest.raises(GenerationError, match="needs a figured network"):
        generate_roll(own, figured, config, seed=3)
    from trainer.evaluate import apply_ablation

    ablated, _ = apply_ablation(loaded, "no-sac", config)  # an ablation switches both networks
    assert ablated.figured is not None and not ablated.figured.config.sac


def test_a_figured_network_must_read_what_its_parent_reads(tmp_path: Path) -> None:
    import json

    from diffbgm.checkpoint import FIGURED_FOLDER, load_checkpoint
    from diffbgm.errors import CheckpointError

    folder = _with_figured_network(tmp_path, changed=False)
    meta_path = folder / FIGURED_FOLDER / "config.json"
    meta = json.loads(meta_path.read_text())
    meta["model"]["pitch_low"] += 1  # notes a semitone off: not the parent's roll
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="pitch_low"):
        load_checkpoint(folder)


def test_the_recall_record_is_halved_as_the_notes_are() -> None:
    # composed steps 8-11 recall 0-3 (up 2) and step 12 recalls 5; 13 composed steps are a
    # piece of 7 (its last step has one composed step)
    source = np.full(13, -1, dtype=np.int64)
    source[8:12] = np.arange(4)
    source[12] = 5
    semitones = np.where(source >= 0, 2, 0)
    halved, shift = halved_recall(source, semitones)
    np.testing.assert_array_equal(halved, [-1, -1, -1, -1, 0, 1, 2])
    np.testing.assert_array_equal(shift, [0, 0, 0, 0, 2, 2, 2])
    late = np.full(4, -1, dtype=np.int64)
    late[3] = 1  # only the second composed step of piece step 1 recalls
    np.testing.assert_array_equal(halved_recall(late, np.zeros(4, dtype=np.int64))[0], [-1, 0])
