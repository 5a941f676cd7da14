"""The part of a video the music is for: an analysis seen from inside a span of it.

A user may want music over part of a video only (a spoken opening, titles at the end). The
planner then plans for that part as if it were the whole video: `analysis_within` shows it an
analysis whose times start at the span's start, whose shots and stretches are cut to the span
(each keeping its index, so feature rows still match), and whose cuts are those inside it.
The planner shifts the finished plan back into video time (MusicPlan.music_start_s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from diffbgm.plan.inputs import AnalysisLike, ShotFeaturesLike, ShotLike, StretchLike


@dataclass(frozen=True)
class SpanInfo:
    path: Path
    duration_s: float


@dataclass(frozen=True)
class SpanShot:
    index: int
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class SpanStretch:
    start_s: float
    end_s: float
    features: ShotFeaturesLike


@dataclass(frozen=True)
class SpanAnalysis:
    """An AnalysisLike of the span [start, end) of a video, in seconds from `start`."""

    info: SpanInfo
    shots: Sequence[ShotLike]
    features: Sequence[ShotFeaturesLike]
    cut_times_s: Sequence[float]
    stretches: Sequence[StretchLike]


def analysis_within(analysis: AnalysisLike, start_s: float, end_s: float) -> SpanAnalysis:
    """The analysis of `analysis`'s video between start_s and end_s (0 < end_s - start_s),
    its times shifted to begin at 0; shots and stretches outside the span are left out, those
    across its edges cut to it."""

    def inside(a: float, b: float) -> tuple[float, float] | None:
        a, b = max(a, start_s), min(b, end_s)
        return (a - start_s, b - start_s) if b > a else None

    shots: list[ShotLike] = []
    for shot in analysis.shots:
        span = inside(shot.start_s, shot.end_s)
        if span is not None:
            shots.append(SpanShot(shot.index, *span))
    stretches: list[StretchLike] = []
    for stretch in analysis.stretches:
        span = inside(stretch.start_s, stretch.end_s)
        if span is not None:
            stretches.append(SpanStretch(*span, stretch.features))
    return SpanAnalysis(
        info=SpanInfo(analysis.info.path, end_s - start_s),
        shots=shots,
        features=analysis.features,
        cut_times_s=[t - start_s for t in analysis.cut_times_s if start_s < t < end_s],
        stretches=stretches,
    )
