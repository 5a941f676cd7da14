"""Lay the music under the video with ffmpeg (the static binary that imageio-ffmpeg ships)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Literal

from diffbgm.errors import RenderError

AudioMode = Literal["keep", "duck", "replace"]
AUDIO_MODES: tuple[str, ...] = ("keep", "duck", "replace")

# Under "duck" the original sound stays audible but far below the music (-14 dB).
DUCKED_ORIGINAL_GAIN = 0.2
# H.264 in yuv420p needs even frame sizes of at least 2x2. Padding (never cropping) an odd
# side by one black line gets there from any size, 1x1 included: a crop to even sizes
# would turn a 1-pixel side into 0 and fail only at the very end of a composition.
EVEN_SIZE_FILTER = "pad=width=ceil(iw/2)*2:height=ceil(ih/2)*2:x=0:y=0:color=black"


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped by imageio-ffmpeg (no system package needed)."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise RenderError("imageio-ffmpeg is not installed: pip install imageio-ffmpeg") from exc
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _audio_filter(mode: AudioMode, has_original_audio: bool, duration_s: float) -> list[str]:
    """ffmpeg arguments that choose or mix the audio streams (input 0 = video, 1 = music)."""
    if mode == "replace" or not has_original_audio:
        return ["-map", "0:v:0", "-map", "1:a:0"]
    original_gain = 1.0 if mode == "keep" else DUCKED_ORIGINAL_GAIN
    graph = (
        f"[0:a:0]volume={original_gain},apad,atrim=0:{duration_s:.3f}[orig];"
        f"[1:a:0]apad,atrim=0:{duration_s:.3f}[music];"
        "[orig][music]amix=inputs=2:duration=first:normalize=0,alimiter=limit=0.95[mix]"
    )
    return ["-filter_complex", graph, "-map", "0:v:0", "-map", "[mix]"]


def _ffmpeg_reason(stderr: str, *paths: Path) -> str:
    """The most telling line of ffmpeg's error output, with file paths cut to their names.

    ffmpeg's last line is often a consequence ("Nothing was written into output file"); the
    first error line usually names the cause, so both are kept when they differ.
    """
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    if not lines:
        return "ffmpeg gave no reason"
    picked = list(dict.fromkeys([lines[0], lines[-1]]))
    text = " / ".join(picked)
    for path in paths:
        text = text.replace(str(path.resolve()), path.name).replace(str(path), path.name)
    return text[:400]


def mux_music(
    video_path: Path,
    music_wav: Path,
    out_path: Path,
    duration_s: float,
    audio: AudioMode = "duck",
    has_original_audio: bool = True,
    timeout_s: float = 600.0,
) -> Path:
    """Write `out_path` (MP4, H.264 + AAC): the video with the music under it.

    The video is re-encoded to H.264 (inputs may be VP8, AV1, ...; MP4 players want H.264)
    and both streams are cut to `duration_s` so they end together. Written to a temporary
    name first, so a failure never leaves a half-written MP4.
    """
    if audio not in AUDIO_MODES:
        raise RenderError(f"unknown audio mode {audio!r}; choose one of {', '.join(AUDIO_MODES)}")
    tmp = out_path.with_name(out_path.stem + ".partial.mp4")
    cmd = [
        ffmpeg_exe(),
        "-y",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        str(video_path),
        "-i",
        str(music_wav),
        *_audio_filter(audio, has_original_audio, duration_s),
        "-t",
        f"{duration_s:.3f}",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        "23",
        "-pix_fmt",
        "yuv420p",
        "-vf",
        EVEN_SIZE_FILTER,
        "-c:a",
        "aac",
        "-b:a",
        "192k",
        "-movflags",
        "+faststart",
        str(tmp),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        tmp.unlink(missing_ok=True)
        raise RenderError(
            f"ffmpeg took longer than {timeout_s:.0f} s muxing {video_path.name}"
        ) from exc
    if proc.returncode != 0 or not tmp.exists() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        raise RenderError(
            f"ffmpeg could not lay the music under '{video_path.name}': "
            f"{_ffmpeg_reason(proc.stderr, video_path, music_wav, tmp)}"
        )
    tmp.replace(out_path)
    return out_path
