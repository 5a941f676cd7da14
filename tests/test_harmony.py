"""The POP909 chord-sequence model: built from data, shipped small, sampled with cadences."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from diffbgm.music.chords import parse_chord
from diffbgm.music.harmony import (
    DEFAULT_MODEL_PATH,
    ChordModelConfig,
    build_chord_model,
    cadence_tokens,
    label_to_token,
    load_chord_model,
    sample_progression,
    song_token_phrases,
    token_to_label,
    tonic_token,
)


@pytest.fixture(scope="module")
def model():
    return load_chord_model()


def test_shipped_model_is_small_and_from_train_songs(model) -> None:
    assert DEFAULT_MODEL_PATH.stat().st_size < 200_000
    assert model.source["songs"] == "001-800"
    for mode in ("major", "minor"):
        assert tonic_token(mode) in model.vocab[mode]
        assert 10 <= len(model.vocab[mode]) <= 60


def test_tokens_are_scale_degrees() -> None:
    assert label_to_token("G:7/3", 0) == "7:7"
    assert label_to_token("Db:sus4(b7)", 1) == "0:sus4"
    assert label_to_token("N", 0) is None
    assert token_to_label("5:maj", 9) == "D:maj"
    for token in ("0:maj", "9:min7", "11:dim"):
        assert label_to_token(token_to_label(token, 4), 4) == token


def test_most_likely_continuation_after_i_v_matches_the_data(model, pop909_dir: Path) -> None:
    # What follows I-V in the training songs' own major-key chord changes, counted here.
    following: Counter[str] = Counter()
    for i in range(1, 201):
        for phrase in song_token_phrases(pop909_dir / f"{i:03d}")["major"]:
            for a, b, c in zip(phrase, phrase[1:], phrase[2:], strict=False):
                if (a, b) == ("0:maj", "7:maj"):
                    following[c] += 1
    best = model.most_likely_next("major", ["0:maj", "7:maj"])
    assert best in [tok for tok, _ in following.most_common(2)]
    # ... and it is a chord a musician expects there (vi, IV or back to I).
    assert best in ("9:min", "5:maj", "0:maj")


def test_distribution_is_normalised_and_backs_off(model) -> None:
    dist = model.next_distribution("minor", ["0:min", "8:maj"])
    assert abs(sum(dist.values()) - 1.0) < 1e-9
    unseen = model.next_distribution("minor", ["11:aug", "1:dim"])
    assert abs(sum(unseen.values()) - 1.0) < 1e-9
    assert max(unseen, key=lambda t: unseen[t]) == max(
        model.unigram["minor"], key=lambda t: model.unigram["minor"][t]
    )


def test_harmonic_rhythm_table_is_monotone_and_invertible(model) -> None:
    table = np.asarray(model.changes_per_bar_quantiles)
    assert np.all(np.diff(table) >= 0)
    assert 0.8 <= model.changes_per_bar(0.5) <= 2.2
    for q in (0.1, 0.5, 0.9):
        assert abs(model.changes_per_bar_quantile(model.changes_per_bar(q)) - q) < 0.03


@pytest.mark.parametrize("mode", ["major", "minor"])
def test_sampling_uses_vocab_is_seeded_and_cadences(model, mode: str) -> None:
    counts = [6, 5, 8, 4]
    first = sample_progression(model, mode, counts, np.random.default_rng(7))
    again = sample_progression(model, mode, counts, np.random.default_rng(7))
    other = sample_progression(model, mode, counts, np.random.default_rng(8))
    assert first == again and first != other
    assert [len(seg) for seg in first] == counts
    flat = [tok for seg in first for tok in seg]
    assert set(flat) <= set(model.vocab[mode])
    assert all(a != b for a, b in zip(flat, flat[1:], strict=False))
    assert flat[-1] == tonic_token(mode)
    assert flat[-2] in cadence_tokens(mode)
    for token in flat:
        assert not parse_chord(token_to_label(token, 3)).is_none


def test_segment_ends_lean_to_the_tonic(model) -> None:
    rng = np.random.default_rng(0)
    ends: Counter[bool] = Counter()
    middles: Counter[bool] = Counter()
    for _ in range(60):
        for seg in sample_progression(model, "major", [4, 4, 4], rng)[:-1]:
            ends[seg[-1] == "0:maj"] += 1
            middles[seg[1] == "0:maj"] += 1
    assert ends[True] / sum(ends.values()) > middles[True] / sum(middles.values()) + 0.15


def test_builder_on_a_few_songs(pop909_dir: Path, tmp_path: Path) -> None:
    cfg = ChordModelConfig(first_song=1, last_song=20, min_context_count=3)
    small = build_chord_model(pop909_dir, cfg)
    assert small.source["n_songs"] == 20
    assert sum(small.key_counts.values()) == 20
    for mode in ("major", "minor"):
        for ctx in small.trigram[mode].values():
            assert abs(sum(ctx.values()) - 1.0) < 0.01 and len(ctx) <= cfg.top_k
