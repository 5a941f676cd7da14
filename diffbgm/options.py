"""What a user may ask of one composition, and the limits on it — one place for both.

The library, `python -m diffbgm` and the web app read these limits; none writes its own.
Video limits (size, duration) are `ProbeLimits` in diffbgm.video.probe; generation knobs and
their ranges live in diffbgm.generation.config.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from numbers import Real
from typing import Any, get_args

from diffbgm.arrange.presets import ARRANGEMENTS, DEFAULT_ARRANGEMENT
from diffbgm.controls import DEFAULT_PLAYING, PLAYINGS
from diffbgm.errors import PlanError
from diffbgm.generation.config import GenerationConfig, KnobValue
from diffbgm.music.chord_symbols import harte_label, parse_progression
from diffbgm.music.chords import ChordError
from diffbgm.plan.config import PlanOverrides
from diffbgm.plan.planner import music_span
from diffbgm.video.mux import AUDIO_MODES, AudioMode
from diffbgm.video.types import ShotMethod

SHOT_DETECTORS: tuple[str, ...] = get_args(ShotMethod)

TEMPO_RANGE_BPM = (40.0, 240.0)  # a tempo a user may ask for
MAX_VARIANTS = 8
MAX_SEED = 2**31 - 1
MOOD_MAX_CHARS = 300
MAX_CHORDS = 512  # bars of a user's progression (it repeats to fill a longer piece)
# section starts a user may give: the tempo search's arrays grow with the square of the
# cuts and starts it puts on lines (docs/plan.md)
MAX_SECTIONS = 64


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
    # How the piano is played: "even" (steady dynamics) or "wide" (expressive), the two ways
    # POP909 is performed; the velocity model draws the notes' loudness that way.
    playing: str = DEFAULT_PLAYING
    # The user's own structure: a chord progression, one chord per bar, repeated to fill the
    # piece (symbols such as "Am7" or Harte labels; kept as Harte labels), and times (s) where
    # a section of the music starts: added to the shot cuts, or with sections_only instead of
    # them (sections_only with no sections: the music ignores the cuts).
    chords: tuple[str, ...] | None = None
    sections: tuple[float, ...] | None = None
    sections_only: bool = False
    # One label per section, the opening first ("A", "B", "A"): a section labelled like an
    # earlier one takes up its music. Needs sections; labels are kept in capitals.
    form: tuple[str, ...] | None = None
    # The part of the video the music is for (seconds; None: from its start / to its end).
    music_start_s: float | None = None
    music_end_s: float | None = None

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
            raise PlanError(f"audio must be one of {', '.join(AUDIO_MODES)}, got {self.audio!r}")
        if self.shot_detector not in SHOT_DETECTORS:
            raise PlanError(f"unknown shot detector {self.shot_detector!r}")
        if self.playing not in PLAYINGS:
            raise PlanError(
                f"unknown way of playing {self.playing!r}; choose one of {', '.join(PLAYINGS)}"
            )
        if self.arrangement not in ARRANGEMENTS:
            raise PlanError(
                f"unknown arrangement {self.arrangement!r}; choose one of {', '.join(ARRANGEMENTS)}"
            )
        GenerationConfig().with_overrides(**self.generation)  # ranges checked now, not later
        if self.chords is not None:
            object.__setattr__(self, "chords", _chord_labels(self.chords))
        if self.sections is not None:
            object.__setattr__(self, "sections", _section_starts(self.sections))
        if self.form is not None:
            object.__setattr__(self, "form", _form_labels(self.form, self.sections))
        self._check_music_span()

    def _check_music_span(self) -> None:
        start, end = self.music_start_s, self.music_end_s
        for name, value in (("start", start), ("end", end)):
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, Real):
                    raise PlanError(f"the music's {name} must be a number of seconds")
                if not math.isfinite(value):
                    raise PlanError(f"the music's {name} must be a number of seconds, not {value}")
                if value < 0:
                    raise PlanError(f"the music's {name} must be 0 s or later, not {value:g}")
        # the checks that need no video: how long the part lasts (the rest once it is probed)
        music_span(PlanOverrides(music_start_s=start, music_end_s=end), math.inf)
        first = 0.0 if start is None else float(start)
        outside = [t for t in self.sections or () if t <= first or (end is not None and t >= end)]
        if outside and (start is not None or end is not None):
            raise PlanError(
                f"section starts must lie inside the music ({first:g}-"
                f"{'the end' if end is None else f'{end:g} s'}): "
                + ", ".join(f"{t:g}" for t in outside)
            )

    def check_for_video(self, duration_s: float) -> None:
        """Fail now, before any work, if a section starts at or after the video's end, or the
        music's part does not lie within the video."""
        late = [t for t in self.sections or () if t >= duration_s]
        if late:
            raise PlanError(
                f"section starts must lie inside the video (0, {duration_s:.2f}) s: "
                + ", ".join(f"{t:g}" for t in late)
            )
        music_span(
            PlanOverrides(music_start_s=self.music_start_s, music_end_s=self.music_end_s),
            duration_s,
        )

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
            "playing": self.playing,
            "chords": None if self.chords is None else list(self.chords),
            "sections": None if self.sections is None else list(self.sections),
            "sections_only": self.sections_only,
            "form": None if self.form is None else list(self.form),
            "music_start_s": self.music_start_s,
            "music_end_s": self.music_end_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ComposeOptions:
        """From report.json; reports before version 2 kept some generation knobs at the top
        level (guidance, steps, onset_threshold, recall); reports written before arrangements
        existed have none (the default, solo piano, is what they played); reports written
        before the way of playing existed have none (the default, even)."""
        generation = dict(data.get("generation") or {})
        for name in ("guidance", "steps", "onset_threshold", "recall"):
            if data.get(name) is not None:
                generation[name] = data[name]
        known = {f.name for f in fields(cls)} - {"generation"}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("chords", "sections", "form"):  # JSON lists
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        return cls(**values, generation=generation)


def _chord_labels(chords: Sequence[str]) -> tuple[str, ...]:
    """The user's chords, checked, as Harte labels."""
    if isinstance(chords, str):
        raise PlanError("give the chords as a sequence of symbols, one per bar (parse_chords)")
    if not 1 <= len(chords) <= MAX_CHORDS:
        raise PlanError(f"give between 1 and {MAX_CHORDS} chords (one per bar), not {len(chords)}")
    labels = []
    for bar, symbol in enumerate(chords, start=1):
        try:
            label = harte_label(str(symbol))
        except ChordError as exc:
            raise PlanError(f"chord of bar {bar}: {exc}") from exc
        if label == "N":
            raise PlanError(f"bar {bar}: every bar needs a chord ({symbol!r} is no chord)")
        labels.append(label)
    return tuple(labels)


def _section_starts(times: Sequence[float]) -> tuple[float, ...]:
    """Section starts, checked and sorted; whether they lie inside the video is checked by the
    planner, which knows its length."""
    if isinstance(times, str | bytes) or not isinstance(times, Sequence):
        raise PlanError("give the section starts as a sequence of seconds (parse_sections)")
    if len(times) > MAX_SECTIONS:
        raise PlanError(f"give at most {MAX_SECTIONS} section starts, not {len(times)}")
    values: list[float] = []
    for time in times:
        if isinstance(time, bool) or not isinstance(time, Real) or not math.isfinite(time):
            raise PlanError(f"a section start must be a number of seconds, not {time!r}")
        if time <= 0:
            raise PlanError(f"a section starts after the video's start (0 s), not at {time:g} s")
        values.append(float(time))
    return tuple(sorted(set(values)))


FORM_LABEL = re.compile(r"^[A-Z0-9]{1,8}$")


def _form_labels(form: Sequence[str], sections: tuple[float, ...] | None) -> tuple[str, ...]:
    """The form's labels, checked against the sections they name, in capitals."""
    if isinstance(form, str):
        raise PlanError("give the form as a sequence of labels, one per section (parse_form)")
    if sections is None:
        raise PlanError("a form labels sections: give the section starts too")
    if any(not isinstance(label, str) for label in form):
        raise PlanError("form labels are text: letters or digits (up to 8)")
    labels = tuple(label.strip().upper() for label in form)
    bad = [label for label in labels if not FORM_LABEL.match(label)]
    if bad:
        raise PlanError(f"form labels are letters or digits (up to 8), not {bad[0]!r}")
    if len(labels) != len(sections) + 1:
        raise PlanError(
            f"the form has {len(labels)} labels for {len(sections) + 1} sections: one for the "
            f"opening and one per section start ({len(sections)})"
        )
    return labels


def parse_form(text: str | None) -> tuple[str, ...] | None:
    """A form as typed: labels separated by spaces, commas or dashes ("A B A C", "A-B-A"), or
    single letters run together ("ABAC") -> labels; None for an empty text."""
    if not text or not text.strip():
        return None
    if len(text) > (MAX_SECTIONS + 1) * 9:
        raise PlanError(f"the form is longer than {(MAX_SECTIONS + 1) * 9} characters")
    items = [item for item in re.split(r"[\s,;\-–]+", text.strip()) if item]
    if len(items) == 1 and items[0].isalpha():
        items = list(items[0])  # "ABAC": one letter a section
    return tuple(item.upper() for item in items)


def parse_chords(text: str | None) -> tuple[str, ...] | None:
    """A progression as typed ("C G Am F", "| Dm7 | G7 | Cmaj7 | % |"; one chord a bar, "%"
    repeats the bar before) -> Harte labels; None for an empty text."""
    if not text or not text.strip():
        return None
    if len(text) > MAX_CHORDS * 16:
        raise PlanError(f"the chords text is longer than {MAX_CHORDS * 16} characters")
    try:
        return _chord_labels(parse_progression(text))
    except ChordError as exc:
        raise PlanError(str(exc)) from exc


def parse_sections(text: str | None) -> tuple[float, ...] | None:
    """Section starts as typed: seconds or m:ss (h:mm:ss), separated by commas, semicolons or
    spaces ("12.5, 0:31, 1:02.5") -> seconds; None for an empty text."""
    if not text or not text.strip():
        return None
    if len(text) > MAX_SECTIONS * 16:
        raise PlanError(f"the section starts text is longer than {MAX_SECTIONS * 16} characters")
    comma = DECIMAL_COMMA.search(text)
    if comma:
        raise PlanError(
            f"{comma.group(0)!r}: write a decimal with a point ({comma.group(0).replace(',', '.')})"
            f", and put a space after the comma between two times"
        )
    times = []
    for item in re.split(r"[\s,;]+", text.strip()):
        if item:
            times.append(_seconds(item))
    return _section_starts(times)


# A comma between digits with no space: a decimal comma ("12,5") or two times run together;
# refused rather than guessed
DECIMAL_COMMA = re.compile(r"[\d:.]*\d,\d[\d:.]*")


def parse_time(text: str | None) -> float | None:
    """One time as typed: seconds or m:ss (h:mm:ss) -> seconds; None for an empty text."""
    if text is None or not text.strip():
        return None
    item = text.strip()
    if len(item) > 16:
        raise PlanError(f"cannot read the time {item[:16]!r}...: write seconds or m:ss")
    return _seconds(item.replace(",", ".") if DECIMAL_COMMA.fullmatch(item) else item)


def _seconds(item: str) -> float:
    parts = item.split(":")
    try:
        if len(parts) > 3 or any(not part for part in parts):
            raise ValueError(item)
        numbers = [float(part) for part in parts]
    except ValueError:
        raise PlanError(
            f"cannot read the time {item!r}: write seconds (12.5) or minutes:seconds (0:12.5)"
        ) from None
    if item.startswith("-"):
        raise PlanError(f"times count from the video's start (0 s): {item} is before it")
    if any(n < 0 for n in numbers) or any(n >= 60 for n in numbers[1:]):
        raise PlanError(f"cannot read the time {item!r}: minutes and seconds run 0-59")
    seconds = 0.0
    for number in numbers:
        seconds = seconds * 60 + number
    return seconds
