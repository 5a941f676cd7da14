"""Where training windows come from: the POP909 cache (music-derived controls) or BGM909
(the same music with the released video features as conditions)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from diffbgm.errors import DiffBGMError
from diffbgm.model.conditions import Conditions, stack_windows
from diffbgm.model.config import preset

if TYPE_CHECKING:
    from trainer.train import TrainConfig


class WindowSource(Protocol):
    """A dataset of windows: item = dict(roll=(2, T, P) float in [-1, 1], cond=WindowConditions)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...


@dataclass(frozen=True)
class DataBundle:
    """Train and valid windows, how to batch them, and what the model must look like."""

    train: WindowSource
    valid: WindowSource
    collate: Callable[[list[dict[str, Any]]], tuple[torch.Tensor, Conditions]]
    reseed: Callable[[int], None]  # sets the augmentation seed of the next items
    model_overrides: dict[str, Any] = field(default_factory=dict)


def stack_items(
    items: list[dict[str, Any]], pitch_low: int, n_pitches: int
) -> tuple[torch.Tensor, Conditions]:
    """Items -> (roll (B, 2, T, P) float32, Conditions of B windows)."""
    roll = torch.from_numpy(
        np.stack([np.asarray(item["roll"], dtype=np.float32) for item in items])
    )
    return roll, stack_windows([item["cond"] for item in items], pitch_low, n_pitches)


def load_data(config: TrainConfig) -> DataBundle:
    """The data bundle a TrainConfig asks for (BGM909 if config.bgm909 is set)."""
    model_config = preset(config.preset, **config.model_overrides)
    if not Path(config.data).is_dir():
        raise DiffBGMError(
            f"no training cache at {config.data}: build it with `python -m trainer cache`"
        )
    if config.bgm909:
        return _bgm909_bundle(config, model_config.window_steps, model_config.max_segments)
    return _pop909_bundle(config, model_config.window_steps, model_config.max_segments)


def _bgm909_bundle(config: TrainConfig, window_steps: int, max_segments: int) -> DataBundle:
    from trainer.bgm909 import BGM909_MODEL_OVERRIDES, Bgm909Windows

    assert config.bgm909 is not None
    train = Bgm909Windows(
        config.data, config.bgm909, "train", window_steps, max_segments, config.augment
    )
    valid = Bgm909Windows(config.data, config.bgm909, "valid", window_steps, max_segments, False)
    if len(train) == 0:
        raise DiffBGMError(
            f"no training songs have both a cache entry in {config.data} and features in "
            f"{config.bgm909}"
        )
    model_config = preset(config.preset, **{**BGM909_MODEL_OVERRIDES, **config.model_overrides})
    n_pitches = int(np.asarray(train[0]["roll"]).shape[-1])
    if n_pitches != model_config.n_pitches:
        raise DiffBGMError(
            f"the cache has {n_pitches} pitches but the model expects {model_config.n_pitches}"
        )
    return DataBundle(
        train=train,
        valid=valid,
        collate=lambda items: stack_items(items, model_config.pitch_low, model_config.n_pitches),
        reseed=train.set_seed,
        model_overrides=dict(BGM909_MODEL_OVERRIDES),
    )


def _pop909_bundle(config: TrainConfig, window_steps: int, max_segments: int) -> DataBundle:
    raise NotImplementedError
