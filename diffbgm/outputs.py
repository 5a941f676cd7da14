"""The files of one composed variant: score (MIDI), sheet music (MusicXML, SVG), audio (mix and
stems, WAV), everything in one zip, video (MP4), picture (PNG).

Everything here turns decided music into files; nothing decides music. The Composer calls
these in its stages and times them; the web app only reads the files.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pretty_midi

from diffbgm.arrange import DEFAULT_ARRANGEMENT, arrange
from diffbgm.music.calibration import Calibration
from diffbgm.music.roll import PianoRoll, RollSpec
from diffbgm.plan import MusicPlan
from diffbgm.video.types import VideoAnalysis

if TYPE_CHECKING:
    from diffbgm.music.render import LevelConfig

STEMS_FOLDER = "stems"


def velocities_from_controls(
    onset: np.ndarray,
    step_segment: np.ndarray,
    segment_velocity: np.ndarray,
    calibration: Calibration,
) -> np.ndarray:
    """(T, P) uint8 MIDI velocity per onset: the app's velocity rule.

    step_segment: (T,) segment index of every step; segment_velocity: (N,) each segment's
    velocity control (a POP909 quantile). The rule lives here once so that the app's files
    and the evaluation's realism test (trainer/evaluate.py) hear the same velocities.
    """
    per_segment = np.asarray(calibration.to_raw("velocity", np.asarray(segment_velocity, float)))
    step_velocity = np.clip(per_segment[np.asarray(step_segment)[: onset.shape[0]]], 30, 120)
    # Accents on the beat, softer off-beat notes: the roll has no velocity channel.
    steps = np.arange(onset.shape[0])
    accent = np.where(steps % 4 == 0, 8.0, np.where(steps % 2 == 0, 0.0, -8.0))
    vel = np.clip(step_velocity + accent, 1, 127).astype(np.uint8)
    return np.where(onset, vel[:, None], 0).astype(np.uint8)


def velocities(onset: np.ndarray, plan: MusicPlan, calibration: Calibration) -> np.ndarray:
    """(T, P) uint8 MIDI velocity per onset from each segment's velocity control."""
    segment_velocity = np.array([seg.dynamic["velocity"] for seg in plan.segments], float)
    return velocities_from_controls(
        onset, plan.step_segment_ids(onset.shape[0]), segment_velocity, calibration
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
) -> Score:
    """The arranged score in video time (diffbgm.arrange): one named track per part, shifted
    by the plan's offset and cut at the video's end; `seed` makes the humanisation
    reproducible. Also returns the arrangement without humanisation (grid-exact notes)."""
    roll = PianoRoll(onset, sustain, velocities(onset, plan, calibration))
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
) -> AudioFiles:
    """FluidSynth rendering of the score, cut or padded to the video's length: the mix at
    `path` and, for a score of several instruments, one WAV per instrument in stems/ beside
    it that sum to the mix. soundfont: a file, "auto" or "timgm6mb" (None: find_soundfont's
    default, $DIFFBGM_SOUNDFONT or auto); level: loudness target and true-peak ceiling."""
    from diffbgm.music.render import LevelConfig, render_stems

    rendered = render_stems(
        midi_path,
        path,
        path.parent / STEMS_FOLDER,
        soundfont=soundfont,
        level=level or LevelConfig(),
        duration_s=duration_s,
    )
    return AudioFiles(rendered.mix.path, rendered.stems, rendered.soundfont)


def write_sheet(
    score: Path | pretty_midi.PrettyMIDI, plan: MusicPlan, folder: Path, title: str
) -> tuple[Path, Path]:
    """Sheet music of the score: score.musicxml and its engraving score.svg in `folder`.

    score: the grid-exact score in video time, as a MIDI file or a PrettyMIDI (the arranger's
    `humanise=False` version, when score.mid itself is humanised). It is read on the plan's
    grid: today's single piano part sits on it (only notes cut by the video's start or end
    are rounded to it)."""
    from diffbgm.music.sheet import render_svg, sheet_from_midi, write_musicxml

    midi = (
        score if isinstance(score, pretty_midi.PrettyMIDI) else pretty_midi.PrettyMIDI(str(score))
    )
    parts, header = sheet_from_midi(midi, plan, title)
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
    )
