"""Per-segment controls: from what the shots look like to the model's control values.

Features of the shots in each segment (motion, brightness, mood, ...) become dynamic controls
(POP909 quantiles, see diffbgm.controls); every cut then asks for an audible change of
density; a user's density overrides come last. Semantic controls (melodic, intro/outro,
harmony) follow from the segment layout and the chords. docs/plan.md gives the mapping and
why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from diffbgm.controls import DYNAMIC_CONTROLS, relative_change
from diffbgm.errors import PlanError
from diffbgm.music.harmony import ChordModel
from diffbgm.plan.config import PlanConfig, PlanOverrides
from diffbgm.plan.harmony import chord_statistics
from diffbgm.plan.inputs import (
    AnalysisLike,
    QuantileTables,
    ShotFeaturesLike,
    ShotLike,
    StretchLike,
)
from diffbgm.plan.records import PlanChord

_FEATURE_NAMES = (
    "motion",
    "motion_change",
    "brightness",
    "brightness_change",
    "saturation",
    "colour_temperature",
    "visual_rhythm",
    "valence",
    "arousal",
)


def segment_features(
    analysis: AnalysisLike,
    spans_s: Sequence[tuple[float, float]],
    within_shots: bool = False,
) -> tuple[list[dict[str, float]], list[tuple[int, ...]]]:
    """Per segment span: features averaged over shots weighted by overlap, and the shots in it.

    A shot belongs to a segment when >= 30 % of the shot lies in it, or when it is the shot
    that overlaps the segment most. With `within_shots`, a shot that belongs to several
    segments (a long shot split into phrases) gives each of them what it shows there: the
    overlap-weighted mean of the shot's stretches inside the span (`analysis.stretches`),
    instead of the shot's average; without stretches, the average.
    """
    features = {row.shot_index: row for row in analysis.features}
    durations = np.asarray([max(s.duration_s, 1e-6) for s in analysis.shots])
    all_overlaps = []
    members = []
    for start, end in spans_s:
        overlaps = _overlaps(analysis.shots, start, end)
        inside = [
            analysis.shots[int(i)].index
            for i in np.nonzero((overlaps / durations >= 0.3) | (overlaps == overlaps.max()))[0]
        ]
        members.append(tuple(inside))
        all_overlaps.append(overlaps)
    stretches: dict[int, list[StretchLike]] = {}
    if within_shots:
        for stretch in analysis.stretches:
            stretches.setdefault(stretch.features.shot_index, []).append(stretch)
    shared = Counter(index for inside in members for index in inside)
    rows = []
    for (start, end), overlaps in zip(spans_s, all_overlaps, strict=True):
        weights = overlaps / overlaps.sum()
        per_shot = [
            _stretch_mean(stretches[s.index], start, end)
            if shared[s.index] > 1 and stretches.get(s.index) and weight > 0
            else {name: _feature(features.get(s.index), name) for name in _FEATURE_NAMES}
            for s, weight in zip(analysis.shots, weights, strict=True)
        ]
        rows.append(
            {
                name: float(np.dot(weights, [values[name] for values in per_shot]))
                for name in _FEATURE_NAMES
            }
        )
    return rows, members


def _overlaps(
    spans: Sequence[ShotLike] | Sequence[StretchLike], start: float, end: float
) -> np.ndarray:
    """(N,) seconds of each span inside [start, end); where none is (a pickup, a last bar past
    the last shot), 1 for the span that starts nearest `start`."""
    overlaps = np.asarray([max(0.0, min(end, s.end_s) - max(start, s.start_s)) for s in spans])
    if overlaps.sum() <= 0:
        overlaps[int(np.argmin([abs(s.start_s - start) for s in spans]))] = 1.0
    return overlaps


def _stretch_mean(stretches: Sequence[StretchLike], start: float, end: float) -> dict[str, float]:
    """The features of a shot's stretches within [start, end), weighted by overlap (the
    nearest stretch when none overlaps)."""
    overlaps = _overlaps(stretches, start, end)
    weights = overlaps / overlaps.sum()
    return {
        name: float(np.dot(weights, [_feature(s.features, name) for s in stretches]))
        for name in _FEATURE_NAMES
    }


def _feature(row: ShotFeaturesLike | None, name: str) -> float:
    """A shot's feature, or a neutral value when the shot has no feature row."""
    neutral = {"brightness": 0.5, "saturation": 0.5, "arousal": 0.5}
    return float(getattr(row, name)) if row is not None else neutral.get(name, 0.0)


def shift_mood(
    rows: list[dict[str, float]],
    weights: np.ndarray,
    name: str,
    target: float,
    low: float,
    high: float,
) -> None:
    """Move a feature so its duration-weighted mean is `target`, keeping the shots' differences."""
    shift = target - float(np.dot(weights, [r[name] for r in rows]))
    for row in rows:
        row[name] = float(np.clip(row[name] + shift, low, high))


def saturate(value: float, typical: float) -> float:
    """0 -> 0, typical -> 0.5, large -> 1: a scale-free map for non-negative measurements."""
    value = max(value, 0.0)
    return value / (value + typical) if typical > 0 else 0.5


def _rank_quantiles(values: np.ndarray) -> np.ndarray:
    """(N,) mid-rank quantiles in (0, 1), ties sharing their mean rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    for value in np.unique(values):
        same = values == value
        ranks[same] = ranks[same].mean()
    return (ranks + 0.5) / len(values)


def blend_rank_absolute(absolute: np.ndarray, config: PlanConfig) -> np.ndarray:
    """Mix each segment's absolute level with its rank inside the video.

    Ranks make contrasts inside the video audible; absolute levels keep a calm video calm.
    The rank's weight grows with the spread of the values, so near-equal segments are not
    pushed apart.
    """
    if absolute.size < 2:
        return absolute
    spread = min(1.0, float(absolute.std()) / config.rank_full_spread)
    weight = config.rank_weight * spread
    return (1.0 - weight) * absolute + weight * _rank_quantiles(absolute)


def dynamic_controls(
    rows: Sequence[Mapping[str, float]],
    config: PlanConfig,
    members: Sequence[tuple[int, ...]] | None = None,
) -> list[dict[str, float]]:
    """Video features -> dynamic controls (POP909 quantiles) per segment; see docs/plan.md.

    With `members` (the shots of each segment), the phrases of one take whose absolute values
    differ by less than `config.take_tie` share their mean before the rank blend, so two
    phrases that show the same (a still camera before and after a pan) ask for the same."""
    motion = np.asarray([saturate(r["motion"], config.typical_motion) for r in rows])
    rhythm = np.asarray([saturate(r["visual_rhythm"], config.typical_visual_rhythm) for r in rows])
    arousal = np.asarray([float(np.clip(r["arousal"], 0, 1)) for r in rows])
    brightness = np.asarray([float(np.clip(r["brightness"], 0, 1)) for r in rows])
    valence = np.asarray([float(np.clip((r["valence"] + 1) / 2, 0, 1)) for r in rows])
    saturation = np.asarray([float(np.clip(r["saturation"], 0, 1)) for r in rows])
    activity = 0.6 * motion + 0.2 * rhythm + 0.2 * arousal
    absolute = {
        "density": activity,
        "velocity": 0.8 * arousal + 0.2 * activity,
        "register": 0.5 * brightness + 0.5 * valence,
        "polyphony": 0.5 * activity + 0.25 * saturation + 0.25 * arousal,
    }
    if members is not None:
        absolute = {name: tie_alike_phrases(values, members, config.take_tie)
                    for name, values in absolute.items()}  # fmt: skip
    blended = {
        name: np.clip(blend_rank_absolute(absolute[name], config), 0.0, 1.0)
        for name in DYNAMIC_CONTROLS
    }
    return [
        {name: round(float(blended[name][i]), 4) for name in DYNAMIC_CONTROLS}
        for i in range(len(rows))
    ]


def tie_alike_phrases(
    values: np.ndarray, members: Sequence[tuple[int, ...]], tie: float
) -> np.ndarray:
    """(N,) values where segments of the same shots whose values lie within `tie` of their
    neighbours in value (a chain of such steps) all take the chain's mean; other segments,
    and segments of shots of their own, keep theirs."""
    out = values.astype(np.float64).copy()
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, shots in enumerate(members):
        groups.setdefault(shots, []).append(index)
    for indices in groups.values():
        order = sorted(indices, key=lambda i: values[i])
        chains = [[order[0]]]
        for index in order[1:]:
            if values[index] - values[chains[-1][-1]] < tie:
                chains[-1].append(index)
            else:
                chains.append([index])
        for chain in chains:
            out[chain] = float(np.mean(values[chain]))
    return out


def contrast_at_cuts(
    dynamic: list[dict[str, float]],
    members: Sequence[tuple[int, ...]],
    config: PlanConfig,
    tables: QuantileTables,
    low: float = 0.03,
    high: float = 0.97,
) -> list[int]:
    """Make every cut ask for an audible change; returns the segments whose density moved.

    At a boundary between segments of different shots whose requested onsets per bar differ
    by less than `config.cut_contrast` of their mean, the later segment's density moves just
    far enough, up or down, whichever lands nearer its own request (kept in [low, high]; a
    step clipped at the end of the scale still counts if it reaches 90 % of the contrast;
    when equally near, away from the middle: a calm video gets calmer, a busy one busier).
    Measured in onsets per bar (POP909 calibration), a step at a low density is small in
    notes, so a calm video stays calm. Register contrast was tried first and not heard (the
    model follows register requests too loosely: docs/evaluation.md). Boundaries inside one
    shot (phrases of a long shot) are left alone.
    """
    ratio = config.cut_contrast
    moved = []
    for later in range(1, len(dynamic)) if ratio > 0 else ():
        if members[later] == members[later - 1]:
            continue
        before, after = dynamic[later - 1]["density"], dynamic[later]["density"]
        raw_before = tables.to_raw("density", before)
        raw_after = tables.to_raw("density", after)
        if relative_change(raw_before, raw_after) >= ratio - 1e-9:
            continue
        up_factor = (2 + ratio) / (2 - ratio)  # relative change of exactly `ratio`
        candidates = [
            float(np.clip(tables.to_quantile("density", raw_before * factor), low, high))
            for factor in (1 / up_factor, up_factor)
        ]
        contrast = [relative_change(raw_before, tables.to_raw("density", c)) for c in candidates]
        enough = [c for c, r in zip(candidates, contrast, strict=True) if r >= ratio * 0.9]
        if enough:  # the one nearest what the shot itself asked for
            calm_first = 1e-6 * (before >= 0.5)  # equal distance: away from the middle
            target = min(enough, key=lambda c: abs(c - after) + calm_first * (c < before))
        else:
            target = candidates[int(np.argmax(contrast))]
        dynamic[later]["density"] = round(target, 4)
        moved.append(later)
    return moved


def apply_density(dynamic: list[dict[str, float]], overrides: PlanOverrides) -> None:
    """The user's density overrides, in place: one density for all segments, then a scale,
    then one density per segment (which must match the plan's segment count)."""
    if overrides.segment_density is not None and len(overrides.segment_density) != len(dynamic):
        raise PlanError(
            f"segment_density has {len(overrides.segment_density)} values but the plan has "
            f"{len(dynamic)} segments"
        )
    for i, row in enumerate(dynamic):
        if overrides.density is not None:
            row["density"] = overrides.density
        if overrides.density_scale is not None:
            row["density"] = float(np.clip(row["density"] * overrides.density_scale, 0.0, 1.0))
        if overrides.segment_density is not None:
            row["density"] = float(overrides.segment_density[i])


def intro_outro_flags(
    rows: Sequence[Mapping[str, float]], lengths_beats: Sequence[int], config: PlanConfig
) -> tuple[bool, bool]:
    """Is the first segment an intro / the last an outro? Needs >= 3 segments.

    A candidate qualifies when it is dark (absolutely, or at under 60 % of the video's mean
    brightness: a fade from or to black) or short (<= intro_max_beats and shorter than the
    median segment, so a video of equal short shots gets no intro).
    """
    if len(rows) < 3:
        return False, False
    mean_brightness = float(np.mean([r["brightness"] for r in rows]))
    median_beats = float(np.median(lengths_beats))

    def qualifies(i: int) -> bool:
        bright = rows[i]["brightness"]
        dark = bright < config.dark_brightness or bright < 0.6 * mean_brightness
        short = lengths_beats[i] <= config.intro_max_beats and lengths_beats[i] < median_beats
        return dark or short

    return qualifies(0), qualifies(len(rows) - 1)


def semantic_controls(
    edges: Sequence[int],
    rows: Sequence[Mapping[str, float]],
    chords: Sequence[PlanChord],
    model: ChordModel,
    calibration: QuantileTables | None,
    config: PlanConfig,
) -> list[dict[str, float]]:
    """melodic / intro / outro from the segment layout and looks, the rest from the chords."""
    lengths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
    intro, outro = intro_outro_flags(rows, lengths, config)
    out = []
    for i, (start, end) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        is_intro = intro and i == 0
        is_outro = outro and i == len(lengths) - 1
        minor_share, changes = chord_statistics(chords, start, end)
        if calibration is not None:
            rhythm = calibration.to_quantile("harmonic_rhythm", changes)
        else:
            rhythm = model.changes_per_bar_quantile(changes)
        out.append(
            {
                "melodic": 0.0 if (is_intro or is_outro) else 1.0,
                "intro": float(is_intro),
                "outro": float(is_outro),
                "minor_share": round(minor_share, 4),
                "harmonic_rhythm": round(float(np.clip(rhythm, 0.0, 1.0)), 4),
                "position": round(start / edges[-1], 4),
            }
        )
    return out
