"""The whole video analysis: probe -> decode -> shots -> features (+ semantics), timed per stage."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diffbgm.video.clip import STATISTICS, ClipLoader
from diffbgm.video.decode import DecodedFrames, DecodeOptions, decode_frames
from diffbgm.video.features import (
    Mood,
    equal_spans,
    frame_series,
    shot_features,
    stretch_features,
)
from diffbgm.video.probe import ProbeLimits, probe_video
from diffbgm.video.semantics import MoodTextEncoder
from diffbgm.video.shots import TRANSNET_DECODE, ShotOptions, detect_shots, write_thumbnails
from diffbgm.video.types import Shot, VideoAnalysis, VideoInfo

ProgressCallback = Callable[[float, str], None]

# CLIP reads a long take once more for about every TAKE_READ_S seconds of it (at most
# TAKE_READS times), besides its middle frame (`take_parts`).
TAKE_READ_S = 8.0
TAKE_READS = 16


@dataclass(frozen=True)
class AnalysisOptions:
    """Everything `analyze_video` can be asked to do.

    clip: the CLIP setting (`off`, the default here; `auto`; a Hub id or a local folder of
      transformers or open_clip weights; see diffbgm.video.clip). On any failure the shots are
      read from picture statistics.
    mood_text: optional words describing the wanted mood ("a sad farewell"), read by the
      bundled sentence encoder and blended into every shot's mood with `semantic_weight`.
    """

    limits: ProbeLimits = ProbeLimits()
    decode: DecodeOptions = DecodeOptions()
    shots: ShotOptions = ShotOptions()
    clip: str = "off"
    mood_text: str | None = None
    semantic_weight: float = 0.5


@dataclass
class _StageClock:
    """Wall-clock seconds per stage, reported in order."""

    timings_s: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings_s[name] = self.timings_s.get(name, 0.0) + time.perf_counter() - start


def analyze_video(
    path: Path | str,
    options: AnalysisOptions = AnalysisOptions(),
    progress: ProgressCallback | None = None,
    thumbnails_dir: Path | None = None,
    text_encoder: MoodTextEncoder | None = None,
    info: VideoInfo | None = None,
    text_mood: Mood | None = None,
    clip_loader: ClipLoader | None = None,
) -> VideoAnalysis:
    """Analyse `path`: metadata, shots, one feature row per shot, optional thumbnails.

    `progress(fraction, stage)` gets fractions in [0, 1]. Pass `clip_loader` / `text_encoder`
    to reuse loaded models across calls (e.g. one per web worker: the loader keeps one CLIP
    model, or one failure); otherwise they are loaded here when the options ask for them.
    Pass `info` when the file was probed already and `text_mood` when the mood text was
    encoded already: each is done once per compose.
    """
    path = Path(path)
    clock = _StageClock()
    report = progress or (lambda _fraction, _stage: None)

    if info is None:
        with clock.stage("probe"):
            info = probe_video(path, options.limits)
    report(0.02, "probe")

    with clock.stage("decode"):
        decode = TRANSNET_DECODE if options.shots.method == "transnetv2" else options.decode
        frames = decode_frames(path, info, decode, lambda f, _m: report(0.02 + 0.55 * f, "decode"))
    report(0.57, "decode")

    with clock.stage("shots"):
        shots = detect_shots(frames, options.shots)
    report(0.77, "shots")

    embeddings: list[np.ndarray] | None = None
    image_moods: list[Mood] | None = None
    scenes: list[tuple[str, ...]] | None = None
    semantics = STATISTICS
    part_readings: dict[int, list[tuple[Shot, Mood]]] = {}  # CLIP's moods of a long take's parts
    loader = clip_loader or (ClipLoader(options.clip) if options.clip != "off" else None)
    if loader is not None and loader.setting != "off":
        with clock.stage("semantics"):
            reader = loader.get()
            if reader is not None:
                parts = [part for shot in shots for part in take_parts(shot)]
                readings = reader.read_shots(
                    [_middle_frame(frames, span) for span in [*shots, *parts]]
                )
                embeddings = [r.embedding for r in readings[: len(shots)]]
                image_moods = [r.mood for r in readings[: len(shots)]]
                scenes = [r.scenes for r in readings[: len(shots)]]
                for part, reading in zip(parts, readings[len(shots) :], strict=True):
                    part_readings.setdefault(part.index, []).append((part, reading.mood))
                semantics = f"clip:{reader.name}"
                clock.timings_s["semantics_per_shot"] = reader.seconds_per_shot or 0.0

    if text_mood is None and options.mood_text:
        with clock.stage("mood_text"):
            text_mood = (text_encoder or MoodTextEncoder()).mood(options.mood_text).mood

    with clock.stage("features"):
        series = frame_series(frames)
        moods = _semantic_moods(len(shots), image_moods, text_mood)
        features = shot_features(series, shots, embeddings, moods, options.semantic_weight, scenes)
        part_moods = {
            index: [(part, _blended(mood, text_mood)) for part, mood in found]
            for index, found in part_readings.items()
        }
        stretches = stretch_features(
            series, shots, moods, options.semantic_weight, part_moods=part_moods
        )
    report(0.97, "features")

    thumbnails = None
    if thumbnails_dir is not None:
        with clock.stage("thumbnails"):
            thumbnails = write_thumbnails(frames, shots, thumbnails_dir)
    report(1.0, "done")
    return VideoAnalysis(
        info=info,
        shots=shots,
        features=features,
        thumbnails=thumbnails,
        timings_s=clock.timings_s,
        semantics=semantics,
        stretches=stretches,
    )


def _middle_frame(frames: DecodedFrames, shot: Shot) -> np.ndarray:
    middle = 0.5 * (shot.start_s + shot.end_s)
    return frames.rgb[int(np.argmin(np.abs(frames.times_s - middle)))]


def _semantic_moods(
    n_shots: int, image_moods: list[Mood] | None, text_mood: Mood | None
) -> list[Mood | None] | None:
    """Per-shot semantic mood: CLIP's reading of the shot and the user's text, averaged."""
    if image_moods is None and text_mood is None:
        return None
    return [_blended(image_moods[i] if image_moods else None, text_mood) for i in range(n_shots)]


def _blended(image_mood: Mood | None, text_mood: Mood | None) -> Mood | None:
    """The mean of CLIP's reading of a picture and the user's text, where there are any."""
    parts = [m for m in (image_mood, text_mood) if m]
    if not parts:
        return None
    return Mood(
        valence=float(np.mean([m.valence for m in parts])),
        arousal=float(np.mean([m.arousal for m in parts])),
    )


def take_parts(shot: Shot) -> list[Shot]:
    """The parts of a long take that CLIP reads apart, besides its middle frame: equal spans
    of about TAKE_READ_S seconds (no more than TAKE_READS), so that the stretches of a take
    whose content changes (indoors, then outdoors) follow it; [] for a shorter shot."""
    parts = equal_spans(shot, TAKE_READ_S, TAKE_READS)
    return parts if len(parts) > 1 else []
