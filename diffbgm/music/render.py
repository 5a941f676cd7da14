"""MIDI -> loudness-normalised 16-bit WAVs (a mix and one stem per part) with FluidSynth.

FluidSynth is run directly (not through midi2audio, which drops the exit status, prints
FluidSynth's banner to our stdout, has no timeout and renders 16-bit at gain 0.2: measured in
docs/pipeline.md), in fast-render mode with 32-bit float output so nothing clips before we set
the level. The result is checked (exit status, file present, not silent, as long as the MIDI),
brought to a target integrated loudness (ITU-R BS.1770 via pyloudnorm, default -14 LUFS) under
a true-peak ceiling (4x oversampled, default -1 dBTP), and written as 16-bit PCM.

Stems: every instrument is rendered alone and the mix is their sum; one gain curve computed
on the mix is applied to every stem, so the stems sum to the mix (docs/sound.md). The level
itself is diffbgm.music.level; renders and the mix stay on disk and are read a stretch at a
time, so memory does not grow with the length. The
soundfont is a full General MIDI one from a Debian package when installed (FluidR3_GM), else
TimGM6mb from pretty_midi's wheel; $DIFFBGM_SOUNDFONT picks another (find_soundfont).
"""

from __future__ import annotations

import copy
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile

from diffbgm.errors import RenderError
from diffbgm.music.level import BlockGain, LevelConfig, level_gain
from diffbgm.music.loudness import CHUNK_SAMPLES
from diffbgm.music.sources import AudioSource, FadedAudio, RawAudio, WavAudio, stretches

SILENCE_PEAK = 1e-4  # float full scale; FluidSynth output below this is treated as silence
FADE_S = 0.5  # the fade-out of a render cut to the video's length
PCM16_FULL_SCALE = 32767.0


@dataclass(frozen=True)
class RenderResult:
    """A rendered WAV: duration in seconds, integrated loudness in LUFS, true peak in full
    scale."""

    path: Path
    duration_s: float
    lufs: float
    peak: float


SOUNDFONT_ENV = "DIFFBGM_SOUNDFONT"
FALLBACK_NAME = "timgm6mb"
# Full General MIDI soundfonts of Debian packages, best first. Only FluidR3_GM
# (fluid-soundfont-gm, 148 MB) is taken unasked: MuseScore_General_Full.sf3
# (musescore-general-soundfont) is Ogg-compressed and FluidSynth 2.3.1 decodes all of it
# before rendering, 21-24 s per render against 0.9 s (docs/sound.md); it stays a choice
# through DIFFBGM_SOUNDFONT.
FULL_GM_SOUNDFONTS: tuple[Path, ...] = (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),)


def default_soundfont() -> Path:
    """The General MIDI soundfont that pretty_midi's wheel ships (TimGM6mb.sf2): always there."""
    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def find_soundfont(choice: str | Path | None = None) -> Path:
    """The soundfont to render with.

    choice (None: $DIFFBGM_SOUNDFONT, else "auto"): "auto" = the first installed full
    General MIDI soundfont of FULL_GM_SOUNDFONTS, else TimGM6mb; "timgm6mb" = the small
    fallback; anything else is a soundfont file, which must exist (RenderError otherwise).
    """
    if choice is None:
        choice = os.environ.get(SOUNDFONT_ENV) or "auto"
    text = str(choice).strip()
    if text.lower() == "auto":
        for font in FULL_GM_SOUNDFONTS:
            if font.is_file():
                return font
        return default_soundfont()
    if text.lower() == FALLBACK_NAME:
        return default_soundfont()
    font = Path(text).expanduser()
    check_soundfont(font)
    return font


def fluidsynth_binary() -> str:
    """Path of the fluidsynth program, or RenderError naming the package to install."""
    found = shutil.which("fluidsynth")
    if found is None:
        raise RenderError(
            "FluidSynth is not installed, so no audio can be rendered: install the "
            "'fluidsynth' package (apt-get install fluidsynth / brew install fluid-synth)"
        )
    return found


def check_soundfont(font: Path) -> None:
    """RenderError unless `font` is a SoundFont 2 file (RIFF form type `sfbk`).

    Checked here because FluidSynth 2.3 exits 0 when its soundfont is missing or unreadable and
    renders with its own default soundfont instead (measured: docs/pipeline.md), so neither its
    exit status nor the output checks would notice."""
    if not font.is_file():
        raise RenderError(f"soundfont not found: {font}")
    with font.open("rb") as handle:
        header = handle.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"sfbk":
        raise RenderError(f"{font} is not a SoundFont 2 file")


# Load only the samples the score plays: the same audio, 0.1 s less per render with the
# 148 MB FluidR3_GM (docs/sound.md). A FluidSynth that lacks the setting renders without it.
DYNAMIC_LOADING = "synth.dynamic-sample-loading"


def run_fluidsynth(midi_path: Path, wav_path: Path, soundfont: Path, sample_rate: int) -> None:
    """Render midi_path to a float WAV at wav_path; RenderError if FluidSynth fails."""
    FluidSynthRun(midi_path, wav_path, soundfont, sample_rate).wait()


FLUIDSYNTH_TIMEOUT_S = 600.0


class FluidSynthRun:
    """One FluidSynth render, started when made and waited for with `wait`.

    The renders of a score's parts run side by side as processes that need no Python thread
    while they run: a job elsewhere in the process that holds the GIL for seconds (verovio
    engraving a long score holds it for over two) can no longer keep the next part from
    starting. Its output goes to a temporary file, not a pipe, so nothing blocks unread."""

    def __init__(self, midi_path: Path, wav_path: Path, soundfont: Path, sample_rate: int) -> None:
        self.midi_path, self.wav_path = midi_path, wav_path
        self.soundfont, self.sample_rate = soundfont, sample_rate
        # closed by wait() or stop(), which end the run's life
        self._output = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        command = _fluidsynth_command(
            midi_path, wav_path, soundfont, sample_rate, ["-o", f"{DYNAMIC_LOADING}=1"]
        )
        try:
            self._process = subprocess.Popen(
                command, stdout=self._output, stderr=subprocess.STDOUT, text=True
            )
        except OSError as exc:
            self._output.close()
            raise RenderError(f"could not start FluidSynth on {midi_path}: {exc}") from exc

    def wait(self, timeout_s: float = FLUIDSYNTH_TIMEOUT_S) -> None:
        """Until the render is written; RenderError if FluidSynth failed or took too long."""
        # a blocking wait with a watchdog: Popen.wait(timeout=...) polls, sleeping up to 50 ms
        # between looks, which the compose waited for after every render had ended
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            self._process.kill()

        watchdog = threading.Timer(timeout_s, kill)
        watchdog.start()
        try:
            code = self._process.wait()
        finally:
            watchdog.cancel()
        if timed_out.is_set() and code != 0:  # not a render that ended as the timer fired
            self._output.close()
            raise RenderError(f"FluidSynth took longer than {timeout_s:g} s on {self.midi_path}")
        self._output.seek(0)
        output = self._output.read()
        self._output.close()
        if code != 0 and DYNAMIC_LOADING in output:  # an older FluidSynth: without the setting
            again = _fluidsynth(self.midi_path, self.wav_path, self.soundfont, self.sample_rate, [])
            code, output = again.returncode, again.stderr or again.stdout
        if code != 0:
            detail = output.strip().splitlines()[-3:]
            raise RenderError(
                f"FluidSynth failed on {self.midi_path} (exit status {code}): {' / '.join(detail)}"
            )
        if not self.wav_path.exists() or self.wav_path.stat().st_size == 0:
            raise RenderError(f"FluidSynth wrote no audio for {self.midi_path}")

    def stop(self) -> None:
        """Kill the render if it still runs (a render of another part failed)."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._output.close()


def _fluidsynth_command(
    midi_path: Path, wav_path: Path, soundfont: Path, sample_rate: int, options: list[str]
) -> list[str]:
    return [
        fluidsynth_binary(),
        "-ni",  # no MIDI input, no shell
        *options,
        "-q",
        "-F",
        str(wav_path),
        "-T",
        "wav",
        "-O",
        "float",
        "-r",
        str(sample_rate),
        "-g",
        "1.0",
        str(soundfont),
        str(midi_path),
    ]


def _fluidsynth(
    midi_path: Path, wav_path: Path, soundfont: Path, sample_rate: int, options: list[str]
) -> subprocess.CompletedProcess[str]:
    command = _fluidsynth_command(midi_path, wav_path, soundfont, sample_rate, options)
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=FLUIDSYNTH_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RenderError(f"FluidSynth took longer than 10 minutes on {midi_path}") from exc


def check_rendered(
    audio: AudioSource, sample_rate: int, midi_end_s: float, tail_s: float, source: str
) -> None:
    """RenderError if the audio is silent or its length does not fit the MIDI's end time."""
    check_audible(audio, source)
    check_length(audio.frames / sample_rate, midi_end_s, tail_s, source)


def read_midi(midi: str | Path | pretty_midi.PrettyMIDI) -> tuple[pretty_midi.PrettyMIDI, str]:
    """The MIDI as a PrettyMIDI object and how errors should name it."""
    if isinstance(midi, pretty_midi.PrettyMIDI):
        return midi, "the generated MIDI"
    path = Path(midi)
    try:
        return pretty_midi.PrettyMIDI(str(path)), str(path)
    except Exception as exc:  # pretty_midi/mido raise many types for bad files
        raise RenderError(f"cannot read MIDI file {path}: {exc}") from exc


def max_abs(audio: AudioSource) -> float:
    """Largest |sample|, read a stretch at a time."""
    peak = 0.0
    for start, stop in stretches(audio.frames, CHUNK_SAMPLES):
        part = np.abs(audio.read(start, stop))
        if part.size:
            peak = max(peak, float(part.max()))
    return peak


def write_pcm16(
    path: Path, audio: AudioSource, sample_rate: int, gain: BlockGain | None = None
) -> None:
    """16-bit PCM WAV of audio * gain, clipped to full scale and rounded to the nearest step
    of 1/32767; read, scaled and written a stretch at a time. The integers are made here:
    libsndfile's own float conversion took 3x as long (7.8 against 2.3 ms a 6 s stretch) and
    truncates instead of rounding."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with soundfile.SoundFile(
        str(path), "w", samplerate=sample_rate, channels=audio.channels, subtype="PCM_16"
    ) as handle:
        for start, stop in stretches(audio.frames, CHUNK_SAMPLES):
            part = audio.read(start, stop)
            scaled = part * gain.samples(start, stop)[:, None] if gain is not None else part.copy()
            np.clip(scaled, -1.0, 1.0, out=scaled)
            scaled *= PCM16_FULL_SCALE
            handle.write(np.rint(scaled, out=scaled).astype(np.int16))


def render_wav(
    midi: str | Path | pretty_midi.PrettyMIDI,
    wav_path: str | Path,
    soundfont: str | Path | None = None,
    sample_rate: int = 44100,
    target_lufs: float | None = None,
    level: LevelConfig = LevelConfig(),
) -> RenderResult:
    """Render a MIDI file (or PrettyMIDI object) to one 16-bit WAV, all parts in one
    FluidSynth run, at target_lufs (default: level.target_lufs) under level's true peak.

    soundfont: a file; None = TimGM6mb (kept as the default here so that measurements made
    through this function, e.g. MusDr's SI, do not move; the app chooses with find_soundfont).
    Raises RenderError when FluidSynth is missing or fails, or its output is silent or of
    the wrong length; MIDI files that cannot be read raise RenderError too. FluidSynth's
    output stays on disk and is read a stretch at a time (diffbgm.music.level).
    """
    wav_path = Path(wav_path)
    font = Path(soundfont) if soundfont is not None else default_soundfont()
    check_soundfont(font)
    if target_lufs is not None:
        level = replace(level, target_lufs=target_lufs)
    pm, source = read_midi(midi)
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    # scratch beside the output, not in $TMPDIR: where that is a tmpfs, its files are memory
    with tempfile.TemporaryDirectory(prefix="diffbgm-render-", dir=wav_path.parent) as tmp:
        midi_path = Path(tmp) / "input.mid"
        pm.write(str(midi_path))
        raw_path = Path(tmp) / "raw.wav"
        run_fluidsynth(midi_path, raw_path, font, sample_rate)
        raw = WavAudio.of(raw_path)
        check_rendered(raw, raw.sample_rate, pm.get_end_time(), level.tail_s, source)
        decided = level_gain(raw, raw.sample_rate, level)
        write_pcm16(wav_path, raw, raw.sample_rate, decided.gain)
    duration_s = raw.frames / raw.sample_rate
    return RenderResult(wav_path, duration_s, decided.lufs, decided.true_peak)


@dataclass(frozen=True)
class StemsResult:
    """A mix and its stems. stems: stem name -> WAV, in the score's order; a score of one
    part has one stem, the mix itself (no second copy is written). timings_s: seconds spent
    in FluidSynth ("synth"), setting the level ("level") and writing files ("write")."""

    mix: RenderResult
    stems: dict[str, Path]
    soundfont: Path
    timings_s: dict[str, float]


def stem_name(name: str, index: int, taken: set[str]) -> str:
    """A file-safe, unique stem name from an instrument's name ('Melody' -> 'melody')."""
    safe = re.sub(r"[^a-z0-9_-]+", "-", name.strip().lower()).strip("-") or f"part-{index + 1}"
    unique, n = safe, 2
    while unique in taken:
        unique, n = f"{safe}-{n}", n + 1
    taken.add(unique)
    return unique


def split_stems(pm: pretty_midi.PrettyMIDI) -> list[tuple[str, pretty_midi.PrettyMIDI]]:
    """One single-instrument PrettyMIDI per instrument that has notes, with the score's tempo
    map, time and key signatures (a shallow copy: nothing is duplicated but the list)."""
    taken: set[str] = set()
    parts = []
    for index, instrument in enumerate(pm.instruments):
        if not instrument.notes:
            continue
        solo = copy.copy(pm)
        solo.instruments = [instrument]
        parts.append((stem_name(instrument.name, index, taken), solo))
    return parts


def render_stems(
    midi: str | Path | pretty_midi.PrettyMIDI,
    mix_path: str | Path,
    stems_dir: str | Path,
    soundfont: str | Path | None = None,
    sample_rate: int = 44100,
    level: LevelConfig = LevelConfig(),
    duration_s: float | None = None,
    workers: int | None = None,
    on_mix: Callable[[Path], None] | None = None,
    on_started: Callable[[], None] | None = None,
) -> StemsResult:
    """Render every instrument of the score to its own WAV in stems_dir, and their sum, the
    mix, to mix_path; all 16-bit, cut or padded to duration_s when given.

    Each instrument is rendered alone by FluidSynth; the mix is the sum of these renders; the
    level (one gain curve computed on the mix: loudness target, true-peak ceiling) is applied
    alike to every stem, so the stem files sum to the mix file up to 16-bit rounding; its
    limiter also watches every stem's peaks, since parts can cancel in the mix and a stem
    then peaks above it (level_gain).
    soundfont: a file, or None for find_soundfont(). workers: FluidSynth runs at once
    (default: the CPU count). on_started() is called once the first renders run (the app
    engraves the sheet then); on_mix(mix_path) as soon as the mix is written, before the
    stems (the app starts muxing the video then).

    Memory does not grow with the length: FluidSynth's renders and the mix stay on disk and
    are read a few seconds at a time; the level keeps a few values per 32-sample block
    (diffbgm.music.level; docs/sound.md, "Memory: long videos").
    """
    clock: dict[str, float] = {}
    started = time.perf_counter()
    font = find_soundfont(soundfont)
    check_soundfont(font)
    pm, source = read_midi(midi)
    parts = split_stems(pm)
    if not parts:
        raise RenderError(f"FluidSynth rendered silence for {source}: the MIDI has no notes")
    n_workers = max(1, min(len(parts), workers or os.cpu_count() or 1))
    Path(mix_path).parent.mkdir(parents=True, exist_ok=True)
    # FluidSynth's renders and the mix (100 MB a part per 10 minutes) beside the outputs, not
    # in $TMPDIR: where that is a tmpfs, its files are memory the process does not count
    with tempfile.TemporaryDirectory(prefix="diffbgm-stems-", dir=Path(mix_path).parent) as tmp:
        raws = [Path(tmp) / f"{index}.wav" for index in range(len(parts))]
        renders = _PartRenders([solo for _, solo in parts], raws, font, sample_rate, n_workers)
        try:
            if on_started is not None:
                on_started()
            mix, rate, rendered = _sum_renders(
                parts, raws, renders.wait, duration_s, source, Path(tmp) / "mix.f32"
            )
        finally:
            renders.stop()
        check_length(rendered / rate, pm.get_end_time(), level.tail_s, source)
        check_audible(mix, source)
        fade = int(round(FADE_S * rate)) if rendered > mix.frames else 0
        stems = [FadedAudio(WavAudio.of(path), mix.frames, min(fade, mix.frames)) for path in raws]
        clock["synth"] = time.perf_counter() - started

        started = time.perf_counter()
        # the stems' peaks are watched by the limiter too: levelled alike, none clips
        decided = level_gain(mix, rate, level, stems if len(parts) > 1 else ())
        gain, lufs, peak = decided.gain, decided.lufs, decided.true_peak
        clock["level"] = time.perf_counter() - started

        started = time.perf_counter()
        mix_path, stems_dir = Path(mix_path), Path(stems_dir)
        write_pcm16(mix_path, mix, rate, gain)
        if on_mix is not None:
            on_mix(mix_path)
        files: dict[str, Path] = {}
        if len(parts) == 1:
            files[parts[0][0]] = mix_path
        else:
            for (name, _), stem in zip(parts, stems, strict=True):
                files[name] = stems_dir / f"{name}.wav"
                write_pcm16(files[name], stem, rate, gain)
        clock["write"] = time.perf_counter() - started
    result = RenderResult(mix_path, mix.frames / rate, lufs, peak)
    return StemsResult(result, files, font, clock)


def _sum_renders(
    parts: list[tuple[str, pretty_midi.PrettyMIDI]],
    raws: list[Path],
    wait: Callable[[int], None],
    duration_s: float | None,
    source: str,
    mix_path: Path,
) -> tuple[RawAudio, int, int]:
    """The mix of FluidSynth's renders (a float32 file at mix_path), its sample rate and the
    longest render's length.

    Each part is added, a few seconds at a time, as soon as it and the parts before it are
    rendered, while the longer renders still run (the accompaniment of ten minutes renders
    2.5 s after the melody). Whether the parts are cut with a fade depends on the longest
    render, known only at the end, so the last FADE_S of every part is kept aside and added
    last; the additions, in part order, are those of reading every part after the last
    render, so the mix is the same to the bit.
    """
    wait(0)
    rate = int(soundfile.info(str(raws[0])).samplerate)
    if duration_s is None:  # the mix is as long as the longest render: wait for every one
        wait(len(parts) - 1)
        length = max(soundfile.info(str(raw)).frames for raw in raws)
    else:
        length = int(round(duration_s * rate))
    fade = min(length, int(round(FADE_S * rate)))
    mix = RawAudio.silent(mix_path, length, 2)
    tails: list[np.ndarray] = []
    for index, ((name, _), path) in enumerate(zip(parts, raws, strict=True)):
        wait(index)
        render = FadedAudio(WavAudio.of(path), length, 0)  # uncut: the fade comes at the end
        peak = 0.0
        for start, stop in stretches(length - fade, CHUNK_SAMPLES):
            part = render.read(start, stop)
            peak = max(peak, float(np.abs(part).max()))
            if index == 0:  # onto silence: nothing to read back
                mix.write(start, part)
            else:
                mix.add(start, part)
        tail = render.read(length - fade, length)
        tails.append(tail)
        peak = max(peak, float(np.abs(tail).max()) if tail.size else 0.0)
        # the cut part's peak can only be lower: the whole render decides
        if peak < SILENCE_PEAK and max_abs(WavAudio.of(path)) < SILENCE_PEAK:
            raise RenderError(
                f"FluidSynth rendered silence for the part {name!r} of {source} "
                f"(peak {peak:.1e}): the soundfont lacks its instrument or its notes are silent"
            )
    rendered = max(soundfile.info(str(raw)).frames for raw in raws)
    for tail in tails:
        if fade > 0 and rendered > length:
            tail *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
        mix.add(length - fade, tail)
    return mix, rate, rendered


class _PartRenders:
    """FluidSynth renders of the parts, at most `at_once` running, waited for in part order:
    each wait starts the next part not yet started."""

    def __init__(
        self,
        parts: list[pretty_midi.PrettyMIDI],
        raws: list[Path],
        soundfont: Path,
        sample_rate: int,
        at_once: int,
    ) -> None:
        self.parts, self.raws = parts, raws
        self.soundfont, self.sample_rate = soundfont, sample_rate
        self.runs: list[FluidSynthRun] = []
        self.waited = 0  # parts 0 .. waited-1 are rendered
        for _ in range(min(at_once, len(parts))):
            self._start_next()

    def _start_next(self) -> None:
        index = len(self.runs)
        if index < len(self.parts):
            part, raw = self.parts[index], self.raws[index]
            self.runs.append(start_render(part, self.soundfont, self.sample_rate, raw))

    def wait(self, index: int) -> None:
        """Until part `index` is rendered (idempotent)."""
        while self.waited <= index:
            self.runs[self.waited].wait()
            self.waited += 1
            self._start_next()

    def stop(self) -> None:
        """Kill the renders still running."""
        for run in self.runs[self.waited :]:
            run.stop()


def start_render(
    pm: pretty_midi.PrettyMIDI, soundfont: Path, sample_rate: int, out: Path
) -> FluidSynthRun:
    """FluidSynth's float output for one PrettyMIDI, to be left on disk at `out` (its MIDI
    beside it): started now, written once the run's `wait` returns."""
    midi_path = out.with_suffix(".mid")
    pm.write(str(midi_path))
    return FluidSynthRun(midi_path, out, soundfont, sample_rate)


def check_length(duration_s: float, midi_end_s: float, tail_s: float, source: str) -> None:
    """RenderError if a render's length does not fit the MIDI's end time."""
    if not midi_end_s - 0.1 <= duration_s <= midi_end_s + tail_s:
        raise RenderError(
            f"FluidSynth rendered {duration_s:.2f} s for {source}, but the MIDI ends at "
            f"{midi_end_s:.2f} s (allowed tail {tail_s:.1f} s)"
        )


def check_audible(audio: AudioSource, source: str) -> None:
    """RenderError if the audio is silent."""
    peak = max_abs(audio)
    if peak < SILENCE_PEAK:
        raise RenderError(
            f"FluidSynth rendered silence for {source} (peak {peak:.1e}): "
            "the MIDI has no audible notes or the soundfont lacks its instruments"
        )


def stem_residual_db(mix_path: str | Path, stem_paths: list[Path]) -> float:
    """How far the stem files are from summing to the mix file: RMS of (mix - sum of stems)
    relative to the RMS of the mix, in dB (-inf when they sum exactly)."""
    mix, _ = soundfile.read(str(mix_path), dtype="float64", always_2d=True)
    total = np.zeros_like(mix)
    for path in stem_paths:
        stem, _ = soundfile.read(str(path), dtype="float64", always_2d=True)
        if stem.shape != mix.shape:
            raise RenderError(
                f"stem {Path(path).name} is {stem.shape[0]} samples, the mix {mix.shape[0]}"
            )
        total += stem
    residual = float(np.sqrt(np.mean((mix - total) ** 2)))
    reference = float(np.sqrt(np.mean(mix**2)))
    if residual == 0.0:
        return float("-inf")
    return 20.0 * math.log10(residual / max(reference, 1e-12))


def fit_length(
    audio: np.ndarray, sample_rate: int, duration_s: float, fade_s: float = 0.5
) -> np.ndarray:
    """Trim or zero-pad (samples, channels) audio to exactly duration_s seconds.

    Trimmed audio gets a linear fade-out over the last fade_s seconds so it does not end
    with a click.
    """
    target = int(round(duration_s * sample_rate))
    if audio.shape[0] >= target:
        out = audio[:target].copy()
        fade = min(target, int(round(fade_s * sample_rate)))
        if fade > 0 and audio.shape[0] > target:
            out[target - fade :] *= np.linspace(1.0, 0.0, fade)[:, None]
        return out
    pad = np.zeros((target - audio.shape[0], audio.shape[1]), dtype=audio.dtype)
    return np.concatenate([audio, pad])


def trim_or_pad(
    wav_path: str | Path,
    duration_s: float,
    out_path: str | Path | None = None,
    fade_s: float = 0.5,
) -> Path:
    """Make a WAV exactly duration_s seconds long (e.g. a video's length); returns its path.

    Writes to out_path (default: over wav_path), keeping the sample rate and 16-bit PCM.
    """
    source = Path(wav_path)
    if not source.is_file():
        raise RenderError(f"WAV file not found: {source}")
    try:
        audio, rate = soundfile.read(str(source), dtype="float32", always_2d=True)
    except RuntimeError as exc:  # soundfile.LibsndfileError derives from RuntimeError
        raise RenderError(f"cannot read WAV file {source}: {exc}") from exc
    target = Path(out_path) if out_path is not None else source
    soundfile.write(
        str(target), fit_length(audio, rate, duration_s, fade_s), rate, subtype="PCM_16"
    )
    return target
