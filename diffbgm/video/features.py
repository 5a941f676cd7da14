"""Per-shot visual features on fixed, documented scales, and the mood heuristics built on them.

All features are computed on the analysis frames of `decode_frames` (long side 160 px, about
12 frames per second). Optical flow runs on a further-halved gray frame because that is where
Farnebäck is both fast and stable; its magnitudes are converted back to the 160 px scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from diffbgm.video.decode import DecodedFrames
from diffbgm.video.types import Shot, ShotFeatures, StretchFeatures

# Mean optical-flow speed (pixels per second on a frame 160 px on its long side) that counts as
# full motion (1.0): the picture content crossing half the frame in a second.
MOTION_FULL_SCALE_PX_PER_S = 80.0
# Change of normalised motion per second that counts as 1.0 (e.g. still -> full in 0.5 s).
MOTION_CHANGE_FULL_SCALE_PER_S = 2.0
# Change of mean brightness (0-1) per second that counts as 1.0 (a fade over 2 s).
BRIGHTNESS_CHANGE_FULL_SCALE_PER_S = 0.5
# Flow is computed on frames this many pixels on the long side.
FLOW_LONG_SIDE = 80
# A frame difference this many times the shot's median (and above 3 % of full scale) is an
# intra-shot change event (a flash, a fast action, a whip pan).
RHYTHM_PEAK_RATIO = 2.5
RHYTHM_MIN_DIFF = 0.03
# A shot is also measured in stretches of about this many seconds (`stretch_features`).
STRETCH_S = 2.0


@dataclass(frozen=True)
class Mood:
    """valence in [-1, 1] (sad/dark .. happy/bright), arousal in [0, 1] (calm .. excited)."""

    valence: float
    arousal: float


@dataclass(frozen=True)
class FrameSeries:
    """Per-frame measurements of a clip, reused by every shot (arrays of length n)."""

    times_s: np.ndarray
    brightness: np.ndarray  # mean luma, 0-1
    contrast: np.ndarray  # luma standard deviation, 0-1
    saturation: np.ndarray  # mean HSV saturation, 0-1
    warmth: np.ndarray  # (R - B) / (R + B), -1..1
    motion_px_s: np.ndarray  # mean flow speed from the previous frame; 0 for the first frame
    difference: np.ndarray  # mean |gray difference| from the previous frame, 0-1


def frame_series(frames: DecodedFrames, chunk: int = 256) -> FrameSeries:
    """Measure every analysis frame once (colour statistics, flow speed, frame difference).

    Statistics are taken `chunk` frames at a time so memory stays flat for long videos. They are
    exact integer sums over each frame's pixels (no float copy of the frames), so the means are
    those of the 0-255 values divided by 255, and each chunk takes a handful of numpy calls."""
    n = frames.n_frames
    gray = frames.gray()  # (n, h, w) uint8
    pixels = gray.shape[1] * gray.shape[2]
    red, blue, saturation = (np.zeros(n, dtype=np.float32) for _ in range(3))
    brightness, contrast = np.zeros(n, dtype=np.float32), np.zeros(n, dtype=np.float32)
    difference = np.zeros(n, dtype=np.float32)
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        rgb = frames.rgb[part]  # (c, h, w, 3) uint8
        count = rgb.shape[0]
        # OpenCV sums a frame's channels in one pass (numpy's strided per-channel sum is ~100x
        # slower); sums of 8-bit values are exact in its float64 result.
        channel_sums = np.array([cv2.sumElems(image)[:3] for image in rgb])
        red[part] = channel_sums[:, 0] / (255.0 * pixels)
        blue[part] = channel_sums[:, 2] / (255.0 * pixels)
        # HSV works pixel by pixel, so the chunk converts as one tall image.
        hsv = cv2.cvtColor(rgb.reshape(count * rgb.shape[1], rgb.shape[2], 3), cv2.COLOR_RGB2HSV)
        hsv_frames = hsv.reshape(rgb.shape)
        saturation[part] = [cv2.sumElems(image)[1] / pixels / 255.0 for image in hsv_frames]
        luma = gray[part].reshape(count, pixels)
        luma_mean = luma.sum(axis=1, dtype=np.int64) / pixels
        luma_square = np.einsum("ij,ij->i", luma, luma, dtype=np.int64) / pixels
        brightness[part] = luma_mean / 255.0
        contrast[part] = np.sqrt(np.maximum(luma_square - luma_mean**2, 0.0)) / 255.0
        # Each frame's difference from the one before it (the chunk's first looks back across
        # the chunk boundary; frame 0 keeps 0).
        first = max(start, 1)
        if first < start + count:
            after = gray[first : start + count].reshape(-1, pixels)
            before = gray[first - 1 : start + count - 1].reshape(-1, pixels)
            step_sums = cv2.absdiff(after, before).sum(axis=1, dtype=np.int64)
            difference[first : start + count] = step_sums / pixels / 255.0
    return FrameSeries(
        times_s=frames.times_s,
        brightness=brightness,
        contrast=contrast,
        saturation=saturation,
        warmth=(red - blue) / np.maximum(red + blue, 1e-3),
        motion_px_s=_flow_speeds(gray, frames.times_s),
        difference=difference,
    )


def _flow_speeds(gray: np.ndarray, times_s: np.ndarray) -> np.ndarray:
    """(n,) mean Farnebäck flow speed in px/s at the 160 px analysis scale; 0 for frame 0."""
    n, height, width = gray.shape
    scale = FLOW_LONG_SIDE / max(height, width)
    size = (max(8, int(round(width * scale))), max(8, int(round(height * scale))))
    small = [cv2.resize(g, size, interpolation=cv2.INTER_AREA) for g in gray]
    to_analysis_px = 160.0 / FLOW_LONG_SIDE
    speeds = np.zeros(n, dtype=np.float32)
    for i in range(1, n):
        # OpenCV's stubs lack the `None` initial flow that its API accepts.
        flow = cv2.calcOpticalFlowFarneback(small[i - 1], small[i], None, 0.5, 2, 9, 2, 5, 1.1, 0)  # type: ignore[call-overload]
        dt = max(float(times_s[i] - times_s[i - 1]), 1e-3)
        speeds[i] = float(cv2.magnitude(flow[..., 0], flow[..., 1]).mean()) * to_analysis_px / dt
    return speeds


def shot_features(
    series: FrameSeries,
    shots: Sequence[Shot],
    semantic: Sequence[np.ndarray | None] | None = None,
    semantic_moods: Sequence[Mood | None] | None = None,
    semantic_weight: float = 0.5,
    scenes: Sequence[tuple[str, ...]] | None = None,
) -> list[ShotFeatures]:
    """One ShotFeatures per shot.

    `semantic` holds an embedding per shot (or None); `semantic_moods` a mood per shot derived
    from semantics (CLIP anchors or the user's mood text), blended into the visual mood with
    `semantic_weight` in [0, 1]; `scenes` the scene words CLIP read per shot.
    """
    rows = []
    for shot in shots:
        row = _span_row(
            series,
            shot,
            shot,
            None if semantic_moods is None else semantic_moods[shot.index],
            semantic_weight,
        )
        rows.append(
            replace(
                row,
                semantic=None if semantic is None else semantic[shot.index],
                scenes=() if scenes is None else tuple(scenes[shot.index]),
            )
        )
    return rows


def stretch_features(
    series: FrameSeries,
    shots: Sequence[Shot],
    semantic_moods: Sequence[Mood | None] | None = None,
    semantic_weight: float = 0.5,
    stretch_s: float = STRETCH_S,
    part_moods: Mapping[int, Sequence[tuple[Shot, Mood | None]]] | None = None,
) -> list[StretchFeatures]:
    """Every shot cut into equal stretches of about `stretch_s` seconds (a shorter shot is one
    stretch), each measured on its own frames, in time order.

    A long shot is split into several phrases by the planner; their controls then follow what
    each phrase shows (the picture starting to move halfway through a take), where the shot's
    average would give every phrase the same. Mood: the stretch's picture blended with a
    semantic mood, at the shot's cut rate: that of the part of the shot holding the stretch's
    middle where `part_moods` reads the shot in parts (CLIP reads a long take more than once:
    diffbgm.video.analyze), else the shot's.
    """
    out = []
    for shot in shots:
        shot_mood = None if semantic_moods is None else semantic_moods[shot.index]
        parts = (part_moods or {}).get(shot.index, ())
        for span in equal_spans(shot, stretch_s):
            middle = 0.5 * (span.start_s + span.end_s)
            mood = next((m for part, m in parts if part.start_s <= middle < part.end_s), shot_mood)
            row = _span_row(series, shot, span, mood, semantic_weight)
            out.append(StretchFeatures(span.start_s, span.end_s, row))
    return out


def equal_spans(shot: Shot, about_s: float, most: int | None = None) -> list[Shot]:
    """`shot` cut into equal spans of about `about_s` seconds (at least one; at most `most`),
    each a Shot with the shot's index."""
    count = max(1, int(round(shot.duration_s / about_s)))
    if most is not None:
        count = min(count, most)
    bounds = np.linspace(shot.start_s, shot.end_s, count + 1)
    return [
        Shot(shot.index, float(a), float(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def _span_row(
    series: FrameSeries,
    shot: Shot,
    span: Shot,
    semantic_mood: Mood | None,
    semantic_weight: float,
) -> ShotFeatures:
    """The feature row of the frames of `span`, a part of `shot` (or all of it), without the
    semantic embedding and scene words. The frame difference across the cut itself belongs to
    no shot, so a span that starts at the cut leaves out its first frame's motion."""
    inside = _frames_in(series.times_s, span)
    at_cut = span.start_s <= shot.start_s
    within = inside[1:] if (inside.size > 1 and at_cut) else inside
    dt = np.diff(series.times_s[inside]) if inside.size > 1 else np.array([1.0])
    motion = np.clip(series.motion_px_s[within] / MOTION_FULL_SCALE_PX_PER_S, 0.0, 1.0)
    brightness = series.brightness[inside]
    mood = visual_mood(
        brightness=float(brightness.mean()),
        saturation=float(series.saturation[inside].mean()),
        warmth=float(series.warmth[inside].mean()),
        motion=float(motion.mean()),
        contrast=float(series.contrast[inside].mean()),
        cut_rate_per_s=1.0 / max(shot.duration_s, 1e-3),
    )
    mood = blend_moods(mood, semantic_mood, semantic_weight)
    return ShotFeatures(
        shot_index=shot.index,
        motion=float(motion.mean()),
        motion_change=_rate_of_change(motion, dt, MOTION_CHANGE_FULL_SCALE_PER_S),
        brightness=float(brightness.mean()),
        brightness_change=_rate_of_change(brightness, dt, BRIGHTNESS_CHANGE_FULL_SCALE_PER_S),
        saturation=float(series.saturation[inside].mean()),
        colour_temperature=float(np.clip(series.warmth[inside].mean(), -1.0, 1.0)),
        visual_rhythm=_change_events(series.difference[within], span.duration_s),
        semantic=None,
        valence=mood.valence,
        arousal=mood.arousal,
    )


def _frames_in(times_s: np.ndarray, shot: Shot) -> np.ndarray:
    """Indices of the frames inside `shot`; the nearest frame when the shot is shorter than a
    frame interval."""
    inside = np.flatnonzero((times_s >= shot.start_s) & (times_s < shot.end_s))
    if inside.size == 0:
        middle = 0.5 * (shot.start_s + shot.end_s)
        inside = np.array([int(np.argmin(np.abs(times_s - middle)))])
    return inside


def _rate_of_change(values: np.ndarray, dt: np.ndarray, full_scale_per_s: float) -> float:
    """Mean |Δ value| per second divided by `full_scale_per_s`, clipped to [0, 1]."""
    if values.size < 2:
        return 0.0
    steps = np.abs(np.diff(values)) / np.maximum(dt[-(values.size - 1) :], 1e-3)
    return float(np.clip(steps.mean() / full_scale_per_s, 0.0, 1.0))


def _change_events(difference: np.ndarray, duration_s: float) -> float:
    """Intra-shot change events per second: local peaks of the frame difference well above the
    shot's typical difference."""
    if difference.size < 3:
        return 0.0
    floor = max(RHYTHM_PEAK_RATIO * float(np.median(difference)), RHYTHM_MIN_DIFF)
    middle = difference[1:-1]
    peaks = (middle > floor) & (middle >= difference[:-2]) & (middle > difference[2:])
    return float(peaks.sum()) / max(duration_s, 1e-3)


def visual_mood(
    brightness: float,
    saturation: float,
    warmth: float,
    motion: float,
    contrast: float,
    cut_rate_per_s: float,
) -> Mood:
    """Mood from picture statistics alone (a heuristic, documented in docs/video.md).

    valence: brighter, more saturated and warmer pictures read as happier —
      1.5 (brightness - 0.45) + 1.2 (saturation - 0.35) + 0.6 warmth, clipped to [-1, 1].
    arousal: motion, fast cutting and hard contrast read as excitement —
      0.55 motion + 0.25 min(1, cuts per second / 0.5) + 0.2 min(1, contrast / 0.3), in [0, 1].
    """
    valence = 1.5 * (brightness - 0.45) + 1.2 * (saturation - 0.35) + 0.6 * warmth
    arousal = 0.55 * motion + 0.25 * min(1.0, cut_rate_per_s / 0.5) + 0.2 * min(1.0, contrast / 0.3)
    return Mood(
        valence=float(np.clip(valence, -1.0, 1.0)), arousal=float(np.clip(arousal, 0.0, 1.0))
    )


def blend_moods(visual: Mood, semantic: Mood | None, semantic_weight: float) -> Mood:
    """Weighted mean of the visual mood and a semantic one (when there is one)."""
    if semantic is None:
        return visual
    w = float(np.clip(semantic_weight, 0.0, 1.0))
    return Mood(
        valence=(1 - w) * visual.valence + w * semantic.valence,
        arousal=(1 - w) * visual.arousal + w * semantic.arousal,
    )
