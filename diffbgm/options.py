"""What a user may ask of one composition, and the limits on it — one place for both.

The library, `python -m diffbgm` and the web app read these limits; none writes its own.
Video limits (size, duration) are `ProbeLimits` in diffbgm.video.probe; generation knobs and
their ranges live in diffbgm.generation.config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, get_args

from diffbgm.arrange.presets import ARRANGEMENTS, DEFAULT_ARRANGEMENT
from diffbgm.errors import PlanError
from diffbgm.generation.config import GenerationConfig, KnobValue
from diffbgm.video.mux import AUDIO_MODES, AudioMode
from diffbgm.video.types import ShotMethod

SHOT_DETECTORS: tuple[str, ...] = get_args(ShotMethod)

TEMPO_RANGE_BPM = (40.0, 240.0)  # a tempo a user may ask for
MAX_VARIANTS = 8
MAX_SEED = 2**31 - 1
MOOD_MAX_CHARS = 300


@dataclass(frozen=True)
class ComposeOptions:
    """What a user may choose; None means "let the video and the model decide".

    generation: knobs of GenerationConfig to change from the model's stored settings, e.g.
    {"guidance": 2.5, "steps": 15}; checked against the knobs' ranges here, so a bad value
    fails before any work."""

    seed: int = 0
    tempo_bpm: float | None = None
    key: str | None = None  # e.g. "D minor"
    mood: str | None = None  # free text, e.g. "calm and warm"
    density: float | None = None  # 0..1 quantile target for every segment (0.5 = typical POP909)
    variants: int = 1
    audio: AudioMode = "duck"
    shot_detector: ShotMethod = "content"
    generation: Mapping[str, KnobValue] = field(default_factory=dict)
    arrangement: str = DEFAULT_ARRANGEMENT  # a name of diffbgm.arrange.presets.ARRANGEMENTS

    def __post_init__(self) -> None:
        if not 0 <= self.seed <= MAX_SEED:
            raise PlanError(f"seed must be between 0 and {MAX_SEED}, got {self.seed}")
        low, high = TEMPO_RANGE_BPM
        if self.tempo_bpm is not None and not low <= self.tempo_bpm <= high:
            raise PlanError(
                f"tempo {self.tempo_bpm:g} BPM is outside {low:g}-{high:g} (or let the video choose)"
            )
        if self.density is not None and not 0.0 <= self.density <= 1.0:
            raise PlanError(f"density must be between 0 and 1, got {self.density}")
        if self.mood is not None and len(self.mood) > MOOD_MAX_CHARS:
            raise PlanError(f"the mood text is longer than {MOOD_MAX_CHARS} characters")
        if not 1 <= self.variants <= MAX_VARIANTS:
            raise PlanError(f"variants must be between 1 and {MAX_VARIANTS}, got {self.variants}")
        if self.audio not in AUDIO_MODES:
            raise PlanError(f"audio must be keep, duck or replace, got {self.audio!r}")
        if self.shot_detector not in SHOT_DETECTORS:
            raise PlanError(f"unknown shot detector {self.shot_detector!r}")
        if self.arrangement not in ARRANGEMENTS:
            raise PlanError(
                f"unknown arrangement {self.arrangement!r}; choose one of {', '.join(ARRANGEMENTS)}"
            )
        GenerationConfig().with_overrides(**self.generation)  # ranges checked now, not later

    def to_dict(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "tempo_bpm": self.tempo_bpm,
            "key": self.key,
            "mood": self.mood,
            "density": self.density,
            "variants": self.variants,
            "audio": self.audio,
            "shot_detector": self.shot_detector,
            "generation": dict(self.generation),
            "arrangement": self.arrangement,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ComposeOptions:
        """From report.json; reports before version 2 kept some generation knobs at the top
        level (guidance, steps, onset_threshold, recall); reports written before arrangements
        existed have none (the default, solo piano, is what they played)."""
        generation = dict(data.get("generation") or {})
        for name in ("guidance", "steps", "onset_threshold", "recall"):
            if data.get(name) is not None:
                generation[name] = data[name]
        known = {f.name for f in fields(cls)} - {"generation"}
        return cls(**{k: v for k, v in data.items() if k in known}, generation=generation)
