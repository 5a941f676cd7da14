"""MIDI -> loudness-normalised 16-bit WAV with the FluidSynth binary.

FluidSynth is run directly (not through midi2audio, which drops the exit status, prints
FluidSynth's banner to our stdout, has no timeout and renders 16-bit at gain 0.2: measured in
docs/pipeline.md), in fast-render mode with 32-bit float output so nothing clips before we set
the level. The
result is checked (exit status, file present, not silent, as long as the MIDI), brought to a
target integrated loudness (ITU-R BS.1770 via pyloudnorm) under a peak ceiling, and written
as 16-bit PCM.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi
import pyloudnorm
import soundfile
from scipy.ndimage import minimum_filter1d, uniform_filter1d

from diffbgm.errors import RenderError

SILENCE_PEAK = 1e-4  # float full scale; FluidSynth output below this is treated as silence


@dataclass(frozen=True)
class RenderResult:
    """A rendered WAV: duration in seconds, integrated loudness in LUFS, peak in full scale."""

    path: Path
    duration_s: float
    lufs: float
    peak: float


@dataclass(frozen=True)
class LevelConfig:
    """How the level is set: peak ceiling (full scale) and limiter look-ahead (seconds).

    tail_s: how much longer than the MIDI the audio may be (release tails, reverb).
    """

    ceiling: float = 0.891  # -1 dBFS
    lookahead_s: float = 0.005
    tail_s: float = 12.0
    passes: int = 4


def default_soundfont() -> Path:
    """The General MIDI soundfont that pretty_midi's wheel ships (TimGM6mb.sf2)."""
    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


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


def run_fluidsynth(midi_path: Path, wav_path: Path, soundfont: Path, sample_rate: int) -> None:
    """Render midi_path to a float WAV at wav_path; RenderError if FluidSynth fails."""
    command = [
        fluidsynth_binary(),
        "-ni",  # no MIDI input, no shell
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
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RenderError(f"FluidSynth took longer than 10 minutes on {midi_path}") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RenderError(
            f"FluidSynth failed on {midi_path} (exit status {proc.returncode}): {' / '.join(detail)}"
        )
    if not wav_path.exists() or wav_path.stat().st_size == 0:
        raise RenderError(f"FluidSynth wrote no audio for {midi_path}")


def check_rendered(
    audio: np.ndarray, sample_rate: int, midi_end_s: float, tail_s: float, source: str
) -> None:
    """RenderError if the audio is silent or its length does not fit the MIDI's end time."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < SILENCE_PEAK:
        raise RenderError(
            f"FluidSynth rendered silence for {source} (peak {peak:.1e}): "
            "the MIDI has no audible notes or the soundfont lacks its instruments"
        )
    duration = audio.shape[0] / sample_rate
    if not midi_end_s - 0.1 <= duration <= midi_end_s + tail_s:
        raise RenderError(
            f"FluidSynth rendered {duration:.2f} s for {source}, but the MIDI ends at "
            f"{midi_end_s:.2f} s (allowed tail {tail_s:.1f} s)"
        )


def limit_peaks(
    audio: np.ndarray, sample_rate: int, ceiling: float, lookahead_s: float
) -> np.ndarray:
    """Look-ahead peak limiter: smooth gain so that |output| <= ceiling everywhere.

    audio: (samples, channels). The gain each sample needs (ceiling / |x|, at most 1) is
    spread by a sliding minimum over the look-ahead window and then averaged over the same
    window; every averaged value is a minimum over a window containing the sample, so the
    smoothed gain never exceeds what any sample needs, and it ramps instead of jumping.
    """
    magnitude = np.max(np.abs(audio), axis=1)
    needed = np.minimum(1.0, ceiling / np.maximum(magnitude, 1e-12))
    if needed.min() >= 1.0:
        return audio
    window = max(1, int(round(lookahead_s * sample_rate)) | 1)  # odd: centred windows
    gain = uniform_filter1d(
        minimum_filter1d(needed, window, mode="nearest"), window, mode="nearest"
    )
    gain = np.minimum(gain, needed)  # guards float rounding at window edges
    return audio * gain[:, None].astype(audio.dtype)


def measure_lufs(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness (LUFS, ITU-R BS.1770) of (samples, channels) audio.

    Gating needs at least one 400 ms block, so very short audio is measured with silence
    appended (silent blocks are gated out, so this does not change the value).
    """
    minimum = int(0.4 * sample_rate) + 1
    if audio.shape[0] < minimum:
        audio = np.concatenate([audio, np.zeros((minimum - audio.shape[0], audio.shape[1]))])
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(audio))


def normalise_loudness(
    audio: np.ndarray, sample_rate: int, target_lufs: float, level: LevelConfig
) -> tuple[np.ndarray, float]:
    """Gain to target_lufs, then limit peaks; repeated because limiting lowers loudness.

    Returns (audio, measured integrated loudness in LUFS).
    """
    out = audio
    lufs = measure_lufs(out, sample_rate)
    for _ in range(level.passes):
        if not np.isfinite(lufs):
            break
        gain = 10 ** ((target_lufs - lufs) / 20)
        out = limit_peaks(out * gain, sample_rate, level.ceiling, level.lookahead_s)
        lufs = measure_lufs(out, sample_rate)
        if abs(lufs - target_lufs) < 0.1:
            break
    return out, lufs


def render_wav(
    midi: str | Path | pretty_midi.PrettyMIDI,
    wav_path: str | Path,
    soundfont: str | Path | None = None,
    sample_rate: int = 44100,
    target_lufs: float = -16.0,
    level: LevelConfig = LevelConfig(),
) -> RenderResult:
    """Render a MIDI file (or PrettyMIDI object) to a 16-bit WAV at target_lufs (LUFS).

    Raises RenderError when FluidSynth is missing or fails, or its output is silent or of
    the wrong length; MIDI files that cannot be read raise RenderError too.
    """
    wav_path = Path(wav_path)
    font = Path(soundfont) if soundfont is not None else default_soundfont()
    check_soundfont(font)
    with tempfile.TemporaryDirectory(prefix="diffbgm-render-") as tmp:
        if isinstance(midi, pretty_midi.PrettyMIDI):
            pm = midi
            midi_path = Path(tmp) / "input.mid"
            pm.write(str(midi_path))
            source = "the generated MIDI"
        else:
            midi_path = Path(midi)
            source = str(midi_path)
            try:
                pm = pretty_midi.PrettyMIDI(str(midi_path))
            except Exception as exc:  # pretty_midi/mido raise many types for bad files
                raise RenderError(f"cannot read MIDI file {midi_path}: {exc}") from exc
        raw_path = Path(tmp) / "raw.wav"
        run_fluidsynth(midi_path, raw_path, font, sample_rate)
        audio, rate = soundfile.read(str(raw_path), dtype="float32", always_2d=True)
    check_rendered(audio, rate, pm.get_end_time(), level.tail_s, source)
    audio, lufs = normalise_loudness(audio, rate, target_lufs, level)
    audio = np.clip(audio, -1.0, 1.0)
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(wav_path), audio, rate, subtype="PCM_16")
    return RenderResult(wav_path, audio.shape[0] / rate, lufs, float(np.max(np.abs(audio))))


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
