"""The MusicPlan package (for now one module, planner.py; split by topic next)."""

from diffbgm.plan.planner import (
    MusicPlan,
    PlanConfig,
    PlanKey,
    PlanOverrides,
    blend_rank_absolute,
    contrast_at_cuts,
    fit_bar_grid,
    make_plan,
    mood_tempo_bpm,
    replan_segment,
)

__all__ = [
    "MusicPlan",
    "PlanConfig",
    "PlanKey",
    "PlanOverrides",
    "blend_rank_absolute",
    "contrast_at_cuts",
    "fit_bar_grid",
    "make_plan",
    "mood_tempo_bpm",
    "replan_segment",
]
