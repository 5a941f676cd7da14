"""The planner: an analysed video (and the user's overrides) in, a MusicPlan out.

Orchestration only; each step lives in its own module: the tempo grid (grid.py), segment
controls (controls.py), key and chords (harmony.py) and recalls (recall.py). The order of the
steps and of the random draws is part of the contract: the same inputs and seed give the same
plan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from diffbgm.controls import DYNAMIC_CONTROLS, SEMANTIC_CONTROLS
from diffbgm.errors import PlanError
from diffbgm.music.calibration import Calibration
from diffbgm.music.harmony import ChordModel, load_chord_model
from diffbgm.plan.config import PlanConfig, PlanOverrides
from diffbgm.plan.controls import (
    apply_density,
    contrast_at_cuts,
    dynamic_controls,
    segment_features,
    semantic_controls,
    shift_mood,
)
from diffbgm.plan.grid import (
    BarGrid,
    cut_residuals,
    fit_bar_grid,
    mood_tempo_bpm,
    nearest_bar,
    segment_edges,
    snap_to_beat,
)
from diffbgm.plan.harmony import choose_key, chords_from_labels, generate_chords, key_from_chords
from diffbgm.plan.inputs import AnalysisLike, QuantileTables
from diffbgm.plan.recall import form_segments, plan_recalls, recall_chords, segment_embeddings
from diffbgm.plan.records import BEATS_PER_BAR, MusicPlan, PlanKey, PlanSegment
from diffbgm.plan.span import analysis_within
from diffbgm.plan.takes import take_turns

MIN_MUSIC_S = 2.0  # the shortest part of a video a user may ask music for
END_SLACK_S = 0.5  # a music end this far past the video's end reads as its end


def make_plan(
    analysis: AnalysisLike,
    overrides: PlanOverrides | None = None,
    calibration: QuantileTables | None = None,
    seed: int = 0,
    config: PlanConfig | None = None,
    chord_model: ChordModel | None = None,
) -> MusicPlan:
    """Plan the music for an analysed video. Same inputs and seed -> the same plan.

    With a span of the video chosen (overrides.music_start_s / music_end_s) the plan is made
    for that part as if it were the whole video, and placed back into video time."""
    ovr = overrides or PlanOverrides()
    duration = float(analysis.info.duration_s)
    if not analysis.shots or duration <= 0:
        raise PlanError(f"{analysis.info.path}: the analysis has no shots or no duration")
    start, end = music_span(ovr, duration)
    if (start, end) == (0.0, duration):
        return _plan(analysis, ovr, calibration, seed, config, chord_model)
    asked = [*(ovr.segment_starts_s or ()), *(ovr.added_segment_starts_s or ())]
    if any(not start < t < end for t in asked):
        raise PlanError(
            f"section starts must lie inside the music ({start:g}-{end:g} s): "
            + ", ".join(f"{t:g}" for t in asked if not start < t < end)
        )

    def plan_from(first: float, grid: BarGrid | None = None) -> MusicPlan:
        def local(times: tuple[float, ...] | None) -> tuple[float, ...] | None:
            return None if times is None else tuple(t - first for t in times)

        plan = _plan(
            analysis_within(analysis, first, end),
            replace(
                ovr,
                segment_starts_s=local(ovr.segment_starts_s),
                added_segment_starts_s=local(ovr.added_segment_starts_s),
            ),
            calibration,
            seed,
            config,
            chord_model,
            start_line=ovr.music_start_s is not None,
            end_line_room_s=duration - first if end < duration else None,
            origin_s=first,
            grid=grid,
        )
        provenance = {**plan.provenance, "music_span": "user"}
        snapped = abs(plan.duration_s - (end - first)) > 1e-9  # moved onto a bar line
        return replace(
            plan,
            offset_s=plan.offset_s + first,
            duration_s=duration,
            music_start_s=first,
            # `end` itself where it did not move: first + (end - first) may miss it by an ulp
            music_end_s=min(first + plan.duration_s, duration) if snapped else end,
            provenance=provenance,
        )

    plan = plan_from(start)
    # A chosen start just before a bar line would open on a sliver of a bar: the music then
    # starts on that line instead (planned again from there, on the same grid).
    to_line = plan.offset_s + plan.bar_s - start
    tolerance = (config or PlanConfig()).bar_snap_tolerance_s
    if ovr.music_start_s is not None and plan.offset_s < start - 1e-9 and to_line <= tolerance:
        asked_inside = all(start + to_line < t for t in asked)
        if asked_inside and end - (start + to_line) >= MIN_MUSIC_S:
            plan = plan_from(start + to_line, BarGrid(plan.tempo_bpm, 0.0, 0.0))
    return plan


def music_span(overrides: PlanOverrides, duration_s: float) -> tuple[float, float]:
    """(start, end) of the music in the video: the whole video unless the user chose a part;
    PlanError where the chosen part does not lie within the video or is too short for music.
    An end up to END_SLACK_S past the video's end is its end (a length typed rounded up)."""
    start = 0.0 if overrides.music_start_s is None else float(overrides.music_start_s)
    end = duration_s if overrides.music_end_s is None else float(overrides.music_end_s)
    if not 0.0 <= start < duration_s:
        raise PlanError(
            f"the music cannot start at {start:g} s: the video lasts {duration_s:.2f} s"
        )
    if end > duration_s + END_SLACK_S:
        raise PlanError(f"the music cannot end at {end:g} s: the video lasts {duration_s:.2f} s")
    end = min(end, duration_s)
    if end - start < MIN_MUSIC_S:
        raise PlanError(
            f"the music would last {max(end - start, 0.0):g} s (from {start:g} to {end:g} s): "
            f"give it at least {MIN_MUSIC_S:g} s"
        )
    return start, end


def _plan(
    analysis: AnalysisLike,
    ovr: PlanOverrides,
    calibration: QuantileTables | None,
    seed: int,
    config: PlanConfig | None,
    chord_model: ChordModel | None,
    start_line: bool = False,
    end_line_room_s: float | None = None,
    origin_s: float = 0.0,
    grid: BarGrid | None = None,
) -> MusicPlan:
    """make_plan for the whole of `analysis`. start_line: the user chose where the music
    starts, so the start joins the tempo search (at config.span_edge_weight). end_line_room_s:
    the user chose where it ends, so the end joins the tempo search too, and the music ends on
    the bar line nearest it where that line is within config.bar_snap_tolerance_s of it and
    no later than end_line_room_s (the video's end, from the analysis's start). origin_s: the
    video time of the analysis's start, for messages. grid: the tempo and bar grid to use
    instead of searching for one."""
    cfg = config or PlanConfig()
    model = chord_model or load_chord_model()
    rng = np.random.default_rng(seed)
    duration = float(analysis.info.duration_s)
    provenance: dict[str, str] = {}

    # Mood of the whole video, duration-weighted over shots; user mood overrides shift it.
    whole, _ = segment_features(analysis, [(0.0, duration)])
    valence = ovr.valence if ovr.valence is not None else whole[0]["valence"]
    arousal = ovr.arousal if ovr.arousal is not None else whole[0]["arousal"]

    replaced = ovr.segment_starts_s is not None
    added = list(ovr.added_segment_starts_s or ())
    asked = [*(ovr.segment_starts_s or ()), *added]  # the user's section starts
    if any(not 0 < t < duration for t in asked):
        raise PlanError(
            f"section starts must lie inside the video ({origin_s:g}, "
            f"{origin_s + duration:.2f}) s: "
            + ", ".join(f"{t + origin_s:g}" for t in asked if not 0 < t < duration)
        )
    # the times the tempo search puts on lines: the shot cuts (or the user's starts instead),
    # and the starts the user added
    cuts = list(ovr.segment_starts_s or ()) if replaced else list(analysis.cut_times_s)
    boundaries = [*cuts, *added]
    target = mood_tempo_bpm(arousal, cfg)
    if ovr.arousal is not None:
        cfg = replace(
            cfg,
            tempo_prior_dead_zone=cfg.tempo_prior_dead_zone_user,
            tempo_prior_weight=cfg.tempo_prior_weight_user,
        )
    follow_turns = cfg.take_turns and not replaced
    # The turns of long takes (judged at the bars of the asked or the mood tempo) join the
    # cuts in the tempo search, at a lower weight: a turn is known to a stretch (2 s), a cut to
    # a frame, so that the take's phrases can start on a bar line where it turns.
    early_turns = (
        take_turns(analysis, 240.0 / (ovr.tempo_bpm or target), cfg) if follow_turns else []
    )
    ends = [0.0] * start_line + [duration] * (end_line_room_s is not None)
    grid = grid or fit_bar_grid(
        [*boundaries, *early_turns, *ends],
        target,
        cfg,
        tempo_bpm=ovr.tempo_bpm,
        weights=[1.0] * len(cuts)
        + [cfg.section_weight] * len(added)
        + [cfg.turn_weight] * len(early_turns)
        + [cfg.span_edge_weight] * len(ends),
    )
    provenance["tempo_bpm"] = (
        "user"
        if ovr.tempo_bpm is not None
        else f"grid search near {target:.0f} BPM (arousal {arousal:.2f})"
    )
    bar_s = 240.0 / grid.tempo_bpm
    n_bars = max(1, math.ceil((duration - grid.offset_s) / bar_s - 1e-9))
    if end_line_room_s is not None:
        bars_to_line = round((duration - grid.offset_s) / bar_s)
        line_s = grid.offset_s + bars_to_line * bar_s
        near = abs(line_s - duration) <= cfg.bar_snap_tolerance_s
        if bars_to_line >= 1 and near and line_s <= end_line_room_s:
            # the music's last bar, its cadence, ends where the user wants the music to
            n_bars, duration = bars_to_line, line_s
    turns = take_turns(analysis, bar_s, cfg) if follow_turns else []
    provenance["segments"] = segments_provenance(replaced, bool(added), bool(turns))
    # A form repeats sections bar for bar, so its sections start on downbeats.
    n_beats = n_bars * BEATS_PER_BAR
    form_starts = (
        form_section_beats(asked, grid, n_beats, duration, cfg, origin_s)
        if ovr.section_form is not None
        else []
    )
    edges = segment_edges(
        [] if replaced else analysis.cut_times_s,
        grid,
        n_beats,
        cfg,
        turns,
        user_times_s=asked,
        user_on_downbeats=ovr.section_form is not None,
    )
    form_recall: list[int] | None = None
    if ovr.section_form is not None:
        edges, form_recall = form_segments(
            edges, form_starts, ovr.section_form, cfg.min_segment_beats
        )

    beat_s = 60.0 / grid.tempo_bpm
    edge_times = grid.offset_s + np.asarray(edges, dtype=np.float64) * beat_s
    spans = [
        (max(0.0, float(a)), min(duration, float(b)))
        for a, b in zip(edge_times[:-1], edge_times[1:], strict=True)
    ]
    rows, members = segment_features(analysis, spans, cfg.within_shot_features)
    weights = np.asarray([b - a for a, b in spans]) / max(1e-9, sum(b - a for a, b in spans))
    if ovr.valence is not None:
        shift_mood(rows, weights, "valence", ovr.valence, -1.0, 1.0)
    if ovr.arousal is not None:
        shift_mood(rows, weights, "arousal", ovr.arousal, 0.0, 1.0)

    dynamic = dynamic_controls(rows, cfg, members)
    if (ovr.density, ovr.segment_density) == (None, None):  # a user's density rules
        contrast_at_cuts(dynamic, members, cfg, calibration or Calibration.load())
    apply_density(dynamic, ovr)
    provenance["dynamic"] = (
        "user density"
        if (ovr.density, ovr.density_scale, ovr.segment_density) != (None, None, None)
        else "video"
    )

    if ovr.key is not None:
        key, provenance["key"] = PlanKey.parse(ovr.key), "user"
    elif ovr.chords is not None:
        key, provenance["key"] = key_from_chords(ovr.chords, model), "the user's chords"
    else:
        key = choose_key(valence, model, rng, cfg)
        provenance["key"] = f"mood (valence {valence:+.2f})"
    if form_recall is not None:
        recalls = form_recall
        provenance["recalls"] = "the user's form"
    else:
        recalls = plan_recalls(edges, members, rows, segment_embeddings(analysis, members), cfg)
        provenance["recalls"] = "same shots or look-alike scenes"
    if ovr.chords is not None:
        # The progression starts again with each of the user's sections that starts a
        # segment (on its first full bar); a form's returns then take their first
        # occurrence's chords bar for bar, as their music does.
        starts = form_starts or [snap_to_beat(t, grid, cfg) for t in asked]
        restarts = sorted({-(-beat // BEATS_PER_BAR) for beat in starts if beat in edges})
        chords = chords_from_labels(ovr.chords, n_bars, restarts)
        if form_recall is not None:
            chords = recall_chords(chords, edges, recalls)
    else:
        chords = generate_chords(edges, key, [d["density"] for d in dynamic], model, rng)
        chords = recall_chords(chords, edges, recalls)
    provenance["chords"] = "user" if ovr.chords is not None else "POP909 chord model"
    semantic = semantic_controls(edges, rows, chords, model, calibration, cfg)
    provenance["semantic"] = "video + chords"

    segments = tuple(
        PlanSegment(i, a, b - a, members[i], dynamic[i], semantic[i], recalls[i])
        for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True))
    )
    return MusicPlan(
        tempo_bpm=grid.tempo_bpm,
        offset_s=grid.offset_s,
        n_bars=n_bars,
        duration_s=duration,
        segments=segments,
        key=key,
        chords=tuple(chords),
        cut_residuals_s=tuple(cut_residuals(analysis.cut_times_s, edge_times)),
        seed=seed,
        provenance=provenance,
    )


def form_section_beats(
    starts_s: Sequence[float],
    grid: BarGrid,
    n_beats: int,
    duration_s: float,
    config: PlanConfig,
    origin_s: float = 0.0,
) -> list[int]:
    """The bar lines a form's sections start on; PlanError where a section would get less
    than a bar (two starts in one bar, or a start in the first or last bar), or less than half
    a bar of the video (the grid may start before the video): a section of the form would
    vanish. origin_s: added to the times a message names (the music's start in the video)."""
    times = sorted(set(starts_s))
    bounds = [0, *(nearest_bar(t, grid) for t in times), n_beats]
    beat_s = 60.0 / grid.tempo_bpm
    heard = [  # each section's length in beats within the video (the grid may start before it)
        (min(b * beat_s + grid.offset_s, duration_s) - max(a * beat_s + grid.offset_s, 0.0))
        / beat_s
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    for i in range(len(bounds) - 1):
        too_short = bounds[i + 1] - bounds[i] < config.min_segment_beats
        if too_short or heard[i] < config.min_segment_beats / 2 - 1e-6:
            left = "the music's start" if i == 0 else f"{times[i - 1] + origin_s:g} s"
            right = "the music's end" if i == len(times) else f"{times[i] + origin_s:g} s"
            raise PlanError(
                f"with a form every section needs at least a bar: between {left} and {right} "
                f"there is less than one at {grid.tempo_bpm:g} BPM (a bar is "
                f"{240.0 / grid.tempo_bpm:.2f} s); move the section starts apart"
            )
    return bounds[1:-1]


def segments_provenance(replaced: bool, added: bool, turns: bool) -> str:
    """Where the segment boundaries came from, for MusicPlan.provenance["segments"]."""
    if replaced:
        return "user"
    parts = ["shots"]
    if added:
        parts.append("the user's section starts")
    if turns:
        parts.append("where long takes turn")
    return ", and ".join(parts) if len(parts) < 3 else f"{parts[0]}, {parts[1]} and {parts[2]}"


def replan_segment(
    plan: MusicPlan,
    segment_index: int,
    dynamic: Mapping[str, float] | None = None,
    semantic: Mapping[str, float] | None = None,
) -> MusicPlan:
    """A copy of `plan` with some controls of one segment replaced (names from controls.py)."""
    if not 0 <= segment_index < len(plan.segments):
        raise PlanError(
            f"segment {segment_index} does not exist: the plan has {len(plan.segments)} segments"
        )
    seg = plan.segments[segment_index]
    for given, names, kind in (
        (dynamic, DYNAMIC_CONTROLS, "dynamic"),
        (semantic, SEMANTIC_CONTROLS, "semantic"),
    ):
        unknown = sorted(set(given or {}) - set(names))
        if unknown:
            raise PlanError(f"unknown {kind} control(s) {unknown}: choose from {list(names)}")
    new_seg = replace(
        seg,
        dynamic={**seg.dynamic, **(dynamic or {})},
        semantic={**seg.semantic, **(semantic or {})},
    )
    segments = list(plan.segments)
    segments[segment_index] = new_seg
    provenance = dict(plan.provenance)
    for name in (*(dynamic or {}), *(semantic or {})):
        provenance[f"segment {segment_index} {name}"] = "user"
    return replace(plan, segments=tuple(segments), provenance=provenance)
