"""The planner's knobs (PlanConfig) and what a user may fix (PlanOverrides), with their checks.

Overrides are validated when built, so a bad key, tempo or chord label is refused where the
user typed it, before any planning starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

from diffbgm.errors import PlanError
from diffbgm.music.chords import ChordError, parse_chord
from diffbgm.plan.records import PlanKey


@dataclass(frozen=True)
class PlanConfig:
    """Knobs of the planner. Times in seconds, tempi in BPM."""

    bpm_min: float = 60.0
    bpm_max: float = 160.0
    bpm_step: float = 0.25
    # A cut this far off a line costs no more, so one hopeless cut cannot decide the tempo.
    residual_cap_s: float = 0.5
    # Landing on a beat line costs as much as missing a bar line by this much.
    beat_line_penalty_s: float = 0.12
    # How much the video start counts as a cut (the music starts on a downbeat).
    start_weight: float = 0.5
    # Prior in s^2 per octave^2 away from the mood tempo, outside a dead zone (octaves) where
    # the residuals alone decide.
    tempo_prior_weight: float = 2.0
    tempo_prior_dead_zone: float = 0.25
    # When the user states the mood (text or arousal), its tempo is a request, not a hint:
    # a narrow dead zone and a prior that outweighs a few cuts missing their lines.
    tempo_prior_dead_zone_user: float = 0.1
    tempo_prior_weight_user: float = 40.0
    tempo_slow_bpm: float = 72.0  # mood tempo at arousal 0
    tempo_fast_bpm: float = 140.0  # mood tempo at arousal 1
    bar_snap_tolerance_s: float = 0.25  # a cut this close to a bar line goes to the bar line
    min_segment_beats: int = 4  # shorter shots are merged into a neighbour
    max_segment_bars: int = 8  # longer segments are split into phrases
    phrase_bars: int = 4
    typical_motion: float = 0.15  # ShotFeatures.motion of an ordinary shot -> quantile 0.5
    typical_visual_rhythm: float = 0.5  # change events per second of an ordinary shot
    rank_weight: float = 0.5  # within-video rank vs absolute mapping of controls
    rank_full_spread: float = 0.1  # std of a control across segments at which ranks count fully
    key_valence_margin: float = 0.1  # |valence| below this: the mode is drawn at random
    intro_max_beats: int = 8
    dark_brightness: float = 0.2
    # A segment recalls the music of a look-alike earlier scene (see plan_recalls): CLIP
    # embeddings this similar (cosine), or without them, brightness, saturation, colour
    # temperature and motion all this close.
    recall_clip_similarity: float = 0.9
    # At a cut, the music should change audibly: where neighbouring segments' requested
    # onsets per bar differ by less than this share of their mean, the later one's density
    # moves until they do. 0 = follow the shots' features only.
    cut_contrast: float = 0.55
    recall_look_tolerance: float = 0.07
    # A shot split over several segments (a long shot's phrases) gives each segment the
    # features of the stretches it shows rather than the shot's average, so the music follows
    # the picture within one take. False = whole shots only (as before session 50).
    within_shot_features: bool = True
    # A long take's phrases start where it turns (diffbgm.plan.takes) rather than on a fixed
    # 4-bar grid: where its motion (as the density maps it, 0..1) or brightness, averaged over
    # `turn_window` stretches either side, changes by this much. False = the fixed grid.
    take_turns: bool = True
    turn_motion: float = 0.2
    turn_brightness: float = 0.15
    turn_window: int = 2
    turn_min_bars: int = 2  # turns at least this far apart (a shaky take is not chopped up)
    # A turn's weight in the tempo search, against a cut's 1 (a turn is known to 2 s).
    turn_weight: float = 0.5
    # Phrases of one take whose absolute control values differ by less than this ask for the
    # same (their mean): the rank blend would otherwise set near-equal phrases a rank apart.
    take_tie: float = 0.02
    # A section start the user added to the cuts, against a cut's 1 in the tempo search: the
    # user asked for a change there, so the tempo puts it on a bar line before any cut.
    section_weight: float = 2.0
    # The start and end of music the user asked over part of the video, in the tempo search:
    # where the music enters and where its last bar ends. Twice a section start's weight ends
    # 24 of 35 spans of three videos on a bar line instead of 17 (at 2), starts 23 instead of
    # 21, and keeps the cuts inside as near their lines
    # (`python benchmarks/music_span.py --edges 2 4 8`, docs/plan.md).
    span_edge_weight: float = 4.0

    def __post_init__(self) -> None:
        if self.turn_window < 1:
            raise ValueError(f"turn_window must be at least 1 stretch, got {self.turn_window}")
        for name in ("turn_motion", "turn_brightness"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("turn_weight", "section_weight", "span_edge_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")


@dataclass(frozen=True)
class PlanOverrides:
    """What the user fixes; None = let the planner decide.

    tempo_bpm: 40-240. key: e.g. 'D minor'. valence (-1..1) / arousal (0..1): the mood of the
    whole video (shots keep their differences around it). density: the density quantile of
    every segment; density_scale: multiplies the planned densities; segment_density: one
    density per segment (after merging and phrase splitting). chords: Harte labels, one per
    bar, repeated to fill the piece. segment_starts_s: where segments start (seconds),
    replacing the shot cuts (an empty tuple: no cuts at all, the piece is phrased on its own).
    added_segment_starts_s: section starts (seconds) added to the shot cuts; the planner keeps
    them over nearby cuts when a segment would be too short. section_form: one label per
    section of the user's (the opening, then one per start, in time order); a section
    labelled like an earlier one takes up its music, and nothing else is recalled.
    music_start_s / music_end_s: the part of the video the music is for (seconds; None: the
    video's start / end); the plan is made for that part alone, and the music ends on a bar
    line near a chosen end.
    """

    tempo_bpm: float | None = None
    key: str | None = None
    valence: float | None = None
    arousal: float | None = None
    density: float | None = None
    density_scale: float | None = None
    segment_density: tuple[float, ...] | None = None
    chords: tuple[str, ...] | None = None
    segment_starts_s: tuple[float, ...] | None = None
    added_segment_starts_s: tuple[float, ...] | None = None
    section_form: tuple[str, ...] | None = None
    music_start_s: float | None = None
    music_end_s: float | None = None

    def __post_init__(self) -> None:
        _check_range("tempo_bpm", self.tempo_bpm, 40.0, 240.0)
        _check_range("valence", self.valence, -1.0, 1.0)
        _check_range("arousal", self.arousal, 0.0, 1.0)
        _check_range("density", self.density, 0.0, 1.0)
        _check_range("density_scale", self.density_scale, 0.0, 4.0)
        for value in self.segment_density or ():
            _check_range("segment_density", value, 0.0, 1.0)
        if self.key is not None:
            PlanKey.parse(self.key)
        if self.chords is not None:
            if not self.chords:
                raise PlanError("chords override is empty: give at least one chord label")
            for i, label in enumerate(self.chords):
                try:
                    if parse_chord(label).is_none:
                        raise PlanError(f"chord {i + 1} ({label!r}): give a chord, not 'N'")
                except ChordError as exc:
                    raise PlanError(f"chord {i + 1} of the override: {exc}") from exc
        for name in ("segment_starts_s", "added_segment_starts_s"):
            starts = getattr(self, name) or ()
            if isinstance(starts, str) or not all(
                isinstance(t, Real) and not isinstance(t, bool) and math.isfinite(t) for t in starts
            ):
                raise PlanError(f"override {name}: every section start must be a number of seconds")
        for name in ("music_start_s", "music_end_s"):
            value = getattr(self, name)
            if value is not None and not (
                isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
            ):
                raise PlanError(f"override {name}: give a number of seconds, got {value!r}")
        if self.section_form is not None:
            starts = (self.segment_starts_s or ()) + (self.added_segment_starts_s or ())
            if len(self.section_form) != len(set(starts)) + 1:
                raise PlanError(
                    f"the form has {len(self.section_form)} labels for {len(set(starts)) + 1} "
                    "sections (the opening and one per section start)"
                )


def _check_range(name: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not (math.isfinite(value) and low <= value <= high):
        raise PlanError(f"override {name} = {value} is outside [{low}, {high}]")
