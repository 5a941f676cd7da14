"""Generators of small synthetic videos for the tests (written with PyAV into tmp folders).

A synthetic clip is a list of shots; each shot is a flat background colour with a square that
moves at a given speed, so cut times, brightness, colour and motion are all known exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


@dataclass(frozen=True)
class SyntheticShot:
    """One shot: `duration_s` seconds of `colour` (RGB 0-255) with a square moving at
    `speed_px_per_s` pixels per second (0 = still)."""

    duration_s: float
    colour: tuple[int, int, int]
    speed_px_per_s: float = 0.0
    square_colour: tuple[int, int, int] = (255, 255, 255)


DEFAULT_SHOTS: tuple[SyntheticShot, ...] = (
    SyntheticShot(1.5, (200, 40, 40), 0.0),
    SyntheticShot(1.5, (30, 60, 190), 120.0),
    SyntheticShot(1.5, (40, 170, 60), 240.0),
)


def shot_cut_times(shots: Sequence[SyntheticShot]) -> list[float]:
    """Times (seconds) at which each shot after the first starts."""
    return [float(t) for t in np.cumsum([s.duration_s for s in shots])[:-1]]


def render_frame(
    shot: SyntheticShot, t_in_shot_s: float, width: int, height: int, frame_index: int = 0
) -> np.ndarray:
    """One RGB frame (height, width, 3) uint8 of `shot` at `t_in_shot_s` seconds into it.

    A faint per-frame noise keeps the encoder from producing identical frames, like real video.
    """
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[:] = shot.colour
    side = max(4, height // 4)
    travel = max(1, width - side)
    # The square bounces between the edges so any speed stays inside the frame.
    position = (shot.speed_px_per_s * t_in_shot_s) % (2 * travel)
    x = int(position if position < travel else 2 * travel - position)
    y = (height - side) // 2
    frame[y : y + side, x : x + side] = shot.square_colour
    rng = np.random.default_rng(frame_index)
    noise = rng.integers(-3, 4, size=(height, width, 1), dtype=np.int16)
    return np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def write_video(
    path: Path,
    shots: Sequence[SyntheticShot] = DEFAULT_SHOTS,
    fps: float | Fraction = 25,
    size: tuple[int, int] = (160, 96),
    codec: str = "libx264",
    rotation_deg: int | None = None,
    with_audio: bool = False,
    frame_times_s: Sequence[float] | None = None,
) -> Path:
    """Write a synthetic clip to `path` and return it.

    `size` is (width, height) in pixels (even numbers for H.264). `frame_times_s`, when given,
    sets each frame's presentation time (seconds) explicitly to make variable-frame-rate files;
    otherwise frames are evenly spaced at `fps`. `rotation_deg` writes a display-matrix
    rotation into the stream (what phones do).
    """
    width, height = size
    rate = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
    boundaries = np.cumsum([0.0] + [s.duration_s for s in shots])
    total_s = float(boundaries[-1])
    if frame_times_s is None:
        n_frames = int(round(total_s * float(rate)))
        frame_times_s = [i / float(rate) for i in range(n_frames)]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        time_base = Fraction(1, 1000) if _is_vfr(frame_times_s, float(rate)) else 1 / rate
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        if rotation_deg is not None:
            stream.set_display_rotation(rotation_deg)
        audio = container.add_stream("aac", rate=22050) if with_audio else None
        assert audio is None or isinstance(audio, av.AudioStream)
        for index, t in enumerate(frame_times_s):
            shot_index = min(int(np.searchsorted(boundaries, t, side="right")) - 1, len(shots) - 1)
            shot = shots[shot_index]
            image = render_frame(shot, t - float(boundaries[shot_index]), width, height, index)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = int(round(t / float(time_base)))
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio is not None:
            _write_tone(container, audio, total_s)
    return path


def _is_vfr(frame_times_s: Sequence[float], fps: float) -> bool:
    steps = np.diff(np.asarray(frame_times_s, dtype=float))
    return bool(steps.size and np.ptp(steps) > 0.25 / fps)


def _write_tone(
    container: av.container.OutputContainer, stream: av.AudioStream, seconds: float
) -> None:
    """A quiet 440 Hz tone of `seconds` seconds into an open audio stream."""
    rate = 22050
    samples = np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate).astype(np.float32)
    chunk = 1024
    for start in range(0, samples.size, chunk):
        piece = (0.1 * samples[start : start + chunk]).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An .mp4 (M4A) file that holds one AAC audio stream and no video."""
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=22050)
        assert isinstance(stream, av.AudioStream)
        _write_tone(container, stream, seconds)
    return path


def write_png(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    """A single PNG image written to `path` (whatever its suffix)."""
    width, height = size
    image = np.full((height, width, 3), 128, dtype=np.uint8)
    with av.open(str(path), mode="w", format="image2") as container:
        stream = container.add_stream("png", rate=1)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height = width, height
        stream.pix_fmt = "rgb24"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def write_raw_h264(path: Path, shots: Sequence[SyntheticShot] = DEFAULT_SHOTS) -> Path:
    """An Annex-B H.264 elementary stream: no container, so no duration is recorded."""
    return write_video(path.with_suffix(".h264"), shots, codec="libx264").rename(path)


def truncate(source: Path, target: Path, keep_fraction: float) -> Path:
    """Copy the first `keep_fraction` of `source`'s bytes to `target` (a cut-off download)."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep_fraction)])
    return target


def write_tiny_video(path: Path, width: int, height: int, seconds: float = 2.0) -> Path:
    """A valid H.264 clip of any frame size, 1x1 and odd sizes included (yuv444p allows odd
    sides), made by the ffmpeg binary that imageio-ffmpeg ships."""
    import subprocess

    import imageio_ffmpeg

    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-y",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        f"testsrc=size={width}x{height}:rate=10:duration={seconds}",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv444p",
        str(path),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return path
