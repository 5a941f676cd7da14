"""Plain, JSON-friendly records of what the video analysis found.

Units: times in seconds, sizes in pixels/bytes, frame rates in frames per second. Every record
round-trips through `to_dict()` / `from_dict()` (numpy arrays become lists of floats).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

# The shot detectors diffbgm.video.shots offers (its ShotOptions.method).
ShotMethod = Literal["content", "adaptive", "transnetv2"]


@dataclass(frozen=True)
class VideoInfo:
    """Container metadata of a video file, read without decoding it fully.

    `duration_s` in seconds; `fps` is the average frame rate (frames per second);
    `variable_fps` is True when frame durations differ noticeably; `rotation_deg` is the
    display rotation (0, 90, 180 or 270 degrees, counter-clockwise, FFmpeg's display-matrix
    convention) that turns decoded frames upright: `np.rot90(frame, rotation_deg // 90)`.
    """

    path: Path
    container: str
    duration_s: float
    width: int
    height: int
    fps: float
    variable_fps: bool
    rotation_deg: int
    n_frames_estimate: int
    has_audio: bool
    size_bytes: int
    video_codec: str

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) in pixels as shown, after the display rotation."""
        if self.rotation_deg % 180 == 90:
            return self.height, self.width
        return self.width, self.height

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "container": self.container,
            "duration_s": self.duration_s,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "variable_fps": self.variable_fps,
            "rotation_deg": self.rotation_deg,
            "n_frames_estimate": self.n_frames_estimate,
            "has_audio": self.has_audio,
            "size_bytes": self.size_bytes,
            "video_codec": self.video_codec,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoInfo:
        return cls(
            path=Path(data["path"]),
            container=str(data["container"]),
            duration_s=float(data["duration_s"]),
            width=int(data["width"]),
            height=int(data["height"]),
            fps=float(data["fps"]),
            variable_fps=bool(data["variable_fps"]),
            rotation_deg=int(data["rotation_deg"]),
            n_frames_estimate=int(data["n_frames_estimate"]),
            has_audio=bool(data["has_audio"]),
            size_bytes=int(data["size_bytes"]),
            video_codec=str(data["video_codec"]),
        )


@dataclass(frozen=True)
class Shot:
    """One shot: frames between two cuts, `start_s` inclusive to `end_s` exclusive (seconds)."""

    index: int
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "start_s": self.start_s, "end_s": self.end_s}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Shot:
        return cls(
            index=int(data["index"]), start_s=float(data["start_s"]), end_s=float(data["end_s"])
        )


@dataclass(frozen=True)
class ShotFeatures:
    """What one shot looks like, on fixed scales so shots of different videos compare.

    - motion: mean frame-to-frame motion in [0, 1] — mean optical-flow magnitude in pixels per
      second on a frame 160 px wide, divided by `MOTION_FULL_SCALE_PX_PER_S` (see
      diffbgm.video.features) and clipped.
    - motion_change: mean absolute change of that motion between analysed frames (per second,
      same scale), clipped to [0, 1].
    - brightness: mean luma in [0, 1]; brightness_change: mean |Δ luma| per second, in [0, 1].
    - saturation: mean HSV saturation in [0, 1].
    - colour_temperature: warm > 0 > cool, in [-1, 1] (red minus blue, normalised).
    - visual_rhythm: intra-shot change events per second (sudden jumps of frame difference).
    - semantic: an image embedding (e.g. CLIP) or None when no model was available.
    - valence in [-1, 1] (sad/dark .. happy/bright), arousal in [0, 1] (calm .. excited).
    - scenes: scene words CLIP found closest to the shot's keyframe, best first (empty
      without CLIP; reports written before this field load with none).
    """

    shot_index: int
    motion: float
    motion_change: float
    brightness: float
    brightness_change: float
    saturation: float
    colour_temperature: float
    visual_rhythm: float
    # Arrays make `==` ambiguous, so equality compares the scalar features only.
    semantic: np.ndarray | None = field(compare=False)
    valence: float
    arousal: float
    scenes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "shot_index": self.shot_index,
            "motion": self.motion,
            "motion_change": self.motion_change,
            "brightness": self.brightness,
            "brightness_change": self.brightness_change,
            "saturation": self.saturation,
            "colour_temperature": self.colour_temperature,
            "visual_rhythm": self.visual_rhythm,
            "semantic": None if self.semantic is None else [float(x) for x in self.semantic],
            "valence": self.valence,
            "arousal": self.arousal,
            "scenes": list(self.scenes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShotFeatures:
        semantic = data.get("semantic")
        return cls(
            shot_index=int(data["shot_index"]),
            motion=float(data["motion"]),
            motion_change=float(data["motion_change"]),
            brightness=float(data["brightness"]),
            brightness_change=float(data["brightness_change"]),
            saturation=float(data["saturation"]),
            colour_temperature=float(data["colour_temperature"]),
            visual_rhythm=float(data["visual_rhythm"]),
            semantic=None if semantic is None else np.asarray(semantic, dtype=np.float32),
            valence=float(data["valence"]),
            arousal=float(data["arousal"]),
            scenes=tuple(str(word) for word in data.get("scenes", ())),
        )


@dataclass(frozen=True)
class StretchFeatures:
    """What a stretch of one shot looks like: the shot cut into pieces of a few seconds.

    `features` is on ShotFeatures' scales, measured on the stretch's frames only (its
    `shot_index` is the shot's; no semantic embedding or scene words: those belong to the
    shot). The mood blends the stretch's picture with the shot's semantic mood, and its cut
    rate is the shot's. A long shot's phrases take their controls from these (docs/plan.md).
    """

    start_s: float
    end_s: float
    features: ShotFeatures

    def to_dict(self) -> dict[str, Any]:
        return {"start_s": self.start_s, "end_s": self.end_s, "features": self.features.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StretchFeatures:
        return cls(
            start_s=float(data["start_s"]),
            end_s=float(data["end_s"]),
            features=ShotFeatures.from_dict(data["features"]),
        )


@dataclass(frozen=True)
class VideoAnalysis:
    """Everything the planner needs from a video: metadata, shots and one feature row per shot.

    `timings_s` maps a stage name ("probe", "decode", "shots", "features", ...) to seconds.
    `semantics` says what read the shots' meaning: "clip:<backend>:<model>" (CLIP embeddings,
    zero-shot mood and scene words; backend `transformers` or `open_clip`, e.g.
    "clip:transformers:openai/clip-vit-base-patch32") or "statistics" (picture statistics only;
    also what reports written before this field meant).
    `stretches` cuts every shot into stretches of a few seconds, in time order (empty in
    reports written before it: the planner then uses whole shots).
    """

    info: VideoInfo
    shots: list[Shot]
    features: list[ShotFeatures]
    thumbnails: list[Path] | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    semantics: str = "statistics"
    stretches: list[StretchFeatures] = field(default_factory=list)

    @property
    def cut_times_s(self) -> list[float]:
        """Start times (seconds) of every shot after the first."""
        return [shot.start_s for shot in self.shots[1:]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "info": self.info.to_dict(),
            "shots": [shot.to_dict() for shot in self.shots],
            "features": [row.to_dict() for row in self.features],
            "thumbnails": None if self.thumbnails is None else [str(p) for p in self.thumbnails],
            "timings_s": dict(self.timings_s),
            "semantics": self.semantics,
            "stretches": [stretch.to_dict() for stretch in self.stretches],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoAnalysis:
        thumbnails = data.get("thumbnails")
        return cls(
            info=VideoInfo.from_dict(data["info"]),
            shots=[Shot.from_dict(s) for s in data["shots"]],
            features=[ShotFeatures.from_dict(f) for f in data["features"]],
            thumbnails=None if thumbnails is None else [Path(p) for p in thumbnails],
            timings_s={str(k): float(v) for k, v in data.get("timings_s", {}).items()},
            semantics=str(data.get("semantics", "statistics")),
            stretches=[StretchFeatures.from_dict(s) for s in data.get("stretches") or ()],
        )
