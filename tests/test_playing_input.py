"""The way of playing (even or wide dynamics), the tempo and the figuration as inputs of the
note network: the global features carry them after the key, a model reads as many of them as its config says,
and a model from before an input warm-starts with it at zero."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from diffbgm.controls import (
    FIGURATION_FEATURE,
    FIGURATION_MAX,
    N_GLOBAL_FEATURES,
    N_KEY_FEATURES,
    PLAYING_FEATURE,
    TEMPO_FEATURE,
    figuration_feature,
    global_features,
    key_features,
    tempo_feature,
    typical_figuration,
)
from diffbgm.model.conditions import model_global, two_segment_conditions
from diffbgm.model.config import preset
from diffbgm.model.unet import Denoiser
from trainer.train import with_zero_global_columns


def test_global_features_are_the_key_then_the_way_of_playing() -> None:
    even = global_features(3, minor=True)
    assert len(even) == N_GLOBAL_FEATURES == N_KEY_FEATURES + 3  # the figuration last
    assert PLAYING_FEATURE == N_KEY_FEATURES
    assert even[:N_KEY_FEATURES] == key_features(3, minor=True) and even[PLAYING_FEATURE] == 0.0
    assert global_features(3, minor=True, playing="wide")[PLAYING_FEATURE] == 1.0
    with pytest.raises(ValueError, match="playing must be one of even, wide"):
        global_features(3, minor=True, playing="loud")


def test_the_tempo_is_octaves_from_90_bpm_clipped_to_one() -> None:
    assert TEMPO_FEATURE == PLAYING_FEATURE + 1
    assert tempo_feature(90.0) == 0.0
    assert tempo_feature(45.0) == -1.0 and tempo_feature(180.0) == 1.0
    assert tempo_feature(60.0) == pytest.approx(-0.585, abs=1e-3)
    assert tempo_feature(20.0) == -1.0 and tempo_feature(300.0) == 1.0
    assert global_features(0, False, tempo_bpm=120.0)[TEMPO_FEATURE] == tempo_feature(120.0)
    assert global_features(0, False)[TEMPO_FEATURE] == 0.0  # unstated: the centre
    for bad in (0.0, -60.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tempo must be a positive number"):
            tempo_feature(bad)


def test_the_figuration_is_the_songs_share_or_the_one_typical_of_its_tempo() -> None:
    assert FIGURATION_FEATURE == TEMPO_FEATURE + 1 == N_GLOBAL_FEATURES - 1
    # POP909's training songs: slow ones put about 0.3 of their onsets on the odd 16ths, songs
    # at 120 BPM hardly any
    assert typical_figuration(60.0) == pytest.approx(0.286, abs=1e-3)
    assert typical_figuration(90.0) == pytest.approx(0.129)
    assert typical_figuration(120.0) == pytest.approx(0.017, abs=1e-3)
    assert typical_figuration(180.0) == 0.0  # the line would go below zero
    assert typical_figuration(40.0) <= FIGURATION_MAX
    assert global_features(0, False, tempo_bpm=60.0)[FIGURATION_FEATURE] == pytest.approx(
        typical_figuration(60.0)
    )  # unstated: typical of the tempo
    told = global_features(0, False, tempo_bpm=60.0, figuration=0.45)
    assert told[FIGURATION_FEATURE] == 0.45 and told[TEMPO_FEATURE] == tempo_feature(60.0)
    assert figuration_feature(0.9) == FIGURATION_MAX
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="figuration must be a share"):
            figuration_feature(bad)


def test_a_model_reads_as_many_global_features_as_its_config_says() -> None:
    both = torch.tensor([[*global_features(0, False, "wide")]])
    assert model_global(both, N_KEY_FEATURES).shape == (1, N_KEY_FEATURES)
    assert torch.equal(model_global(both, N_GLOBAL_FEATURES), both)
    assert torch.equal(model_global(both, PLAYING_FEATURE + 1), both[:, : PLAYING_FEATURE + 1])
    with pytest.raises(ValueError, match="reads 17 global features, the conditions have 14"):
        model_global(both[:, :N_KEY_FEATURES], N_GLOBAL_FEATURES)


def with_playing(cond, playing: str):  # type: ignore[no-untyped-def]
    """The conditions with the key of C major and the given way of playing."""
    row = torch.tensor(global_features(0, False, playing))
    return cond.with_(global_=row.expand(cond.batch_size, -1).clone())


def outputs(model: Denoiser, playing: str) -> torch.Tensor:
    config = model.config
    cond = with_playing(two_segment_conditions(config, batch=2, seed=1), playing)
    noise = torch.randn(
        2, 2, config.window_steps, config.n_pitches, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        return model(noise, torch.full((2,), 400), cond)


def test_a_model_before_the_input_ignores_it_and_widens_to_the_same_predictions() -> None:
    torch.manual_seed(0)
    old = Denoiser(preset("tiny")).eval()
    assert torch.equal(outputs(old, "even"), outputs(old, "wide"))
    reads_playing = PLAYING_FEATURE + 1
    widened = Denoiser(replace(preset("tiny"), global_dim=reads_playing)).eval()
    widened.load_state_dict(with_zero_global_columns(old.state_dict(), reads_playing))
    for playing in ("even", "wide"):
        assert torch.allclose(outputs(widened, playing), outputs(old, playing), atol=1e-6)
    # once its new weights move, the widened model writes for the way of playing
    with torch.no_grad():
        widened.tokens.global_proj.weight[:, PLAYING_FEATURE] = 0.5
    assert not torch.allclose(outputs(widened, "even"), outputs(widened, "wide"))


def test_random_conditions_carry_the_tempo_they_are_played_at() -> None:
    import numpy as np

    from trainer.sample import RANDOM_PIECE_TEMPO_BPM, random_piece

    reads_all = replace(preset("tiny"), global_dim=N_GLOBAL_FEATURES)
    slow = random_piece(reads_all, 4, np.random.default_rng(0), tempo_bpm=60.0)
    assert slow.global_[TEMPO_FEATURE] == pytest.approx(tempo_feature(60.0))
    usual = random_piece(reads_all, 4, np.random.default_rng(0))
    assert usual.global_[TEMPO_FEATURE] == pytest.approx(tempo_feature(RANDOM_PIECE_TEMPO_BPM))
    # a model that reads the key alone gets every feature, as from a song, and reads the key
    assert random_piece(preset("tiny"), 4, np.random.default_rng(0)).global_.shape == (
        N_GLOBAL_FEATURES,
    )


def test_tempo_rhythm_counts_odd_16ths_and_the_forests_songs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    import numpy as np

    from diffbgm.metrics import notes_per_onset_step, odd_16th_share
    from tests.scripts import load_script

    bench = load_script("benchmarks/tempo_rhythm.py")
    onset = np.zeros((32, 88), dtype=bool)
    onset[[0, 1, 3, 4], 40] = True  # two of four onsets on odd 16ths
    onset[[0, 4], 44] = True  # chords on the even ones: 2 of 6
    assert odd_16th_share(onset) == pytest.approx(2 / 6)
    assert notes_per_onset_step(onset) == pytest.approx(6 / 4)
    assert odd_16th_share(np.zeros((16, 88), dtype=bool)) == 0.0
    per_song = {"843": [10, 10, 6, 10], "851": [1, 10, 9, 10]}
    reports = []
    for n, song in enumerate((per_song, {"843": [0, 10, 10, 10]})):
        path = tmp_path / f"r{n}.json"
        realism = {"forest": {"per_song": song}}
        path.write_text(json.dumps({"realism": {"notes only": {"generated vs real": realism}}}))
        reports.append(path)
    accuracy = bench.forest_accuracy(reports)
    assert accuracy == {"843": pytest.approx((0.8 + 0.5) / 2), "851": pytest.approx(0.5)}


def test_tempo_rhythm_shows_features_by_tempo_band() -> None:
    import numpy as np

    from diffbgm.realism import feature_names
    from tests.scripts import load_script

    bench = load_script("benchmarks/tempo_rhythm.py")
    assert bench.band_of(60.0) == (0.0, 66.0) and bench.band_of(120.0) == (90.0, 1000.0)
    column = feature_names(False).index("top_mean")
    width = len(feature_names(False))
    real = np.zeros((4, width))
    real[:, column] = [66.0, 68.0, 67.0, 69.0]
    lower = real.copy()
    lower[:, column] -= 2.0
    rows = bench.feature_table(["top_mean"], {(90.0, 1000.0): [real]}, {(90.0, 1000.0): [lower]})
    assert len(rows) == 3  # the header, its rule, the one band with windows
    cells = [cell.strip() for cell in rows[2].split("|")[1:-1]]
    assert cells[:3] == ["top_mean", "90-1000", "4 / 4"]
    assert float(cells[3]) == pytest.approx(67.5) and float(cells[4]) == pytest.approx(65.5)
    assert float(cells[5]) == pytest.approx(-2.0 / np.sqrt(1.25), abs=0.01)
    only_real = bench.feature_table(["top_mean"], {(0.0, 66.0): [real]}, {})
    assert only_real[2] == "| top_mean | 0-66 | 4 / 0 | 67.500 | – | – |"


def test_probes_tell_another_tempo_figuration_and_way_of_playing() -> None:
    from trainer.probes import told_figuration, told_playing, told_tempo

    cond = two_segment_conditions(replace(preset("tiny"), global_dim=N_GLOBAL_FEATURES), batch=2)
    rows = [global_features(0, False, "wide", 60.0), global_features(0, False, "even", 150.0)]
    cond = cond.with_(global_=torch.tensor(rows))
    assert told_tempo(cond, "song").global_.equal(cond.global_)
    assert told_tempo(cond, "centre").global_[:, TEMPO_FEATURE].tolist() == [0.0, 0.0]
    doubled = told_tempo(cond, "double").global_[:, TEMPO_FEATURE]
    assert doubled.tolist() == pytest.approx([tempo_feature(120.0), 1.0])  # 300 BPM: clipped
    halved = told_tempo(cond, "half").global_[:, TEMPO_FEATURE]
    assert halved.tolist() == pytest.approx([-1.0, tempo_feature(75.0)])  # 30 BPM: clipped
    flipped = told_playing(cond, "flipped").global_
    assert flipped[:, PLAYING_FEATURE].tolist() == [0.0, 1.0]
    assert flipped[:, TEMPO_FEATURE].equal(cond.global_[:, TEMPO_FEATURE])
    assert told_playing(cond, "wide").global_[:, PLAYING_FEATURE].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="tempo must be one of"):
        told_tempo(cond, "fast")
    with pytest.raises(ValueError, match="playing must be one of"):
        told_playing(cond, "loud")
    rows[0][FIGURATION_FEATURE] = 0.5  # a slow song more figured than most
    cond = cond.with_(global_=torch.tensor(rows))
    assert told_figuration(cond, "song").global_.equal(cond.global_)
    typical = told_figuration(cond, "typical").global_
    assert typical[:, FIGURATION_FEATURE].tolist() == pytest.approx(
        [typical_figuration(60.0), typical_figuration(150.0)]
    )
    assert typical[:, :FIGURATION_FEATURE].equal(cond.global_[:, :FIGURATION_FEATURE])
    assert told_figuration(cond, "none").global_[:, FIGURATION_FEATURE].tolist() == [0.0, 0.0]
    most = told_figuration(cond, "most").global_[:, FIGURATION_FEATURE]
    assert most.tolist() == pytest.approx([FIGURATION_MAX] * 2)
    with pytest.raises(ValueError, match="figuration must be one of"):
        told_figuration(cond, "busy")
