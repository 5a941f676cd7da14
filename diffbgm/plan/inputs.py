"""What the planner reads from its neighbours, described as Protocols.

The plan sits below the video package (decoding, shot detection, CLIP) and must not import
it, nor the calibration's file loading, just to name the types it reads. These classes list
exactly the attributes the planner touches: diffbgm.video.types.VideoAnalysis and
diffbgm.music.calibration.Calibration fit them structurally, mypy checks that wherever one is
passed in, and a test may hand in any small object with the same attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np


class QuantileTables(Protocol):
    """What the plan needs from a calibration (diffbgm.music.calibration.Calibration has it)."""

    def to_quantile(self, name: str, raw: float, /) -> float: ...

    def to_raw(self, name: str, quantile: float, /) -> float: ...


class ShotLike(Protocol):
    """One shot: its index and its span in seconds (start inclusive, end exclusive)."""

    @property
    def index(self) -> int: ...

    @property
    def start_s(self) -> float: ...

    @property
    def end_s(self) -> float: ...

    @property
    def duration_s(self) -> float: ...


class ShotFeaturesLike(Protocol):
    """One shot's feature row; diffbgm.video.types.ShotFeatures documents the scales.

    `semantic` is the shot's image (CLIP) embedding, or None without one.
    """

    @property
    def shot_index(self) -> int: ...

    @property
    def motion(self) -> float: ...

    @property
    def motion_change(self) -> float: ...

    @property
    def brightness(self) -> float: ...

    @property
    def brightness_change(self) -> float: ...

    @property
    def saturation(self) -> float: ...

    @property
    def colour_temperature(self) -> float: ...

    @property
    def visual_rhythm(self) -> float: ...

    @property
    def semantic(self) -> np.ndarray | None: ...

    @property
    def valence(self) -> float: ...

    @property
    def arousal(self) -> float: ...


class StretchLike(Protocol):
    """A stretch of a few seconds of one shot and its feature row (`features.shot_index` is
    the shot's)."""

    @property
    def start_s(self) -> float: ...

    @property
    def end_s(self) -> float: ...

    @property
    def features(self) -> ShotFeaturesLike: ...


class VideoInfoLike(Protocol):
    """The video's length in seconds, and its path (named in error messages)."""

    @property
    def path(self) -> Path: ...

    @property
    def duration_s(self) -> float: ...


class AnalysisLike(Protocol):
    """An analysed video: its shots, one feature row per shot (some may lack one), the cut
    times (start of every shot after the first, seconds), and every shot measured in
    stretches of a few seconds (may be empty: then whole shots are used)."""

    @property
    def info(self) -> VideoInfoLike: ...

    @property
    def shots(self) -> Sequence[ShotLike]: ...

    @property
    def features(self) -> Sequence[ShotFeaturesLike]: ...

    @property
    def cut_times_s(self) -> Sequence[float]: ...

    @property
    def stretches(self) -> Sequence[StretchLike]: ...
