"""The MusicPlan: what the music must do, bar by bar, to fit the video.

The plan is the contract between video analysis and the music model. It fixes a tempo and a
bar grid chosen so that shot cuts fall on bar lines (or beat lines when no bar line is near),
segments of whole beats that follow the shots, per-segment control values in the model's
units (POP909 quantiles, see diffbgm.controls), a key and a chord progression. It is a plain
dataclass that round-trips through JSON, and every field can be overridden by the user.

Time conventions: seconds relative to the video start; the music sounds from `music_start_s`
to `music_end_s` (the whole video unless the user chose a part); the grid starts at `offset_s`
(at or up to a bar before the music's start: a first bar that begins before the music is a
pickup, its start is cut off); beats and bars count from 0 at `offset_s`; steps are 16th
notes (4 per beat).

Modules: records (the plan and its JSON), config (PlanConfig, PlanOverrides), inputs (what
the planner reads from a video analysis and a calibration, as Protocols), grid (tempo, bar
grid, segments), controls (per-segment controls), harmony (key, chords), recall (returning
scenes), span (the part of a video the music is for), planner (make_plan, music_span,
replan_segment). The plan imports neither the model nor the
video package: diffbgm.conditioning turns a plan into the model's conditions.
"""

from diffbgm.plan.config import PlanConfig, PlanOverrides
from diffbgm.plan.controls import (
    apply_density,
    blend_rank_absolute,
    contrast_at_cuts,
    dynamic_controls,
    intro_outro_flags,
    segment_features,
    semantic_controls,
    shift_mood,
)
from diffbgm.plan.grid import (
    BarGrid,
    cut_residuals,
    fit_bar_grid,
    mood_tempo_bpm,
    segment_edges,
    snap_to_beat,
)
from diffbgm.plan.harmony import (
    choose_key,
    chord_slots,
    chord_statistics,
    chords_from_labels,
    generate_chords,
)
from diffbgm.plan.inputs import (
    AnalysisLike,
    QuantileTables,
    ShotFeaturesLike,
    ShotLike,
    StretchLike,
    VideoInfoLike,
)
from diffbgm.plan.planner import MIN_MUSIC_S, make_plan, music_span, replan_segment
from diffbgm.plan.recall import plan_recalls, recall_chords, segment_embeddings
from diffbgm.plan.records import (
    BEATS_PER_BAR,
    MODES,
    JSONDict,
    MusicPlan,
    PlanChord,
    PlanKey,
    PlanSegment,
)

__all__ = [
    "BEATS_PER_BAR",
    "MODES",
    "AnalysisLike",
    "BarGrid",
    "JSONDict",
    "MusicPlan",
    "PlanChord",
    "PlanConfig",
    "PlanKey",
    "PlanOverrides",
    "PlanSegment",
    "QuantileTables",
    "ShotFeaturesLike",
    "ShotLike",
    "StretchLike",
    "VideoInfoLike",
    "apply_density",
    "blend_rank_absolute",
    "choose_key",
    "chord_slots",
    "chord_statistics",
    "chords_from_labels",
    "contrast_at_cuts",
    "cut_residuals",
    "dynamic_controls",
    "fit_bar_grid",
    "generate_chords",
    "intro_outro_flags",
    "make_plan",
    "music_span",
    "MIN_MUSIC_S",
    "mood_tempo_bpm",
    "plan_recalls",
    "recall_chords",
    "replan_segment",
    "segment_edges",
    "segment_embeddings",
    "segment_features",
    "semantic_controls",
    "shift_mood",
    "snap_to_beat",
]
