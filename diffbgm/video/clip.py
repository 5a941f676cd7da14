"""What a shot shows, read by a CLIP model: an image embedding, a mood and scene words.

Two backends, chosen by what the setting names:
- transformers (`CLIPModel` + `CLIPTokenizer`): the default. transformers is a runtime
  requirement anyway, and it needs no torchvision: open_clip imports torchvision, whose only
  PyPI wheel for torch 2.13 is a CUDA build that cannot load next to the CPU torch
  (docs/video.md). Images are prepared by our own `clip_pixels`, never by an image processor.
- open_clip: for open_clip checkpoints (`hf-hub:org/name`, or a folder holding
  `open_clip_config.json`), when open_clip (and so a working torchvision) can be imported.

The setting (`DIFFBGM_CLIP`, the CLI's `--clip`, `Composer(clip=...)`) is one of
- `off`: never try; shot semantics come from picture statistics;
- `auto`: `DEFAULT_CLIP_MODEL` through transformers, from the local Hugging Face cache or, when
  the Hub answers, downloaded into that cache once;
- `org/name`: that transformers CLIP repository on the Hub, same rule;
- `hf-hub:org/name`: that open_clip repository on the Hub, same rule;
- a local folder: `config.json` + weights (transformers) or `open_clip_config.json` + weights.
Any failure (no package, no network, bad weights) falls back to picture statistics with one log
line; the report's `analysis.semantics` says which path was used (`clip:<backend>:<model>` or
`statistics`). Nothing here switches the process offline: cache look-ups pass
`local_files_only=True` per call.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from abc import ABC, abstractmethod
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
from diffbgm.video.torchvision_guard import hide_unusable_torchvision

log = logging.getLogger(__name__)

CLIP_ENV = "DIFFBGM_CLIP"
# OpenAI's ViT-B/32 as transformers names it: 151 M parameters, 224 px input, 512-d embeddings.
DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"
STATISTICS = "statistics"  # VideoAnalysis.semantics when no CLIP model read the shots
HUB_PREFIX = "hf-hub:"  # open_clip's own spelling of a Hub id
TRANSFORMERS = "transformers"
OPEN_CLIP = "open_clip"


@dataclass(frozen=True)
class CheckpointFiles:
    """The files one backend reads from a model folder: a config, the first weight file that
    exists (in this order), and files used when present (tokenizer, preprocessing)."""

    config: str
    weights: tuple[str, ...]
    optional: tuple[str, ...] = ()


CHECKPOINT_FILES: dict[str, CheckpointFiles] = {
    TRANSFORMERS: CheckpointFiles(
        "config.json",
        ("model.safetensors", "pytorch_model.bin"),
        (
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.json",
            "merges.txt",
            "special_tokens_map.json",
            "preprocessor_config.json",
        ),
    ),
    OPEN_CLIP: CheckpointFiles(
        "open_clip_config.json", ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    ),
}

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
# at 0.01 the closest anchors dominate the blend.
IMAGE_MOOD_TEMPERATURE = 0.01


def clip_setting(value: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The CLIP setting in use: `value`, else $DIFFBGM_CLIP, else `auto`; normalised to `off`,
    `auto`, a local folder, `hf-hub:org/name` (open_clip) or `org/name` (transformers)."""
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
            f"CLIP setting {raw!r} is not auto, off, a Hub id (org/name, or hf-hub:org/name "
            "for open_clip) or a local folder"
        )
    return raw if raw.startswith(HUB_PREFIX) else identifier


def clip_backend(setting: str) -> str:
    """Which backend reads a normalised, non-`off` setting: open_clip for `hf-hub:` ids and
    folders with `open_clip_config.json`, transformers for everything else."""
    if setting.startswith(HUB_PREFIX):
        return OPEN_CLIP
    if setting != "auto" and (Path(setting) / CHECKPOINT_FILES[OPEN_CLIP].config).is_file():
        return OPEN_CLIP
    return TRANSFORMERS


@dataclass(frozen=True)
class ShotReading:
    """CLIP's reading of one shot's keyframe: a unit-length embedding, a zero-shot mood
    (valence in [-1, 1], arousal in [0, 1]) and the closest scene words, best first."""

    embedding: np.ndarray
    mood: Mood
    scenes: tuple[str, ...]


class ClipEncoder(ABC):
    """A CLIP model with its tokenizer; subclasses embed images and texts (unit length), this
    class turns embeddings into shot readings. Prompt embeddings are computed once and kept.
    Images are prepared with our own resize/crop/normalise (`clip_pixels`). Thread-safe."""

    backend = ""

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
        self.name = name  # "<backend>:<model>", what report.json's analysis.semantics names
        self.image_size = int(image_size)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self._lock = threading.Lock()
        self._prompts: tuple[np.ndarray, np.ndarray] | None = None
        self.seconds_per_shot: float | None = None  # measured by the last `read_shots`

    def pixels(self, images: Sequence[np.ndarray]) -> Any:
        """(n, 3, S, S) float32 torch tensor of CLIP input from RGB uint8 images (h, w, 3)."""
        import torch

        return torch.from_numpy(clip_pixels(images, self.image_size, self.mean, self.std))

    @abstractmethod
    def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(n, embed_dim) float32 unit-length embeddings of RGB uint8 images (h, w, 3)."""

    @abstractmethod
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, embed_dim) float32 unit-length text embeddings."""

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


def _unit_rows(features: Any) -> np.ndarray:
    """A torch (n, d) tensor, or a transformers output holding it, as unit-length float32 rows
    (transformers >= 5 wraps the projected embedding in `pooler_output`)."""
    import torch

    features = getattr(features, "pooler_output", features)
    return torch.nn.functional.normalize(features.float(), dim=-1).numpy().astype(np.float32)


class TransformersClipEncoder(ClipEncoder):
    """`transformers.CLIPModel` with its `CLIPTokenizer`."""

    backend = TRANSFORMERS

    @classmethod
    def from_folder(cls, folder: Path, name: str | None = None) -> TransformersClipEncoder:
        """Load `folder` (config.json, weights, tokenizer files; preprocessor_config.json's
        size/mean/std when present). VideoError when a part is missing or the weights do not
        fit the config (transformers itself would fill the gaps with random weights)."""
        import torch

        hide_unusable_torchvision()
        from transformers import CLIPModel, CLIPTokenizer

        files = CHECKPOINT_FILES[TRANSFORMERS]
        if not (folder / files.config).is_file():
            raise VideoError(f"{folder / files.config} is missing")
        if not any((folder / w).is_file() for w in files.weights):
            raise VideoError(f"{folder} holds none of {', '.join(files.weights)}")
        loaded: Any = CLIPModel.from_pretrained(
            folder, local_files_only=True, dtype=torch.float32, output_loading_info=True
        )
        model, info = loaded  # with output_loading_info: (model, {"missing_keys": ..., ...})
        gaps = sorted(info.get("missing_keys", ())) + sorted(info.get("mismatched_keys", ()))
        if gaps:
            raise VideoError(f"the weights in {folder} do not fit its config: {gaps[:3]} ...")
        # Without its files CLIPTokenizer still builds one, knowing only the special tokens.
        if not (folder / "tokenizer.json").is_file() and not all(
            (folder / name).is_file() for name in ("vocab.json", "merges.txt")
        ):
            raise VideoError(f"{folder} has no tokenizer (tokenizer.json or vocab.json+merges.txt)")
        try:
            tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, TypeError) as exc:
            raise VideoError(f"{folder} has no usable CLIP tokenizer: {exc}") from exc
        size, mean, std = _transformers_preprocessing(folder, model.config)
        return cls(model, tokenizer, f"{TRANSFORMERS}:{name or folder}", size, mean, std)

    @classmethod
    def from_config(cls, config: Any, tokenizer: Any, seed: int = 0) -> TransformersClipEncoder:
        """A randomly initialised `CLIPModel` of `config` (a CLIPConfig) with `tokenizer`,
        built without any download: for timing."""
        import torch

        hide_unusable_torchvision()
        from transformers import CLIPModel

        torch.manual_seed(seed)
        model = CLIPModel(config)
        size = int(config.vision_config.image_size)
        return cls(model, tokenizer, f"{TRANSFORMERS}:random:{seed}", size)

    def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        pixels = self.pixels(images)
        with self._lock, torch.inference_mode():
            return _unit_rows(self.model.get_image_features(pixel_values=pixels))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        longest = int(self.model.config.text_config.max_position_embeddings)
        tokens = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=longest, return_tensors="pt"
        )
        with self._lock, torch.inference_mode():
            return _unit_rows(
                self.model.get_text_features(
                    input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
                )
            )


def _transformers_preprocessing(
    folder: Path, config: Any
) -> tuple[int, Sequence[float], Sequence[float]]:
    """(input size, mean, std) from preprocessor_config.json when present (read as data: no
    image processor, which would want torchvision), else the vision config and CLIP's values."""
    size: Any = int(config.vision_config.image_size)
    mean: Sequence[float] = tuple(CLIP_MEAN)
    std: Sequence[float] = tuple(CLIP_STD)
    path = folder / "preprocessor_config.json"
    if path.is_file():
        pre = json.loads(path.read_text())
        crop = pre.get("crop_size") or size
        size = crop.get("height", size) if isinstance(crop, dict) else crop
        mean, std = pre.get("image_mean", mean), pre.get("image_std", std)
    return int(size), mean, std


class OpenClipEncoder(ClipEncoder):
    """An open_clip model with its tokenizer."""

    backend = OPEN_CLIP

    @classmethod
    def from_folder(cls, folder: Path, name: str | None = None) -> OpenClipEncoder:
        """Load `folder` (open_clip_config.json + weights); VideoError when either is missing
        or the weights do not fit (open_clip itself would go on with random weights)."""
        hide_unusable_torchvision()
        import open_clip

        files = CHECKPOINT_FILES[OPEN_CLIP]
        config_path = folder / files.config
        if not config_path.is_file():
            raise VideoError(f"{config_path} is missing")
        if not any((folder / w).is_file() for w in files.weights):
            raise VideoError(f"{folder} holds none of {', '.join(files.weights)}")
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
            f"{OPEN_CLIP}:{name or folder}",
            int(size),
            pre.get("mean", tuple(CLIP_MEAN)),
            pre.get("std", tuple(CLIP_STD)),
        )

    @classmethod
    def from_config(cls, model_cfg: Mapping[str, Any], seed: int = 0) -> OpenClipEncoder:
        """A randomly initialised model of open_clip's `model_cfg` (embed_dim, vision_cfg,
        text_cfg), built here without any download: for tests and timing."""
        hide_unusable_torchvision()
        import open_clip
        import torch

        torch.manual_seed(seed)
        model = open_clip.CLIP(**dict(model_cfg))
        context = int(model_cfg.get("text_cfg", {}).get("context_length", 77))
        tokenizer = open_clip.SimpleTokenizer(context_length=context)
        size = model_cfg.get("vision_cfg", {}).get("image_size", 224)
        return cls(model, tokenizer, f"{OPEN_CLIP}:random:{seed}", int(size))

    def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        pixels = self.pixels(images)
        with self._lock, torch.inference_mode():
            return _unit_rows(self.model.encode_image(pixels))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        tokens = self.tokenizer(list(texts))
        with self._lock, torch.inference_mode():
            return _unit_rows(self.model.encode_text(tokens))


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


def fetch_clip_files(repo: str, files: CheckpointFiles, local_files_only: bool) -> Path:
    """The snapshot folder holding `repo`'s config, first available weights and optional
    files in the Hugging Face cache; downloads them unless `local_files_only`. Raises whatever
    huggingface_hub raises for the config, VideoError when no weight file exists."""
    from huggingface_hub import hf_hub_download

    config = Path(hf_hub_download(repo, files.config, local_files_only=local_files_only))
    last: Exception | None = None
    for weights in files.weights:
        try:
            hf_hub_download(repo, weights, local_files_only=local_files_only)
            break
        except Exception as exc:  # the Hub's errors come in many types; try the next name
            last = exc
    else:
        raise VideoError(f"{repo} has none of {', '.join(files.weights)}: {last}")
    for name in files.optional:
        try:
            hf_hub_download(repo, name, local_files_only=local_files_only)
        except Exception:  # optional: a repository without it is still complete
            continue
    return config.parent


def model_folder(setting: str, backend: str) -> tuple[str, Path]:
    """(the model's name, its local folder) for a normalised, non-`off` setting: a folder as
    is; a Hub id from the cache first, then from the Hub when it answers. Raises on failure."""
    model = DEFAULT_CLIP_MODEL if setting == "auto" else setting
    if Path(model).is_dir():
        return model, Path(model)
    repo = model.removeprefix(HUB_PREFIX)
    files = CHECKPOINT_FILES[backend]
    try:
        return model, fetch_clip_files(repo, files, local_files_only=True)
    except Exception:
        if not hub_reachable():
            raise VideoError(
                f"{model} is not cached and the Hugging Face Hub cannot be reached"
            ) from None
        return model, fetch_clip_files(repo, files, local_files_only=False)


def import_backend(backend: str) -> None:
    """Import the backend's package (after hiding an unusable torchvision); raises ImportError
    or whatever a broken install raises, so a missing package fails before any download."""
    hide_unusable_torchvision()
    if backend == OPEN_CLIP:
        import open_clip  # noqa: F401
    else:
        from transformers import CLIPModel, CLIPTokenizer  # noqa: F401


def load_clip_encoder(setting: str) -> ClipEncoder:
    """The encoder for a normalised, non-`off` setting, by the backend its form names."""
    backend = clip_backend(setting)
    import_backend(backend)
    model, folder = model_folder(setting, backend)
    if backend == OPEN_CLIP:
        return OpenClipEncoder.from_folder(folder, name=model)
    return TransformersClipEncoder.from_folder(folder, name=model)


class ClipLoader:
    """Loads the CLIP encoder of one setting at most once (a failure is remembered too, so an
    offline machine logs one line and pays nothing on later composes). Thread-safe."""

    def __init__(self, setting: str | None = None) -> None:
        self.setting = clip_setting(setting)
        self._lock = threading.Lock()
        self._tried = False
        self._encoder: ClipEncoder | None = None
        self.failure: str | None = None

    @classmethod
    def of(cls, encoder: ClipEncoder) -> ClipLoader:
        """A loader that hands out `encoder` (already built, e.g. from a config in tests)."""
        loader = cls("auto")
        loader.setting, loader._tried, loader._encoder = encoder.name, True, encoder
        return loader

    def get(self) -> ClipEncoder | None:
        """The encoder, or None when the setting is off or loading failed."""
        if self.setting == "off":
            return None
        with self._lock:
            if not self._tried:
                self._tried = True
                try:
                    self._encoder = load_clip_encoder(self.setting)
                except Exception as exc:  # any failure means: use picture statistics
                    self.failure = f"{type(exc).__name__}: {exc}"
                    log.warning(
                        "CLIP (%s) unavailable, shot semantics from picture statistics: %s",
                        self.setting,
                        self.failure,
                    )
            return self._encoder
