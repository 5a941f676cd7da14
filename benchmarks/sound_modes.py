"""What each way of meeting the video's own sound costs in the mux.

    python benchmarks/sound_modes.py [--minutes 10] [--repeats 2]

Writes a video sound (48 kHz mono AAC: a voice-like tone that sounds every other second over
quiet noise) and a music WAV (44.1 kHz stereo: decaying notes of random pitch, four a second)
of the same length, then times
the mix alone (ffmpeg decoding and filtering, output discarded) and `encode_sound_track` (the
mix and the AAC encode of the MP4's sound) per audio mode: duck, duck over part of the video
(the middle half), keep, dialogue (a sidechain compressor on the music) and replace. Prints
ffmpeg's CPU seconds (and the encode's wall seconds; the best of the repeats) and each mode's
ratio to "duck", the default.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from diffbgm.music.render import find_soundfont
from diffbgm.video.mux import AudioMode, _sound_args, encode_sound_track, ffmpeg_exe


def child_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


POP909 = Path(__file__).resolve().parents[2] / "shared/data/pop909"


def write_inputs(folder: Path, seconds: float) -> tuple[Path, Path]:
    """(the video's sound as an .m4a, the music as a WAV), both `seconds` long. The music is
    POP909 song 801 rendered by FluidSynth and looped (real piano: ffmpeg's AAC coder takes
    several times longer on steady synthetic tones than on music, whatever the mode); without
    ../shared/data, decaying synthetic notes."""
    rng = np.random.default_rng(0)
    voice_rate = 48000
    t = np.arange(int(seconds * voice_rate)) / voice_rate
    speaking = (t.astype(int) % 2) == 0
    voice = 0.2 * np.sin(2 * np.pi * 220 * t) * speaking + 0.003 * rng.standard_normal(t.size)
    sf.write(folder / "voice.wav", voice.astype(np.float32), voice_rate)
    sound = folder / "voice.m4a"
    subprocess.run(
        [ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(folder / "voice.wav"), "-c:a", "aac",
         str(sound)],
        check=True,
    )  # fmt: skip
    song = POP909 / "801" / "801.mid"
    if song.is_file():
        from diffbgm.music.render import render_wav

        render_wav(song, folder / "song.wav", soundfont=find_soundfont())
        piece, rate = sf.read(folder / "song.wav", dtype="float32", always_2d=True)
        repeats = int(np.ceil(seconds * rate / len(piece)))
        music = np.tile(piece, (repeats, 1))[: int(seconds * rate)]
    else:
        rate = 44100
        tm = np.arange(int(seconds * rate)) / rate
        note = (tm * 4).astype(int)
        pitch = 220.0 * 2.0 ** (rng.integers(0, 24, note.max() + 1) / 12.0)
        mono = 0.1 * np.sin(2 * np.pi * pitch[note] * tm) * np.exp(-6.0 * (tm - note / 4.0))
        music = np.stack([mono, mono], axis=1).astype(np.float32)
    sf.write(folder / "music.wav", music, rate)
    return sound, folder / "music.wav"


def time_mix_only(
    sound: Path, music: Path, seconds: float, mode: AudioMode, span: tuple[float, float] | None
) -> float:
    """ffmpeg CPU seconds of the mix alone (decode, filters; output discarded)."""
    rate = sf.info(str(music)).samplerate
    cpu0 = child_cpu_s()
    subprocess.run(
        [ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error", "-i", str(sound), "-i", str(music),
         *_sound_args(mode, True, seconds, rate, span), "-t", f"{seconds:.3f}", "-f", "null", "-"],
        check=True,
    )  # fmt: skip
    return child_cpu_s() - cpu0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    seconds = args.minutes * 60.0
    modes: list[tuple[str, AudioMode, tuple[float, float] | None]] = [
        ("duck", "duck", None),
        ("duck, middle half", "duck", (seconds / 4, 3 * seconds / 4)),
        ("keep", "keep", None),
        ("dialogue", "dialogue", None),
        ("replace", "replace", None),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sound, music = write_inputs(folder, seconds)
        best: dict[str, tuple[float, float, float]] = {}
        for _ in range(args.repeats):
            for name, mode, span in modes:  # alternating, so that a busy minute hits all
                mix = time_mix_only(sound, music, seconds, mode, span)
                wall0, cpu0 = time.perf_counter(), child_cpu_s()
                encode_sound_track(
                    sound, music, folder / "out.m4a", seconds, audio=mode, music_span_s=span,
                )  # fmt: skip
                wall, cpu = time.perf_counter() - wall0, child_cpu_s() - cpu0
                old = best.get(name, (np.inf, np.inf, np.inf))
                best[name] = (min(old[0], mix), min(old[1], wall), min(old[2], cpu))
    base_mix, base_wall, base_cpu = best["duck"]
    print(f"{args.minutes:g} min of sound, best of {args.repeats}")
    print(
        f"{'mode':20s} {'mix CPU s':>9s} {'ratio':>6s} {'mix+AAC wall s':>14s} {'CPU s':>7s} "
        f"{'ratio':>6s}"
    )
    for name, (mix, wall, cpu) in best.items():
        print(
            f"{name:20s} {mix:9.2f} {mix / base_mix:6.2f} {wall:14.2f} {cpu:7.2f} "
            f"{cpu / base_cpu:6.2f}"
        )


if __name__ == "__main__":
    main()
