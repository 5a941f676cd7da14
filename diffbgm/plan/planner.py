"""The MusicPlan: what the music must do, bar by bar, to fit the video.

The plan is the contract between video analysis and the music model. It fixes a tempo and a
bar grid chosen so that shot cuts fall on bar lines (or beat lines when no bar line is near),
segments of whole beats that follow the shots, per-segment control values in the model's
units (POP909 quantiles, see diffbgm.controls), a key and a chord progression. It is a plain
dataclass that round-trips through JSON, and every field can be overridden by the user.

Time conventions: seconds relative to the video start; the grid starts at `offset_s` (<= 0:
a first bar that begins before the video is a pickup, its start is cut off); beats and bars
count from 0 at `offset_s`; steps are 16th notes (4 per beat).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from diffbgm.controls import DYNAMIC_CONTROLS, SEMANTIC_CONTROLS, key_features
from diffbgm.errors import PlanError
from diffbgm.metrics import relative_change
from diffbgm.model.conditions import PieceConditions
from diffbgm.music.calibration import Calibration
from diffbgm.music.chords import ChordError, note_pc, parse_chord
from diffbgm.music.harmony import (
    ROOT_NAMES,
    ChordModel,
    load_chord_model,
    sample_progression,
    token_to_label,
)
from diffbgm.music.roll import RollSpec
from diffbgm.video.types import ShotFeatures, VideoAnalysis

BEATS_PER_BAR = 4  # the model's roll is 4/4
MODES = ("major", "minor")
# Sharps where musicians write them for minor keys (F# minor, not Gb minor).
_MINOR_KEY_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")


class QuantileTables(Protocol):
    """What the plan needs from a calibration (diffbgm.music.calibration.Calibration has it)."""

    def to_quantile(self, name: str, raw: float, /) -> float: ...

    def to_raw(self, name: str, quantile: float, /) -> float: ...


# --- the plan records --------------------------------------------------------------------


def _check_controls(
    values: Mapping[str, float], names: Sequence[str], where: str
) -> dict[str, float]:
    if set(values) != set(names):
        missing = sorted(set(names) - set(values))
        extra = sorted(set(values) - set(names))
        raise PlanError(
            f"{where}: controls must be {list(names)} (missing {missing}, unknown {extra})"
        )
    checked = {}
    for name in names:
        value = float(values[name])
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise PlanError(f"{where}: control {name!r} = {value} is outside [0, 1]")
        checked[name] = value
    return checked


@dataclass(frozen=True)
class PlanSegment:
    """A stretch of music answering one or more shots: beats [start_beat, start_beat + n_beats).

    Segments start on bar lines except where a cut could only reach a beat line.
    `dynamic` / `semantic` hold every name of DYNAMIC_CONTROLS / SEMANTIC_CONTROLS, in [0, 1].
    """

    index: int
    start_beat: int
    n_beats: int
    shot_indices: tuple[int, ...]
    dynamic: dict[str, float]
    semantic: dict[str, float]
    recalls: int = -1  # an earlier segment whose music this one takes up again; -1 = none

    def __post_init__(self) -> None:
        where = f"segment {self.index}"
        if self.start_beat < 0 or self.n_beats < 1:
            raise PlanError(
                f"{where}: start beat {self.start_beat} / length {self.n_beats} beats is invalid"
            )
        if not -1 <= self.recalls < self.index:
            raise PlanError(
                f"{where}: can only recall an earlier segment (0..{self.index - 1}) or -1, "
                f"not {self.recalls}"
            )
        object.__setattr__(self, "dynamic", _check_controls(self.dynamic, DYNAMIC_CONTROLS, where))
        object.__setattr__(
            self, "semantic", _check_controls(self.semantic, SEMANTIC_CONTROLS, where)
        )
        object.__setattr__(self, "shot_indices", tuple(int(i) for i in self.shot_indices))

    @property
    def end_beat(self) -> int:
        return self.start_beat + self.n_beats

    @property
    def start_bar(self) -> float:
        """Start in bars (fractional when the segment starts on a beat inside a bar)."""
        return self.start_beat / BEATS_PER_BAR

    @property
    def n_bars(self) -> float:
        return self.n_beats / BEATS_PER_BAR

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start_beat": self.start_beat,
            "n_beats": self.n_beats,
            "start_bar": self.start_bar,
            "n_bars": self.n_bars,
            "shot_indices": list(self.shot_indices),
            "dynamic": dict(self.dynamic),
            "semantic": dict(self.semantic),
            "recalls": self.recalls,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlanSegment:
        return cls(
            index=int(data["index"]),
            start_beat=int(data["start_beat"]),
            n_beats=int(data["n_beats"]),
            shot_indices=tuple(data.get("shot_indices", ())),
            dynamic={str(k): float(v) for k, v in data["dynamic"].items()},
            semantic={str(k): float(v) for k, v in data["semantic"].items()},
            recalls=int(data.get("recalls", -1)),
        )


@dataclass(frozen=True)
class PlanChord:
    """A chord (Harte label) from beat `beat` (0-3) of bar `bar` (from 0), lasting `n_beats`."""

    bar: int
    beat: int
    n_beats: int
    label: str

    def __post_init__(self) -> None:
        if self.bar < 0 or not 0 <= self.beat < BEATS_PER_BAR or self.n_beats < 1:
            raise PlanError(
                f"chord {self.label!r} at bar {self.bar}, beat {self.beat}: bad position"
            )
        try:
            parse_chord(self.label)
        except ChordError as exc:
            raise PlanError(f"chord at bar {self.bar + 1}: {exc}") from exc

    @property
    def start_beat(self) -> int:
        return self.bar * BEATS_PER_BAR + self.beat

    def to_dict(self) -> dict[str, Any]:
        return {"bar": self.bar, "beat": self.beat, "n_beats": self.n_beats, "label": self.label}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlanChord:
        return cls(int(data["bar"]), int(data["beat"]), int(data["n_beats"]), str(data["label"]))


@dataclass(frozen=True)
class PlanKey:
    """Tonic pitch class (0 = C) and mode ('major' or 'minor')."""

    tonic_pc: int
    mode: str

    def __post_init__(self) -> None:
        if self.mode not in MODES or not 0 <= self.tonic_pc < 12:
            raise PlanError(f"invalid key: tonic {self.tonic_pc}, mode {self.mode!r}")

    @property
    def minor(self) -> bool:
        return self.mode == "minor"

    @property
    def name(self) -> str:
        names = _MINOR_KEY_NAMES if self.minor else ROOT_NAMES
        return f"{names[self.tonic_pc]} {self.mode}"

    @classmethod
    def parse(cls, text: str) -> PlanKey:
        """'D minor', 'F# major', 'Bb min', 'Eb:maj' or 'c' (major) -> PlanKey; PlanError otherwise."""
        parts = text.replace(":", " ").split()
        mode_words = {
            "major": "major",
            "maj": "major",
            "minor": "minor",
            "min": "minor",
            "m": "minor",
        }
        if not 1 <= len(parts) <= 2 or (len(parts) == 2 and parts[1].lower() not in mode_words):
            raise PlanError(f"cannot read key {text!r}: write it like 'D minor' or 'Eb major'")
        try:
            tonic = note_pc(parts[0][0].upper() + parts[0][1:])
        except ChordError as exc:
            raise PlanError(f"cannot read key {text!r}: {parts[0]!r} is not a note name") from exc
        return cls(tonic, mode_words[parts[1].lower()] if len(parts) == 2 else "major")


@dataclass(frozen=True)
class MusicPlan:
    """Tempo, bar grid, segments with controls, key and chords for one video.

    `cut_residuals_s[i]`: cut i (start of shot i+1) minus the segment boundary it was snapped
    to, in seconds (when the cut's shot was merged away: minus the nearest boundary).
    `provenance`: for each planned part ("tempo_bpm", "key", ...) where it came from; "user"
    marks an override.
    """

    tempo_bpm: float
    offset_s: float
    n_bars: int
    duration_s: float
    segments: tuple[PlanSegment, ...]
    key: PlanKey
    chords: tuple[PlanChord, ...]
    cut_residuals_s: tuple[float, ...]
    seed: int
    provenance: dict[str, str] = field(default_factory=dict)
    beats_per_bar: int = BEATS_PER_BAR

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(self.segments))
        object.__setattr__(self, "chords", tuple(self.chords))
        object.__setattr__(self, "cut_residuals_s", tuple(float(r) for r in self.cut_residuals_s))
        if self.beats_per_bar != BEATS_PER_BAR:
            raise PlanError(f"only 4/4 is supported (got {self.beats_per_bar} beats per bar)")
        if not (math.isfinite(self.tempo_bpm) and 30.0 <= self.tempo_bpm <= 300.0):
            raise PlanError(f"tempo {self.tempo_bpm} BPM is outside 30-300")
        if not self.duration_s > 0:
            raise PlanError(f"duration {self.duration_s} s must be positive")
        if not -self.bar_s < self.offset_s <= 1e-9:
            raise PlanError(f"offset {self.offset_s:.3f} s must lie in (-one bar, 0]")
        if self.n_bars < 1 or self.offset_s + self.n_bars * self.bar_s < self.duration_s - 1e-6:
            raise PlanError(
                f"{self.n_bars} bars at {self.tempo_bpm} BPM do not cover {self.duration_s:.2f} s"
            )
        self._check_segments()
        self._check_chords()

    def _check_segments(self) -> None:
        if not self.segments:
            raise PlanError("a plan needs at least one segment")
        expected_start = 0
        for i, seg in enumerate(self.segments):
            if seg.index != i or seg.start_beat != expected_start:
                raise PlanError(
                    f"segment {i} must have index {i} and start at beat {expected_start} "
                    f"(has index {seg.index}, start beat {seg.start_beat})"
                )
            expected_start = seg.end_beat
        if expected_start != self.n_beats:
            raise PlanError(f"segments cover {expected_start} beats, the grid has {self.n_beats}")

    def _check_chords(self) -> None:
        previous_end = 0
        for chord in self.chords:
            if chord.start_beat < previous_end or chord.start_beat + chord.n_beats > self.n_beats:
                raise PlanError(
                    f"chord {chord.label!r} at bar {chord.bar + 1} beat {chord.beat + 1} overlaps "
                    "the previous chord or runs past the last bar"
                )
            previous_end = chord.start_beat + chord.n_beats

    # --- grid ---

    @property
    def beat_s(self) -> float:
        return 60.0 / self.tempo_bpm

    @property
    def bar_s(self) -> float:
        return self.beat_s * self.beats_per_bar

    @property
    def n_beats(self) -> int:
        return self.n_bars * self.beats_per_bar

    @property
    def key_name(self) -> str:
        return self.key.name

    def n_steps(self, steps_per_beat: int = 4) -> int:
        return self.n_beats * steps_per_beat

    def step_times_s(self, steps_per_beat: int = 4) -> np.ndarray:
        """(n_steps,) start time of every 16th step in seconds (video time; may start < 0)."""
        steps = np.arange(self.n_steps(steps_per_beat), dtype=np.float64)
        return self.offset_s + steps * (self.beat_s / steps_per_beat)

    def bar_times_s(self) -> np.ndarray:
        """(n_bars,) start time of every bar in seconds."""
        return self.offset_s + np.arange(self.n_bars, dtype=np.float64) * self.bar_s

    def segment_boundaries_s(self) -> np.ndarray:
        """(n_segments + 1,) segment starts and the end of the last one, in seconds."""
        beats = [seg.start_beat for seg in self.segments] + [self.n_beats]
        return self.offset_s + np.asarray(beats, dtype=np.float64) * self.beat_s

    def segment_bounds_s(self) -> list[tuple[float, float]]:
        """(start_s, end_s) of every segment, clipped to the video [0, duration_s]."""
        edges = np.clip(self.segment_boundaries_s(), 0.0, self.duration_s)
        return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]

    # --- conditions for the model ---

    def segment_ids_per_step(self, steps_per_beat: int = 4) -> np.ndarray:
        """(n_steps,) int64: index of the segment each step belongs to."""
        lengths = [seg.n_beats * steps_per_beat for seg in self.segments]
        return np.repeat(np.arange(len(self.segments), dtype=np.int64), lengths)

    def to_piece_conditions_segment_ids(self, n_steps: int, steps_per_beat: int = 4) -> np.ndarray:
        """Segment id per step for a roll of `n_steps` (cut, or padded with the last segment)."""
        ids = self.segment_ids_per_step(steps_per_beat)
        if n_steps <= ids.shape[0]:
            return ids[:n_steps]
        return np.concatenate([ids, np.full(n_steps - ids.shape[0], ids[-1], dtype=np.int64)])

    def chord_pcs_per_step(self, steps_per_beat: int = 4) -> np.ndarray:
        """(n_steps, 12) float32 {0,1}: pitch classes of the chord at each step (0 where none)."""
        pcs = np.zeros((self.n_steps(steps_per_beat), 12), dtype=np.float32)
        for chord in self.chords:
            start = chord.start_beat * steps_per_beat
            pcs[
                start : start + chord.n_beats * steps_per_beat,
                sorted(parse_chord(chord.label).pitch_classes),
            ] = 1.0
        return pcs

    def to_piece_conditions(self, spec: RollSpec | None = None) -> PieceConditions:
        """The plan as the model's whole-piece conditions (controls in the controls.py order)."""
        steps_per_beat = (spec or RollSpec()).steps_per_beat
        dynamic = [[seg.dynamic[name] for name in DYNAMIC_CONTROLS] for seg in self.segments]
        semantic = [[seg.semantic[name] for name in SEMANTIC_CONTROLS] for seg in self.segments]
        return PieceConditions(
            chord_pcs=self.chord_pcs_per_step(steps_per_beat),
            segment_ids=self.segment_ids_per_step(steps_per_beat),
            dynamic=np.asarray(dynamic, dtype=np.float32),
            semantic=np.asarray(semantic, dtype=np.float32),
            global_=np.asarray(key_features(self.key.tonic_pc, self.key.minor), dtype=np.float32),
            recalls=np.asarray([seg.recalls for seg in self.segments], dtype=np.int64),
        )

    # --- JSON ---

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "diffbgm-plan/1",
            "tempo_bpm": self.tempo_bpm,
            "beats_per_bar": self.beats_per_bar,
            "offset_s": self.offset_s,
            "n_bars": self.n_bars,
            "duration_s": self.duration_s,
            "key": {"tonic_pc": self.key.tonic_pc, "mode": self.key.mode, "name": self.key.name},
            "segments": [seg.to_dict() for seg in self.segments],
            "chords": [chord.to_dict() for chord in self.chords],
            "cut_residuals_s": list(self.cut_residuals_s),
            "seed": self.seed,
            "provenance": dict(self.provenance),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MusicPlan:
        try:
            return cls(
                tempo_bpm=float(data["tempo_bpm"]),
                beats_per_bar=int(data.get("beats_per_bar", BEATS_PER_BAR)),
                offset_s=float(data["offset_s"]),
                n_bars=int(data["n_bars"]),
                duration_s=float(data["duration_s"]),
                key=PlanKey(int(data["key"]["tonic_pc"]), str(data["key"]["mode"])),
                segments=tuple(PlanSegment.from_dict(s) for s in data["segments"]),
                chords=tuple(PlanChord.from_dict(c) for c in data["chords"]),
                cut_residuals_s=tuple(float(r) for r in data.get("cut_residuals_s", ())),
                seed=int(data.get("seed", 0)),
                provenance={str(k): str(v) for k, v in data.get("provenance", {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanError(f"not a valid music plan: {type(exc).__name__}: {exc}") from exc

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> MusicPlan:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanError(f"music plan is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


# --- configuration and overrides ---------------------------------------------------------


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


@dataclass(frozen=True)
class PlanOverrides:
    """What the user fixes; None = let the planner decide.

    tempo_bpm: 40-240. key: e.g. 'D minor'. valence (-1..1) / arousal (0..1): the mood of the
    whole video (shots keep their differences around it). density: the density quantile of
    every segment; density_scale: multiplies the planned densities; segment_density: one
    density per segment (after merging and phrase splitting). chords: Harte labels, one per
    bar, repeated to fill the piece. segment_starts_s: where segments start (seconds),
    replacing the shot cuts.
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


def _check_range(name: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not (math.isfinite(value) and low <= value <= high):
        raise PlanError(f"override {name} = {value} is outside [{low}, {high}]")


# --- tempo and bar grid ------------------------------------------------------------------


@dataclass(frozen=True)
class BarGrid:
    tempo_bpm: float
    offset_s: float  # first downbeat at or before the video start, in (-bar, 0]
    cost: float


def mood_tempo_bpm(arousal: float, config: PlanConfig) -> float:
    """The tempo the mood asks for: calm (arousal 0) -> slow, excited (1) -> fast."""
    return config.tempo_slow_bpm + (config.tempo_fast_bpm - config.tempo_slow_bpm) * float(
        np.clip(arousal, 0, 1)
    )


def _line_costs(beats: np.ndarray, beat_s: np.ndarray, config: PlanConfig) -> np.ndarray:
    """Cost (s^2) of times `beats` (in beats from the grid origin): distance to the nearest bar
    line, or to the nearest beat line plus a penalty, capped."""
    # In-place arithmetic: fresh temporaries of the big (tempi, phases, cuts) array cost more
    # in page faults than the arithmetic itself.
    bar_cost = beats / BEATS_PER_BAR
    np.round(bar_cost, out=bar_cost)
    bar_cost *= -BEATS_PER_BAR
    bar_cost += beats  # signed distance to the nearest bar line, in beats
    bar_cost *= bar_cost
    bar_cost *= beat_s * beat_s
    beat_cost = np.round(beats)
    np.subtract(beats, beat_cost, out=beat_cost)
    beat_cost *= beat_cost
    beat_cost *= beat_s * beat_s
    beat_cost += config.beat_line_penalty_s**2
    np.minimum(bar_cost, beat_cost, out=bar_cost)
    np.minimum(bar_cost, config.residual_cap_s**2, out=bar_cost)
    return bar_cost


def fit_bar_grid(
    cut_times_s: Sequence[float],
    target_bpm: float,
    config: PlanConfig | None = None,
    tempo_bpm: float | None = None,
) -> BarGrid:
    """Tempo and phase putting the cuts on bar lines (beat lines at a penalty), near target_bpm.

    Cost = sum over cuts of min(bar residual^2, beat residual^2 + penalty^2), capped, plus the
    video start weighted by `start_weight`, plus a soft prior on log2(tempo / target) outside
    a dead zone. Candidate phases are those that put some cut exactly on a bar or beat line;
    everything is evaluated at once as (tempi, phases, cuts) arrays.
    """
    cfg = config or PlanConfig()
    if tempo_bpm is not None:
        tempi = np.asarray([tempo_bpm], dtype=np.float64)
    else:
        tempi = np.arange(cfg.bpm_min, cfg.bpm_max + 1e-9, cfg.bpm_step)
    beat = 60.0 / tempi  # (Nt,)
    bar = beat * BEATS_PER_BAR
    cuts = np.asarray(cut_times_s, dtype=np.float64)  # (Nc,)
    shifts = np.arange(BEATS_PER_BAR)  # phases putting a cut on beat k of a bar
    candidates = cuts[None, :, None] - shifts[None, None, :] * beat[:, None, None]  # (Nt, Nc, 4)
    phases = np.concatenate([np.zeros((tempi.size, 1)), candidates.reshape(tempi.size, -1)], axis=1)
    phases = np.mod(phases, bar[:, None])  # (Nt, Np) in [0, bar)
    # float32 halves the memory traffic of the (Nt, Np, Nc) array; beats are small numbers.
    in_beats = ((cuts[None, None, :] - phases[:, :, None]) / beat[:, None, None]).astype(np.float32)
    cost = _line_costs(in_beats, beat[:, None, None].astype(np.float32), cfg).sum(axis=2)
    start_cost = _line_costs(-phases / beat[:, None], beat[:, None], cfg)  # (Nt, Np)
    octaves = np.abs(np.log2(tempi / target_bpm))
    prior = cfg.tempo_prior_weight * np.maximum(octaves - cfg.tempo_prior_dead_zone, 0.0) ** 2
    # A sliver of the prior inside the dead zone only breaks ties between equally good tempi.
    prior = prior + 1e-4 * octaves
    total = cost + cfg.start_weight * start_cost + prior[:, None]  # (Nt, Np)
    t_idx, p_idx = np.unravel_index(int(np.argmin(total)), total.shape)
    phase = float(phases[t_idx, p_idx])
    bar_len = float(bar[t_idx])
    offset = phase - bar_len if phase > 1e-6 and bar_len - phase > 1e-6 else 0.0
    return BarGrid(tempo_bpm=float(tempi[t_idx]), offset_s=offset, cost=float(total[t_idx, p_idx]))


def snap_to_beat(time_s: float, grid: BarGrid, config: PlanConfig) -> int:
    """Beat index of the line a cut goes to: the nearest bar line if within tolerance, else beat."""
    beat_s = 60.0 / grid.tempo_bpm
    position = (time_s - grid.offset_s) / beat_s  # in beats from the grid origin
    bar_beat = int(round(position / BEATS_PER_BAR)) * BEATS_PER_BAR
    if abs(position - bar_beat) * beat_s <= config.bar_snap_tolerance_s:
        return bar_beat
    return int(round(position))


# --- segments ----------------------------------------------------------------------------


def _merge_short(edges: list[int], min_beats: int) -> list[int]:
    """Drop boundaries until every segment has >= min_beats (a short one joins its shorter neighbour)."""
    edges = sorted(set(edges))
    while len(edges) > 2:
        lengths = np.diff(edges)
        shortest = int(np.argmin(lengths))
        if lengths[shortest] >= min_beats:
            break
        if shortest == 0:
            drop = 1
        elif shortest == len(lengths) - 1:
            drop = shortest
        else:  # join the shorter neighbour, so merged segments stay balanced
            drop = shortest if lengths[shortest - 1] <= lengths[shortest + 1] else shortest + 1
        del edges[drop]
    return edges


def _split_long(edges: list[int], max_bars: int, phrase_bars: int) -> list[int]:
    """Cut segments longer than max_bars into phrases of phrase_bars (a short rest joins the last)."""
    phrase = phrase_bars * BEATS_PER_BAR
    out = [edges[0]]
    for start, end in zip(edges[:-1], edges[1:], strict=True):
        if end - start > max_bars * BEATS_PER_BAR:
            cuts = list(range(start + phrase, end, phrase))
            if cuts and end - cuts[-1] < phrase // 2:
                cuts.pop()
            out.extend(cuts)
        out.append(end)
    return out


def segment_edges(
    boundary_times_s: Sequence[float], grid: BarGrid, n_beats: int, config: PlanConfig
) -> list[int]:
    """Segment boundaries in beats (first 0, last n_beats) for boundary times in seconds."""
    snapped = [snap_to_beat(t, grid, config) for t in boundary_times_s]
    edges = [0, *[b for b in snapped if 0 < b < n_beats], n_beats]
    edges = _merge_short(edges, config.min_segment_beats)
    return _split_long(edges, config.max_segment_bars, config.phrase_bars)


def cut_residuals(cut_times_s: Sequence[float], edge_times_s: np.ndarray) -> list[float]:
    """Each cut minus the nearest segment boundary, in seconds."""
    out = []
    for cut in cut_times_s:
        nearest = edge_times_s[int(np.argmin(np.abs(edge_times_s - cut)))]
        out.append(round(float(cut - nearest), 6))
    return out


# --- per-segment controls ----------------------------------------------------------------

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
    analysis: VideoAnalysis, spans_s: Sequence[tuple[float, float]]
) -> tuple[list[dict[str, float]], list[tuple[int, ...]]]:
    """Per segment span: features averaged over shots weighted by overlap, and the shots in it.

    A shot belongs to a segment when >= 30 % of the shot lies in it, or when it is the shot
    that overlaps the segment most.
    """
    features = {row.shot_index: row for row in analysis.features}
    rows = []
    members = []
    for start, end in spans_s:
        overlaps = np.asarray(
            [max(0.0, min(end, s.end_s) - max(start, s.start_s)) for s in analysis.shots]
        )
        if overlaps.sum() <= 0:  # a span past the last shot (pickup, last bar): use the nearest
            nearest = int(np.argmin([abs(s.start_s - start) for s in analysis.shots]))
            overlaps[nearest] = 1.0
        durations = np.asarray([max(s.duration_s, 1e-6) for s in analysis.shots])
        inside = [
            analysis.shots[i].index
            for i in np.nonzero((overlaps / durations >= 0.3) | (overlaps == overlaps.max()))[0]
        ]
        members.append(tuple(inside))
        weights = overlaps / overlaps.sum()
        row: dict[str, float] = {}
        for name in _FEATURE_NAMES:
            values = [_feature(features.get(s.index), name) for s in analysis.shots]
            row[name] = float(np.dot(weights, values))
        rows.append(row)
    return rows, members


def _feature(row: ShotFeatures | None, name: str) -> float:
    """A shot's feature, or a neutral value when the shot has no feature row."""
    neutral = {"brightness": 0.5, "saturation": 0.5, "arousal": 0.5}
    return float(getattr(row, name)) if row is not None else neutral.get(name, 0.0)


def _saturate(value: float, typical: float) -> float:
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
    rows: Sequence[Mapping[str, float]], config: PlanConfig
) -> list[dict[str, float]]:
    """Video features -> dynamic controls (POP909 quantiles) per segment; see docs/plan.md."""
    motion = np.asarray([_saturate(r["motion"], config.typical_motion) for r in rows])
    rhythm = np.asarray([_saturate(r["visual_rhythm"], config.typical_visual_rhythm) for r in rows])
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
    blended = {
        name: np.clip(blend_rank_absolute(absolute[name], config), 0.0, 1.0)
        for name in DYNAMIC_CONTROLS
    }
    return [
        {name: round(float(blended[name][i]), 4) for name in DYNAMIC_CONTROLS}
        for i in range(len(rows))
    ]


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


# --- key ---------------------------------------------------------------------------------


def choose_key(
    valence: float, model: ChordModel, rng: np.random.Generator, config: PlanConfig
) -> PlanKey:
    """Mode from valence (with a margin where the mode is drawn at POP909's odds); tonic drawn
    among POP909's keys of that mode, weighted by how many songs use each."""
    mode_counts = {m: sum(n for k, n in model.key_counts.items() if k.endswith(m)) for m in MODES}
    if valence > config.key_valence_margin:
        mode = "major"
    elif valence < -config.key_valence_margin:
        mode = "minor"
    else:
        p_major = mode_counts["major"] / max(1, sum(mode_counts.values()))
        mode = "major" if rng.random() < p_major else "minor"
    keys = [(PlanKey.parse(k), n) for k, n in sorted(model.key_counts.items()) if k.endswith(mode)]
    if not keys:
        return PlanKey(0, mode)
    weights = np.asarray([n for _, n in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=weights / weights.sum()))][0]


# --- chords ------------------------------------------------------------------------------


def chord_slots(
    start_beat: int, end_beat: int, changes_per_bar: float, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """(start_beat, n_beats) chord spans covering a segment at about `changes_per_bar`.

    A new chord at the segment start and at bar lines; with rate r < 1 a bar keeps the previous
    chord with probability 1 - r, with r > 1 it changes at mid-bar with probability r - 1.
    """
    slots: list[list[int]] = []
    beat = start_beat
    while beat < end_beat:
        bar_end = min((beat // BEATS_PER_BAR + 1) * BEATS_PER_BAR, end_beat)
        full_bar = beat % BEATS_PER_BAR == 0 and bar_end - beat == BEATS_PER_BAR
        if slots and full_bar and changes_per_bar < 1.0 and rng.random() >= changes_per_bar:
            slots[-1][1] += bar_end - beat
        elif full_bar and changes_per_bar > 1.0 and rng.random() < changes_per_bar - 1.0:
            half = BEATS_PER_BAR // 2
            slots.extend([[beat, half], [beat + half, half]])
        else:
            slots.append([beat, bar_end - beat])
        beat = bar_end
    return [(a, n) for a, n in slots]


def plan_recalls(
    edges: Sequence[int],
    members: Sequence[tuple[int, ...]],
    rows: Sequence[Mapping[str, float]],
    embeddings: Sequence[np.ndarray | None],
    config: PlanConfig,
) -> list[int]:
    """For each segment, an earlier segment of the same scene whose music it takes up, or -1.

    - Phrases of one long shot alternate A B A B: phrase k of the shot takes up phrase k - 2
      (the music behind it). Taking up the previous phrase would loop one phrase for as long
      as the shot lasts.
    - A segment that looks like an earlier one it does not follow directly (a scene that
      comes back after something else; see PlanConfig.recall_*) takes up the most alike
      (ties: the earliest).
    Only segments on bar lines take part, and a recall always points at a first occurrence,
    so a scene coming back three times brings back the same music each time. `embeddings`:
    per segment the mean CLIP embedding of its shots, or None.
    """
    recalls = [-1] * (len(edges) - 1)
    on_bar = [edge % BEATS_PER_BAR == 0 for edge in edges[:-1]]
    for later in range(len(recalls)):
        if not on_bar[later]:
            continue
        two_back = later - 2
        if two_back >= 0 and members[two_back] == members[later] == members[later - 1]:
            if on_bar[two_back]:
                recalls[later] = recalls[two_back] if recalls[two_back] >= 0 else two_back
            continue
        best_gap = math.inf
        for earlier in range(later - 1):  # not the segment it follows directly
            if not on_bar[earlier] or recalls[earlier] >= 0:
                continue
            gap = _look_gap(
                rows[later], rows[earlier], embeddings[later], embeddings[earlier], config
            )
            if gap < best_gap and gap <= 1.0:
                recalls[later], best_gap = earlier, gap
    return recalls


def _look_gap(
    a: Mapping[str, float],
    b: Mapping[str, float],
    embedding_a: np.ndarray | None,
    embedding_b: np.ndarray | None,
    config: PlanConfig,
) -> float:
    """How unlike two segments look, as a share of the tolerance (<= 1: alike): 1 - cosine
    of their CLIP embeddings where both have them, else the largest gap of brightness,
    saturation, motion and colour temperature."""
    if embedding_a is not None and embedding_b is not None:
        norms = float(np.linalg.norm(embedding_a) * np.linalg.norm(embedding_b))
        if norms == 0:
            return math.inf
        cosine = float(embedding_a @ embedding_b) / norms
        return (1.0 - cosine) / max(1.0 - config.recall_clip_similarity, 1e-9)
    # colour temperature spans [-1, 1], the others [0, 1]: halve it to compare alike
    gaps = [abs(a[name] - b[name]) for name in ("brightness", "saturation", "motion")]
    gaps.append(abs(a["colour_temperature"] - b["colour_temperature"]) / 2)
    return max(gaps) / max(config.recall_look_tolerance, 1e-9)


def segment_embeddings(
    analysis: VideoAnalysis, members: Sequence[tuple[int, ...]]
) -> list[np.ndarray | None]:
    """Per segment the mean semantic (CLIP) embedding of its shots; None where one lacks it."""
    by_shot = {row.shot_index: row.semantic for row in analysis.features}
    out: list[np.ndarray | None] = []
    for shots in members:
        found = [by_shot.get(i) for i in shots]
        vectors = [np.asarray(v, dtype=np.float64) for v in found if v is not None]
        out.append(np.mean(vectors, axis=0) if vectors and len(vectors) == len(found) else None)
    return out


def recall_chords(
    chords: Sequence[PlanChord], edges: Sequence[int], recalls: Sequence[int]
) -> list[PlanChord]:
    """The progression with each recalling segment's bars taking its source's chords, bar for
    bar in a loop (a returning scene brings back its harmony, which the sampler's recall needs
    to repeat the music), except in the last bar, which keeps its cadence. Chord spans are
    rebuilt from the beats; a new chord starts at every segment start."""
    n_beats = edges[-1]
    labels = [""] * n_beats
    for chord in chords:
        for beat in range(chord.start_beat, min(chord.start_beat + chord.n_beats, n_beats)):
            labels[beat] = chord.label
    for target, source in enumerate(recalls):
        if source < 0:
            continue
        src_start, src_end = edges[source], edges[source + 1]
        src_bars = (src_end - src_start) // BEATS_PER_BAR
        if src_bars < 1:
            continue
        # the piece's last bar keeps its own chords: the cadence that ends the music
        for beat in range(edges[target], min(edges[target + 1], n_beats - BEATS_PER_BAR)):
            offset = (beat - edges[target]) % (src_bars * BEATS_PER_BAR)
            labels[beat] = labels[src_start + offset]
    starts = set(edges)
    out: list[PlanChord] = []
    span_start = 0
    for beat in range(1, n_beats + 1):
        if beat == n_beats or beat in starts or labels[beat] != labels[span_start]:
            out.append(_plan_chord(span_start, beat - span_start, labels[span_start]))
            span_start = beat
    return out


def _plan_chord(start_beat: int, n_beats: int, label: str) -> PlanChord:
    return PlanChord(start_beat // BEATS_PER_BAR, start_beat % BEATS_PER_BAR, n_beats, label)


def generate_chords(
    edges: Sequence[int],
    key: PlanKey,
    densities: Sequence[float],
    model: ChordModel,
    rng: np.random.Generator,
) -> list[PlanChord]:
    """A progression over the segments: harmonic rhythm per segment from POP909's distribution
    (nudged by the segment's density), chords from the n-gram model with cadences."""
    slots = []
    for (start, end), density in zip(
        zip(edges[:-1], edges[1:], strict=True), densities, strict=True
    ):
        quantile = 0.5 * float(rng.random()) + 0.5 * density
        slots.append(chord_slots(start, end, model.changes_per_bar(quantile), rng))
    tokens = sample_progression(model, key.mode, [len(s) for s in slots], rng)
    return [
        _plan_chord(a, n, token_to_label(tok, key.tonic_pc))
        for seg_slots, seg_tokens in zip(slots, tokens, strict=True)
        for (a, n), tok in zip(seg_slots, seg_tokens, strict=True)
    ]


def chords_from_labels(labels: Sequence[str], n_bars: int) -> list[PlanChord]:
    """One chord per bar from the user's labels, repeated to fill `n_bars`."""
    return [PlanChord(bar, 0, BEATS_PER_BAR, labels[bar % len(labels)]) for bar in range(n_bars)]


def chord_statistics(
    chords: Sequence[PlanChord], start_beat: int, end_beat: int
) -> tuple[float, float]:
    """(share of the span's beats on minor-type chords, chord onsets per bar) in [start, end)."""
    minor_beats = 0
    onsets = 0
    for chord in chords:
        a, b = chord.start_beat, chord.start_beat + chord.n_beats
        overlap = max(0, min(b, end_beat) - max(a, start_beat))
        if overlap and parse_chord(chord.label).is_minor:
            minor_beats += overlap
        onsets += int(start_beat <= a < end_beat)
    n_beats = end_beat - start_beat
    return minor_beats / n_beats, onsets / (n_beats / BEATS_PER_BAR)


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


# --- the planner -------------------------------------------------------------------------


def _shift_mood(
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


def _apply_density(dynamic: list[dict[str, float]], overrides: PlanOverrides) -> None:
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


def make_plan(
    analysis: VideoAnalysis,
    overrides: PlanOverrides | None = None,
    calibration: QuantileTables | None = None,
    seed: int = 0,
    config: PlanConfig | None = None,
    chord_model: ChordModel | None = None,
) -> MusicPlan:
    """Plan the music for an analysed video. Same inputs and seed -> the same plan."""
    cfg = config or PlanConfig()
    ovr = overrides or PlanOverrides()
    model = chord_model or load_chord_model()
    rng = np.random.default_rng(seed)
    duration = float(analysis.info.duration_s)
    if not analysis.shots or duration <= 0:
        raise PlanError(f"{analysis.info.path}: the analysis has no shots or no duration")
    provenance: dict[str, str] = {}

    # Mood of the whole video, duration-weighted over shots; user mood overrides shift it.
    whole, _ = segment_features(analysis, [(0.0, duration)])
    valence = ovr.valence if ovr.valence is not None else whole[0]["valence"]
    arousal = ovr.arousal if ovr.arousal is not None else whole[0]["arousal"]

    boundaries = (
        list(ovr.segment_starts_s) if ovr.segment_starts_s is not None else analysis.cut_times_s
    )
    if ovr.segment_starts_s is not None and any(not 0 < t < duration for t in boundaries):
        raise PlanError(
            f"segment starts must lie inside the video (0, {duration:.2f}) s: {boundaries}"
        )
    target = mood_tempo_bpm(arousal, cfg)
    if ovr.arousal is not None:
        cfg = replace(
            cfg,
            tempo_prior_dead_zone=cfg.tempo_prior_dead_zone_user,
            tempo_prior_weight=cfg.tempo_prior_weight_user,
        )
    grid = fit_bar_grid(boundaries, target, cfg, tempo_bpm=ovr.tempo_bpm)
    provenance["tempo_bpm"] = (
        "user"
        if ovr.tempo_bpm is not None
        else f"grid search near {target:.0f} BPM (arousal {arousal:.2f})"
    )
    provenance["segments"] = "user" if ovr.segment_starts_s is not None else "shots"
    bar_s = 240.0 / grid.tempo_bpm
    n_bars = max(1, math.ceil((duration - grid.offset_s) / bar_s - 1e-9))
    edges = segment_edges(boundaries, grid, n_bars * BEATS_PER_BAR, cfg)

    beat_s = 60.0 / grid.tempo_bpm
    edge_times = grid.offset_s + np.asarray(edges, dtype=np.float64) * beat_s
    spans = [
        (max(0.0, float(a)), min(duration, float(b)))
        for a, b in zip(edge_times[:-1], edge_times[1:], strict=True)
    ]
    rows, members = segment_features(analysis, spans)
    weights = np.asarray([b - a for a, b in spans]) / max(1e-9, sum(b - a for a, b in spans))
    if ovr.valence is not None:
        _shift_mood(rows, weights, "valence", ovr.valence, -1.0, 1.0)
    if ovr.arousal is not None:
        _shift_mood(rows, weights, "arousal", ovr.arousal, 0.0, 1.0)

    dynamic = dynamic_controls(rows, cfg)
    if (ovr.density, ovr.segment_density) == (None, None):  # a user's density rules
        contrast_at_cuts(dynamic, members, cfg, calibration or Calibration.load())
    _apply_density(dynamic, ovr)
    provenance["dynamic"] = (
        "user density"
        if (ovr.density, ovr.density_scale, ovr.segment_density) != (None, None, None)
        else "video"
    )

    key = PlanKey.parse(ovr.key) if ovr.key is not None else choose_key(valence, model, rng, cfg)
    provenance["key"] = "user" if ovr.key is not None else f"mood (valence {valence:+.2f})"
    recalls = plan_recalls(edges, members, rows, segment_embeddings(analysis, members), cfg)
    provenance["recalls"] = "same shots or look-alike scenes"
    if ovr.chords is not None:
        chords = chords_from_labels(ovr.chords, n_bars)
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
