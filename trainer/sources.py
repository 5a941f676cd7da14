"""Where training windows come from: the POP909 cache (music-derived controls) or BGM909
(the same music with the released video features as conditions)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from diffbgm.errors import DiffBGMError
from diffbgm.model.conditions import Conditions
from diffbgm.model.config import ModelConfig, preset
from diffbgm.music.roll import RollSpec
from trainer.bgm909 import BGM909_MODEL_OVERRIDES, Bgm909Windows
from trainer.dataset import Pop909Windows, WindowItem, collate_windows

if TYPE_CHECKING:
    from trainer.train import TrainConfig


class WindowSource(Protocol):
    """A dataset of windows: item = dict(roll=(2, T, P) float in [-1, 1], cond=WindowConditions)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> WindowItem: ...


@dataclass(frozen=True)
class DataBundle:
    """Train and valid windows, how to batch them, and what the model must look like."""

    train: WindowSource
    valid: WindowSource
    collate: Callable[[list[WindowItem]], tuple[torch.Tensor, Conditions]]
    reseed: Callable[[int], None]  # sets the augmentation seed of the next items
    model_overrides: dict[str, Any] = field(default_factory=dict)


def roll_spec_for(model_config: ModelConfig) -> RollSpec:
    """The 16th-note grid and pitch range a model works on."""
    return RollSpec(pitch_low=model_config.pitch_low, n_pitches=model_config.n_pitches)


def window_bars_for(model_config: ModelConfig, spec: RollSpec) -> int:
    if model_config.window_steps % spec.steps_per_bar:
        raise DiffBGMError(
            f"window_steps={model_config.window_steps} is not a whole number of "
            f"{spec.steps_per_bar}-step bars"
        )
    return model_config.window_steps // spec.steps_per_bar


def load_data(config: TrainConfig) -> DataBundle:
    """The data bundle a TrainConfig asks for (BGM909 if config.bgm909 is set)."""
    if not Path(config.data).is_dir():
        raise DiffBGMError(
            f"no training cache at {config.data}: build it with `python -m trainer cache`"
        )
    overrides = dict(BGM909_MODEL_OVERRIDES) if config.bgm909 else {}
    model_config = preset(config.preset, **{**overrides, **config.model_overrides})
    spec = roll_spec_for(model_config)
    bars = window_bars_for(model_config, spec)
    train: Pop909Windows | Bgm909Windows
    valid: Pop909Windows | Bgm909Windows
    reseed: Callable[[int], None]
    if config.bgm909:
        train = Bgm909Windows(
            config.data,
            config.bgm909,
            "train",
            bars,
            model_config.max_segments,
            config.augment,
            config.seed,
            spec,
        )
        valid = Bgm909Windows(
            config.data, config.bgm909, "valid", bars, model_config.max_segments, False, 0, spec
        )
        reseed = train.set_seed
    else:
        train = Pop909Windows(
            config.data,
            "train",
            spec,
            bars,
            model_config.max_segments,
            config.augment,
            config.seed,
            recall=model_config.recall_input,
            playing=config.playing,
            figured_from=config.figured_from,
            figured_below=config.figured_below,
        )
        valid = Pop909Windows(
            config.data,
            "valid",
            spec,
            bars,
            model_config.max_segments,
            False,
            0,
            train.calibration,
            recall=model_config.recall_input,
        )
        reseed = train.set_epoch
    if len(train) == 0:
        where = f"{config.data} with features in {config.bgm909}" if config.bgm909 else config.data
        if config.playing != "all":
            where += f" among the songs played {config.playing}ly (--playing)"
        if config.figured_from > 0:
            where += (
                f" among the songs of figuration at least {config.figured_from:g} (--figured-from)"
            )
        if config.figured_below < 1:
            where += (
                f" among the songs of figuration below {config.figured_below:g} (--figured-below)"
            )
        raise DiffBGMError(f"no training windows of {bars} bars in {where}")
    return DataBundle(
        train=train,
        valid=valid,
        collate=lambda items: collate_windows(items, spec),
        reseed=reseed,
        model_overrides=overrides,
    )
