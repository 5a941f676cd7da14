"""Arrangement presets: which General MIDI instrument plays each part, where and how loud.

A part is a stem: `melody` and `accompaniment` come from the split roll (diffbgm.arrange.parts),
`pad` and `bass` are built from the plan's chords (diffbgm.arrange.derived), `drums` from the
plan's tempo, bars and cuts (diffbgm.arrange.percussion). A preset names the parts it plays;
the registry below is the one list the CLI, the options and the web app read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from diffbgm.errors import DiffBGMError

PartName = Literal["melody", "accompaniment", "pad", "bass"]
DrumKit = Literal["soft", "hits"]
DEFAULT_ARRANGEMENT = "solo-piano"


@dataclass(frozen=True)
class PartStyle:
    """How one pitched part sounds.

    program: General MIDI program (0-127, 0 = Acoustic Grand Piano). low / high: the MIDI
    pitches it plays in; notes outside move by whole octaves into the range. volume: CC7;
    reverb: CC91; chorus: CC93 (0-127). velocity_scale multiplies every note's velocity.
    pedal: sustain pedal (CC64) with the harmony (diffbgm.arrange.performance).
    strike_beats: a bass built from the chords strikes again every this many beats (0: held).
    one_voice: the part sounds one note at a time (a bowed or sung line): a note still
    sounding when the next one starts ends there."""

    program: int
    low: int = 21
    high: int = 108
    volume: int = 100
    reverb: int = 40
    chorus: int = 0
    velocity_scale: float = 1.0
    pedal: bool = False
    strike_beats: int = 0
    one_voice: bool = False

    def __post_init__(self) -> None:
        for name in ("program", "volume", "reverb", "chorus"):
            value = getattr(self, name)
            if not 0 <= value <= 127:
                raise DiffBGMError(f"{name} must lie in 0-127, got {value}")
        if self.high - self.low < 12:
            raise DiffBGMError(f"a part's range must span an octave, got {self.low}-{self.high}")
        if not 0.0 < self.velocity_scale <= 2.0:
            raise DiffBGMError(f"velocity_scale must lie in (0, 2], got {self.velocity_scale}")


@dataclass(frozen=True)
class DrumStyle:
    """The percussion part. kit: `soft` (a quiet groove: kick, side stick, closed hi-hat,
    tom fill before each cut, crash on the downbeat after) or `hits` (only a timpani-like
    roll into each cut and a low hit with a soft cymbal on it)."""

    kit: DrumKit
    volume: int = 90
    reverb: int = 40
    velocity_scale: float = 1.0
    fill_beats: int = 2  # beats before a cut the fill takes over


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    parts: tuple[tuple[PartName, PartStyle], ...]  # in track order
    drums: DrumStyle | None = None

    def style(self, part: PartName) -> PartStyle | None:
        return dict(self.parts).get(part)


PIANO = 0
ELECTRIC_PIANO = 4
MUSIC_BOX = 10
FINGER_BASS = 33
VIOLIN = 40
CELLO = 42
CONTRABASS = 43
STRINGS = 48
SLOW_STRINGS = 49

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "solo-piano",
            "the model's piano, melody and accompaniment on one piano sound, with pedal",
            (
                ("melody", PartStyle(PIANO, pedal=True)),
                ("accompaniment", PartStyle(PIANO, pedal=True)),
            ),
        ),
        Preset(
            "piano-strings",
            "piano with a soft string pad holding the plan's chords",
            (
                ("melody", PartStyle(PIANO, pedal=True, reverb=60)),
                ("accompaniment", PartStyle(PIANO, pedal=True, reverb=60, velocity_scale=0.9)),
                ("pad", PartStyle(SLOW_STRINGS, 48, 79, volume=70, reverb=80, chorus=20)),
            ),
        ),
        Preset(
            "music-box-cello",
            "music box melody and accompaniment over a cello bass line from the chords",
            (
                ("melody", PartStyle(MUSIC_BOX, 60, 96, reverb=80)),
                ("accompaniment", PartStyle(MUSIC_BOX, 55, 84, volume=80, reverb=80)),
                ("bass", PartStyle(CELLO, 36, 60, volume=85, reverb=70, velocity_scale=0.8)),
            ),
        ),
        Preset(
            "electric-piano-drums",
            "electric piano and finger bass over a soft drum groove that fills into every cut",
            (
                ("melody", PartStyle(ELECTRIC_PIANO, 48, 96, reverb=50, chorus=50, pedal=True)),
                (
                    "accompaniment",
                    PartStyle(ELECTRIC_PIANO, 36, 84, volume=85, reverb=50, chorus=50, pedal=True),
                ),
                ("bass", PartStyle(FINGER_BASS, 28, 52, volume=90, reverb=20, strike_beats=2)),
            ),
            DrumStyle("soft", volume=80, reverb=30, velocity_scale=0.8),
        ),
        Preset(
            "cinematic-strings",
            "violins over a string section and contrabass, low hits on the cuts",
            (
                ("melody", PartStyle(VIOLIN, 55, 96, reverb=100, chorus=10, one_voice=True)),
                ("accompaniment", PartStyle(STRINGS, 36, 84, volume=85, reverb=100, chorus=10)),
                ("bass", PartStyle(CONTRABASS, 28, 55, volume=90, reverb=90)),
            ),
            DrumStyle("hits", volume=100, reverb=100),
        ),
    )
}
ARRANGEMENTS: tuple[str, ...] = tuple(PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called `name`; a DiffBGMError naming the choices otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise DiffBGMError(
            f"unknown arrangement {name!r}; choose one of {', '.join(ARRANGEMENTS)}"
        ) from None
