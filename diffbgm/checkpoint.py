"""Model checkpoints: a folder with config.json, model.safetensors and a README.md model card,
and optionally a `weak/` folder holding a checkpoint of the weaker model that autoguidance
pushes the predictions away from (`diffbgm.model.autoguidance`), a `critic.safetensors`
window critic that picks among sampled candidates (`diffbgm.generation.critic`) and a
`figured/` folder holding a network of the songs in 16th-note figures, which composes the
pieces that ask for them where `GenerationConfig.figured_network_from` says so (it samples
with the parent's settings, weak model and critic).

Loaded from a local folder or a Hugging Face Hub id (through huggingface_hub's cache; with
HF_HUB_OFFLINE=1 only the cache is used). Weights are safetensors only, never pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from diffbgm.errors import CheckpointError
from diffbgm.generation.config import GenerationConfig
from diffbgm.generation.critic import CRITIC_NAME, WindowCritic
from diffbgm.model.autoguidance import check_weak_model
from diffbgm.model.config import ModelConfig
from diffbgm.model.unet import Denoiser, count_parameters

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
WEAK_FOLDER = "weak"
FIGURED_FOLDER = "figured"
FORMAT = "diffbgm-checkpoint"
FORMAT_VERSION = 1
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class LoadedModel:
    """A denoiser in eval mode with its config and the checkpoint's extra information."""

    model: Denoiser
    config: ModelConfig
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    weak: LoadedModel | None = None  # the autoguidance model of the `weak/` folder, if any
    critic: WindowCritic | None = None  # the window critic of `critic.safetensors`, if any
    figured: LoadedModel | None = None  # the network of the `figured/` folder, if any

    @property
    def guidance_range(self) -> tuple[float, float] | None:
        """The guidance scales a guidance-distilled network was trained on (None: any)."""
        return guidance_range(self.config, self.extra)

    @property
    def distilled_steps(self) -> int:
        """The DDIM step count a step-distilled network learned (0: not step-distilled)."""
        return distilled_steps(self.extra)

    @property
    def generation(self) -> GenerationConfig:
        """The generation settings chosen for these weights (stored in config.json's
        `extra.generation`; knobs it does not name keep GenerationConfig's defaults)."""
        return GenerationConfig.from_dict(self.extra.get("generation") or {})


def save_checkpoint(
    folder: str | Path,
    model: Denoiser,
    config: ModelConfig,
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write config.json, model.safetensors (weights cast to `dtype`) and README.md.

    `extra` is free JSON (generation defaults such as steps / guidance / onset threshold,
    training step, data info); it is stored in config.json and summarised in the card.
    """
    dtype_name = next((name for name, d in _DTYPES.items() if d == dtype), None)
    if dtype_name is None:
        raise ValueError(f"unsupported checkpoint dtype {dtype}; use one of {sorted(_DTYPES)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    extra = dict(extra or {})
    state = {
        name: tensor.detach().to("cpu", dtype).contiguous()
        for name, tensor in model.state_dict().items()
    }
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": FORMAT, "dtype": dtype_name})
    parameters = count_parameters(model)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dtype": dtype_name,
        "parameters": parameters,
        "model": config.to_dict(),
        "extra": extra,
    }
    (folder / CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    (folder / CARD_NAME).write_text(model_card(config, parameters, dtype_name, extra))
    return folder


def model_card(config: ModelConfig, parameters: int, dtype_name: str, extra: dict[str, Any]) -> str:
    """A short model card (the trainer replaces it with the full one)."""
    lines = [
        "---",
        "library_name: diffbgm",
        "tags: [music-generation, diffusion, piano-roll, video-background-music]",
        "license: mit",
        "---",
        "# Diff-BGM piano-roll denoiser",
        "",
        "A UNet over (16th-note steps x pitch) with segment-aware cross-attention and a "
        "feature selector, after *Diff-BGM* (Li et al., CVPR 2024). Load it with "
        "`diffbgm.checkpoint.load_checkpoint(path_or_hub_id)`.",
        "",
        f"- parameters: {parameters:,} (stored as {dtype_name})",
        f"- window: {config.window_steps} steps x {config.n_pitches} pitches from MIDI "
        f"{config.pitch_low}",
        f"- selector: {config.selector} (threshold {config.selector_threshold}), "
        f"SAC: {config.sac}, condition dropout: {config.p_uncond}",
        f"- diffusion: {config.diffusion.num_train_steps} steps, "
        f"{config.diffusion.beta_schedule} betas, {config.diffusion.prediction}-prediction",
    ]
    if extra:
        lines += ["", "| field | value |", "|---|---|"]
        lines += [f"| {key} | {json.dumps(value)} |" for key, value in sorted(extra.items())]
    return "\n".join(lines) + "\n"


def resolve_checkpoint(path_or_hub_id: str | Path) -> Path:
    """A local folder as is; otherwise a Hub id fetched into (or found in) the HF cache."""
    local = Path(path_or_hub_id).expanduser()
    if local.is_dir():
        return local
    text = str(path_or_hub_id)
    if not _HUB_ID.match(text) or local.exists():
        raise CheckpointError(f"no checkpoint folder at {local} (and it is not a Hub id)")
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(
            repo_id=text,
            allow_patterns=[
                CRITIC_NAME,
                *(
                    name
                    for file in (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)
                    for name in (file, f"{WEAK_FOLDER}/{file}")
                ),
            ],
            local_files_only=offline,
        )
    except Exception as exc:  # hub errors come in many types (HTTP, offline, missing cache)
        where = "the local Hugging Face cache (HF_HUB_OFFLINE is set)" if offline else "the Hub"
        raise CheckpointError(
            f"checkpoint {text!r} is neither a local folder nor available from {where}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return Path(folder)


def guidance_range(config: ModelConfig, extra: dict[str, Any]) -> tuple[float, float] | None:
    """(low, high): the scales a guidance-distilled network learned (`extra.distill_scales`, or
    a run's `train_config`);
    outside them its output is an extrapolation nobody measured. None for a network that
    takes no scale (classifier-free guidance works at any scale) or that does not say."""
    train = extra.get("train_config") or {}  # a training run's weights, not yet exported
    scales = extra.get("distill_scales") or (
        [train["distill_min_scale"], train["distill_max_scale"]]
        if "distill_min_scale" in train
        else None
    )
    if not config.guidance_embedding or not scales:
        return None
    low, high = (float(value) for value in scales)
    return low, high


def distilled_steps(extra: dict[str, Any]) -> int:
    """The DDIM step count a step-distilled network learned (`extra.distill_steps`, or a
    run's `train_config`); 0 for any other network. Its steps are jumps on that grid: with
    another sampler or count they are not estimates of anything."""
    train = extra.get("train_config") or {}
    return int(extra.get("distill_steps") or train.get("distill_steps") or 0)


def read_config(folder: Path) -> tuple[ModelConfig, dict[str, Any]]:
    """(model config, extra) from folder/config.json, with errors naming the file."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: not a Diff-BGM checkpoint folder")
    try:
        meta = json.loads(path.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"format is {meta.get('format')!r}, expected {FORMAT!r}")
        config = ModelConfig.from_dict(meta["model"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} is not a valid checkpoint config: {exc}") from exc
    return config, dict(meta.get("extra") or {})


def load_checkpoint(path_or_hub_id: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a checkpoint folder (or Hub id) into a float32 Denoiser in eval mode, with the
    weak model of its `weak/` folder where it has one."""
    folder = resolve_checkpoint(path_or_hub_id)
    weak = None
    if (folder / WEAK_FOLDER / CONFIG_NAME).is_file():
        weak = _load_folder(folder / WEAK_FOLDER, device)
    loaded = _load_folder(folder, device)
    if (folder / CRITIC_NAME).is_file():
        try:
            loaded = replace(loaded, critic=WindowCritic.load(folder / CRITIC_NAME))
        except Exception as exc:  # safetensors raises its own error type for corrupt files
            raise CheckpointError(f"{folder / CRITIC_NAME} cannot be read: {exc}") from exc
    if weak is not None:
        try:
            check_weak_model(loaded.config, weak.config)
        except ValueError as exc:
            raise CheckpointError(f"{folder / WEAK_FOLDER}: {exc}") from exc
        loaded = replace(loaded, weak=weak)
    if (folder / FIGURED_FOLDER / CONFIG_NAME).is_file():
        loaded = replace(loaded, figured=_figured_network(folder / FIGURED_FOLDER, loaded, device))
    return loaded


def _figured_network(folder: Path, parent: LoadedModel, device: str | torch.device) -> LoadedModel:
    """The `figured/` network, with the parent's weak model and critic: it must read the same
    conditions and write the same roll as the parent, so that it can stand in for it."""
    figured = _load_folder(folder, device)
    for name in ("n_pitches", "pitch_low", "max_segments", "dynamic_dim", "semantic_dim"):
        if getattr(figured.config, name) != getattr(parent.config, name):
            raise CheckpointError(
                f"{folder}: {name} {getattr(figured.config, name)} differs from the parent "
                f"network's {getattr(parent.config, name)}; a figured network must stand in "
                "for the parent"
            )
    if parent.weak is not None:
        try:
            check_weak_model(figured.config, parent.weak.config)
        except ValueError as exc:
            raise CheckpointError(f"{folder}: the parent's weak model: {exc}") from exc
    return replace(figured, weak=parent.weak, critic=parent.critic)


def _load_folder(folder: Path, device: str | torch.device) -> LoadedModel:
    """One checkpoint folder's config and weights (a `weak/` folder inside is not read)."""
    config, extra = read_config(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing")
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error type for corrupt files
        raise CheckpointError(f"{weights} cannot be read: {exc}") from exc
    model = Denoiser(config)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{weights} does not match its config: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}"
        )
    try:
        # load_state_dict copies into the float32 parameters, so bf16 weights are upcast
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights} does not match its config: {exc}") from exc
    model.to(device).eval()
    return LoadedModel(model=model, config=config, extra=extra, path=folder)


def networks_sha256(folder: str | Path) -> str | None:
    """The identity of the networks a checkpoint folder samples with by default: its weights,
    and its weak model's where it ships one (autoguidance calls it); a `figured/` network,
    which composes only where a knob asks, is not part of it. None where the folder has no
    weights (e.g. a Hub id). A speed record or a critic's composed features belong to one
    identity."""
    weights = Path(folder) / WEIGHTS_NAME
    if not weights.is_file():
        return None
    digest = hashlib.sha256(weights.read_bytes())
    weak = Path(folder) / WEAK_FOLDER / WEIGHTS_NAME
    if weak.is_file():
        digest.update(weak.read_bytes())
    return digest.hexdigest()
