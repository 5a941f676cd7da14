"""The plan records: segments, chords, key and the MusicPlan itself, with their JSON form.

These are plain frozen dataclasses that check themselves when built (a plan read back from
JSON or edited by a user is validated the same way as one the planner made) and round-trip
through `to_dict()` / `from_dict()`. See diffbgm.plan for the time conventions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import SupportsFloat, SupportsIndex, SupportsInt

import numpy as np

from diffbgm.controls import DYNAMIC_CONTROLS, SEMANTIC_CONTROLS
from diffbgm.errors import PlanError
from diffbgm.music.chords import ChordError, note_pc, parse_chord
from diffbgm.music.harmony import ROOT_NAMES

BEATS_PER_BAR = 4  # the model's roll is 4/4
MODES = ("major", "minor")
# Sharps where musicians write them for minor keys (F# minor, not Gb minor).
_MINOR_KEY_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")

JSONDict = dict[str, object]
"""What `to_dict()` returns: string keys, values built from JSON types only."""


# --- reading JSON back -------------------------------------------------------------------
# A plan read from JSON is untyped until checked; these helpers check one value each and
# raise TypeError / ValueError like int() and float() do, which from_dict turns into PlanError.


def _int(value: object) -> int:
    if isinstance(value, str | bytes | bytearray | SupportsInt | SupportsIndex):
        return int(value)
    raise TypeError(f"expected an integer, got {type(value).__name__}")


def _float(value: object) -> float:
    if isinstance(value, str | bytes | bytearray | SupportsFloat | SupportsIndex):
        return float(value)
    raise TypeError(f"expected a number, got {type(value).__name__}")


def _mapping(value: object) -> Mapping[str, object]:
    if isinstance(value, Mapping):
        return value
    raise TypeError(f"expected a JSON object, got {type(value).__name__}")


def _items(value: object) -> Iterable[object]:
    if isinstance(value, Iterable):
        return value
    raise TypeError(f"expected a JSON array, got {type(value).__name__}")


# --- the records -------------------------------------------------------------------------


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

    def to_dict(self) -> JSONDict:
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
    def from_dict(cls, data: Mapping[str, object]) -> PlanSegment:
        return cls(
            index=_int(data["index"]),
            start_beat=_int(data["start_beat"]),
            n_beats=_int(data["n_beats"]),
            shot_indices=tuple(_int(i) for i in _items(data.get("shot_indices", ()))),
            dynamic={str(k): _float(v) for k, v in _mapping(data["dynamic"]).items()},
            semantic={str(k): _float(v) for k, v in _mapping(data["semantic"]).items()},
            recalls=_int(data.get("recalls", -1)),
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

    def to_dict(self) -> JSONDict:
        return {"bar": self.bar, "beat": self.beat, "n_beats": self.n_beats, "label": self.label}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> PlanChord:
        return cls(_int(data["bar"]), _int(data["beat"]), _int(data["n_beats"]), str(data["label"]))

    @classmethod
    def at_beat(cls, start_beat: int, n_beats: int, label: str) -> PlanChord:
        """The chord starting `start_beat` beats after the grid origin (the planner counts in
        beats; the record keeps bar and beat, as musicians read them)."""
        return cls(start_beat // BEATS_PER_BAR, start_beat % BEATS_PER_BAR, n_beats, label)


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
    to, in seconds (when the cut's shot was merged away: minus the nearest boundary); with
    music over part of the video, of the cuts inside that part only, in time order.
    `provenance`: for each planned part ("tempo_bpm", "key", ...) where it came from; "user"
    marks an override. `duration_s` is the video's length; the music sounds from
    `music_start_s` to `music_end_s` of it (the whole video unless the user chose a part:
    None reads as `duration_s`), and the grid starts at most a bar before the music.
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
    music_start_s: float = 0.0
    music_end_s: float | None = None

    def __post_init__(self) -> None:
        if self.music_end_s is None:
            object.__setattr__(self, "music_end_s", float(self.duration_s))
        object.__setattr__(self, "segments", tuple(self.segments))
        object.__setattr__(self, "chords", tuple(self.chords))
        object.__setattr__(self, "cut_residuals_s", tuple(float(r) for r in self.cut_residuals_s))
        if self.beats_per_bar != BEATS_PER_BAR:
            raise PlanError(f"only 4/4 is supported (got {self.beats_per_bar} beats per bar)")
        if not (math.isfinite(self.tempo_bpm) and 30.0 <= self.tempo_bpm <= 300.0):
            raise PlanError(f"tempo {self.tempo_bpm} BPM is outside 30-300")
        if not self.duration_s > 0:
            raise PlanError(f"duration {self.duration_s} s must be positive")
        start, end = self.music_span_s
        if not 0.0 <= start < end <= self.duration_s + 1e-6:
            raise PlanError(
                f"the music's span {start:.2f}-{end:.2f} s must lie within the video "
                f"(0-{self.duration_s:.2f} s) and last"
            )
        if not start - self.bar_s < self.offset_s <= start + 1e-9:
            raise PlanError(
                f"offset {self.offset_s:.3f} s must lie in (-one bar, 0] of the music's start "
                f"({start:.3f} s)"
            )
        if self.n_bars < 1 or self.offset_s + self.n_bars * self.bar_s < end - 1e-6:
            raise PlanError(f"{self.n_bars} bars at {self.tempo_bpm} BPM do not cover {end:.2f} s")
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
    def music_span_s(self) -> tuple[float, float]:
        """(start, end) of the music in video time."""
        end = self.duration_s if self.music_end_s is None else self.music_end_s
        return float(self.music_start_s), float(end)

    @property
    def covers_whole_video(self) -> bool:
        start, end = self.music_span_s
        return start <= 0.0 and end >= self.duration_s

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

    def repeats_of(self, segment: int) -> list[int]:
        """The segments that take up `segment`'s music (their `recalls` point at it)."""
        return [seg.index for seg in self.segments if seg.recalls == segment]

    def section_landings_s(self, times_s: Sequence[float]) -> list[float | None]:
        """Where asked section starts landed: for each time, the segment start (after the
        first) within half a bar of it, in seconds; None where there is none (merged with a
        neighbour, or in the first or last bar) or where a nearer asked time has that start."""
        starts = self.segment_boundaries_s()[1:-1]
        found: list[float | None] = []
        for time in times_s:
            nearest = float(starts[np.abs(starts - time).argmin()]) if starts.size else np.inf
            found.append(nearest if abs(nearest - time) <= self.bar_s / 2 + 1e-9 else None)
        for i, start in enumerate(found):
            if start is None:
                continue
            rivals = [j for j, other in enumerate(found) if other == start]
            if i != min(rivals, key=lambda j: abs(times_s[j] - start)):
                found[i] = None
        return found

    def segment_bounds_s(self) -> list[tuple[float, float]]:
        """(start_s, end_s) of every segment, clipped to the music's span in the video."""
        edges = np.clip(self.segment_boundaries_s(), *self.music_span_s)
        return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]

    def step_segment_ids(self, n_steps: int | None = None, steps_per_beat: int = 4) -> np.ndarray:
        """(n_steps,) int64: the index of the segment every 16th step belongs to.

        Without `n_steps`: one entry per step of the plan. With it: for a roll of that many
        steps (a sampled roll may be longer or shorter than the plan), cut, or padded with the
        last segment.
        """
        lengths = [seg.n_beats * steps_per_beat for seg in self.segments]
        ids = np.repeat(np.arange(len(self.segments), dtype=np.int64), lengths)
        if n_steps is None:
            return ids
        if n_steps <= ids.shape[0]:
            return ids[:n_steps]
        return np.concatenate([ids, np.full(n_steps - ids.shape[0], ids[-1], dtype=np.int64)])

    # --- JSON ---

    def to_dict(self) -> JSONDict:
        return {
            "format": "diffbgm-plan/1",
            "tempo_bpm": self.tempo_bpm,
            "beats_per_bar": self.beats_per_bar,
            "offset_s": self.offset_s,
            "n_bars": self.n_bars,
            "duration_s": self.duration_s,
            "music_start_s": self.music_start_s,
            "music_end_s": self.music_end_s,
            "key": {"tonic_pc": self.key.tonic_pc, "mode": self.key.mode, "name": self.key.name},
            "segments": [seg.to_dict() for seg in self.segments],
            "chords": [chord.to_dict() for chord in self.chords],
            "cut_residuals_s": list(self.cut_residuals_s),
            "seed": self.seed,
            "provenance": dict(self.provenance),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> MusicPlan:
        """The plan `to_dict()` wrote (or a user edited); PlanError when it is not one."""
        try:
            key = _mapping(data["key"])
            return cls(
                tempo_bpm=_float(data["tempo_bpm"]),
                beats_per_bar=_int(data.get("beats_per_bar", BEATS_PER_BAR)),
                offset_s=_float(data["offset_s"]),
                n_bars=_int(data["n_bars"]),
                duration_s=_float(data["duration_s"]),
                music_start_s=_float(data.get("music_start_s") or 0.0),
                music_end_s=None
                if data.get("music_end_s") is None
                else _float(data["music_end_s"]),
                key=PlanKey(_int(key["tonic_pc"]), str(key["mode"])),
                segments=tuple(
                    PlanSegment.from_dict(_mapping(s)) for s in _items(data["segments"])
                ),
                chords=tuple(PlanChord.from_dict(_mapping(c)) for c in _items(data["chords"])),
                cut_residuals_s=tuple(_float(r) for r in _items(data.get("cut_residuals_s", ()))),
                seed=_int(data.get("seed", 0)),
                provenance={
                    str(k): str(v) for k, v in _mapping(data.get("provenance", {})).items()
                },
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
