"""What a shot shows, read by an open_clip model: an image embedding, a mood and scene words.

Why open_clip: it is the design card's choice and loads the published CLIP weights (OpenAI's,
LAION's) from the Hugging Face Hub with their own config file, so no model code is ours.

The setting (`DIFFBGM_CLIP`, the CLI's `--clip`, `Composer(clip=...)`) is one of
- `off`: never try; shot semantics come from picture statistics (the offline default path);
- `auto`: the default model (`DEFAULT_CLIP_MODEL`), from the local Hugging Face cache or, when
  the Hub answers, downloaded into that cache once;
- a Hub id (`hf-hub:org/name` or `org/name`) or a local folder holding `open_clip_config.json`
  and the weights.
Any failure (no package, no network, bad weights) falls back to picture statistics with one log
line; the report's `analysis.semantics` says which path was used. Nothing here switches the
process offline: cache look-ups pass `local_files_only=True` per call.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from diffbgm.errors import VideoError
from diffbgm.video.features import Mood
from diffbgm.video.semantics import (
    CLIP_MEAN,
    CLIP_STD,
    MOOD_ANCHORS,
    clip_pixels,
    mood_from_similarities,
)

log = logging.getLogger(__name__)

CLIP_ENV = "DIFFBGM_CLIP"
# OpenAI's ViT-B/32 as open_clip lists it (`open_clip.list_pretrained()`: ViT-B-32 / openai,
# hf_hub "timm/vit_base_patch32_clip_224.openai"): 151 M parameters, 224 px input.
DEFAULT_CLIP_MODEL = "hf-hub:timm/vit_base_patch32_clip_224.openai"
STATISTICS = "statistics"  # VideoAnalysis.semantics when no CLIP model read the shots
CONFIG_FILE = "open_clip_config.json"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
HUB_PREFIX = "hf-hub:"

# Scene words shown per shot: short phrases CLIP separates well; "a photo of {}" is CLIP's own
# zero-shot template.
SCENE_PROMPTS: tuple[str, ...] = (
    "a beach",
    "the sea",
    "a city street at night",
    "a city street by day",
    "a forest",
    "mountains",
    "a field of grass",
    "a desert",
    "snow",
    "the sky and clouds",
    "a room indoors",
    "an office",
    "a kitchen",
    "a concert stage",
    "a sports game",
    "people talking",
    "a crowd of people",
    "a child playing",
    "an animal",
    "a car on a road",
    "fire",
    "rain",
    "a cartoon",
    "text on a screen",
)
SCENE_TEMPLATE = "a photo of {}"
N_SCENE_WORDS = 2
# CLIP cosines between an image and the mood phrases lie within a few hundredths of each other;
# at 0.01 the closest anchors dominate the blend (the transformers path uses the same value).
IMAGE_MOOD_TEMPERATURE = 0.01


def clip_setting(value: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The CLIP setting in use: `value`, else $DIFFBGM_CLIP, else `auto`; normalised (`off`,
    `auto`, a Hub id with its `hf-hub:` prefix, or a local folder)."""
    env = os.environ if env is None else env
    raw = (value if value is not None else env.get(CLIP_ENV, "")).strip()
    lowered = raw.lower()
    if lowered in ("", "auto", "on", "default"):
        return "auto"
    if lowered in ("off", "none", "no", "0", "false", "statistics"):
        return "off"
    if Path(raw).expanduser().is_dir():
        return str(Path(raw).expanduser())
    identifier = raw.removeprefix(HUB_PREFIX)
    if identifier.count("/") != 1 or not all(identifier.split("/")):
        raise VideoError(
            f"CLIP setting {raw!r} is not auto, off, a Hub id (org/name) or a local folder"
        )
    return HUB_PREFIX + identifier


@dataclass(frozen=True)
class ShotReading:
    """CLIP's reading of one shot's keyframe: a unit-length embedding, a zero-shot mood
    (valence in [-1, 1], arousal in [0, 1]) and the closest scene words, best first."""

    embedding: np.ndarray
    mood: Mood
    scenes: tuple[str, ...]


class OpenClipEncoder:
    """An open_clip model with its tokenizer; prompt embeddings are computed once and kept.
    Images are prepared with our own resize/crop/normalise (`clip_pixels`). Thread-safe."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        name: str,
        image_size: int,
        mean: Sequence[float] = tuple(CLIP_MEAN),
        std: Sequence[float] = tuple(CLIP_STD),
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.image_size = int(image_size)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self._lock = threading.Lock()
        self._prompts: tuple[np.ndarray, np.ndarray] | None = None
        self.seconds_per_shot: float | None = None  # measured by the last `read_shots`

    @classmethod
    def from_folder(cls, folder: Path, name: str | None = None) -> OpenClipEncoder:
        """Load `folder` (open_clip_config.json + weights); VideoError when either is missing
        or the weights do not fit (open_clip itself would go on with random weights)."""
        import open_clip

        config_path = folder / CONFIG_FILE
        if not config_path.is_file():
            raise VideoError(f"{config_path} is missing")
        if not any((folder / w).is_file() for w in WEIGHT_FILES):
            raise VideoError(f"{folder} holds none of {', '.join(WEIGHT_FILES)}")
        config = json.loads(config_path.read_text())
        model = open_clip.create_model(
            f"local-dir:{folder}", device="cpu", precision="fp32", require_pretrained=True
        )
        tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
        pre = config.get("preprocess_cfg", {})
        size = pre.get("size") or config["model_cfg"]["vision_cfg"].get("image_size", 224)
        size = size[0] if isinstance(size, list | tuple) else size
        return cls(
            model,
            tokenizer,
            name or str(folder),
            int(size),
            pre.get("mean", tuple(CLIP_MEAN)),
            pre.get("std", tuple(CLIP_STD)),
        )

    @classmethod
    def from_config(cls, model_cfg: Mapping[str, Any], seed: int = 0) -> OpenClipEncoder:
        """A randomly initialised model of open_clip's `model_cfg` (embed_dim, vision_cfg,
        text_cfg), built here without any download: for tests and timing."""
        import open_clip
        import torch

        torch.manual_seed(seed)
        model = open_clip.CLIP(**dict(model_cfg))
        context = int(model_cfg.get("text_cfg", {}).get("context_length", 77))
        tokenizer = open_clip.SimpleTokenizer(context_length=context)
        size = model_cfg.get("vision_cfg", {}).get("image_size", 224)
        return cls(model, tokenizer, f"random:{seed}", int(size))

    def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(n, embed_dim) float32 unit-length embeddings of RGB uint8 images (h, w, 3)."""
        import torch

        pixels = torch.from_numpy(clip_pixels(images, self.image_size, self.mean, self.std))
        with self._lock, torch.inference_mode():
            features = self.model.encode_image(pixels, normalize=True)
        return features.float().numpy().astype(np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, embed_dim) float32 unit-length text embeddings."""
        import torch

        tokens = self.tokenizer(list(texts))
        with self._lock, torch.inference_mode():
            features = self.model.encode_text(tokens, normalize=True)
        return features.float().numpy().astype(np.float32)

    def prompt_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(mood anchors (n_anchors, d), scene prompts (n_scenes, d)), unit length, cached."""
        if self._prompts is None:
            phrases = [p for a in MOOD_ANCHORS for p in a.phrases]
            vectors = self.embed_texts(phrases)
            owner = np.repeat(np.arange(len(MOOD_ANCHORS)), [len(a.phrases) for a in MOOD_ANCHORS])
            means = np.stack([vectors[owner == i].mean(axis=0) for i in range(len(MOOD_ANCHORS))])
            anchors = means / np.linalg.norm(means, axis=1, keepdims=True)
            scenes = self.embed_texts([SCENE_TEMPLATE.format(s) for s in SCENE_PROMPTS])
            self._prompts = (anchors, scenes)
        return self._prompts

    def read_shots(self, images: Sequence[np.ndarray]) -> list[ShotReading]:
        """One reading per keyframe; records the seconds per shot in `seconds_per_shot`
        (the prompts' embeddings, computed once per model, are not counted)."""
        anchors, scenes = self.prompt_embeddings()
        start = time.perf_counter()
        embeddings = self.embed_images(images)
        readings = []
        for vector in embeddings:
            order = np.argsort(-(scenes @ vector), kind="stable")[:N_SCENE_WORDS]
            readings.append(
                ShotReading(
                    embedding=vector,
                    mood=mood_from_similarities(
                        anchors @ vector, MOOD_ANCHORS, IMAGE_MOOD_TEMPERATURE
                    ),
                    scenes=tuple(SCENE_PROMPTS[i] for i in order),
                )
            )
        self.seconds_per_shot = (time.perf_counter() - start) / max(len(images), 1)
        return readings


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint accepts a TCP connection within `timeout_s`: checked
    before a download so that an offline machine falls back at once instead of after
    huggingface_hub's retries (about 24 s measured here)."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def fetch_clip_files(model: str, local_files_only: bool) -> Path:
    """The folder holding `model`'s open_clip config and weights in the Hugging Face cache;
    downloads them unless `local_files_only`. Raises whatever huggingface_hub raises."""
    from huggingface_hub import hf_hub_download

    repo = model.removeprefix(HUB_PREFIX)
    config = Path(hf_hub_download(repo, CONFIG_FILE, local_files_only=local_files_only))
    last: Exception | None = None
    for weights in WEIGHT_FILES:
        try:
            hf_hub_download(repo, weights, local_files_only=local_files_only)
            return config.parent
        except Exception as exc:  # the Hub's errors come in many types; try the next name
            last = exc
    raise VideoError(f"{model} has none of {', '.join(WEIGHT_FILES)}: {last}")


def load_open_clip(setting: str) -> OpenClipEncoder:
    """The encoder for a normalised, non-`off` setting: local folder as is; a Hub id from the
    cache first, then from the Hub when it answers. Raises on any failure."""
    import open_clip  # noqa: F401  (fail here, before any download, when the package is absent)

    model = DEFAULT_CLIP_MODEL if setting == "auto" else setting
    if not model.startswith(HUB_PREFIX):
        return OpenClipEncoder.from_folder(Path(model), name=model)
    try:
        folder = fetch_clip_files(model, local_files_only=True)
    except Exception:
        if not hub_reachable():
            raise VideoError(
                f"{model} is not cached and the Hugging Face Hub cannot be reached"
            ) from None
        folder = fetch_clip_files(model, local_files_only=False)
    return OpenClipEncoder.from_folder(folder, name=model)


class ClipLoader:
    """Loads the CLIP encoder of one setting at most once (a failure is remembered too, so an
    offline machine logs one line and pays nothing on later composes). Thread-safe."""

    def __init__(self, setting: str | None = None) -> None:
        self.setting = clip_setting(setting)
        self._lock = threading.Lock()
        self._tried = False
        self._encoder: OpenClipEncoder | None = None
        self.failure: str | None = None

    @classmethod
    def of(cls, encoder: OpenClipEncoder) -> ClipLoader:
        """A loader that hands out `encoder` (already built, e.g. from a config in tests)."""
        loader = cls("auto")
        loader.setting, loader._tried, loader._encoder = encoder.name, True, encoder
        return loader

    def get(self) -> OpenClipEncoder | None:
        """The encoder, or None when the setting is off or loading failed."""
        if self.setting == "off":
            return None
        with self._lock:
            if not self._tried:
                self._tried = True
                try:
                    self._encoder = load_open_clip(self.setting)
                except Exception as exc:  # any failure means: use picture statistics
                    self.failure = f"{type(exc).__name__}: {exc}"
                    log.warning(
                        "CLIP (%s) unavailable, shot semantics from picture statistics: %s",
                        self.setting,
                        self.failure,
                    )
            return self._encoder
