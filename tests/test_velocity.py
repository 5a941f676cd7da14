"""Learned velocities: features, the shipped model, sampling, the app's velocity functions,
and a training step on a tiny synthetic set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diffbgm.music.calibration import Calibration, quantile_levels
from diffbgm.outputs import notes_seed, rule_velocities, velocities_from_controls
from diffbgm.velocity import (
    DEFAULT_PLAYING,
    FEATURE_NAMES,
    PLAYINGS,
    ResidualConfig,
    load_velocity_model,
    note_features,
    note_lengths,
    save_velocity_model,
)

CALIBRATION = Calibration(tables={"velocity": np.linspace(40, 110, len(quantile_levels()))})


def small_piece(bars: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A plausible roll: a bass note per beat, a three-note chord on beats 1 and 3, a melody
    on eighths; (T, 88) onset and sustain."""
    rng = np.random.default_rng(seed)
    n_steps = bars * 16
    onset = np.zeros((n_steps, 88), dtype=bool)
    sustain = np.zeros_like(onset)
    for step in range(0, n_steps, 4):
        onset[step, 36 - 21] = True
        sustain[step : step + 4, 36 - 21] = True
    for step in range(0, n_steps, 8):
        for pitch in (48, 52, 55):
            onset[step, pitch - 21] = True
            sustain[step : step + 8, pitch - 21] = True
    for step in range(0, n_steps, 2):
        pitch = 67 + int(rng.integers(0, 8))
        onset[step, pitch - 21] = True
        sustain[step : step + 2, pitch - 21] = True
    return onset, sustain


def test_note_lengths_end_at_the_next_onset_or_silence() -> None:
    onset = np.zeros((8, 2), dtype=bool)
    sustain = np.zeros_like(onset)
    onset[[0, 3], 0] = True
    sustain[0:6, 0] = True  # struck again at step 3: the first note lasts 3 steps
    onset[1, 1] = True  # an onset without sustain lasts one step
    lengths = note_lengths(onset, sustain)
    assert lengths[0, 0] == 3 and lengths[3, 0] == 3 and lengths[1, 1] == 1
    assert lengths[~onset].sum() == 0


def test_note_features_describe_each_onset_in_its_chord() -> None:
    onset, sustain = small_piece(bars=2)
    control = np.full(onset.shape[0], 90.0)
    segments = np.repeat([0, 1], 16)
    steps, pitches, features = note_features(onset, sustain, control, segments)
    assert features.shape == (int(onset.sum()), len(FEATURE_NAMES))
    assert np.all(np.diff(steps) >= 0)
    column = {name: i for i, name in enumerate(FEATURE_NAMES)}
    first = steps == 0  # bass 36, chord 48 52 55 and a melody note
    assert features[first, column["chord_size"]].tolist() == [5 / 4] * 5
    assert features[first, column["is_bass"]].tolist() == [1, 0, 0, 0, 0]
    assert features[first, column["is_top"]].tolist() == [0, 0, 0, 0, 1]
    assert features[first, column["bar_pos_00"]].tolist() == [1] * 5
    assert np.allclose(features[:, column["control"]], (90 - 80) / 20)
    segment_share = features[:, column["segment_share"]]
    assert segment_share.min() == 0 and segment_share.max() <= 1


def test_the_shipped_model_loads_and_gives_onsets_velocities() -> None:
    model = load_velocity_model()
    onset, sustain = small_piece()
    control = np.full(onset.shape[0], 80.0)
    segments = np.zeros(onset.shape[0], dtype=np.int64)
    velocity = model.velocities(onset, sustain, control, segments, seed=3)
    assert velocity.shape == onset.shape and velocity.dtype == np.uint8
    assert (velocity[~onset] == 0).all() and (velocity[onset] >= 1).all()
    # a performance, not a rule: many values, and they change from note to note
    assert np.unique(velocity[onset]).size >= 8
    again = model.velocities(onset, sustain, control, segments, seed=3)
    other = model.velocities(onset, sustain, control, segments, seed=4)
    assert np.array_equal(velocity, again)
    assert not np.array_equal(velocity, other)


def test_a_louder_control_gives_louder_notes() -> None:
    model = load_velocity_model()
    onset, sustain = small_piece()
    segments = np.zeros(onset.shape[0], dtype=np.int64)
    means = []
    for level in (50.0, 75.0, 100.0):
        control = np.full(onset.shape[0], level)
        velocity = model.velocities(onset, sustain, control, segments, seed=0)
        means.append(float(velocity[onset].mean()))
    assert means[0] + 10 < means[1] < means[2] - 10, means


def test_app_velocities_follow_each_segments_control_and_the_notes_seed() -> None:
    onset, sustain = small_piece()
    segments = np.repeat([0, 1], onset.shape[0] // 2)
    quiet_loud = np.array([0.1, 0.9])
    velocity = velocities_from_controls(onset, sustain, segments, quiet_loud, CALIBRATION)
    half = onset.shape[0] // 2
    assert velocity[:half][onset[:half]].mean() + 15 < velocity[half:][onset[half:]].mean()
    # no seed given: taken from the notes, so the same notes get the same velocities
    again = velocities_from_controls(onset, sustain, segments, quiet_loud, CALIBRATION)
    assert np.array_equal(velocity, again)
    assert notes_seed(onset) == notes_seed(onset.copy())
    seeded = velocities_from_controls(onset, sustain, segments, quiet_loud, CALIBRATION, seed=1)
    assert not np.array_equal(velocity, seeded)


def test_the_old_rule_is_still_there_for_comparison() -> None:
    onset = np.zeros((32, 4), dtype=bool)
    onset[[0, 1, 2, 16], 0] = True
    sustain = onset.copy()
    segments, levels = np.repeat([0, 1], 16), np.array([0.0, 1.0])
    calibration = Calibration(tables={"velocity": np.linspace(40, 100, len(quantile_levels()))})
    rule = rule_velocities(onset, segments, levels, calibration)
    # segment levels 40 and 100; +8 on the beat, -8 on odd sixteenths, 0 in between
    assert rule[[0, 1, 2, 16], 0].tolist() == [48, 32, 40, 108]
    same = velocities_from_controls(onset, sustain, segments, levels, calibration, method="rule")
    assert np.array_equal(rule, same)
    with pytest.raises(ValueError, match="velocity method"):
        velocities_from_controls(onset, sustain, segments, levels, calibration, method="loud")  # type: ignore[arg-type]


def test_residual_settings_change_the_spread_not_the_level() -> None:
    model = load_velocity_model()
    onset, sustain = small_piece(bars=16)
    control = np.full(onset.shape[0], 80.0)
    segments = np.zeros(onset.shape[0], dtype=np.int64)
    flat = model.velocities(
        onset, sustain, control, segments, 0, residual=ResidualConfig(scale=0.0)
    )[onset]
    wide = model.velocities(
        onset, sustain, control, segments, 0, residual=ResidualConfig(scale=1.0)
    )[onset]
    assert flat.std() < wide.std()
    assert abs(float(flat.mean()) - float(wide.mean())) < 5


def test_a_training_step_runs_and_the_model_round_trips(tmp_path: Path) -> None:
    from trainer.velocity import NoteSet, VelocityTrainConfig, train_velocity

    def notes(seed: int) -> NoteSet:
        onset, sustain = small_piece(bars=4, seed=seed)
        control = np.full(onset.shape[0], 70.0 + 10 * seed)
        steps, pitches, features = note_features(
            onset, sustain, control, np.zeros(onset.shape[0], dtype=np.int64)
        )
        # a toy performance: louder on top, louder with the control, some noise
        rng = np.random.default_rng(seed)
        velocity = 60 + 10 * seed + 0.3 * pitches + rng.normal(0, 4, steps.size)
        return NoteSet(features, velocity.astype(np.float32), np.full(steps.size, seed), steps)

    train = NoteSet(
        *(
            np.concatenate(parts)
            for parts in zip(*(vars(notes(s)).values() for s in (0, 1, 2)), strict=True)
        )
    )
    config = VelocityTrainConfig(hidden=(8,), epochs=2, batch=64, lr=1e-2)
    model, figures = train_velocity(train, notes(3), config, tmp_path / "run", log=False)
    assert np.isfinite(figures["valid_nll"])
    assert len(model.config.residual.shape) == 101
    assert model.config.residual.scale == config.residual_scale
    assert model.config.wide_residual is not None  # measured on the wide songs, or as even
    assert (tmp_path / "run" / "last" / "state.json").is_file()
    save_velocity_model(model, tmp_path / "model")
    loaded = load_velocity_model(tmp_path / "model")
    features = notes(3).features
    assert np.allclose(model.predict(features)[0], loaded.predict(features)[0], atol=1e-4)
    # a rerun with the same epochs resumes from last/ and trains no further
    again, _ = train_velocity(train, notes(3), config, tmp_path / "run", log=False)
    assert np.allclose(again.predict(features)[0], model.predict(features)[0], atol=1e-5)


# --- the way of playing -------------------------------------------------------------------


def test_the_way_of_playing_is_an_input_of_every_note() -> None:
    onset, sustain = small_piece(bars=2)
    control, segments = np.full(onset.shape[0], 80.0), np.zeros(onset.shape[0], dtype=np.int64)
    column = FEATURE_NAMES.index("wide_playing")
    _, _, even = note_features(onset, sustain, control, segments)  # even by default
    _, _, wide = note_features(onset, sustain, control, segments, playing="wide")
    assert (even[:, column] == 0).all() and (wide[:, column] == 1).all()
    others = [i for i in range(len(FEATURE_NAMES)) if i != column]
    assert np.array_equal(even[:, others], wide[:, others])
    with pytest.raises(ValueError, match="playing must be one of even, wide"):
        note_features(onset, sustain, control, segments, playing="loud")


def test_the_shipped_model_plays_wide_with_wider_windows_at_the_same_loudness() -> None:
    """Played with wide dynamics, the same notes' 4-bar windows spread further (POP909: 13-20
    against 5-8) around the same level (the segment's velocity control)."""
    model = load_velocity_model()
    onset, sustain = small_piece(bars=32)
    control, segments = np.full(onset.shape[0], 78.0), np.zeros(onset.shape[0], dtype=np.int64)
    spreads, levels = {}, {}
    for playing in PLAYINGS:
        windows = [
            model.velocities(onset, sustain, control, segments, seed, playing=playing)
            for seed in range(4)
        ]
        spreads[playing] = np.median(
            [v[s : s + 64][onset[s : s + 64]].std() for v in windows for s in range(0, 512, 64)]
        )
        levels[playing] = np.mean([v[onset].mean() for v in windows])
    assert spreads["even"] + 3 < spreads["wide"], spreads
    assert 3 < spreads["even"] < 10, spreads
    assert abs(levels["even"] - levels["wide"]) < 6, levels


def test_the_app_and_the_score_pass_the_way_of_playing() -> None:
    onset, sustain = small_piece(bars=16)
    segments, level = np.zeros(onset.shape[0], dtype=np.int64), np.array([0.5])
    even = velocities_from_controls(onset, sustain, segments, level, CALIBRATION)
    wide = velocities_from_controls(onset, sustain, segments, level, CALIBRATION, playing="wide")
    assert even[onset].std() < wide[onset].std()
    same = velocities_from_controls(onset, sustain, segments, level, CALIBRATION, playing="even")
    assert np.array_equal(even, same)  # "even" is the default


def test_options_and_the_cli_take_a_way_of_playing() -> None:
    from diffbgm.__main__ import build_parser
    from diffbgm.errors import PlanError
    from diffbgm.options import ComposeOptions
    from webapp.handlers import compose_options

    assert ComposeOptions().playing == DEFAULT_PLAYING == "even"
    options = ComposeOptions(playing="wide")
    assert ComposeOptions.from_dict(options.to_dict()) == options
    old = {k: v for k, v in options.to_dict().items() if k != "playing"}
    assert ComposeOptions.from_dict(old).playing == "even"  # reports from before
    with pytest.raises(PlanError, match="unknown way of playing 'loud'; choose one of even, wide"):
        ComposeOptions(playing="loud")
    parser = build_parser()
    base = ["generate", "v.mp4", "--out", "o"]
    assert parser.parse_args(base).playing == "even"
    assert parser.parse_args([*base, "--playing", "wide"]).playing == "wide"
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--playing", "loud"])
    form = ("", 0, "auto", 0, 0, None, None, 1, "duck")
    assert compose_options(*form).playing == "even"
    assert compose_options(*form, *[None] * 10, "wide").playing == "wide"


def test_a_model_from_before_an_input_existed_still_loads(tmp_path: Path) -> None:
    """A velocity model trained on fewer features (the shipped one before `wide_playing`)
    reads only its own columns; one that names a feature this version lacks is refused."""
    from dataclasses import replace

    from diffbgm.errors import DiffBGMError
    from diffbgm.velocity import VelocityConfig, VelocityModel

    known = FEATURE_NAMES[:-1]
    rng = np.random.default_rng(0)
    weights = [
        (rng.normal(0, 0.1, (len(known), 8)).astype(np.float32), np.zeros(8, np.float32)),
        (rng.normal(0, 0.1, (8, 2)).astype(np.float32), np.zeros(2, np.float32)),
    ]
    old = VelocityModel(
        VelocityConfig(hidden=(8,), features=known),
        weights,
        np.zeros(len(known), np.float32),
        np.ones(len(known), np.float32),
    )
    save_velocity_model(old, tmp_path / "old")
    loaded = load_velocity_model(tmp_path / "old")
    onset, sustain = small_piece(bars=2)
    control, segments = np.full(onset.shape[0], 80.0), np.zeros(onset.shape[0], dtype=np.int64)
    _, _, features = note_features(onset, sustain, control, segments, playing="wide")
    hidden = np.maximum(features[:, :-1] @ weights[0][0], 0) @ weights[1][0]
    assert np.allclose(loaded.predict(features)[0], hidden[:, 0] * 20 + 80, atol=1e-4)
    save_velocity_model(
        replace(old, config=VelocityConfig(hidden=(8,), features=(*known[:-1], "pedal"))),
        tmp_path / "future",
    )
    with pytest.raises(DiffBGMError, match="features this version does not compute: pedal"):
        load_velocity_model(tmp_path / "future")


def test_each_way_of_playing_samples_with_its_own_residual(tmp_path: Path) -> None:
    from dataclasses import replace

    from diffbgm.velocity import VelocityConfig

    even = ResidualConfig(mode_share=(0.2,) * 101, scale=1.0, mode_weight=2.0)
    wide = ResidualConfig(mode_share=(0.1,) * 101, scale=0.8, mode_weight=3.0)
    config = VelocityConfig(residual=even, wide_residual=wide)
    assert config.residual_for("even") == even and config.residual_for("wide") == wide
    assert VelocityConfig.from_dict(config.to_dict()) == config  # stored in config.json
    older = VelocityConfig(residual=even)  # a model from before: one residual for both
    assert older.residual_for("wide") == even and "wide_residual" not in older.to_dict()
    assert VelocityConfig.from_dict(older.to_dict()) == older
    # the shipped model's sampling follows the piece's way of playing
    model = load_velocity_model()
    assert model.config.wide_residual is not None
    onset, sustain = small_piece(bars=8)
    control, segments = np.full(onset.shape[0], 80.0), np.zeros(onset.shape[0], dtype=np.int64)
    flat_wide = replace(model.config, wide_residual=ResidualConfig(scale=0.0))
    flat = replace(model, config=flat_wide)
    played = flat.velocities(onset, sustain, control, segments, 0, playing="wide")[onset]
    assert (
        np.unique(played).size
        < np.unique(
            flat.velocities(onset, sustain, control, segments, 0, playing="even")[onset]
        ).size
    )


def test_echo_sources_find_the_note_each_recalled_note_repeats() -> None:
    from diffbgm.velocity import echo_sources

    onset = np.zeros((8, 12), dtype=bool)
    onset[0, [2, 5]] = True  # the source phrase
    onset[4, [4, 7, 9]] = True  # recalled two semitones up: 2 -> 4, 5 -> 7; 9 is new
    onset[6, 0] = True  # recalled from step 1, where nothing is struck
    source_step = np.array([-1, -1, -1, -1, 0, -1, 1, -1])
    semitones = np.array([0, 0, 0, 0, 2, 0, 0, 0])
    steps, pitches = np.nonzero(onset)
    sources = echo_sources(steps, pitches, source_step, semitones, onset.shape[1])
    # notes in step then pitch order: (0,2) (0,5) (4,4) (4,7) (4,9) (6,0)
    assert sources.tolist() == [-1, -1, 0, 1, -1, -1]
    # a transposition that moves the source pitch off the range finds nothing
    down = np.where(source_step >= 0, -11, 0)
    assert (echo_sources(steps, pitches, source_step, down, onset.shape[1]) == -1).all()


def test_a_recalled_note_keeps_its_sources_accent_on_its_own_loudness() -> None:
    from diffbgm.velocity import echo_recalled

    values = np.array([70.0, 90.0, 60.0, 60.0])
    mean = np.array([75.0, 80.0, 65.0, 85.0])
    sources = np.array([-1, -1, 1, 2])  # note 2 repeats note 1, note 3 repeats note 2
    echoed = echo_recalled(values, mean, sources)
    assert echoed[:2].tolist() == [70.0, 90.0]  # notes that repeat nothing keep their draw
    assert echoed[2] == 90.0 - 80.0 + 65.0  # +10 over its own mean, as its source
    assert echoed[3] == echoed[2] - 65.0 + 85.0  # a repeat of a repeat: the accent carries
    assert values.tolist() == [70.0, 90.0, 60.0, 60.0]  # the input is not changed


def test_a_recalled_phrase_is_played_as_the_phrase_it_repeats() -> None:
    model = load_velocity_model()
    onset, sustain = small_piece(bars=8, seed=5)
    half = onset.shape[0] // 2
    onset[half:], sustain[half:] = onset[:half], sustain[:half]  # the second half repeats
    segments = np.repeat([0, 1], half)
    control = np.where(segments == 0, 70.0, 90.0)  # ... louder
    source_step = np.where(segments == 1, np.arange(onset.shape[0]) - half, -1)
    recalled = (source_step, np.zeros(onset.shape[0], dtype=np.int64))
    plain = model.velocities(onset, sustain, control, segments, seed=2)
    echoed = model.velocities(onset, sustain, control, segments, seed=2, recalled=recalled)
    assert np.array_equal(plain[:half], echoed[:half])  # the first playing is drawn as before
    steps, _, features = note_features(onset, sustain, control, segments)
    mean, _ = model.predict(features)
    residual = echoed[onset].astype(float) - mean
    first, second = residual[steps < half], residual[steps >= half]
    assert np.abs(first - second).max() <= 1.0  # the same accents, up to rounding
    # ... at the loudness the second segment asks for
    assert echoed[half:][onset[half:]].mean() > echoed[:half][onset[:half]].mean() + 10
    # drawn on their own, the two playings' accents differ
    plain_residual = plain[onset].astype(float) - mean
    assert np.abs(plain_residual[steps < half] - plain_residual[steps >= half]).max() > 5


def test_the_app_and_the_evaluation_pass_the_recall_map_to_the_velocities() -> None:
    onset, sustain = small_piece(bars=8, seed=5)
    half = onset.shape[0] // 2
    onset[half:], sustain[half:] = onset[:half], sustain[:half]
    segments = np.repeat([0, 1], half)
    level = np.array([0.5, 0.5])
    recalled = (
        np.where(segments == 1, np.arange(onset.shape[0]) - half, -1),
        np.zeros(onset.shape[0], dtype=np.int64),
    )
    plain = velocities_from_controls(onset, sustain, segments, level, CALIBRATION)
    echoed = velocities_from_controls(
        onset, sustain, segments, level, CALIBRATION, recalled=recalled
    )
    assert np.array_equal(plain[:half], echoed[:half])
    assert not np.array_equal(plain[half:], echoed[half:])
    # the rule has no residual to echo
    rule = velocities_from_controls(onset, sustain, segments, level, CALIBRATION, method="rule")
    assert np.array_equal(
        rule,
        velocities_from_controls(
            onset, sustain, segments, level, CALIBRATION, method="rule", recalled=recalled
        ),
    )
