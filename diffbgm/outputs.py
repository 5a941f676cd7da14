"""The files of one composed variant: score (MIDI), sheet music (MusicXML, SVG), audio (mix and
stems, WAV), everything in one zip, video (MP4), picture (PNG).

Everything here turns decided music into files; nothing decides music. The Composer calls
these in its stages and times them; the web app only reads the files.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pretty_midi

from diffbgm.arrange import DEFAULT_ARRANGEMENT, arrange
from diffbgm.controls import DEFAULT_PLAYING
from diffbgm.music.calibration import Calibration
from diffbgm.music.roll import PianoRoll, RollSpec
from diffbgm.plan import MusicPlan
from diffbgm.video.types import VideoAnalysis

if TYPE_CHECKING:
    from diffbgm.music.render import LevelConfig
    from diffbgm.velocity import VelocityModel

STEMS_FOLDER = "stems"


VelocityMethod = Literal["learned", "rule"]
RecallSteps = tuple[np.ndarray, np.ndarray]  # (T,) source step or -1, (T,) semitones
VELOCITY_METHODS: tuple[str, ...] = ("learned", "rule")


def rule_velocities(
    onset: np.ndarray,
    step_segment: np.ndarray,
    segment_velocity: np.ndarray,
    calibration: Calibration,
) -> np.ndarray:
    """(T, P) uint8: the old fixed rule, kept for comparison (`trainer evaluate --velocity
    rule`): each segment's control through the calibration, +8 on the beat, -8 off it.
    A classifier tells it from a performance 99 % of the time (docs/evaluation.md)."""
    per_segment = np.asarray(calibration.to_raw("velocity", np.asarray(segment_velocity, float)))
    step_velocity = np.clip(per_segment[np.asarray(step_segment)[: onset.shape[0]]], 30, 120)
    steps = np.arange(onset.shape[0])
    accent = np.where(steps % 4 == 0, 8.0, np.where(steps % 2 == 0, 0.0, -8.0))
    vel = np.clip(step_velocity + accent, 1, 127).astype(np.uint8)
    return np.where(onset, vel[:, None], 0).astype(np.uint8)


def notes_seed(onset: np.ndarray) -> int:
    """A seed taken from the notes themselves: the same notes (the same compose seed) get
    the same velocities, without the seed travelling through the file writers."""
    digest = hashlib.sha256(np.packbits(np.asarray(onset, dtype=bool)).tobytes()).digest()
    return int.from_bytes(digest[:8], "little")


def velocities_from_controls(
    onset: np.ndarray,
    sustain: np.ndarray,
    step_segment: np.ndarray,
    segment_velocity: np.ndarray,
    calibration: Calibration,
    seed: int | None = None,
    method: VelocityMethod = "learned",
    pitch_low: int = 21,
    model: VelocityModel | None = None,
    playing: str = DEFAULT_PLAYING,
    recalled: RecallSteps | None = None,
) -> np.ndarray:
    """(T, P) uint8 MIDI velocity per onset (0 elsewhere).

    step_segment: (T,) segment index of every step; segment_velocity: (N,) each segment's
    velocity control (a POP909 quantile). `learned` (default): the velocity model
    (diffbgm/velocity.py, shipped in diffbgm/assets/velocity) reads every note in its
    context and draws its velocity around the segment's loudness, reproducibly per `seed`
    (None: a seed taken from the notes); `rule`: the old fixed rule. One function for the
    app's files and the evaluation's realism test (trainer/evaluate.py), so both hear the
    same velocities. `model`: an already loaded velocity model (default: the shipped one);
    `playing`: evenly or with wide dynamics (diffbgm.velocity.PLAYINGS; the rule ignores it);
    `recalled`: the generation's recall map ((T,) source step or -1, (T,) semitones;
    `GeneratedRoll.recalled`), so that a recalled phrase is played as the phrase it repeats
    (the rule ignores it).
    """
    if method == "rule":
        return rule_velocities(onset, step_segment, segment_velocity, calibration)
    if method != "learned":
        raise ValueError(f"velocity method must be one of {VELOCITY_METHODS}, got {method!r}")
    from diffbgm.velocity import load_velocity_model

    n_steps = onset.shape[0]
    per_segment = np.asarray(calibration.to_raw("velocity", np.asarray(segment_velocity, float)))
    segments = np.asarray(step_segment)[:n_steps]
    return (model or load_velocity_model()).velocities(
        onset,
        sustain,
        per_segment[segments],
        segments,
        notes_seed(onset) if seed is None else seed,
        pitch_low,
        playing=playing,
        recalled=recalled,
    )


def velocities(
    onset: np.ndarray,
    sustain: np.ndarray,
    plan: MusicPlan,
    calibration: Calibration,
    seed: int | None = None,
    pitch_low: int = 21,
    playing: str = DEFAULT_PLAYING,
    recalled: RecallSteps | None = None,
) -> np.ndarray:
    """(T, P) uint8 MIDI velocity per onset from each segment's velocity control (learned),
    played `playing` (evenly or with wide dynamics), recalled phrases as the phrases they
    repeat (`recalled`: the generation's recall map)."""
    segment_velocity = np.array([seg.dynamic["velocity"] for seg in plan.segments], float)
    return velocities_from_controls(
        onset,
        sustain,
        plan.step_segment_ids(onset.shape[0]),
        segment_velocity,
        calibration,
        seed,
        pitch_low=pitch_low,
        playing=playing,
        recalled=recalled,
    )


@dataclass(frozen=True)
class Score:
    """score.mid as written (humanised), and the same arrangement on the grid (for the sheet)."""

    path: Path
    grid: pretty_midi.PrettyMIDI


def write_midi(
    onset: np.ndarray,
    sustain: np.ndarray,
    plan: MusicPlan,
    spec: RollSpec,
    calibration: Calibration,
    path: Path,
    arrangement: str = DEFAULT_ARRANGEMENT,
    seed: int = 0,
    humanise: bool = True,
    playing: str = DEFAULT_PLAYING,
    recalled: RecallSteps | None = None,
) -> Score:
    """The arranged score in video time (diffbgm.arrange): one named track per part, shifted
    by the plan's offset and cut at the video's end; `seed` makes the humanisation
    reproducible; `playing`: the velocities evenly or with wide dynamics; `recalled`: the
    generation's recall map (recalled phrases played as the phrases they repeat). Also
    returns the arrangement without humanisation (grid-exact notes)."""
    loudness = velocities(
        onset,
        sustain,
        plan,
        calibration,
        pitch_low=spec.pitch_low,
        playing=playing,
        recalled=recalled,
    )
    roll = PianoRoll(onset, sustain, loudness)
    midi = arrange(roll, plan, spec, arrangement, seed=seed, humanise=humanise)
    midi.write(str(path))
    grid = arrange(roll, plan, spec, arrangement, seed=seed, humanise=False) if humanise else midi
    return Score(path, grid)


@dataclass(frozen=True)
class AudioFiles:
    """The rendered audio of one variant: the mix, stem name -> WAV (a one-part score's only
    stem is the mix), and the soundfont used."""

    mix: Path
    stems: dict[str, Path]
    soundfont: Path


def write_wav(
    midi_path: Path,
    duration_s: float,
    path: Path,
    soundfont: str | Path | None = None,
    level: LevelConfig | None = None,
    on_mix: Callable[[Path], None] | None = None,
    on_started: Callable[[], None] | None = None,
) -> AudioFiles:
    """FluidSynth rendering of the score, cut or padded to the video's length: the mix at
    `path` and, for a score of several instruments, one WAV per instrument in stems/ beside
    it that sum to the mix. soundfont: a file, "auto" or "timgm6mb" (None: find_soundfont's
    default, $DIFFBGM_SOUNDFONT or auto); level: loudness target and true-peak ceiling;
    on_started(): called once FluidSynth runs; on_mix(path): once the mix is written, before
    the stems."""
    from diffbgm.music.render import LevelConfig, render_stems

    rendered = render_stems(
        midi_path,
        path,
        path.parent / STEMS_FOLDER,
        soundfont=soundfont,
        level=level or LevelConfig(),
        duration_s=duration_s,
        on_mix=on_mix,
        on_started=on_started,
    )
    return AudioFiles(rendered.mix.path, rendered.stems, rendered.soundfont)


def section_marks(
    plan: MusicPlan, sections: Sequence[float] | None, form: Sequence[str] | None
) -> list[tuple[int, str]] | None:
    """The user's form as rehearsal marks (beat, label): the opening's label at beat 0, each
    other where its section landed; None without a form (the sheet marks segments)."""
    if not form or sections is None:
        return None
    marks = [(0, form[0])]
    for label, landed in zip(form[1:], plan.section_landings_s(sections), strict=True):
        if landed is not None:
            marks.append((round((landed - plan.offset_s) / plan.beat_s), label))
    return marks


def write_sheet(
    score: Path | pretty_midi.PrettyMIDI,
    plan: MusicPlan,
    folder: Path,
    title: str,
    marks: Sequence[tuple[int, str]] | None = None,
) -> tuple[Path, Path]:
    """Sheet music of the score: score.musicxml and its engraving score.svg in `folder`
    (`marks`: rehearsal marks as (beat, text), e.g. `section_marks`; default one a segment).

    score: the grid-exact score in video time, as a MIDI file or a PrettyMIDI (the arranger's
    `humanise=False` version, when score.mid itself is humanised). It is read on the plan's
    grid: today's single piano part sits on it (only notes cut by the video's start or end
    are rounded to it)."""
    from diffbgm.music.sheet import render_svg, sheet_from_midi, write_musicxml

    midi = (
        score if isinstance(score, pretty_midi.PrettyMIDI) else pretty_midi.PrettyMIDI(str(score))
    )
    parts, header = sheet_from_midi(midi, plan, title, marks)
    musicxml = write_musicxml(parts, header, folder / "score.musicxml")
    return musicxml, render_svg(musicxml, folder / "score.svg")


def write_bundle(path: Path, files: list[Path], root: Path) -> Path:
    """One zip of `files` (named relative to `root`): the download of a variant. WAVs are
    stored (deflate gains little on PCM and takes long), the rest deflated."""
    with zipfile.ZipFile(path, "w") as bundle:
        for file in files:
            kind = zipfile.ZIP_STORED if file.suffix == ".wav" else zipfile.ZIP_DEFLATED
            bundle.write(file, file.relative_to(root).as_posix(), compress_type=kind)
    return path


def write_pianoroll(
    onset: np.ndarray,
    sustain: np.ndarray,
    plan: MusicPlan,
    analysis: VideoAnalysis,
    pitch_low: int,
    seed: int,
    path: Path,
) -> Path:
    """A picture of the roll against the video's shot cuts and the plan's segments."""
    from diffbgm.plot import plot_pianoroll

    times = plan.step_times_s()[: onset.shape[0]]
    title = f"{plan.key_name} · {plan.tempo_bpm:.1f} BPM · seed {seed}"
    return plot_pianoroll(
        onset,
        sustain,
        times,
        pitch_low,
        path,
        segment_bounds_s=plan.segment_bounds_s(),
        cut_times_s=analysis.cut_times_s,
        title=title,
        video_duration_s=plan.duration_s,
    )
