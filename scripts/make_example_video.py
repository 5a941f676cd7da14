"""Makes the example clip shipped with the package (`diffbgm/assets/examples/shapes.mp4`).

Why our own clip: every install (pip, Docker, Space) should show an example without the
Big Buck Bunny copy in ../shared, and a clip we draw ourselves carries no licence question
(we dedicate it to the public domain, CC0 1.0). It is made to exercise the pipeline: four shots
with hard cuts, each with its own colours and amount of motion (calm, busy, very busy, calm),
and a soft audio bed so the "duck" audio mode has something to duck.

Deterministic: the same numpy drawing and ffmpeg settings give the same frames (the encoded
bytes may differ between ffmpeg builds). Run: `python scripts/make_example_video.py [OUT]`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

WIDTH, HEIGHT, FPS = 640, 360, 24
SHOT_SECONDS = (2.0, 1.5, 1.5, 2.0)
SAMPLE_RATE = 44_100
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "diffbgm" / "assets" / "examples" / "shapes.mp4"

Frame = np.ndarray
_Y, _X = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)


def _gradient(top: tuple[int, int, int], bottom: tuple[int, int, int], shift: float) -> Frame:
    """A vertical colour gradient that drifts slowly (so even a calm shot has some motion)."""
    t = np.clip(_Y / HEIGHT + 0.15 * np.sin(2 * np.pi * (_X / WIDTH + shift)), 0, 1)[..., None]
    return (np.array(top) * (1 - t) + np.array(bottom) * t).astype(np.float32)


def _disc(frame: Frame, cx: float, cy: float, r: float, colour: tuple[int, int, int]) -> None:
    mask = ((_X - cx) ** 2 + (_Y - cy) ** 2) <= r * r
    frame[mask] = colour


def _box(
    frame: Frame, x: float, y: float, w: float, h: float, colour: tuple[int, int, int]
) -> None:
    x0, y0 = int(max(x, 0)), int(max(y, 0))
    frame[y0 : int(min(y + h, HEIGHT)), x0 : int(min(x + w, WIDTH))] = colour


def _dawn(t: float) -> Frame:
    """Shot 1, calm: a sun rising slowly over a warm sky."""
    frame = _gradient((250, 170, 90), (120, 60, 110), 0.02 * t)
    _disc(frame, 320, 300 - 25 * t, 60, (255, 230, 150))
    _box(frame, 0, 300, WIDTH, 60, (60, 40, 70))
    return frame


def _city(t: float) -> Frame:
    """Shot 2, busy: blocks sliding across a blue dusk at different speeds."""
    frame = _gradient((30, 40, 110), (90, 140, 200), 0.1 * t)
    for i in range(6):
        speed = 120 + 40 * i
        x = (i * 140 + speed * t) % (WIDTH + 120) - 120
        _box(frame, x, 120 + 30 * (i % 3), 90, 240, (20 + 30 * i, 30, 60 + 20 * i))
    return frame


def _chase(t: float) -> Frame:
    """Shot 3, very busy: bright balls bouncing fast over green."""
    frame = _gradient((40, 150, 70), (10, 70, 40), 0.3 * t)
    for i, colour in enumerate([(250, 80, 60), (250, 220, 60), (90, 200, 250), (240, 240, 240)]):
        x = WIDTH / 2 + 260 * np.sin(3.1 * t * (1 + 0.3 * i) + i)
        y = HEIGHT / 2 + 130 * np.abs(np.cos(4.7 * t * (1 + 0.2 * i) + 2 * i)) - 40
        _disc(frame, x, y, 32, colour)
    return frame


def _night(t: float) -> Frame:
    """Shot 4, calm and dark: a moon and a few stars drifting."""
    frame = _gradient((10, 15, 45), (30, 20, 60), 0.01 * t)
    _disc(frame, 470 - 10 * t, 110, 45, (230, 230, 210))
    rng = np.random.default_rng(7)
    for sx, sy in rng.uniform((0, 0), (WIDTH, 250), size=(25, 2)):
        _box(frame, (sx + 6 * t) % WIDTH, sy, 3, 3, (255, 255, 255))
    return frame


SHOTS: tuple[Callable[[float], Frame], ...] = (_dawn, _city, _chase, _night)


def frames() -> list[bytes]:
    """All frames as raw RGB24 bytes, shot after shot."""
    out: list[bytes] = []
    for draw, seconds in zip(SHOTS, SHOT_SECONDS, strict=True):
        for index in range(round(seconds * FPS)):
            out.append(np.clip(draw(index / FPS), 0, 255).astype(np.uint8).tobytes())
    return out


def soft_tone(seconds: float) -> np.ndarray:
    """A quiet two-note pad (A3 + E4) with slow swells: an audio bed, not music."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = 0.5 - 0.5 * np.cos(2 * np.pi * t / 2.0)
    pad = np.sin(2 * np.pi * 220 * t) + 0.6 * np.sin(2 * np.pi * 329.63 * t)
    fade = np.minimum(1, np.minimum(t, seconds - t) / 0.3)
    return (0.08 * envelope * pad * fade * 32767).astype(np.int16)


def write_clip(out: Path) -> Path:
    """Encode the frames (H.264, yuv420p) and the tone (AAC) into `out` with imageio-ffmpeg."""
    import imageio_ffmpeg

    seconds = sum(SHOT_SECONDS)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = Path(tmp) / "tone.wav"
        with wave.open(str(wav_path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(SAMPLE_RATE)
            wav.writeframes(soft_tone(seconds).tobytes())
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-y", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS),
            "-i", "-",
            "-i", str(wav_path),
            "-c:v", "libx264", "-preset", "slow", "-crf", "26", "-pix_fmt", "yuv420p",
            "-g", str(FPS * 2), "-bf", "2",
            "-c:a", "aac", "-b:a", "64k",
            "-movflags", "+faststart", "-shortest",
            "-map_metadata", "-1", "-fflags", "+bitexact",
            str(out),
        ]  # fmt: skip
        process = subprocess.run(command, input=b"".join(frames()), capture_output=True)
        if process.returncode != 0:
            raise RuntimeError(f"ffmpeg failed: {process.stderr.decode(errors='replace')}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    path = write_clip(args.out)
    print(
        f"{path}: {path.stat().st_size / 1024:.0f} KiB, {sum(SHOT_SECONDS)} s, {len(SHOTS)} shots"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
